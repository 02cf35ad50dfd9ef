//! The order gate in front of every [`Exchange`]: a closed [`TradingGate`] refuses every
//! order that is not a halt-closure order, before anything reaches the transport.
//!
//! The check is one atomic compare-and-swap ([`TradingGate::enter`]). The permit it
//! returns is held while the inner exchange submits the order, so that
//! [`TradingGate::drained`] after a close covers every order that passed just before it.

use std::collections::BTreeMap;

use async_trait::async_trait;
use gf_core::{OrderRequest, OrderStatus, Position, TradingGate};
use rust_decimal::Decimal;

use crate::events::Publisher;
use crate::{DeadManStatus, Error, Exchange, OrderAck, OrderInfo, OrderRef};

/// Wraps an exchange with the trading gate. Every other call passes through unchanged
/// (cancels and queries are always allowed, also while halted).
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
/// let order = OrderRequest {
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
/// };
/// assert!(matches!(exchange.place_order(&order).await, Err(Error::Halted)));
/// # });
/// ```
#[derive(Debug)]
pub struct GatedExchange<E> {
    inner: E,
    gate: TradingGate,
    events: Publisher,
}

impl<E: Exchange> GatedExchange<E> {
    /// Puts `inner` behind `gate`; refusals are published through `events`.
    pub fn new(inner: E, gate: TradingGate, events: Publisher) -> Self {
        Self {
            inner,
            gate,
            events,
        }
    }

    /// The wrapped exchange.
    pub fn inner(&self) -> &E {
        &self.inner
    }

    /// The gate.
    pub fn gate(&self) -> &TradingGate {
        &self.gate
    }
}

#[async_trait]
impl<E: Exchange> Exchange for GatedExchange<E> {
    async fn place_order(&self, order: &OrderRequest) -> Result<OrderAck, Error> {
        let Ok(permit) = self.gate.enter(order.purpose) else {
            self.events.order_update(
                &order.client_order_id,
                None,
                &order.pair,
                OrderStatus::Rejected,
                Decimal::ZERO,
                Some("trading is halted: the order gate is closed".into()),
            );
            return Err(Error::Halted);
        };
        if let Err(invalid) = order.validate() {
            drop(permit);
            self.events.order_update(
                &order.client_order_id,
                None,
                &order.pair,
                OrderStatus::Rejected,
                Decimal::ZERO,
                Some(invalid.to_string()),
            );
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
        ClientOrderId, EventBus, EventKind, KindSet, ManualClock, OrderId, OrderPurpose, OrderType,
        Pair, Payload, Side, Source, TimeInForce,
    };
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    fn order(id: &str, purpose: OrderPurpose) -> OrderRequest {
        OrderRequest {
            client_order_id: ClientOrderId::new(id),
            pair: Pair::new("XRP/USD").unwrap(),
            side: Side::Sell,
            order_type: OrderType::Market,
            qty: Decimal::new(10, 0),
            limit_price: None,
            time_in_force: TimeInForce::Gtc,
            reduce_only: purpose == OrderPurpose::HaltClosure,
            user_ref: None,
            purpose,
        }
    }

    fn ack(o: &OrderRequest) -> OrderAck {
        OrderAck {
            order_id: OrderId::new(format!("O-{}", o.client_order_id)),
            client_order_id: o.client_order_id.clone(),
            status: OrderStatus::Open,
        }
    }

    #[tokio::test]
    async fn halted_gate_refuses_normal_orders_and_passes_closure_orders() {
        let bus = EventBus::new(64);
        let mut sub = bus.subscribe(KindSet::of(&[EventKind::OrderUpdate]));
        let publisher = Publisher::new(
            Some(bus.clone()),
            Arc::new(ManualClock::default()),
            Source::Exec,
        );
        let gate = TradingGate::new_open();
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

        exchange
            .place_order(&order("before", OrderPurpose::Normal))
            .await
            .unwrap();
        assert_eq!(
            in_flight_seen.load(Ordering::SeqCst),
            1,
            "permit held during submission"
        );
        assert_eq!(gate.in_flight(), 0, "permit released afterwards");

        gate.close();
        let refused = exchange
            .place_order(&order("normal", OrderPurpose::Normal))
            .await;
        assert!(matches!(refused, Err(Error::Halted)), "{refused:?}");
        let ev = sub.recv().await.unwrap();
        match &ev.payload {
            Payload::OrderUpdate {
                client_order_id,
                status,
                reason,
                ..
            } => {
                assert_eq!(client_order_id.as_str(), "normal");
                assert_eq!(*status, OrderStatus::Rejected);
                assert!(reason.as_deref().unwrap().contains("halted"));
            }
            other => panic!("unexpected {other:?}"),
        }
        let closure = exchange
            .place_order(&order("closure", OrderPurpose::HaltClosure))
            .await
            .unwrap();
        assert_eq!(closure.client_order_id.as_str(), "closure");
        assert_eq!(
            exchange.cancel_all().await.unwrap(),
            3,
            "cancels pass while halted"
        );
    }

    #[tokio::test]
    async fn invalid_orders_never_reach_the_exchange() {
        let mut mock = MockExchange::new();
        mock.expect_place_order().never();
        let publisher = Publisher::new(None, Arc::new(ManualClock::default()), Source::Exec);
        let exchange = GatedExchange::new(mock, TradingGate::new_open(), publisher);
        let mut bad = order("bad", OrderPurpose::Normal);
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
        assert_eq!(exchange.cancel_all_after(0).await.unwrap().trigger_at, None);
        let _ = exchange.inner();
    }
}
