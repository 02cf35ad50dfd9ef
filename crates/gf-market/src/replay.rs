//! Replaying a recording (JSON lines, one raw v2 text message per line) onto the bus, at
//! full speed or paced by the messages' own timestamps.
//!
//! Pacing uses tokio time, so tests can `tokio::time::pause()` and run a five-minute
//! recording instantly. Staleness is judged in the *recording's* time: a 70 s hole in the
//! recording yields a stale event 60 s (threshold) into the hole, whatever the speed.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use gf_core::latency::{market_sampled, micros, stage};
use gf_core::{Event, EventBus, Pair, Payload, SharedClock, SharedLatency, Source};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, BufReader};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::error::Error;
use crate::feed::{FeedProcessor, FeedStats};
use crate::source::MarketSource;
use crate::staleness::StalenessTracker;

/// Which time events carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EventTime {
    /// `clock.now()` when published (what the daemon's paper mode wants).
    #[default]
    Clock,
    /// The recording's time (message timestamps, advanced by pacing) — for research
    /// code that wants a deterministic, historical timeline.
    Recorded,
}

#[derive(Debug, Clone)]
enum Input {
    Path(PathBuf),
    Bytes(Vec<u8>),
}

/// Replays a recording.
///
/// ```
/// use gf_core::{EventBus, KindSet, ManualClock};
/// use gf_market::{MarketSource, ReplaySource};
/// use rust_decimal::Decimal;
/// use std::sync::Arc;
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let recording = br#"{"channel":"book","type":"snapshot","data":[{"symbol":"BTC/USD","bids":[{"price":45283.5,"qty":0.10000000}],"asks":[{"price":45285.2,"qty":0.00100000}],"checksum":2383917627}]}"#;
/// let bus = EventBus::new(1024);
/// let mut events = bus.subscribe(KindSet::market_data());
/// let mut replay = ReplaySource::from_bytes(recording.to_vec(), Decimal::ZERO).unwrap();
/// let stats = replay
///     .run(bus.clone(), Arc::new(ManualClock::default()), Default::default())
///     .await
///     .unwrap();
/// assert_eq!(stats.mismatches(), 0);
/// assert_eq!(events.recv().await.unwrap().kind().name(), "book_snapshot");
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct ReplaySource {
    input: Input,
    speed: Decimal,
    depth: Option<usize>,
    pairs: Option<Vec<Pair>>,
    staleness: Duration,
    event_time: EventTime,
    latency: Option<SharedLatency>,
}

impl ReplaySource {
    fn new(input: Input, speed: Decimal) -> Result<Self, Error> {
        if speed.is_sign_negative() && !speed.is_zero() {
            return Err(Error::InvalidSpeed(speed));
        }
        Ok(Self {
            input,
            speed,
            depth: None,
            pairs: None,
            staleness: Duration::from_secs(60),
            event_time: EventTime::Clock,
            latency: None,
        })
    }

    /// Replays the file at `path`. `speed`: `0` full speed, `1` real time, `10` ten times
    /// faster.
    ///
    /// # Errors
    /// [`Error::InvalidSpeed`] for a negative speed. The file is opened by `run`.
    pub fn from_path(path: impl AsRef<Path>, speed: Decimal) -> Result<Self, Error> {
        Self::new(Input::Path(path.as_ref().to_path_buf()), speed)
    }

    /// Replays a recording held in memory.
    ///
    /// # Errors
    /// [`Error::InvalidSpeed`] for a negative speed.
    pub fn from_bytes(bytes: impl Into<Vec<u8>>, speed: Decimal) -> Result<Self, Error> {
        Self::new(Input::Bytes(bytes.into()), speed)
    }

