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
//!
//! A gated exchange can also follow the venue's own trading mode ([`VenueMode`], fed from
//! Kraken's `status` channel and `SystemStatus`): `cancel_only` lets only cancels and
//! sealed halt closures through, `post_only` only post-only limit orders (and cancels),
//! `maintenance` (and any undocumented mode) no new order at all, each refusal a typed
//! [`Error::Rejected`] whose reason starts with `exchange_<mode>`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use async_trait::async_trait;
use gf_core::event::ExchangeSystem;
use gf_core::{
    ApiErrorKind, ClientOrderId, OrderRequest, OrderStatus, OrderType, Position, TradingGate,
};
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

/// The exchange's trading mode as last reported, shared between the task that reads
/// Kraken's status and the [`GatedExchange`] that enforces it. Cheap to clone.
///
/// What passes, from Kraken's documentation of the modes (docs.kraken.com
/// spot-websocket-v2/status, market-data/get-system-status):
/// - `online`: every order;
/// - `cancel_only` ("orders can be cancelled but new orders cannot be placed"): cancels and
///   sealed halt closures only — the closure is still tried, the exchange has the last
///   word;
/// - `post_only` ("only limit orders using the `post_only` option"): a limit order with
///   [`OrderRequest::post_only`] passes (the exchange cancels it should it cross); every
///   other new order is refused, halt closures too (they are market orders); cancels
///   pass;
/// - `maintenance` ("new orders cannot be placed and existing orders cannot be
///   cancelled") and any undocumented mode: no order passes (the daemon also halts).
///
/// Cancels and queries are never refused here: the exchange answers them itself.
///
/// ```
/// use gf_core::event::ExchangeSystem;
/// use gf_exec::gated::VenueMode;
/// let mode = VenueMode::new(ExchangeSystem::Online);
/// let seen = mode.clone();
/// mode.set(ExchangeSystem::CancelOnly);
/// assert_eq!(seen.get(), ExchangeSystem::CancelOnly);
/// ```
#[derive(Debug, Clone)]
pub struct VenueMode(Arc<AtomicU8>);

const MODES: [ExchangeSystem; 5] = [
    ExchangeSystem::Online,
    ExchangeSystem::Maintenance,
    ExchangeSystem::CancelOnly,
    ExchangeSystem::PostOnly,
    ExchangeSystem::Unknown,
];

impl VenueMode {
    /// Starting in `initial`.
    #[must_use]
    pub fn new(initial: ExchangeSystem) -> Self {
        let mode = Self(Arc::new(AtomicU8::new(0)));
        mode.set(initial);
        mode
    }

    /// Records the mode the exchange reported.
    pub fn set(&self, system: ExchangeSystem) {
        let index = MODES.iter().position(|m| *m == system).unwrap_or(4);
        self.0
            .store(u8::try_from(index).unwrap_or(4), Ordering::SeqCst);
    }

    /// The mode last reported.
    #[must_use]
    pub fn get(&self) -> ExchangeSystem {
        MODES
            .get(usize::from(self.0.load(Ordering::SeqCst)))
            .copied()
            .unwrap_or(ExchangeSystem::Unknown)
    }

    /// `Ok` when `order` may be sent in the current mode; otherwise the refusal, whose
    /// reason starts with `exchange_<mode>`.
    ///
    /// # Errors
    /// [`Error::Rejected`] (kind [`ApiErrorKind::Other`]: it never reached the exchange).
    pub fn admit(&self, order: &OrderRequest) -> Result<(), Error> {
        let system = self.get();
        let why = match system {
            ExchangeSystem::Online => return Ok(()),
            ExchangeSystem::CancelOnly if order.closure_seal.is_some() => return Ok(()),
            ExchangeSystem::CancelOnly => "only cancels and halt closures pass",
            ExchangeSystem::PostOnly if order.post_only && order.order_type == OrderType::Limit => {
                return Ok(());
            }
            ExchangeSystem::PostOnly => {
                "only limit orders with the post_only option are accepted, and this order is \
                 not one"
            }
            ExchangeSystem::Maintenance | ExchangeSystem::Unknown => {
                "the exchange accepts no orders"
            }
        };
        Err(Error::Rejected {
            client_order_id: order.client_order_id.to_string(),
            reason: format!("exchange_{system}: kraken reports {system}: {why}"),
            kind: ApiErrorKind::Other,
        })
    }
}

