//! Replaying the fixtures through the bus: full speed, paced with paused tokio time,
//! staleness on the gap recording, the crash's drop.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use gf_core::{Event, EventBus, KindSet, ManualClock, Payload, Source};
use gf_market::fixtures::{Scenario, generate};
use gf_market::{EventTime, MarketSource, ReplaySource};
use rust_decimal::Decimal;
use tokio_util::sync::CancellationToken;

fn fixture(s: Scenario) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/market")
        .join(s.file_name())
}

/// Runs a replay to the end and returns every market event published.
async fn replay_all(mut source: ReplaySource) -> (Vec<Arc<Event>>, gf_market::FeedStats) {
    let bus = EventBus::new(1 << 17);
    let mut sub = bus.subscribe(KindSet::market_data());
    let stats = source
        .run(
            bus.clone(),
            Arc::new(ManualClock::default()),
            CancellationToken::new(),
        )
        .await
        .unwrap();
    let mut events = Vec::new();
    while let Ok(ev) = sub.try_recv() {
        events.push(ev);
    }
    (events, stats)
}

#[tokio::test]
async fn full_speed_replay_of_the_paper_fixture_publishes_verified_books() {
    let source = ReplaySource::from_path(fixture(Scenario::Paper), Decimal::ZERO).unwrap();
    let (events, stats) = replay_all(source).await;
    assert_eq!(stats.mismatches(), 0);
    assert!(events.iter().all(|e| e.source == Source::Replay));
    let count = |k: &str| events.iter().filter(|e| e.kind().name() == k).count();
    assert_eq!(count("book_snapshot"), 2);
    assert_eq!(count("book_invalid"), 0);
    assert!(count("book_update") as u64 == stats.updates_verified());
    assert!(count("trade") > 500);
    assert!(count("ticker") > 500);
    // Updates carry a consistent top of book.
    for e in &events {
        if let Payload::BookUpdate(u) = &e.payload {
            assert!(
                u.best_bid.unwrap().price < u.best_ask.unwrap().price,
                "{u:?}"
            );
        }
    }
}

#[tokio::test]
async fn crash_fixture_drops_more_than_twenty_percent() {
    let source = ReplaySource::from_path(fixture(Scenario::Crash), Decimal::ZERO)
        .unwrap()
        .with_event_time(EventTime::Recorded);
    let (events, stats) = replay_all(source).await;
    assert_eq!(stats.mismatches(), 0);
    let xrp = "XRP/USD".parse().unwrap();
    let mids: Vec<(DateTime<Utc>, Decimal)> = events
        .iter()
        .filter_map(|e| match &e.payload {
            Payload::BookUpdate(u) if u.pair == xrp => {
                Some((e.ts, (u.best_bid?.price + u.best_ask?.price) / Decimal::TWO))
            }
            _ => None,
        })
        .collect();
    let first = mids.first().unwrap();
    let last = mids.last().unwrap();
    let drop = (first.1 - last.1) / first.1;
    assert!(drop > Decimal::new(20, 2), "drop {drop}");
    // Over minutes, not instantly: recorded time spans the session.
    assert!(last.0 - first.0 > chrono::Duration::minutes(4));
}

#[tokio::test(start_paused = true)]
async fn paced_replay_of_the_gap_raises_staleness_at_the_threshold_and_recovers() {
    let start = tokio::time::Instant::now();
    let source = ReplaySource::from_bytes(generate(Scenario::Gap), Decimal::ONE)
        .unwrap()
        .with_event_time(EventTime::Recorded)
        .with_staleness(Duration::from_secs(60));
    let (events, stats) = replay_all(source).await;
    assert_eq!(stats.mismatches(), 0);
    // Paced at real time: the five-minute recording took five (paused) minutes.
    let elapsed = start.elapsed();
    assert!(
        elapsed > Duration::from_secs(290) && elapsed < Duration::from_secs(310),
        "{elapsed:?}"
    );
    let staleness: Vec<(&Arc<Event>, bool, u64)> = events
        .iter()
        .filter_map(|e| match &e.payload {
            Payload::Staleness { stale, age_ms, .. } => Some((e, *stale, *age_ms)),
            _ => None,
        })
        .collect();
    // Both pairs go stale once, exactly at the threshold, and come back once.
    assert_eq!(staleness.iter().filter(|s| s.1).count(), 2, "{staleness:?}");
    assert_eq!(
        staleness.iter().filter(|s| !s.1).count(),
        2,
        "{staleness:?}"
    );
    for (event, stale, age_ms) in &staleness {
        if *stale {
            assert_eq!(*age_ms, 60_000);
            // The gap starts at 14:02:30 in recorded time.
            assert!(event.ts > "2026-03-02T14:03:29Z".parse::<DateTime<Utc>>().unwrap());
        } else {
            assert!(*age_ms > 60_000);
        }
    }
}

#[tokio::test(start_paused = true)]
async fn paced_replay_honours_the_speed_factor_and_shutdown() {
    let start = tokio::time::Instant::now();
    let source = ReplaySource::from_bytes(generate(Scenario::Paper), Decimal::TEN).unwrap();
    let (_events, stats) = replay_all(source).await;
    let elapsed = start.elapsed();
    assert!(
        elapsed > Duration::from_secs(29) && elapsed < Duration::from_secs(31),
        "{elapsed:?}"
    );
    assert_eq!(stats.mismatches(), 0);

    // Cancelling stops a paced replay promptly.
    let bus = EventBus::new(1024);
    let shutdown = CancellationToken::new();
    let mut replay = ReplaySource::from_bytes(generate(Scenario::Paper), Decimal::ONE).unwrap();
    let task = {
        let (bus, shutdown) = (bus.clone(), shutdown.clone());
        tokio::spawn(async move {
            replay
                .run(bus, Arc::new(ManualClock::default()), shutdown)
                .await
        })
    };
    tokio::time::sleep(Duration::from_secs(10)).await;
    shutdown.cancel();
    let stats = task.await.unwrap().unwrap();
    assert!(
        stats.messages > 10 && stats.messages < 2_000,
        "{}",
        stats.messages
    );
}