    /// The daemon's paper-mode source from the `[market]` section: `replay_file` (or,
    /// when unset, the bundled paper session [`crate::bundled::PAPER`]), `replay_speed`,
    /// `staleness_secs` and `pairs`. The book depth is the recording's own.
    ///
    /// ```
    /// let cfg = gf_core::config::MarketConfig::default();
    /// let replay = gf_market::ReplaySource::from_market_config(&cfg).unwrap();
    /// # let _ = replay;
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidSpeed`] for a negative speed.
    pub fn from_market_config(cfg: &gf_core::config::MarketConfig) -> Result<Self, Error> {
        let source = match &cfg.replay_file {
            Some(path) => Self::from_path(path, cfg.replay_speed)?,
            None => Self::from_bytes(crate::bundled::PAPER, cfg.replay_speed)?,
        };
        Ok(source
            .with_pairs(cfg.pairs.clone())
            .with_staleness(Duration::from_secs(cfg.staleness_secs)))
    }

    /// Keeps books at this depth (default: learnt from the recording). A `book`
    /// subscription ack in the recording overrides it: the data has the depth the server
    /// acknowledged.
    #[must_use]
    pub fn with_depth(mut self, depth: usize) -> Self {
        self.depth = Some(depth);
        self
    }

    /// Only these pairs (default: every pair in the recording).
    #[must_use]
    pub fn with_pairs(mut self, pairs: Vec<Pair>) -> Self {
        self.pairs = Some(pairs);
        self
    }

    /// Staleness threshold, in the recording's time (default 60 s).
    #[must_use]
    pub fn with_staleness(mut self, threshold: Duration) -> Self {
        self.staleness = threshold;
        self
    }

    /// Which time events carry (default [`EventTime::Clock`]).
    #[must_use]
    pub fn with_event_time(mut self, event_time: EventTime) -> Self {
        self.event_time = event_time;
        self
    }

    /// Records `market_ingest` and `book_applied` into `sink` for one message in
    /// [`gf_core::latency::MARKET_SAMPLE_EVERY`] (default: nothing recorded, no clock
    /// read). In a replay the exchange's time stamps are
    /// history, so `market_ingest` measures the replay's own delay instead: from the
    /// moment the message is due (its recorded time scaled by the speed; at full speed,
    /// the moment it is read) to its events being on the bus. `book_applied` is the time
    /// [`FeedProcessor::process`] takes on it: parse, apply, checksum.
    #[must_use]
    pub fn with_latency(mut self, sink: SharedLatency) -> Self {
        self.latency = Some(sink);
        self
    }

    async fn reader(&self) -> Result<Box<dyn AsyncBufRead + Unpin + Send>, Error> {
        Ok(match &self.input {
            Input::Path(path) => {
                let file = tokio::fs::File::open(path)
                    .await
                    .map_err(|e| Error::io(path, e))?;
                Box::new(BufReader::with_capacity(1 << 16, file))
            }
            Input::Bytes(bytes) => Box::new(std::io::Cursor::new(bytes.clone())),
        })
    }

    fn path_for_errors(&self) -> PathBuf {
        match &self.input {
            Input::Path(p) => p.clone(),
            Input::Bytes(_) => PathBuf::from("<memory>"),
        }
    }
}

/// The replay's notion of time: recorded time anchored to a tokio instant.
struct Pace {
    speed: Decimal,
    anchor: Option<(DateTime<Utc>, Instant)>,
    /// The latest recorded time reached.
    now: Option<DateTime<Utc>>,
}

impl Pace {
    fn paced(&self) -> bool {
        !self.speed.is_zero()
    }

    /// The real instant at which recorded time `t` is due.
    fn due(&self, t: DateTime<Utc>) -> Option<Instant> {
        if !self.paced() {
            return None;
        }
        let (t0, r0) = self.anchor?;
        let nanos = (t - t0).num_nanoseconds()?.max(0);
        let real = (Decimal::from(nanos) / self.speed).to_u64()?;
        r0.checked_add(Duration::from_nanos(real))
    }

    /// Recorded time now, advancing with real time while paced.
    fn recorded_now(&self) -> Option<DateTime<Utc>> {
        let (t0, r0) = self.anchor?;
        if !self.paced() {
            return self.now;
        }
        let real = Instant::now().saturating_duration_since(r0).as_nanos();
        let virt = (Decimal::from(u64::try_from(real).unwrap_or(u64::MAX)) * self.speed)
            .to_i64()
            .unwrap_or(i64::MAX);
        let t = t0 + chrono::Duration::nanoseconds(virt);
        Some(self.now.map_or(t, |n| n.max(t)))
    }
}

struct Publisher<'a> {
    bus: &'a EventBus,
    clock: &'a SharedClock,
    event_time: EventTime,
}

impl Publisher<'_> {
    fn publish(&self, recorded: Option<DateTime<Utc>>, events: &mut Vec<Payload>) {
        for payload in events.drain(..) {
            let ts = match (self.event_time, recorded) {
                (EventTime::Recorded, Some(t)) => t,
                _ => self.clock.now(),
            };
            self.bus.publish(Event::new(ts, Source::Replay, payload));
        }
    }
}

#[async_trait]
impl MarketSource for ReplaySource {
    async fn run(
        &mut self,
        bus: EventBus,
        clock: SharedClock,
        shutdown: CancellationToken,
    ) -> Result<FeedStats, Error> {
        let mut reader = self.reader().await?;
        let path = self.path_for_errors();
        let mut feed = match self.depth {
            Some(d) => FeedProcessor::new(d, self.pairs.as_deref()),
            None => FeedProcessor::with_auto_depth(self.pairs.as_deref()),
        };
        let mut tracker = StalenessTracker::new(self.staleness);
        let mut pace = Pace {
            speed: self.speed,
            anchor: None,
            now: None,
        };
        let out = Publisher {
            bus: &bus,
            clock: &clock,
            event_time: self.event_time,
        };
        let mut events = Vec::new();
        let mut line = Vec::with_capacity(4096);
        let mut count: u64 = 0;
        info!(source = %path.display(), speed = %self.speed, "replay started");
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            line.clear();
            let n = reader
                .read_until(b'\n', &mut line)
                .await
                .map_err(|e| Error::io(&path, e))?;
            if n == 0 {
                break;
            }
            let text = String::from_utf8_lossy(&line);
            let text = text.trim();
            if text.is_empty() {
                continue;
            }
            count += 1;
            let ts = peek_timestamp(text);
            let mut due_at = None;
            if let Some(t) = ts {
                if pace.anchor.is_none() {
                    pace.anchor = Some((t, Instant::now()));
                }
                // Wait until the message is due, waking for staleness deadlines.
                if let Some(due) = pace.due(t) {
                    loop {
                        let deadline = tracker.next_deadline().filter(|d| *d < t);
                        let wake = deadline
                            .and_then(|d| pace.due(d))
                            .map_or(due, |w| w.min(due));
                        tokio::select! {
                            biased;
                            () = shutdown.cancelled() => return Ok(feed.stats()),
                            () = tokio::time::sleep_until(wake) => {}
                        }
                        if let Some(d) = deadline
                            && pace.recorded_now().is_some_and(|now| now >= d)
                        {
                            tracker.check(d, &mut events);
                            out.publish(Some(d), &mut events);
                        }
                        if Instant::now() >= due {
                            break;
                        }
                    }
                    due_at = Some(due);
                } else {
                    due_staleness(&mut tracker, t, &mut events, |d, ev| {
                        out.publish(Some(d), ev)
                    });
                    if count.is_multiple_of(256) {
                        tokio::task::yield_now().await;
                    }
                }
                pace.now = Some(pace.now.map_or(t, |n| n.max(t)));
            }
            let recorded = pace.recorded_now();
            let sink = self.latency.as_deref().filter(|_| market_sampled(count));
            let due_at = sink.map(|_| due_at.unwrap_or_else(Instant::now));
            ingest(
                &mut feed,
                &mut tracker,
                text,
                recorded,
                count,
                &mut events,
                sink,
                |ev| {
                    out.publish(recorded, ev);
                },
            );
            if let (Some(sink), Some(due)) = (sink, due_at) {
                sink.record(stage::MARKET_INGEST, micros(due.elapsed()));
            }
        }
        info!(messages = count, "replay finished");
        Ok(feed.stats())
    }
}

/// Publishes the staleness deadlines due at or before recorded time `upto`, each at its
/// own time. The one staleness rule of both [`ReplaySource`] (at full speed) and
/// [`Recording`].
fn due_staleness(
    tracker: &mut StalenessTracker,
    upto: DateTime<Utc>,
    events: &mut Vec<Payload>,
    mut publish: impl FnMut(DateTime<Utc>, &mut Vec<Payload>),
) {
    while let Some(d) = tracker.next_deadline().filter(|d| *d <= upto) {
        tracker.check(d, events);
        publish(d, events);
    }
}

/// Feeds one message to the book code: the pairs it touched are fresh again (their
/// `Staleness` recovery events first), then the message's own events. A message the feed
/// refuses is logged and skipped, as the daemon's replay does. The one ingest rule of
/// both [`ReplaySource`] and [`Recording`]. With a `sink`, the time the book code takes
/// is recorded as `book_applied`.
#[allow(clippy::too_many_arguments)] // one call per source; a struct would only rename them
fn ingest(
    feed: &mut FeedProcessor,
    tracker: &mut StalenessTracker,
    text: &str,
    recorded: Option<DateTime<Utc>>,
    line: u64,
    events: &mut Vec<Payload>,
    sink: Option<&dyn gf_core::LatencySink>,
    mut publish: impl FnMut(&mut Vec<Payload>),
) {
    let started = sink.map(|_| std::time::Instant::now());
    let processed = feed.process(text, events);
    if let (Some(sink), Some(started)) = (sink, started) {
        sink.record(stage::BOOK_APPLIED, micros(started.elapsed()));
    }
    match processed {
        Ok(ingest) => {
            let mut fresh = Vec::new();
            for pair in &ingest.touched {
                if let Some(now) = recorded {
                    tracker.touch(pair, now, &mut fresh);
                }
            }
            publish(&mut fresh);
        }
        Err(err) => debug!(line, cause = %err, "replay: bad line"),
    }
    publish(events);
}

/// A recording read synchronously, message by message, with every event stamped with the
/// recording's own time: what a deterministic backtest consumes. It runs the same book
/// code ([`FeedProcessor`]) and staleness rule as [`ReplaySource`] at full speed, so a
/// backtest sees exactly the events the paper daemon's replay publishes.
///
/// ```
/// use gf_market::replay::Recording;
/// let text = br#"{"channel":"book","type":"snapshot","data":[{"symbol":"BTC/USD","bids":[{"price":45283.5,"qty":0.10000000}],"asks":[{"price":45285.2,"qty":0.00100000}],"checksum":2383917627,"timestamp":"2026-03-02T14:00:00Z"}]}"#;
/// let mut rec = Recording::new(&text[..], None, None, std::time::Duration::from_secs(60));
/// assert_eq!(rec.first_time().unwrap().to_rfc3339(), "2026-03-02T14:00:00+00:00");
/// let mut out = Vec::new();
/// assert!(rec.next_message(&mut out));
/// assert_eq!(out.len(), 1); // the book snapshot
/// assert!(!rec.next_message(&mut out));
/// ```
#[derive(Debug)]
pub struct Recording<'a> {
    bytes: &'a [u8],
    pos: usize,
    feed: FeedProcessor,
    tracker: StalenessTracker,
    now: Option<DateTime<Utc>>,
    lines: u64,
    events: Vec<Payload>,
}

