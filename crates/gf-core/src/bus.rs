//! The event bus: publish/subscribe over tokio with typed subscriptions.
//!
//! # Guarantees
//!
//! - **The publisher never blocks.** [`EventBus::publish`] is synchronous and takes only
//!   short internal locks; it never waits for a subscriber.
//! - **Order.** Each subscriber sees the events of one lane in publication order. There are
//!   two lanes: *lossless* (the halt family and the decision kinds — fills, order updates,
//!   API errors, closure results; see [`EventKind::is_lossless`]) and *normal* (market
//!   data and everything else). A pending lossless event is delivered before pending
//!   normal events, so it may overtake normal events published just before it; lossless
//!   events never overtake one another.
//! - **Lag is never silent, and never hits a decision.** The normal lane is a bounded ring
//!   (capacity chosen at construction). A subscriber that falls more than a ring behind
//!   loses the oldest normal events and its next receive returns [`RecvError::Lagged`]
//!   with the number of events skipped (counted over the whole normal lane, matching its
//!   filter or not); receiving again continues with the oldest event still held. A lag
//!   can only cover normal-lane kinds: market data, signals, latencies, condition values,
//!   alerts, health, audit — never a fill, an order update, an API error or a halt event.
//! - **Lossless events are never dropped.** Each subscriber whose filter includes a
//!   lossless kind has an unbounded queue for that lane, so a halt, a fill or an API error
//!   reaches every subscriber however far behind it is. These kinds are rare next to
//!   market data (a handful per order or per halt, and API errors are bounded by the rate
//!   limiter), so the queue cannot grow without bound in practice. Risk and halt never miss
//!   one: a lag costs them only prices, which the next update repairs. A subscription of
//!   lossless kinds only never sees `Lagged` (it missed nothing it asked for;
//!   [`Subscription::lagged_total`] still counts the gaps).
//! - **Typed subscriptions.** A subscription carries a [`KindSet`]; events of other kinds
//!   are skipped on the subscriber's side without allocation.
//! - A subscription only sees events published after it was created.
//!
//! ```
//! use gf_core::{Event, EventBus, EventKind, KindSet, Payload, Source};
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let bus = EventBus::new(1024);
//! let mut halts = bus.subscribe(KindSet::of(&[EventKind::Resumed]));
//! bus.publish(Event::new(chrono::Utc::now(), Source::Test,
//!     Payload::Resumed { operator: "alice".into() }));
//! let event = halts.recv().await.unwrap();
//! assert_eq!(event.kind(), EventKind::Resumed);
//! # });
//! ```

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{broadcast, mpsc};

use crate::event::{Event, EventKind, KindSet};

/// Why a receive returned no event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RecvError {
    /// The subscriber fell behind; this many normal-lane events were skipped (never a
    /// lossless kind, see [`EventKind::is_lossless`]).
    #[error("subscriber lagged: {missed} events skipped")]
    Lagged {
        /// Events skipped.
        missed: u64,
    },
    /// Every handle to the bus was dropped and the queues are empty.
    #[error("the event bus is closed")]
    Closed,
}

/// Why a non-blocking receive returned no event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TryRecvError {
    /// Nothing pending.
    #[error("no event pending")]
    Empty,
    /// See [`RecvError::Lagged`].
    #[error("subscriber lagged: {missed} events skipped")]
    Lagged {
        /// Events skipped.
        missed: u64,
    },
    /// See [`RecvError::Closed`].
    #[error("the event bus is closed")]
    Closed,
}

struct Inner {
    normal: broadcast::Sender<Arc<Event>>,
    lossless: Mutex<Vec<(KindSet, mpsc::UnboundedSender<Arc<Event>>)>>,
    published: AtomicU64,
}

/// A cloneable handle to the bus; clones publish to the same subscribers.
#[derive(Clone)]
pub struct EventBus {
    inner: Arc<Inner>,
}

impl fmt::Debug for EventBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventBus")
            .field("subscribers", &self.inner.normal.receiver_count())
            .field("published", &self.published())
            .finish()
    }
}

