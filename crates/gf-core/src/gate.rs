//! The trading gate: one shared atomic that decides whether a non-closure order may go out.
//!
//! gf-halt closes it, gf-exec consults it before every order. The whole state is one
//! `AtomicU64`: the top bit says "closed", the low bits count orders that passed the gate
//! and are still being handed to the transport ("in flight"). Entering is a
//! compare-and-swap that fails once the closed bit is set, so there is no window in which
//! a check passes after [`TradingGate::close`] has returned. Closing never waits; a halt
//! that wants its cancel-all to cover every order that slipped in just before the close
//! awaits [`TradingGate::drained`] after closing.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

use crate::error::Error;
use crate::types::OrderPurpose;

const CLOSED: u64 = 1 << 63;
const COUNT: u64 = CLOSED - 1;

#[derive(Debug)]
struct Inner {
    state: AtomicU64,
    /// Tasks inside [`TradingGate::drained`]; permits only notify when someone waits.
    waiters: AtomicU32,
    drained: Notify,
}

/// A cheap, cloneable handle to the shared gate.
///
/// ```
/// use gf_core::{OrderPurpose, TradingGate};
/// let gate = TradingGate::new_open();
/// assert!(gate.enter(OrderPurpose::Normal).is_ok());
/// gate.close();
/// assert!(gate.enter(OrderPurpose::Normal).is_err());
/// assert!(gate.enter(OrderPurpose::HaltClosure).is_ok());
/// ```
#[derive(Clone)]
pub struct TradingGate {
    inner: Arc<Inner>,
}

impl fmt::Debug for TradingGate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TradingGate")
            .field("open", &self.is_open())
            .field("in_flight", &self.in_flight())
            .finish()
    }
}

impl TradingGate {
    /// A gate that lets orders through.
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
                state: AtomicU64::new(state),
                waiters: AtomicU32::new(0),
                drained: Notify::new(),
            }),
        }
    }

    /// `true` while non-closure orders may pass.
    #[must_use]
    pub fn is_open(&self) -> bool {
        self.inner.state.load(Ordering::Acquire) & CLOSED == 0
    }

    /// Orders that passed the gate and whose permit is still alive.
    #[must_use]
    pub fn in_flight(&self) -> u64 {
        self.inner.state.load(Ordering::Acquire) & COUNT
    }

    /// Closes the gate. Atomic, never blocks, never does I/O. Returns `true` if this call
    /// closed it (it was open).
    pub fn close(&self) -> bool {
        self.inner.state.fetch_or(CLOSED, Ordering::AcqRel) & CLOSED == 0
    }

    /// Opens the gate. Only the halt coordinator's resume path should call this.
    /// Returns `true` if this call opened it.
    pub fn open(&self) -> bool {
        self.inner.state.fetch_and(!CLOSED, Ordering::AcqRel) & CLOSED != 0
    }

    /// Passes the gate: a permit to submit one order, held until the order has been handed
    /// to the transport. Closure orders always pass.
    ///
    /// # Errors
    /// [`Error::GateClosed`] when the gate is closed and the order is not a closure order.
    #[inline]
    pub fn enter(&self, purpose: OrderPurpose) -> Result<GatePermit<'_>, Error> {
        let state = &self.inner.state;
        let mut current = state.load(Ordering::SeqCst);
        loop {
            if current & CLOSED != 0 && purpose != OrderPurpose::HaltClosure {
                return Err(Error::GateClosed);
            }
            match state.compare_exchange_weak(
                current,
                current + 1,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => return Ok(GatePermit { inner: &self.inner }),
                Err(actual) => current = actual,
            }
        }
    }

    /// Waits until no permit is alive (every order that passed before a close has been
    /// handed to the transport), or `timeout` elapses. Returns `true` when drained.
    /// Cancellation-safe.
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

/// Proof that an order passed the gate. Drop it once the order is on the wire (or failed
/// before reaching it). It borrows the gate, so it cannot outlive the handle it came from.
#[derive(Debug)]
#[must_use = "the permit is the right to submit one order; drop it after submission"]
pub struct GatePermit<'a> {
    inner: &'a Inner,
}

impl Drop for GatePermit<'_> {
    fn drop(&mut self) {
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

    #[test]
    fn closed_gate_refuses_normal_passes_closure() {
        let gate = TradingGate::new_open();
        assert!(gate.is_open());
        let permit = gate.enter(OrderPurpose::Normal).unwrap();
        assert_eq!(gate.in_flight(), 1);
        assert!(gate.close());
        assert!(!gate.close(), "second close reports it was already closed");
        assert_eq!(
            gate.enter(OrderPurpose::Normal).unwrap_err(),
            Error::GateClosed
        );
        let closure = gate.enter(OrderPurpose::HaltClosure).unwrap();
        assert_eq!(gate.in_flight(), 2);
        drop(permit);
        drop(closure);
        assert_eq!(gate.in_flight(), 0);
        assert!(gate.open());
        assert!(gate.enter(OrderPurpose::Normal).is_ok());
    }

    #[test]
    fn starts_closed_when_asked() {
        let gate = TradingGate::new_closed();
        assert!(!gate.is_open());
        assert!(gate.enter(OrderPurpose::Normal).is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_normal_permit_after_close_returns() {
        let gate = TradingGate::new_open();
        let after_close = Arc::new(AtomicUsize::new(0));
        let closed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let gate = gate.clone();
            let closed = closed.clone();
            let after_close = after_close.clone();
            tasks.push(tokio::spawn(async move {
                let mut accepted = 0u64;
                for _ in 0..20_000 {
                    // Read "closed" before entering: if it was already true, the permit
                    // must be refused.
                    let was_closed = closed.load(Ordering::SeqCst);
                    if let Ok(_permit) = gate.enter(OrderPurpose::Normal) {
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
        let permit = gate.enter(OrderPurpose::Normal).unwrap();
        gate.close();
        assert!(!gate.drained(Duration::from_millis(20)).await);
        let g2 = gate.clone();
        let waiter = tokio::spawn(async move { g2.drained(Duration::from_secs(5)).await });
        tokio::task::yield_now().await;
        drop(permit);
        assert!(waiter.await.unwrap());
    }
}