impl<'a> Recording<'a> {
    /// Reads `bytes` (JSON lines, as `market record` writes them), keeping `depth` levels
    /// (the recording's own depth when `None`) of `pairs` (all when `None`), with a
    /// staleness `threshold` judged in recorded time.
    #[must_use]
    pub fn new(
        bytes: &'a [u8],
        depth: Option<usize>,
        pairs: Option<&[Pair]>,
        threshold: Duration,
    ) -> Self {
        let feed = match depth {
            Some(d) => FeedProcessor::new(d, pairs),
            None => FeedProcessor::with_auto_depth(pairs),
        };
        Self {
            bytes,
            pos: 0,
            feed,
            tracker: StalenessTracker::new(threshold),
            now: None,
            lines: 0,
            events: Vec::new(),
        }
    }

    /// The first timestamp in the recording, if any message carries one.
    #[must_use]
    pub fn first_time(&self) -> Option<DateTime<Utc>> {
        self.bytes
            .split(|b| *b == b'\n')
            .find_map(|l| peek_timestamp(&String::from_utf8_lossy(l)))
    }

    /// Messages read so far.
    #[must_use]
    pub fn messages(&self) -> u64 {
        self.lines
    }

    /// The book code's counters (checksum mismatches, updates verified).
    #[must_use]
    pub fn stats(&self) -> FeedStats {
        self.feed.stats()
    }