impl EventBus {
    /// A bus whose normal lane holds `capacity` events per lagging subscriber (at least 1).
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        let (normal, _) = broadcast::channel(capacity.max(1));
        Self {
            inner: Arc::new(Inner {
                normal,
                lossless: Mutex::new(Vec::new()),
                published: AtomicU64::new(0),
            }),
        }
    }

    /// Publishes an event. Never blocks; returns the number of subscribers it was queued
    /// for (0 when nobody listens, which is not an error).
    pub fn publish(&self, event: Event) -> usize {
        self.publish_arc(Arc::new(event))
    }

    /// Publishes an already shared event.
    pub fn publish_arc(&self, event: Arc<Event>) -> usize {
        self.inner.published.fetch_add(1, Ordering::Relaxed);
        let kind = event.kind();
        if kind.is_lossless() {
            let mut subs = self
                .inner
                .lossless
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            subs.retain(|(_, tx)| !tx.is_closed());
            let mut delivered = 0;
            for (kinds, tx) in subs.iter() {
                if kinds.contains(kind) && tx.send(Arc::clone(&event)).is_ok() {
                    delivered += 1;
                }
            }
            delivered
        } else {
            self.inner.normal.send(event).unwrap_or(0)
        }
    }

    /// Subscribes to the given kinds.
    #[must_use]
    pub fn subscribe(&self, kinds: KindSet) -> Subscription {
        let lossless = if kinds.intersection(KindSet::lossless()).is_empty() {
            None
        } else {
            let (tx, rx) = mpsc::unbounded_channel();
            self.inner
                .lossless
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push((kinds, tx));
            Some(rx)
        };
        // A subscription of lossless kinds only cannot miss anything it wants: lags of the
        // normal lane are skipped for it instead of reported.
        let lag_matters = EventKind::ALL
            .iter()
            .any(|k| kinds.contains(*k) && !k.is_lossless());
        Subscription {
            kinds,
            lag_matters,
            normal: self.inner.normal.subscribe(),
            lossless,
            lagged_total: 0,
            normal_closed: false,
        }
    }

    /// Subscribes to every kind.
    #[must_use]
    pub fn subscribe_all(&self) -> Subscription {
        self.subscribe(KindSet::ALL)
    }

    /// Events published since the bus was created.
    #[must_use]
    pub fn published(&self) -> u64 {
        self.inner.published.load(Ordering::Relaxed)
    }
}

/// One subscriber's view of the bus.
pub struct Subscription {
    kinds: KindSet,
    lag_matters: bool,
    normal: broadcast::Receiver<Arc<Event>>,
    lossless: Option<mpsc::UnboundedReceiver<Arc<Event>>>,
    lagged_total: u64,
    normal_closed: bool,
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("kinds", &self.kinds)
            .field("lagged_total", &self.lagged_total)
            .finish_non_exhaustive()
    }
}

