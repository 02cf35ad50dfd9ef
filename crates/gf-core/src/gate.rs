//! The trading gate: one shared atomic that decides whether an order may go out, and the
//! two capabilities around it — opening it and sealing closure orders.
//!
//! gf-halt closes it, gf-exec consults it where the order is written to the exchange. The
//! whole state is one `AtomicU64`: the top bit says "closed", the low bits count orders that
//! passed the gate and whose request has not resolved yet ("in flight"). Entering is a
//! compare-and-swap that fails once the closed bit is set, so there is no window in which
//! a check passes after [`TradingGate::close`] has returned. Closing never waits; a halt
//! that wants its cancel-all to cover every order that slipped in just before the close
//! awaits [`TradingGate::drained`] after closing, and asks the exchange what became of the
//! orders [`TradingGate::in_flight_orders`] names.
//!
//! Rights are capabilities, not conventions:
//! - anyone holding a handle may **close** the gate (closing is always safe);
//! - only the [`GateOpener`] may **open** it. There is exactly one per gate, taken once with
//!   [`TradingGate::take_opener`] (the halt coordinator takes it and keeps it private);
//! - a closed gate passes an order only when it carries a [`ClosureSeal`] minted by that
//!   opener ([`GateOpener::seal_closure`]) for exactly this order: same gate, client order
//!   id, pair, reducing side and quantity, checked against the position at minting. A seal
//!   has private fields and no public constructor, and is never (de)serialised, so an
//!   [`OrderRequest`] that arrives as JSON can never carry one. An order that says
//!   [`OrderPurpose::HaltClosure`] without a valid seal is refused, open gate or not.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rust_decimal::Decimal;
use tokio::sync::Notify;

use crate::error::Error;
use crate::types::{ClientOrderId, OrderPurpose, OrderRequest, Pair, Position, Qty, Side};

const CLOSED: u64 = 1 << 63;
const COUNT: u64 = CLOSED - 1;

/// Every gate gets its own id; seals name the gate they were minted for.
static NEXT_GATE_ID: AtomicU64 = AtomicU64::new(1);

/// Which orders passed the gate and what may have become of them.
#[derive(Debug, Default)]
struct WireLog {
    /// Client order ids of live permits, with how many permits each holds.
    live: HashMap<ClientOrderId, u32>,
    /// Orders whose permit ended while the gate was closed, or whose outcome is unknown
    /// (marked by the transport). Kept until the gate is opened again.
    to_reconcile: BTreeSet<ClientOrderId>,
}

#[derive(Debug)]
struct Inner {
    id: u64,
    state: AtomicU64,
    /// Tasks inside [`TradingGate::drained`]; permits only notify when someone waits.
    waiters: AtomicU32,
    drained: Notify,
    opener_taken: AtomicBool,
    log: Mutex<WireLog>,
}

impl Inner {
    fn log(&self) -> MutexGuard<'_, WireLog> {
        // The log holds no invariant a panicking holder could break half-way.
        self.log.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A cheap, cloneable handle to the shared gate. Holding one lets you close the gate and
/// submit orders through it, never open it (that takes the [`GateOpener`]).
///
/// ```
/// use gf_core::{ClientOrderId, OrderPurpose, OrderRequest, Pair, Position, Side, TradingGate};
/// use rust_decimal::Decimal;
/// let gate = TradingGate::new_open();
/// let opener = gate.take_opener().expect("the first taker gets the opener");
/// assert!(gate.take_opener().is_none(), "and nobody else");
/// let pair: Pair = "XRP/USD".parse().unwrap();
/// let mut order = OrderRequest::market(ClientOrderId::new("c1"), pair, Side::Sell, Decimal::TEN);
/// assert!(gate.enter(&order).is_ok());
/// gate.close();
/// assert!(gate.enter(&order).is_err(), "a closed gate refuses ordinary orders");
///
/// // Saying "closure" is not enough: the opener's holder seals the order against the
/// // position it reduces.
/// order.purpose = OrderPurpose::HaltClosure;
/// assert!(gate.enter(&order).is_err());
/// let mut long = Position::flat(order.pair.clone());
/// long.qty = Decimal::ONE_HUNDRED;
/// order.closure_seal = Some(opener.seal_closure(&order.client_order_id, &long, order.qty).unwrap());
/// assert!(gate.enter(&order).is_ok());
/// assert!(opener.open());
/// ```
#[derive(Clone)]
pub struct TradingGate {
    inner: Arc<Inner>,
}

impl fmt::Debug for TradingGate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TradingGate")
            .field("id", &self.inner.id)
            .field("open", &self.is_open())
            .field("in_flight", &self.in_flight())
            .finish()
    }
}