    /// Reads the next message and appends its events to `out`, each with its recorded
    /// time: staleness deadlines that fell due before the message first (at their own
    /// time), then the message's events (at the latest time seen). Events before the
    /// first timestamped message are dropped: they have no time. Returns `false` at the
    /// end of the recording. A line the book code refuses is logged and skipped, as the
    /// daemon's replay does.
    pub fn next_message(&mut self, out: &mut Vec<(DateTime<Utc>, Payload)>) -> bool {
        loop {
            if self.pos >= self.bytes.len() {
                return false;
            }
            let rest = &self.bytes[self.pos..];
            let end = rest.iter().position(|b| *b == b'\n').unwrap_or(rest.len());
            self.pos += (end + 1).min(rest.len());
            let line = &rest[..end];
            let lossy;
            let text = match std::str::from_utf8(line) {
                Ok(t) => t,
                Err(_) => {
                    lossy = String::from_utf8_lossy(line);
                    &lossy
                }
            };
            let text = text.trim();
            if text.is_empty() {
                continue;
            }
            self.lines += 1;
            if let Some(t) = peek_timestamp(text) {
                due_staleness(&mut self.tracker, t, &mut self.events, |d, ev| {
                    out.extend(ev.drain(..).map(|p| (d, p)));
                });
                self.now = Some(self.now.map_or(t, |n| n.max(t)));
            }
            let recorded = self.now;
            ingest(
                &mut self.feed,
                &mut self.tracker,
                text,
                recorded,
                self.lines,
                &mut self.events,
                None,
                |ev| match recorded {
                    Some(t) => out.extend(ev.drain(..).map(|p| (t, p))),
                    None => ev.clear(),
                },
            );
            return true;
        }
    }
}

