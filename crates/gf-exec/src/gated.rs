//! The order gate in front of every [`Exchange`]: a closed [`TradingGate`] refuses every
//! order but sealed halt closures before anything is queued, and a mislabelled closure is
//! refused in every state.
//!
//! Where the permit is held depends on the transport. The Kraken client checks the gate
//! again immediately before each request is written (after its rate-limiter wait, on every
//! retry) and holds the permit until that request resolves; wrapped with
//! [`crate::KrakenClient::into_gated`], this wrapper only refuses early. Any other
//! exchange (the paper exchange, which fills without awaiting anything, mocks, fakes) is
//! entered here and the permit is held while it submits, so [`TradingGate::drained`] after
//! a close covers every order that passed just before it.

use std::collections::BTreeMap;

use async_trait::async_trait;
use gf_core::{ClientOrderId, OrderRequest, OrderStatus, Position, TradingGate};
use rust_decimal::Decimal;

use crate::events::Publisher;
use crate::{DeadManStatus, Error, Exchange, OrderAck, OrderInfo, OrderRef, Reconciled};

/// The exchange error for a gate refusal: [`Error::Halted`] for a closed gate,
/// [`Error::InvalidOrder`] naming why for a closure without a valid seal.
pub(crate) fn gate_refusal(err: gf_core::Error) -> Error {
    match err {
        gf_core::Error::GateClosed => Error::Halted,
        other => Error::InvalidOrder(other),
    }
}

/// Wraps an exchange with the trading gate. Every other call passes through unchanged
/// (cancels and queries are always allowed, also while halted). There is no accessor to
/// the wrapped exchange: whoever holds the wrapper holds a gated exchange.
///
/// ```
/// use std::sync::Arc;
/// use gf_core::{ClientOrderId, OrderPurpose, OrderRequest, OrderType, Pair, Side, Source,
///     SystemClock, TimeInForce, TradingGate};
/// use gf_exec::{events::Publisher, Error, Exchange, GatedExchange, PaperExchange, PaperConfig};
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let gate = TradingGate::new_closed();
/// let publisher = Publisher::new(None, Arc::new(SystemClock), Source::Paper);
/// let paper = PaperExchange::new(PaperConfig::default(), publisher.clone());
/// let exchange = GatedExchange::new(paper, gate, publisher);
/// let mut order = OrderRequest {
///     client_order_id: ClientOrderId::new("c1"),
///     pair: "XRP/USD".parse::<Pair>().unwrap(),
///     side: Side::Buy,
///     order_type: OrderType::Market,
///     qty: 10.into(),
///     limit_price: None,
///     time_in_force: TimeInForce::Gtc,
///     reduce_only: false,
///     user_ref: None,
///     purpose: OrderPurpose::Normal,
///     closure_seal: None,
/// };
/// assert!(matches!(exchange.place_order(&order).await, Err(Error::Halted)));
/// // Calling it a closure does not help: closures are sealed by the gate's opener.
/// order.purpose = OrderPurpose::HaltClosure;
/// assert!(matches!(exchange.place_order(&order).await, Err(Error::InvalidOrder(_))));
/// # });
/// ```
#[derive(Debug)]
pub struct GatedExchange<E> {
    inner: E,
    gate: TradingGate,
    events: Publisher,
    /// The inner exchange checks this same gate where it writes each request and holds the
    /// permit there; this wrapper then only refuses early.
    checked_at_wire: bool,
}

impl<E: Exchange> GatedExchange<E> {
    /// Puts `inner` behind `gate`; refusals are published through `events`. The permit is
    /// held here while `inner` submits.
    pub fn new(inner: E, gate: TradingGate, events: Publisher) -> Self {
        Self {
            inner,
            gate,
            events,
            checked_at_wire: false,
        }
    }

    /// As [`GatedExchange::new`] for an `inner` that itself enters `gate` immediately
    /// before writing each request.
    pub(crate) fn checked_at_wire(inner: E, gate: TradingGate, events: Publisher) -> Self {
        Self {
            inner,
            gate,
            events,
            checked_at_wire: true,
        }
    }

    /// The gate.
    pub fn gate(&self) -> &TradingGate {
        &self.gate
    }

    fn reject(&self, order: &OrderRequest, reason: String) {
        self.events.order_update(
            &order.client_order_id,
            None,
            &order.pair,
            OrderStatus::Rejected,
            Decimal::ZERO,
            Some(reason),
        );
    }
}