impl Subscription {
    /// Waits for the next matching event. Cancellation-safe: dropping the future loses
    /// nothing.
    ///
    /// # Errors
    /// [`RecvError::Lagged`] once per gap, then delivery resumes; [`RecvError::Closed`]
    /// when the bus is gone and nothing is pending.
    pub async fn recv(&mut self) -> Result<Arc<Event>, RecvError> {
        loop {
            match self.try_recv() {
                Ok(ev) => return Ok(ev),
                Err(TryRecvError::Lagged { missed }) => return Err(RecvError::Lagged { missed }),
                Err(TryRecvError::Closed) => return Err(RecvError::Closed),
                Err(TryRecvError::Empty) => {}
            }
            let lossless = async {
                match self.lossless.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                ev = lossless => {
                    if let Some(ev) = ev {
                        return Ok(ev);
                    }
                    // The lossless lane closed; the normal lane will report closure.
                    self.lossless = None;
                }
                res = self.normal.recv(), if !self.normal_closed => match res {
                    Ok(ev) if self.kinds.contains(ev.kind()) => return Ok(ev),
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        self.lagged_total += missed;
                        if self.lag_matters {
                            return Err(RecvError::Lagged { missed });
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => self.normal_closed = true,
                },
            }
            if self.normal_closed && self.lossless.is_none() {
                return Err(RecvError::Closed);
            }
        }
    }

    /// Takes the next matching event if one is pending, without waiting.
    ///
    /// # Errors
    /// [`TryRecvError::Empty`] when nothing is pending; otherwise as [`Self::recv`].
    pub fn try_recv(&mut self) -> Result<Arc<Event>, TryRecvError> {
        let mut lossless_closed = self.lossless.is_none();
        if let Some(rx) = self.lossless.as_mut() {
            match rx.try_recv() {
                Ok(ev) => return Ok(ev),
                Err(mpsc::error::TryRecvError::Empty) => {}
                Err(mpsc::error::TryRecvError::Disconnected) => lossless_closed = true,
            }
        }
        if lossless_closed {
            self.lossless = None;
        }
        while !self.normal_closed {
            match self.normal.try_recv() {
                Ok(ev) if self.kinds.contains(ev.kind()) => return Ok(ev),
                Ok(_) => {}
                Err(broadcast::error::TryRecvError::Empty) => return Err(TryRecvError::Empty),
                Err(broadcast::error::TryRecvError::Lagged(missed)) => {
                    self.lagged_total += missed;
                    if self.lag_matters {
                        return Err(TryRecvError::Lagged { missed });
                    }
                }
                Err(broadcast::error::TryRecvError::Closed) => self.normal_closed = true,
            }
        }
        if self.lossless.is_none() {
            Err(TryRecvError::Closed)
        } else {
            Err(TryRecvError::Empty)
        }
    }

    /// Total normal-lane events this subscriber has missed by lagging.
    #[must_use]
    pub fn lagged_total(&self) -> u64 {
        self.lagged_total
    }

    /// The kinds this subscription receives.
    #[must_use]
    pub fn kinds(&self) -> KindSet {
        self.kinds
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{HaltSource, HaltState, Payload, Source};
    use chrono::Utc;

    fn latency(i: u64) -> Event {
        Event::new(
            Utc::now(),
            Source::Test,
            Payload::Latency {
                stage: "t".into(),
                micros: i,
            },
        )
    }

    fn halt() -> Event {
        Event::new(
            Utc::now(),
            Source::Halt,
            Payload::HaltStateChanged {
                from: HaltState::Running,
                to: HaltState::Halting,
                source: HaltSource::Cli,
                reason: "test".into(),
            },
        )
    }

    fn micros(ev: &Event) -> u64 {
        match &ev.payload {
            Payload::Latency { micros, .. } => *micros,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[tokio::test]
    async fn each_subscriber_sees_publication_order() {
        let bus = EventBus::new(1024);
        let mut a = bus.subscribe_all();
        let mut b = bus.subscribe(KindSet::of(&[EventKind::Latency]));
        for i in 0..500 {
            bus.publish(latency(i));
        }
        for sub in [&mut a, &mut b] {
            for i in 0..500 {
                assert_eq!(micros(&sub.recv().await.unwrap()), i);
            }
            assert_eq!(sub.try_recv().unwrap_err(), TryRecvError::Empty);
        }
    }

    #[tokio::test]
    async fn lag_is_reported_with_count_then_delivery_resumes() {
        let bus = EventBus::new(16);
        let mut slow = bus.subscribe_all();
        for i in 0..100 {
            assert_eq!(bus.publish(latency(i)), 1);
        }
        assert_eq!(
            slow.recv().await.unwrap_err(),
            RecvError::Lagged { missed: 84 }
        );
        assert_eq!(slow.lagged_total(), 84);
        for i in 84..100 {
            assert_eq!(micros(&slow.recv().await.unwrap()), i);
        }
    }

    #[tokio::test]
    async fn publisher_never_blocks_on_a_subscriber_that_never_reads() {
        let bus = EventBus::new(8);
        let _never_reads = bus.subscribe_all();
        let mut reader = bus.subscribe_all();
        // 100k publishes on a current-thread runtime: a blocking publish would deadlock.
        for i in 0..100_000 {
            bus.publish(latency(i));
        }
        assert_eq!(bus.published(), 100_000);
        assert!(matches!(
            reader.try_recv(),
            Err(TryRecvError::Lagged { .. })
        ));
    }

    #[tokio::test]
    async fn halt_events_reach_every_subscriber_even_when_lagging() {
        let bus = EventBus::new(4);
        let mut subs: Vec<_> = (0..5).map(|_| bus.subscribe_all()).collect();
        let mut halt_only = bus.subscribe(KindSet::critical());
        let mut market_only = bus.subscribe(KindSet::market_data());
        for i in 0..1_000 {
            bus.publish(latency(i));
        }
        assert_eq!(bus.publish(halt()), 6);
        for i in 0..1_000 {
            bus.publish(latency(i));
        }
        for sub in subs.iter_mut().chain([&mut halt_only]) {
            // Critical first, despite the flood around it.
            let ev = sub.recv().await.unwrap();
            assert_eq!(ev.kind(), EventKind::HaltStateChanged);
        }
        assert_eq!(
            market_only.try_recv().unwrap_err(),
            TryRecvError::Lagged { missed: 1996 }
        );
    }

    #[tokio::test]
    async fn filter_skips_other_kinds() {
        let bus = EventBus::new(64);
        let mut only_resumed = bus.subscribe(KindSet::of(&[EventKind::Resumed]));
        bus.publish(latency(1));
        bus.publish(Event::new(
            Utc::now(),
            Source::Halt,
            Payload::Resumed {
                operator: "a".into(),
            },
        ));
        assert_eq!(
            only_resumed.recv().await.unwrap().kind(),
            EventKind::Resumed
        );
        assert_eq!(only_resumed.try_recv().unwrap_err(), TryRecvError::Empty);
    }

    #[tokio::test]
    async fn closed_when_bus_dropped() {
        let bus = EventBus::new(8);
        let mut sub = bus.subscribe_all();
        bus.publish(latency(7));
        drop(bus);
        assert_eq!(micros(&sub.recv().await.unwrap()), 7);
        assert_eq!(sub.recv().await.unwrap_err(), RecvError::Closed);
    }

    fn resumed() -> Event {
        Event::new(
            Utc::now(),
            Source::Halt,
            Payload::Resumed {
                operator: "a".into(),
            },
        )
    }

    /// Polls `fut` once, without a runtime: what a waiting `recv` sees at this instant.
    fn poll_once<F: std::future::Future + Unpin>(fut: &mut F) -> std::task::Poll<F::Output> {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        std::pin::Pin::new(fut).poll(&mut cx)
    }

    /// A subscriber already waiting in `recv` when the ring overflows is told how many
    /// events it missed, and then resumes with the oldest event still held.
    #[tokio::test]
    async fn a_lag_while_waiting_is_reported_with_its_count() {
        let bus = EventBus::new(16);
        let mut sub = bus.subscribe(KindSet::of(&[EventKind::Latency]));
        {
            let mut waiting = Box::pin(sub.recv());
            assert!(poll_once(&mut waiting).is_pending());
            for i in 0..100 {
                bus.publish(latency(i));
            }
            assert_eq!(
                poll_once(&mut waiting),
                std::task::Poll::Ready(Err(RecvError::Lagged { missed: 84 }))
            );
        }
        assert_eq!(sub.lagged_total(), 84);
        assert_eq!(micros(&sub.recv().await.unwrap()), 84);
    }

    /// A waiting subscriber is woken by either lane, and a normal-lane event of a kind it
    /// did not ask for does not end the wait.
    #[tokio::test]
    async fn a_waiting_receive_takes_its_kinds_from_either_lane() {
        let bus = EventBus::new(16);
        let kinds = KindSet::of(&[EventKind::Resumed, EventKind::Latency]);
        let mut sub = bus.subscribe(kinds);
        assert_eq!(sub.kinds(), kinds);
        {
            let mut waiting = Box::pin(sub.recv());
            assert!(poll_once(&mut waiting).is_pending());
            bus.publish(resumed());
            match poll_once(&mut waiting) {
                std::task::Poll::Ready(Ok(ev)) => assert_eq!(ev.kind(), EventKind::Resumed),
                other => panic!("expected the resume, got {other:?}"),
            }
        }
        let mut only_latency = bus.subscribe(KindSet::of(&[EventKind::Latency]));
        {
            let mut waiting = Box::pin(only_latency.recv());
            assert!(poll_once(&mut waiting).is_pending());
            bus.publish(Event::new(
                Utc::now(),
                Source::Test,
                Payload::Health {
                    check: "x".into(),
                    status: crate::event::HealthStatus::Healthy,
                    message: String::new(),
                    latency_micros: 1,
                },
            ));
            assert!(
                poll_once(&mut waiting).is_pending(),
                "other kinds are skipped"
            );
            bus.publish(latency(5));
            match poll_once(&mut waiting) {
                std::task::Poll::Ready(Ok(ev)) => assert_eq!(micros(&ev), 5),
                other => panic!("expected the latency, got {other:?}"),
            }
        }
        assert_eq!(sub.try_recv().unwrap().kind(), EventKind::Latency);
    }

    /// A subscriber of lossless kinds only, waiting through a flood, is never told of the
    /// lag (it missed nothing it asked for) but counts it, and gets the halt event.
    #[tokio::test]
    async fn a_lossless_only_subscriber_waits_through_a_flood_without_lag_errors() {
        let bus = EventBus::new(16);
        let mut halts = bus.subscribe(KindSet::critical());
        {
            let mut waiting = Box::pin(halts.recv());
            assert!(poll_once(&mut waiting).is_pending());
            for i in 0..100 {
                bus.publish(latency(i));
            }
            assert!(poll_once(&mut waiting).is_pending());
            bus.publish(halt());
            match poll_once(&mut waiting) {
                std::task::Poll::Ready(Ok(ev)) => {
                    assert_eq!(ev.kind(), EventKind::HaltStateChanged);
                }
                other => panic!("expected the halt, got {other:?}"),
            }
        }
        assert_eq!(halts.lagged_total(), 84);
    }

    /// Dropping the bus ends a wait with `Closed`, for subscriptions with and without the
    /// lossless lane.
    #[tokio::test]
    async fn dropping_the_bus_ends_a_waiting_receive() {
        let bus = EventBus::new(8);
        let mut all = bus.subscribe_all();
        let mut market = bus.subscribe(KindSet::of(&[EventKind::Latency]));
        let mut wait_all = Box::pin(all.recv());
        let mut wait_market = Box::pin(market.recv());
        assert!(poll_once(&mut wait_all).is_pending());
        assert!(poll_once(&mut wait_market).is_pending());
        drop(bus);
        assert_eq!(
            poll_once(&mut wait_all),
            std::task::Poll::Ready(Err(RecvError::Closed))
        );
        assert_eq!(
            poll_once(&mut wait_market),
            std::task::Poll::Ready(Err(RecvError::Closed))
        );
        drop((wait_all, wait_market));
        assert_eq!(all.try_recv().unwrap_err(), TryRecvError::Closed);
        assert_eq!(market.try_recv().unwrap_err(), TryRecvError::Closed);
    }

    #[test]
    fn debug_output_shows_subscribers_published_and_lag() {
        let bus = EventBus::new(2);
        let mut sub = bus.subscribe_all();
        let _other = bus.subscribe(KindSet::market_data());
        for i in 0..5 {
            bus.publish(latency(i));
        }
        let text = format!("{bus:?}");
        assert!(
            text.contains("subscribers: 2") && text.contains("published: 5"),
            "{text}"
        );
        assert!(matches!(
            sub.try_recv(),
            Err(TryRecvError::Lagged { missed: 3 })
        ));
        let text = format!("{sub:?}");
        assert!(text.contains("lagged_total: 3"), "{text}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_subscribers_receive_everything_in_order() {
        let bus = EventBus::new(1 << 16);
        let mut handles = Vec::new();
        for _ in 0..4 {
            let mut sub = bus.subscribe_all();
            handles.push(tokio::spawn(async move {
                let mut next = 0;
                while next < 10_000 {
                    let ev = sub.recv().await.unwrap();
                    assert_eq!(micros(&ev), next);
                    next += 1;
                }
                next
            }));
        }
        for i in 0..10_000 {
            bus.publish(latency(i));
        }
        for h in handles {
            assert_eq!(h.await.unwrap(), 10_000);
        }
    }
}