impl TradingGate {
    /// A gate that lets orders through (tests and research; a daemon starts closed and
    /// lets the halt coordinator open it).
    #[must_use]
    pub fn new_open() -> Self {
        Self::with_state(0)
    }

    /// A gate that refuses non-closure orders (the safe state to start from after a crash).
    #[must_use]
    pub fn new_closed() -> Self {
        Self::with_state(CLOSED)
    }

    fn with_state(state: u64) -> Self {
        Self {
            inner: Arc::new(Inner {
                id: NEXT_GATE_ID.fetch_add(1, Ordering::Relaxed),
                state: AtomicU64::new(state),
                waiters: AtomicU32::new(0),
                drained: Notify::new(),
                opener_taken: AtomicBool::new(false),
                log: Mutex::new(WireLog::default()),
            }),
        }
    }

    /// Takes the gate's only [`GateOpener`]: `Some` the first time, `None` ever after.
    #[must_use]
    pub fn take_opener(&self) -> Option<GateOpener> {
        (!self.inner.opener_taken.swap(true, Ordering::SeqCst))
            .then(|| GateOpener { gate: self.clone() })
    }

    /// `true` while ordinary orders may pass.
    #[must_use]
    pub fn is_open(&self) -> bool {
        self.inner.state.load(Ordering::Acquire) & CLOSED == 0
    }

    /// Orders that passed the gate and whose permit is still alive.
    #[must_use]
    pub fn in_flight(&self) -> u64 {
        self.inner.state.load(Ordering::Acquire) & COUNT
    }

    /// The client order ids a halt must reconcile: every order whose permit is alive, whose
    /// permit ended while the gate was closed (its request was on the wire across the
    /// close), or whose transport marked its outcome unknown
    /// ([`GatePermit::mark_unresolved`]). Sorted, without duplicates; the record is cleared
    /// when the gate opens.
    #[must_use]
    pub fn in_flight_orders(&self) -> Vec<ClientOrderId> {
        let log = self.inner.log();
        let mut ids: BTreeSet<ClientOrderId> = log.live.keys().cloned().collect();
        ids.extend(log.to_reconcile.iter().cloned());
        ids.into_iter().collect()
    }

    /// Closes the gate. Atomic, never blocks, never does I/O. Returns `true` if this call
    /// closed it (it was open).
    pub fn close(&self) -> bool {
        self.inner.state.fetch_or(CLOSED, Ordering::AcqRel) & CLOSED == 0
    }

    fn open(&self) -> bool {
        let opened = self.inner.state.fetch_and(!CLOSED, Ordering::AcqRel) & CLOSED != 0;
        if opened {
            self.inner.log().to_reconcile.clear();
        }
        opened
    }

    /// Whether `order` would pass now, without taking a permit: the early refusal in front
    /// of a transport that checks again with [`TradingGate::enter`] where the request is
    /// written.
    ///
    /// # Errors
    /// As [`TradingGate::enter`].
    pub fn check(&self, order: &OrderRequest) -> Result<(), Error> {
        if self.sealed(order)? || self.is_open() {
            Ok(())
        } else {
            Err(Error::GateClosed)
        }
    }