#[async_trait]
impl<E: Exchange> Exchange for GatedExchange<E> {
    async fn place_order(&self, order: &OrderRequest) -> Result<OrderAck, Error> {
        let permit = if self.checked_at_wire {
            self.gate.check(order).map(|()| None)
        } else {
            self.gate.enter(order).map(Some)
        };
        let permit = match permit {
            Ok(permit) => permit,
            Err(refused) => {
                let err = gate_refusal(refused);
                let reason = match &err {
                    Error::Halted => "trading is halted: the order gate is closed".to_owned(),
                    other => other.to_string(),
                };
                self.reject(order, reason);
                return Err(err);
            }
        };
        if let Err(invalid) = order.validate() {
            drop(permit);
            self.reject(order, invalid.to_string());
            return Err(Error::InvalidOrder(invalid));
        }
        let result = self.inner.place_order(order).await;
        drop(permit);
        result
    }

    async fn cancel_order(&self, order: &OrderRef) -> Result<(), Error> {
        self.inner.cancel_order(order).await
    }

    async fn cancel_all(&self) -> Result<u32, Error> {
        self.inner.cancel_all().await
    }

    async fn cancel_all_after(&self, timeout_secs: u32) -> Result<DeadManStatus, Error> {
        self.inner.cancel_all_after(timeout_secs).await
    }

    async fn open_orders(&self) -> Result<Vec<OrderInfo>, Error> {
        self.inner.open_orders().await
    }

    async fn order_status(&self, order: &OrderRef) -> Result<OrderInfo, Error> {
        self.inner.order_status(order).await
    }

    async fn reconcile_order(
        &self,
        client_order_id: &ClientOrderId,
    ) -> Result<Option<Reconciled>, Error> {
        self.inner.reconcile_order(client_order_id).await
    }

    async fn balances(&self) -> Result<BTreeMap<String, Decimal>, Error> {
        self.inner.balances().await
    }

    async fn open_positions(&self) -> Result<Vec<Position>, Error> {
        self.inner.open_positions().await
    }