/// Wraps an exchange with the trading gate. Every other call passes through unchanged
/// (cancels and queries are always allowed, also while halted). There is no accessor to
/// the wrapped exchange: whoever holds the wrapper holds a gated exchange.
///
/// ```
/// use std::sync::Arc;
/// use gf_core::{ClientOrderId, OrderPurpose, OrderRequest, Pair, Side, Source, SystemClock,
///     TradingGate};
/// use gf_exec::{events::Publisher, Error, Exchange, GatedExchange, PaperExchange, PaperConfig};
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let gate = TradingGate::new_closed();
/// let publisher = Publisher::new(None, Arc::new(SystemClock), Source::Paper);
/// let paper = PaperExchange::new(PaperConfig::default(), publisher.clone());
/// let exchange = GatedExchange::new(paper, gate, publisher);
/// let mut order = OrderRequest::market(
///     ClientOrderId::new("c1"),
///     "XRP/USD".parse::<Pair>().unwrap(),
///     Side::Buy,
///     10.into(),
/// );
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
    /// The venue's own trading mode, when followed ([`GatedExchange::with_venue_mode`]).
    venue: Option<VenueMode>,
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
            venue: None,
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
            venue: None,
        }
    }

    /// Also refuses the orders `venue`'s current mode does not allow (see [`VenueMode`]),
    /// after the gate and before anything is sent.
    #[must_use]
    pub fn with_venue_mode(mut self, venue: VenueMode) -> Self {
        self.venue = Some(venue);
        self
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
        if let Some(refused) = self.venue.as_ref().and_then(|v| v.admit(order).err()) {
            drop(permit);
            if let Error::Rejected { reason, .. } = &refused {
                self.reject(order, reason.clone());
            }
            return Err(refused);
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

    fn lot_rules(&self, pair: &gf_core::Pair) -> Option<crate::LotRules> {
        self.inner.lot_rules(pair)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MockExchange;
    use gf_core::{
        EventBus, EventKind, GateOpener, KindSet, ManualClock, OrderId, OrderPurpose, Pair,
        Payload, Side, Source,
    };
    use std::sync::atomic::AtomicU64;

    fn order(id: &str) -> OrderRequest {
        OrderRequest::market(
            ClientOrderId::new(id),
            Pair::new("XRP/USD").unwrap(),
            Side::Sell,
            Decimal::new(10, 0),
        )
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

    type VenueSetup = (
        VenueMode,
        GatedExchange<MockExchange>,
        TradingGate,
        gf_core::GateOpener,
        Arc<parking_lot::Mutex<Vec<String>>>,
        gf_core::Subscription,
    );

    /// An open gate over a mock that records the ids it is sent, in venue mode `mode`,
    /// with the bus's order updates subscribed.
    fn venue_setup(mode: ExchangeSystem) -> VenueSetup {
        let bus = EventBus::new(64);
        let sub = bus.subscribe(KindSet::of(&[EventKind::OrderUpdate]));
        let publisher = Publisher::new(
            Some(bus.clone()),
            Arc::new(ManualClock::default()),
            Source::Exec,
        );
        let gate = TradingGate::new_open();
        let opener = gate.take_opener().unwrap();
        let sent = Arc::new(parking_lot::Mutex::new(Vec::<String>::new()));
        let mut mock = MockExchange::new();
        let log = sent.clone();
        mock.expect_place_order().returning(move |o| {
            log.lock().push(o.client_order_id.to_string());
            Ok(ack(o))
        });
        mock.expect_cancel_all().returning(|| Ok(1));
        mock.expect_cancel_order().returning(|_| Ok(()));
        let venue = VenueMode::new(mode);
        let exchange =
            GatedExchange::new(mock, gate.clone(), publisher).with_venue_mode(venue.clone());
        (venue, exchange, gate, opener, sent, sub)
    }

    #[tokio::test]
    async fn the_venue_mode_decides_what_passes_an_open_gate() {
        let (venue, exchange, gate, opener, sent, mut sub) = venue_setup(ExchangeSystem::Online);

        exchange.place_order(&order("online")).await.unwrap();

        venue.set(ExchangeSystem::CancelOnly);
        let refused = exchange.place_order(&order("new")).await.unwrap_err();
        assert!(
            refused.to_string().contains("exchange_cancel_only"),
            "{refused}"
        );
        let reason = rejected_reason(&sub.recv().await.unwrap(), "new");
        assert!(reason.starts_with("exchange_cancel_only:"), "{reason}");
        exchange
            .place_order(&closure("close", &opener))
            .await
            .unwrap();
        assert_eq!(exchange.cancel_all().await.unwrap(), 1);
        exchange
            .cancel_order(&OrderRef::Client(ClientOrderId::new("online")))
            .await
            .unwrap();

        for (mode, code) in [
            (ExchangeSystem::PostOnly, "exchange_post_only"),
            (ExchangeSystem::Maintenance, "exchange_maintenance"),
            (ExchangeSystem::Unknown, "exchange_unknown"),
        ] {
            venue.set(mode);
            assert_eq!(venue.get(), mode);
            for o in [order("n"), closure("c", &opener)] {
                let err = exchange.place_order(&o).await.unwrap_err();
                assert!(err.to_string().contains(code), "{mode}: {err}");
            }
        }
        venue.set(ExchangeSystem::Online);
        exchange.place_order(&order("again")).await.unwrap();
        assert_eq!(*sent.lock(), ["online", "close", "again"]);
        assert_eq!(gate.in_flight(), 0, "refused orders hold no permit");
    }

    fn limit(id: &str) -> OrderRequest {
        OrderRequest::limit(
            ClientOrderId::new(id),
            Pair::new("XRP/USD").unwrap(),
            Side::Buy,
            Decimal::new(10, 0),
            Decimal::new(5, 1),
        )
    }

    #[tokio::test]
    async fn post_only_mode_passes_only_post_only_limit_orders() {
        let (venue, exchange, gate, opener, sent, mut sub) = venue_setup(ExchangeSystem::PostOnly);

        exchange
            .place_order(&limit("maker").post_only())
            .await
            .unwrap();
        for (o, id) in [
            (limit("plain"), "plain"),
            (order("market"), "market"),
            (closure("closure", &opener), "closure"),
        ] {
            let err = exchange.place_order(&o).await.unwrap_err();
            assert!(
                matches!(
                    &err,
                    Error::Rejected {
                        kind: ApiErrorKind::Other,
                        ..
                    }
                ),
                "{id}: {err:?}"
            );
            let reason = rejected_reason(&sub.recv().await.unwrap(), id);
            assert!(reason.starts_with("exchange_post_only:"), "{id}: {reason}");
            assert!(reason.contains("post_only option"), "{id}: {reason}");
        }
        // A post-only order the order itself makes invalid never reaches the venue check.
        let ioc = limit("ioc")
            .with_time_in_force(gf_core::TimeInForce::Ioc)
            .post_only();
        assert!(matches!(
            exchange.place_order(&ioc).await,
            Err(Error::InvalidOrder(_))
        ));
        exchange
            .cancel_order(&OrderRef::Client(ClientOrderId::new("maker")))
            .await
            .unwrap();
        // Post-only orders pass in the other modes that take new orders, and in no other.
        venue.set(ExchangeSystem::Online);
        exchange
            .place_order(&limit("online").post_only())
            .await
            .unwrap();
        for mode in [
            ExchangeSystem::CancelOnly,
            ExchangeSystem::Maintenance,
            ExchangeSystem::Unknown,
        ] {
            venue.set(mode);
            let err = exchange
                .place_order(&limit("m").post_only())
                .await
                .unwrap_err();
            assert!(
                err.to_string().contains(&format!("exchange_{mode}")),
                "{err}"
            );
        }
        assert_eq!(*sent.lock(), ["maker", "online"]);
        assert_eq!(gate.in_flight(), 0, "refused orders hold no permit");
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