    /// Passes the gate: a permit to write one request for `order`, to be held until that
    /// request has resolved (answer, error or timeout). An open gate passes every order
    /// but a mislabelled closure; a closed gate only orders sealed for it.
    ///
    /// # Errors
    /// [`Error::GateClosed`] when the gate is closed and the order carries no seal;
    /// [`Error::ClosureRefused`] when the order claims to be a closure without a valid seal,
    /// or its seal does not match it (another gate, order, pair, side or quantity).
    #[inline]
    pub fn enter(&self, order: &OrderRequest) -> Result<GatePermit<'_>, Error> {
        let sealed = self.sealed(order)?;
        let state = &self.inner.state;
        let mut current = state.load(Ordering::SeqCst);
        loop {
            if current & CLOSED != 0 && !sealed {
                return Err(Error::GateClosed);
            }
            match state.compare_exchange_weak(
                current,
                current + 1,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => break,
                Err(actual) => current = actual,
            }
        }
        *self
            .inner
            .log()
            .live
            .entry(order.client_order_id.clone())
            .or_default() += 1;
        Ok(GatePermit {
            inner: &self.inner,
            client_order_id: order.client_order_id.clone(),
            unresolved: false,
        })
    }

    /// `Ok(true)` for a validly sealed closure, `Ok(false)` for an ordinary order.
    fn sealed(&self, order: &OrderRequest) -> Result<bool, Error> {
        match &order.closure_seal {
            Some(seal) => seal.verify(self.inner.id, order).map(|()| true),
            None if order.purpose == OrderPurpose::HaltClosure => Err(refused(
                &order.client_order_id,
                "it carries no closure seal (only the halt coordinator mints closure orders)",
            )),
            None => Ok(false),
        }
    }

    /// Waits until no permit is alive (every request that passed before a close has
    /// resolved), or `timeout` elapses. Returns `true` when drained. Cancellation-safe.
    pub async fn drained(&self, timeout: Duration) -> bool {
        struct Waiting<'a>(&'a AtomicU32);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        self.inner.waiters.fetch_add(1, Ordering::SeqCst);
        let _waiting = Waiting(&self.inner.waiters);
        let wait = async {
            loop {
                // Registered before the check: a permit dropped after the check wakes it.
                let notified = self.inner.drained.notified();
                if self.inner.state.load(Ordering::SeqCst) & COUNT == 0 {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(timeout, wait).await.is_ok()
    }
}

fn refused(client_order_id: &ClientOrderId, reason: impl Into<String>) -> Error {
    Error::ClosureRefused {
        client_order_id: client_order_id.0.clone(),
        reason: reason.into(),
    }
}

/// The right to open one gate and to seal closure orders for it. Exactly one exists per
/// gate ([`TradingGate::take_opener`]); it is not `Clone`. The halt coordinator holds it:
/// only its resume path and its restore-to-Running path open the gate, and only its
/// closure code mints seals.
pub struct GateOpener {
    gate: TradingGate,
}

impl fmt::Debug for GateOpener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GateOpener")
            .field("gate", &self.gate)
            .finish()
    }
}

impl GateOpener {
    /// Opens the gate; returns `true` if this call opened it. Forgets the orders recorded
    /// for reconciliation ([`TradingGate::in_flight_orders`]).
    pub fn open(&self) -> bool {
        self.gate.open()
    }

    /// The gate this opener opens.
    #[must_use]
    pub fn gate(&self) -> &TradingGate {
        &self.gate
    }