#[tokio::test]
async fn replay_counts_bad_lines_and_keeps_going() {
    let mut text = String::from_utf8(generate(Scenario::Paper)).unwrap();
    text.insert_str(0, "not json at all\n\n{\"channel\":\"mystery\"}\n");
    let source = ReplaySource::from_bytes(text, Decimal::ZERO)
        .unwrap()
        .with_depth(10)
        .with_pairs(vec!["XRP/USD".parse().unwrap()]);
    let (events, stats) = replay_all(source).await;
    assert_eq!((stats.malformed, stats.unknown), (1, 1));
    assert!(stats.unknown_pairs > 0, "DOGE/USD is filtered out");
    assert_eq!(stats.mismatches(), 0);
    assert!(
        events
            .iter()
            .all(|e| !format!("{:?}", e.payload).contains("DOGE"))
    );
}

#[tokio::test]
async fn missing_recording_is_an_error_naming_the_path() {
    let mut source = ReplaySource::from_path("/nonexistent/x.jsonl", Decimal::ZERO).unwrap();
    let err = source
        .run(
            EventBus::new(8),
            Arc::new(ManualClock::default()),
            CancellationToken::new(),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("/nonexistent/x.jsonl"), "{err}");
}

#[tokio::test]
async fn market_config_replays_the_bundled_session_or_the_configured_file() {
    let mut cfg = gf_core::config::MarketConfig {
        replay_speed: Decimal::ZERO,
        ..Default::default()
    };
    let (events, stats) = replay_all(ReplaySource::from_market_config(&cfg).unwrap()).await;
    assert_eq!(stats.mismatches(), 0);
    assert_eq!(stats.pairs.len(), 2);
    assert!(events.len() > 4_000);
    cfg.replay_file = Some(fixture(Scenario::Crash));
    cfg.pairs = vec!["DOGE/USD".parse().unwrap()];
    let (_, stats) = replay_all(ReplaySource::from_market_config(&cfg).unwrap()).await;
    assert_eq!(
        stats
            .pairs
            .keys()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        vec!["DOGE/USD"]
    );
    cfg.replay_speed = Decimal::NEGATIVE_ONE;
    assert!(ReplaySource::from_market_config(&cfg).is_err());
}

/// Downstream consumers (paper exchange, risk marks) see only events: a snapshot plus
/// the changed levels of each update must rebuild exactly the verified book.
#[tokio::test]
async fn events_alone_rebuild_the_verified_book_downstream() {
    let source = ReplaySource::from_path(fixture(Scenario::Crash), Decimal::ZERO).unwrap();
    let (events, _) = replay_all(source).await;
    let mut books: std::collections::HashMap<gf_core::Pair, gf_market::Book> = Default::default();
    let mut checked = 0;
    for e in &events {
        match &e.payload {
            Payload::BookSnapshot(s) => {
                let mut book = gf_market::Book::new(s.bids.len().max(s.asks.len()));
                book.apply_snapshot(&s.bids, &s.asks);
                assert_eq!(book.checksum(), s.checksum);
                books.insert(s.pair.clone(), book);
            }
            Payload::BookUpdate(u) => {
                let book = books.get_mut(&u.pair).expect("update after snapshot");
                book.apply_update(&u.bids, &u.asks);
                // Published numbers carry the pair's precision: the plain checksum of the
                // rebuilt book is the verified one.
                assert_eq!(book.checksum(), u.checksum);
                assert_eq!(book.best_bid(), u.best_bid);
                assert_eq!(book.best_ask(), u.best_ask);
                checked += 1;
            }
            _ => {}
        }
    }
    assert!(checked > 2_000);
}

#[tokio::test(start_paused = true)]
async fn every_replayed_message_is_timed_from_when_it_is_due() {
    use gf_core::latency::{LatencyLog, stage};

    // Full speed: each message is due when it is read; both stages time the first message
    // and every sixteenth after it.
    let log = Arc::new(LatencyLog::default());
    let source = ReplaySource::from_bytes(generate(Scenario::Paper), Decimal::ZERO)
        .unwrap()
        .with_latency(log.clone());
    let (_events, stats) = replay_all(source).await;
    assert!(stats.messages > 1_000);
    let sampled = stats.messages.div_ceil(16);
    assert_eq!(log.of(stage::BOOK_APPLIED).len() as u64, sampled);
    assert_eq!(log.of(stage::MARKET_INGEST).len() as u64, sampled);

    // Paced, with paused time: a message is published as soon as its due instant is
    // reached, which tokio's timer rounds up to its next millisecond tick, so none is a
    // millisecond late, however old its recorded time stamp (the clock stands at
    // 2026-01-01, which no measure from the time stamps would give).
    let log = Arc::new(LatencyLog::default());
    let source = ReplaySource::from_bytes(generate(Scenario::Paper), Decimal::TEN)
        .unwrap()
        .with_latency(log.clone());
    let (_events, stats) = replay_all(source).await;
    let ingest = log.of(stage::MARKET_INGEST);
    assert_eq!(ingest.len() as u64, stats.messages.div_ceil(16));
    assert!(ingest.iter().all(|us| *us < 1_000), "{ingest:?}");

    // Without a sink nothing is recorded (and the feed is the same).
    let source = ReplaySource::from_bytes(generate(Scenario::Paper), Decimal::ZERO).unwrap();
    let (_events, plain) = replay_all(source).await;
    assert_eq!(plain.messages, stats.messages);
}