    async fn check(&self) -> Result<(), Error> {
        self.inner.check().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MockExchange;
    use gf_core::{
        EventBus, EventKind, GateOpener, KindSet, ManualClock, OrderId, OrderPurpose, OrderType,
        Pair, Payload, Side, Source, TimeInForce,
    };
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    fn order(id: &str) -> OrderRequest {
        OrderRequest {
            client_order_id: ClientOrderId::new(id),
            pair: Pair::new("XRP/USD").unwrap(),
            side: Side::Sell,
            order_type: OrderType::Market,
            qty: Decimal::new(10, 0),
            limit_price: None,
            time_in_force: TimeInForce::Gtc,
            reduce_only: false,
            user_ref: None,
            purpose: OrderPurpose::Normal,
            closure_seal: None,
        }
    }

    /// A closure of a 10 XRP long, sealed by `opener`.
    fn closure(id: &str, opener: &GateOpener) -> OrderRequest {
        let mut o = order(id);
        o.purpose = OrderPurpose::HaltClosure;
        let mut long = Position::flat(o.pair.clone());
        long.qty = Decimal::new(10, 0);
        o.closure_seal = Some(
            opener
                .seal_closure(&o.client_order_id, &long, o.qty)
                .unwrap(),
        );
        o
    }

    fn ack(o: &OrderRequest) -> OrderAck {
        OrderAck {
            order_id: OrderId::new(format!("O-{}", o.client_order_id)),
            client_order_id: o.client_order_id.clone(),
            status: OrderStatus::Open,
        }
    }

    fn rejected_reason(ev: &gf_core::Event, id: &str) -> String {
        match &ev.payload {
            Payload::OrderUpdate {
                client_order_id,
                status,
                reason,
                ..
            } => {
                assert_eq!(client_order_id.as_str(), id);
                assert_eq!(*status, OrderStatus::Rejected);
                reason.clone().unwrap()
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[tokio::test]
    async fn halted_gate_refuses_normal_orders_and_passes_sealed_closures() {
        let bus = EventBus::new(64);
        let mut sub = bus.subscribe(KindSet::of(&[EventKind::OrderUpdate]));
        let publisher = Publisher::new(
            Some(bus.clone()),
            Arc::new(ManualClock::default()),
            Source::Exec,
        );
        let gate = TradingGate::new_open();
        let opener = gate.take_opener().unwrap();
        let in_flight_seen = Arc::new(AtomicU64::new(0));
        let mut mock = MockExchange::new();
        let seen = in_flight_seen.clone();
        let g = gate.clone();
        mock.expect_place_order().times(2).returning(move |o| {
            seen.fetch_max(g.in_flight(), Ordering::SeqCst);
            Ok(ack(o))
        });
        mock.expect_cancel_all().times(1).returning(|| Ok(3));
        let exchange = GatedExchange::new(mock, gate.clone(), publisher);

        exchange.place_order(&order("before")).await.unwrap();
        assert_eq!(
            in_flight_seen.load(Ordering::SeqCst),
            1,
            "permit held during submission"
        );
        assert_eq!(gate.in_flight(), 0, "permit released afterwards");

        gate.close();
        let refused = exchange.place_order(&order("normal")).await;
        assert!(matches!(refused, Err(Error::Halted)), "{refused:?}");
        let reason = rejected_reason(&sub.recv().await.unwrap(), "normal");
        assert!(reason.contains("halted"), "{reason}");

        // Labelled a closure but never sealed: refused, and said why.
        let mut mislabelled = order("mislabelled");
        mislabelled.purpose = OrderPurpose::HaltClosure;
        let refused = exchange.place_order(&mislabelled).await.unwrap_err();
        assert!(matches!(refused, Error::InvalidOrder(_)), "{refused:?}");
        let reason = rejected_reason(&sub.recv().await.unwrap(), "mislabelled");
        assert!(reason.contains("no closure seal"), "{reason}");

        let closure = exchange
            .place_order(&closure("closure", &opener))
            .await
            .unwrap();
        assert_eq!(closure.client_order_id.as_str(), "closure");
        assert_eq!(
            exchange.cancel_all().await.unwrap(),
            3,
            "cancels pass while halted"
        );
        assert_eq!(
            gate.in_flight_orders(),
            vec![ClientOrderId::new("closure")],
            "an order admitted while closed is recorded for reconciliation"
        );
    }

    #[tokio::test]
    async fn a_wire_checked_inner_is_only_refused_early() {
        let gate = TradingGate::new_open();
        let mut mock = MockExchange::new();
        let g = gate.clone();
        mock.expect_place_order().times(1).returning(move |o| {
            assert_eq!(g.in_flight(), 0, "the wrapper holds no permit");
            Ok(ack(o))
        });
        let publisher = Publisher::new(None, Arc::new(ManualClock::default()), Source::Exec);
        let exchange = GatedExchange::checked_at_wire(mock, gate.clone(), publisher);
        exchange.place_order(&order("a")).await.unwrap();
        gate.close();
        assert!(matches!(
            exchange.place_order(&order("b")).await,
            Err(Error::Halted)
        ));
    }

    #[tokio::test]
    async fn invalid_orders_never_reach_the_exchange() {
        let mut mock = MockExchange::new();
        mock.expect_place_order().never();
        let publisher = Publisher::new(None, Arc::new(ManualClock::default()), Source::Exec);
        let exchange = GatedExchange::new(mock, TradingGate::new_open(), publisher);
        let mut bad = order("bad");
        bad.qty = Decimal::ZERO;
        let err = exchange.place_order(&bad).await.unwrap_err();
        assert!(matches!(err, Error::InvalidOrder(_)));
        assert!(err.to_string().contains("qty"));
        assert_eq!(exchange.gate().in_flight(), 0);
    }

    #[tokio::test]
    async fn queries_pass_through() {
        let mut mock = MockExchange::new();
        mock.expect_balances()
            .returning(|| Ok(BTreeMap::from([("USD".to_owned(), Decimal::ONE)])));
        mock.expect_open_orders().returning(|| Ok(Vec::new()));
        mock.expect_open_positions().returning(|| Ok(Vec::new()));
        mock.expect_check().returning(|| Ok(()));
        mock.expect_cancel_order()
            .returning(|r| Err(Error::UnknownOrder(format!("{r:?}"))));
        mock.expect_order_status()
            .returning(|r| Err(Error::UnknownOrder(format!("{r:?}"))));
        mock.expect_reconcile_order().returning(|_| Ok(None));
        mock.expect_cancel_all_after()
            .returning(|_| Ok(DeadManStatus { trigger_at: None }));
        let publisher = Publisher::new(None, Arc::new(ManualClock::default()), Source::Exec);
        let exchange = GatedExchange::new(mock, TradingGate::new_closed(), publisher);
        assert_eq!(exchange.balances().await.unwrap()["USD"], Decimal::ONE);
        assert!(exchange.open_orders().await.unwrap().is_empty());
        assert!(exchange.open_positions().await.unwrap().is_empty());
        exchange.check().await.unwrap();
        let r = OrderRef::Exchange(OrderId::new("X"));
        assert!(exchange.cancel_order(&r).await.is_err());
        assert!(exchange.order_status(&r).await.is_err());
        assert_eq!(
            exchange
                .reconcile_order(&ClientOrderId::new("x"))
                .await
                .unwrap(),
            None
        );
        assert_eq!(exchange.cancel_all_after(0).await.unwrap().trigger_at, None);
    }
}