    /// Mints the seal that lets the closure order `client_order_id` of `qty` pass this gate
    /// while it is closed. The order must reduce `position` (the caller's current view of
    /// it): the seal's side is the opposite of the position's, and `qty` must be positive
    /// and at most the position's size.
    ///
    /// # Errors
    /// [`Error::ClosureRefused`] for a flat position, a quantity ≤ 0 or larger than the
    /// position.
    pub fn seal_closure(
        &self,
        client_order_id: &ClientOrderId,
        position: &Position,
        qty: Qty,
    ) -> Result<ClosureSeal, Error> {
        let Some(held) = position.side() else {
            return Err(refused(
                client_order_id,
                format!(
                    "the position in {} is flat: nothing to close",
                    position.pair
                ),
            ));
        };
        if qty <= Decimal::ZERO {
            return Err(refused(
                client_order_id,
                format!("quantity {qty} is not positive"),
            ));
        }
        if qty > position.qty.abs() {
            return Err(refused(
                client_order_id,
                format!(
                    "quantity {qty} exceeds the position of {} in {}",
                    position.qty, position.pair
                ),
            ));
        }
        Ok(ClosureSeal {
            gate: self.gate.inner.id,
            client_order_id: client_order_id.clone(),
            pair: position.pair.clone(),
            side: held.opposite(),
            qty,
        })
    }
}

/// Proof that one closure order was minted by the holder of a gate's [`GateOpener`]:
/// bound to that gate, the order's client order id, its pair, the side that reduces the
/// position and the quantity. No public constructor, never serialised (see
/// [`OrderRequest::closure_seal`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClosureSeal {
    gate: u64,
    client_order_id: ClientOrderId,
    pair: Pair,
    side: Side,
    qty: Qty,
}

impl ClosureSeal {
    /// The order it was minted for.
    #[must_use]
    pub fn client_order_id(&self) -> &ClientOrderId {
        &self.client_order_id
    }

    /// The pair.
    #[must_use]
    pub fn pair(&self) -> &Pair {
        &self.pair
    }

    /// The side that reduces the position.
    #[must_use]
    pub fn side(&self) -> Side {
        self.side
    }

    /// The quantity sealed.
    #[must_use]
    pub fn qty(&self) -> Qty {
        self.qty
    }

    fn verify(&self, gate: u64, order: &OrderRequest) -> Result<(), Error> {
        let id = &order.client_order_id;
        if self.gate != gate {
            return Err(refused(id, "its closure seal was minted for another gate"));
        }
        if order.purpose != OrderPurpose::HaltClosure {
            return Err(refused(
                id,
                "a sealed order must be marked as a halt closure",
            ));
        }
        if &self.client_order_id != id {
            return Err(refused(
                id,
                format!("its closure seal is for order {}", self.client_order_id),
            ));
        }
        if self.pair != order.pair {
            return Err(refused(
                id,
                format!("its closure seal is for {}, not {}", self.pair, order.pair),
            ));
        }
        if self.side != order.side {
            return Err(refused(
                id,
                format!(
                    "its closure seal is for a {}, not a {}",
                    self.side, order.side
                ),
            ));
        }
        if self.qty != order.qty {
            return Err(refused(
                id,
                format!(
                    "its closure seal is for quantity {}, not {}",
                    self.qty, order.qty
                ),
            ));
        }
        Ok(())
    }
}

/// Proof that an order passed the gate. Hold it until the request it admitted has
/// resolved, then drop it. It borrows the gate, so it cannot outlive the handle it came
/// from.
#[derive(Debug)]
#[must_use = "the permit is the right to write one request; drop it once the request resolved"]
pub struct GatePermit<'a> {
    inner: &'a Inner,
    client_order_id: ClientOrderId,
    unresolved: bool,
}

impl GatePermit<'_> {
    /// The request's outcome is unknown (timed out, connection lost after sending): keep
    /// the order in [`TradingGate::in_flight_orders`] after the permit ends, so that a halt
    /// asks the exchange what became of it.
    pub fn mark_unresolved(&mut self) {
        self.unresolved = true;
    }
}

