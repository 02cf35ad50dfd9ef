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
use gf_core::{Event, EventBus, Pair, Payload, SharedClock, Source};
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
    /// when unset, the bundled paper session from [`crate::fixtures`]), `replay_speed`,
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
            None => Self::from_bytes(
                crate::fixtures::generate(crate::fixtures::Scenario::Paper),
                cfg.replay_speed,
            )?,
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
                } else {
                    while let Some(d) = tracker.next_deadline().filter(|d| *d <= t) {
                        tracker.check(d, &mut events);
                        out.publish(Some(d), &mut events);
                    }
                    if count.is_multiple_of(256) {
                        tokio::task::yield_now().await;
                    }
                }
                pace.now = Some(pace.now.map_or(t, |n| n.max(t)));
            }
            let recorded = pace.recorded_now();
            match feed.process(text, &mut events) {
                Ok(ingest) => {
                    let mut fresh = Vec::new();
                    for pair in &ingest.touched {
                        if let Some(now) = recorded {
                            tracker.touch(pair, now, &mut fresh);
                        }
                    }
                    out.publish(recorded, &mut fresh);
                }
                Err(err) => debug!(line = count, cause = %err, "replay: bad line"),
            }
            out.publish(recorded, &mut events);
        }
        info!(messages = count, "replay finished");
        Ok(feed.stats())
    }
}

/// The message's exchange timestamp, found cheaply: the last `"timestamp":"…"` in the
/// text (book and trade messages carry one per entry; the last is the latest).
pub(crate) fn peek_timestamp(text: &str) -> Option<DateTime<Utc>> {
    const KEY: &str = "\"timestamp\":\"";
    let start = text.rfind(KEY)? + KEY.len();
    let end = start + text[start..].find('"')?;
    DateTime::<chrono::FixedOffset>::from_str(&text[start..end])
        .ok()
        .map(|d| d.with_timezone(&Utc))
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