/// The message's exchange timestamp, found cheaply: the last `"timestamp":"…"` in the
/// text (book and trade messages carry one per entry; the last is the latest).
pub(crate) fn peek_timestamp(text: &str) -> Option<DateTime<Utc>> {
    const KEY: &str = "\"timestamp\":\"";
    let start = text.rfind(KEY)? + KEY.len();
    let end = start + text[start..].find('"')?;
    let t = &text[start..end];
    crate::message::fast_timestamp(t).or_else(|| {
        DateTime::<chrono::FixedOffset>::from_str(t)
            .ok()
            .map(|d| d.with_timezone(&Utc))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peeks_the_last_timestamp() {
        let text = r#"{"channel":"trade","data":[{"timestamp":"2026-01-01T00:00:01Z"},{"timestamp":"2026-01-01T00:00:02.5Z"}]}"#;
        assert_eq!(
            peek_timestamp(text).unwrap().to_rfc3339(),
            "2026-01-01T00:00:02.500+00:00"
        );
        assert_eq!(peek_timestamp(r#"{"channel":"heartbeat"}"#), None);
        assert_eq!(peek_timestamp(r#"{"timestamp":"garbage"}"#), None);
        assert_eq!(peek_timestamp(r#"{"timestamp":"unterminated"#), None);
    }

    #[test]
    fn negative_speed_is_refused() {
        let err = ReplaySource::from_bytes(Vec::new(), Decimal::NEGATIVE_ONE).unwrap_err();
        assert!(err.to_string().contains("-1"));
    }
}