impl Drop for GatePermit<'_> {
    fn drop(&mut self) {
        {
            let mut log = self.inner.log();
            if let Some(n) = log.live.get_mut(&self.client_order_id) {
                *n -= 1;
                if *n == 0 {
                    log.live.remove(&self.client_order_id);
                }
            }
            let closed = self.inner.state.load(Ordering::SeqCst) & CLOSED != 0;
            if closed || self.unresolved {
                log.to_reconcile.insert(self.client_order_id.clone());
            }
        }
        let previous = self.inner.state.fetch_sub(1, Ordering::SeqCst);
        if previous & COUNT == 1 && self.inner.waiters.load(Ordering::SeqCst) > 0 {
            self.inner.drained.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn order(id: &str) -> OrderRequest {
        OrderRequest::market(
            ClientOrderId::new(id),
            Pair::new("XRP/USD").unwrap(),
            Side::Sell,
            Decimal::TEN,
        )
    }

    fn long(qty: i64) -> Position {
        let mut p = Position::flat(Pair::new("XRP/USD").unwrap());
        p.qty = Decimal::from(qty);
        p
    }

    /// A closure of `qty` against a long of 100, sealed by `opener`.
    fn sealed(opener: &GateOpener, id: &str, qty: i64) -> OrderRequest {
        let mut o = order(id);
        o.purpose = OrderPurpose::HaltClosure;
        o.qty = Decimal::from(qty);
        let seal = opener
            .seal_closure(&o.client_order_id, &long(100), o.qty)
            .unwrap();
        o.side = seal.side();
        o.closure_seal = Some(seal);
        o
    }

    fn refusal(gate: &TradingGate, o: &OrderRequest) -> String {
        match gate.enter(o) {
            Err(Error::ClosureRefused {
                client_order_id,
                reason,
            }) => {
                assert_eq!(client_order_id, o.client_order_id.0);
                reason
            }
            other => panic!("expected a closure refusal, got {other:?}"),
        }
    }

    #[test]
    fn closed_gate_refuses_normal_passes_sealed_closure() {
        let gate = TradingGate::new_open();
        let opener = gate.take_opener().unwrap();
        assert!(gate.is_open());
        let permit = gate.enter(&order("n1")).unwrap();
        assert_eq!(gate.in_flight(), 1);
        assert!(gate.close());
        assert!(!gate.close(), "second close reports it was already closed");
        assert_eq!(gate.enter(&order("n2")).unwrap_err(), Error::GateClosed);
        assert_eq!(gate.check(&order("n2")).unwrap_err(), Error::GateClosed);
        let closure = sealed(&opener, "h1", 10);
        gate.check(&closure).unwrap();
        let closure_permit = gate.enter(&closure).unwrap();
        assert_eq!(gate.in_flight(), 2);
        drop(permit);
        drop(closure_permit);
        assert_eq!(gate.in_flight(), 0);
        assert!(opener.open());
        assert!(!opener.open());
        assert!(gate.enter(&order("n3")).is_ok());
    }

    #[test]
    fn the_opener_is_taken_exactly_once() {
        let gate = TradingGate::new_closed();
        let clone = gate.clone();
        let opener = clone.take_opener().expect("first");
        assert!(gate.take_opener().is_none());
        assert!(clone.take_opener().is_none());
        assert!(!gate.is_open());
        assert!(opener.open());
        assert!(gate.is_open(), "the opener opens the shared gate");
        assert!(std::ptr::eq(
            opener.gate().inner.as_ref(),
            gate.inner.as_ref()
        ));
    }

    #[test]
    fn mislabelled_closures_are_refused_open_or_closed() {
        let gate = TradingGate::new_open();
        let opener = gate.take_opener().unwrap();
        let other_gate = TradingGate::new_closed();
        let other = other_gate.take_opener().unwrap();

        let mut unsealed = order("u");
        unsealed.purpose = OrderPurpose::HaltClosure;
        assert!(refusal(&gate, &unsealed).contains("no closure seal"));

        // Serialised and read back, a sealed order has lost its seal.
        let good = sealed(&opener, "g", 10);
        let json = serde_json::to_string(&good).unwrap();
        assert!(!json.contains("seal"), "{json}");
        let forged: OrderRequest = serde_json::from_str(&json.replace(
            "\"purpose\"",
            "\"closure_seal\":{\"gate\":1,\"qty\":\"10\"},\"purpose\"",
        ))
        .unwrap();
        assert_eq!(forged.closure_seal, None);

        let foreign = sealed(&other, "f", 10);
        let mut bigger = sealed(&opener, "b", 10);
        bigger.qty = Decimal::from(11);
        let mut wrong_side = sealed(&opener, "s", 10);
        wrong_side.side = Side::Buy;
        let mut other_pair = sealed(&opener, "p", 10);
        other_pair.pair = Pair::new("DOGE/USD").unwrap();
        let mut moved = sealed(&opener, "m", 10);
        moved.client_order_id = ClientOrderId::new("m2");
        let mut relabelled = sealed(&opener, "r", 10);
        relabelled.purpose = OrderPurpose::Normal;

        for closed in [false, true] {
            if closed {
                gate.close();
                assert!(refusal(&gate, &forged).contains("no closure seal"));
            }
            for (o, why) in [
                (&unsealed, "no closure seal"),
                (&foreign, "another gate"),
                (&bigger, "quantity 10, not 11"),
                (&wrong_side, "for a sell, not a buy"),
                (&other_pair, "XRP/USD, not DOGE/USD"),
                (&moved, "for order m"),
                (&relabelled, "marked as a halt closure"),
            ] {
                let reason = refusal(&gate, o);
                assert!(reason.contains(why), "{}: {reason}", o.client_order_id);
                assert!(gate.check(o).is_err());
            }
            assert!(gate.enter(&good).is_ok(), "the genuine seal passes");
        }
        assert_eq!(gate.in_flight(), 0);
    }

    #[test]
    fn seals_are_only_minted_for_reducing_orders_within_the_position() {
        let gate = TradingGate::new_closed();
        let opener = gate.take_opener().unwrap();
        let id = ClientOrderId::new("h");
        let short = {
            let mut p = long(0);
            p.qty = Decimal::from(-5);
            p
        };
        assert_eq!(
            opener
                .seal_closure(&id, &short, Decimal::from(5))
                .unwrap()
                .side(),
            Side::Buy
        );
        assert_eq!(
            opener
                .seal_closure(&id, &long(5), Decimal::from(5))
                .unwrap()
                .side(),
            Side::Sell
        );
        for (position, qty, why) in [
            (long(0), 1, "flat"),
            (long(5), 6, "exceeds the position of 5"),
            (short.clone(), 6, "exceeds the position of -5"),
            (long(5), 0, "not positive"),
            (long(5), -1, "not positive"),
        ] {
            let err = opener
                .seal_closure(&id, &position, Decimal::from(qty))
                .unwrap_err()
                .to_string();
            assert!(err.contains(why), "{err}");
        }
    }

    #[test]
    fn starts_closed_when_asked() {
        let gate = TradingGate::new_closed();
        assert!(!gate.is_open());
        assert!(gate.enter(&order("n")).is_err());
    }

    #[test]
    fn orders_on_the_wire_across_a_close_are_recorded_until_the_gate_opens() {
        let gate = TradingGate::new_open();
        let opener = gate.take_opener().unwrap();
        let done_before = gate.enter(&order("done")).unwrap();
        drop(done_before);
        let mut unknown = gate.enter(&order("unknown")).unwrap();
        unknown.mark_unresolved();
        drop(unknown);
        let across = gate.enter(&order("across")).unwrap();
        let still = gate.enter(&order("still")).unwrap();
        gate.close();
        drop(across);
        let names = |g: &TradingGate| -> Vec<String> {
            g.in_flight_orders().into_iter().map(|id| id.0).collect()
        };
        assert_eq!(names(&gate), ["across", "still", "unknown"]);
        drop(still);
        assert_eq!(names(&gate), ["across", "still", "unknown"]);
        opener.open();
        assert!(names(&gate).is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_normal_permit_after_close_returns() {
        let gate = TradingGate::new_open();
        let after_close = Arc::new(AtomicUsize::new(0));
        let closed = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for t in 0..8 {
            let gate = gate.clone();
            let closed = closed.clone();
            let after_close = after_close.clone();
            tasks.push(tokio::spawn(async move {
                let o = order(&format!("t{t}"));
                let mut accepted = 0u64;
                for _ in 0..20_000 {
                    // Read "closed" before entering: if it was already true, the permit
                    // must be refused.
                    let was_closed = closed.load(Ordering::SeqCst);
                    if let Ok(_permit) = gate.enter(&o) {
                        accepted += 1;
                        if was_closed {
                            after_close.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    tokio::task::yield_now().await;
                }
                accepted
            }));
        }
        tokio::task::yield_now().await;
        gate.close();
        closed.store(true, Ordering::SeqCst);
        let mut total = 0;
        for t in tasks {
            total += t.await.unwrap();
        }
        assert_eq!(after_close.load(Ordering::SeqCst), 0);
        assert!(
            total < 8 * 20_000,
            "the close must have refused some orders"
        );
        assert!(gate.drained(Duration::from_secs(1)).await);
    }

    #[tokio::test]
    async fn drained_waits_for_permits() {
        let gate = TradingGate::new_open();
        let permit = gate.enter(&order("n")).unwrap();
        gate.close();
        assert!(!gate.drained(Duration::from_millis(20)).await);
        let g2 = gate.clone();
        let waiter = tokio::spawn(async move { g2.drained(Duration::from_secs(5)).await });
        tokio::task::yield_now().await;
        drop(permit);
        assert!(waiter.await.unwrap());
    }

    // Tests that kill mutants `cargo xtask mutants` found alive.

    #[test]
    fn debug_output_names_the_gate_its_state_and_in_flight_count() {
        let gate = TradingGate::new_open();
        let opener = gate.take_opener().unwrap();
        let _permit = gate.enter(&order("d")).unwrap();
        let id = gate.inner.id;
        assert_eq!(
            format!("{gate:?}"),
            format!("TradingGate {{ id: {id}, open: true, in_flight: 1 }}")
        );
        gate.close();
        assert_eq!(
            format!("{opener:?}"),
            format!("GateOpener {{ gate: TradingGate {{ id: {id}, open: false, in_flight: 1 }} }}")
        );
    }

    #[test]
    fn a_seal_tells_what_it_was_minted_for() {
        let gate = TradingGate::new_closed();
        let opener = gate.take_opener().unwrap();
        let seal = opener
            .seal_closure(&ClientOrderId::new("h7"), &long(100), Decimal::from(40))
            .unwrap();
        assert_eq!(seal.client_order_id(), &ClientOrderId::new("h7"));
        assert_eq!(seal.pair(), &Pair::new("XRP/USD").unwrap());
        assert_eq!(seal.side(), Side::Sell);
        assert_eq!(seal.qty(), Decimal::from(40));
    }

    #[tokio::test]
    async fn drained_forgets_its_waiter_however_it_ends() {
        // Permits notify only while someone waits; a waiter that is never forgotten makes
        // every later permit drop notify for nobody.
        let gate = TradingGate::new_open();
        let waiters = || gate.inner.waiters.load(Ordering::SeqCst);
        let permit = gate.enter(&order("w")).unwrap();
        assert!(!gate.drained(Duration::ZERO).await, "timed out");
        assert_eq!(waiters(), 0);
        // Cancelled after one poll (the outer timeout drops it).
        let cancelled =
            tokio::time::timeout(Duration::ZERO, gate.drained(Duration::from_secs(60))).await;
        assert!(cancelled.is_err());
        assert_eq!(waiters(), 0);
        drop(permit);
        assert!(gate.drained(Duration::from_secs(60)).await, "drained");
        assert_eq!(waiters(), 0);
    }
}
