//! The live client against the WebSocket test server over a real socket on 127.0.0.1:
//! snapshot → updates → verified; a dropped connection reconnects and resubscribes; a
//! corrupted checksum triggers a resync; a stall raises staleness within threshold +
//! 100 ms (manual clock); garbage is counted, not fatal; recording then verifying.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use gf_core::{
    Clock, ConnectionState, Event, EventBus, KindSet, ManualClock, Pair, Payload, SharedClock,
    Source, Subscription,
};
use gf_market::fixtures::{Scenario, generate};
use gf_market::sim::{SimConfig, SimServer};
use gf_market::{ClientConfig, FeedStats, MarketClient, MarketSource};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(10);

fn pairs() -> Vec<Pair> {
    vec!["XRP/USD".parse().unwrap(), "DOGE/USD".parse().unwrap()]
}

struct Running {
    server: SimServer,
    events: Subscription,
    shutdown: CancellationToken,
    task: JoinHandle<Result<FeedStats, gf_market::Error>>,
    clock: ManualClock,
}

async fn start(tweak: impl FnOnce(&mut ClientConfig)) -> Running {
    start_with(tweak, ManualClock::default(), None).await
}

async fn start_with(
    tweak: impl FnOnce(&mut ClientConfig),
    clock: ManualClock,
    latency: Option<gf_core::SharedLatency>,
) -> Running {
    let server = SimServer::start(&generate(Scenario::Paper), SimConfig::default())
        .await
        .unwrap();
    let mut cfg = ClientConfig::new(server.url(), pairs());
    cfg.reconnect_initial = Duration::from_millis(20);
    cfg.reconnect_max = Duration::from_millis(200);
    cfg.staleness_check = Duration::from_millis(10);
    tweak(&mut cfg);
    let bus = EventBus::new(1 << 16);
    let events = bus.subscribe(KindSet::market_data());
    let shared: SharedClock = Arc::new(clock.clone());
    let shutdown = CancellationToken::new();
    let mut client = MarketClient::new(cfg).unwrap();
    if let Some(sink) = latency {
        client = client.with_latency(sink);
    }
    let task = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move { client.run(bus, shared, shutdown).await })
    };
    Running {
        server,
        events,
        shutdown,
        task,
        clock,
    }
}

impl Running {
    /// Receives events until `pred` matches one (returned) or the wait times out.
    async fn until(&mut self, what: &str, mut pred: impl FnMut(&Event) -> bool) -> Arc<Event> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let ev = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
                .unwrap();
            if pred(&ev) {
                return ev;
            }
        }
    }

    async fn both_snapshots(&mut self) {
        let mut seen = Vec::new();
        while seen.len() < 2 {
            let ev = self
                .until("book snapshots", |e| {
                    matches!(e.payload, Payload::BookSnapshot(_))
                })
                .await;
            if let Payload::BookSnapshot(s) = &ev.payload
                && !seen.contains(&s.pair)
            {
                seen.push(s.pair.clone());
            }
        }
    }

    async fn stop(self) -> FeedStats {
        self.shutdown.cancel();
        let stats = tokio::time::timeout(WAIT, self.task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        self.server.shutdown().await;
        stats
    }
}

#[tokio::test]
async fn snapshot_then_updates_are_verified_over_a_real_socket() {
    let mut run = start(|_| {}).await;
    run.until("connected", |e| {
        matches!(
            &e.payload,
            Payload::Connection {
                state: ConnectionState::Connected,
                ..
            }
        )
    })
    .await;
    run.both_snapshots().await;
    let mut updates = 0;
    let mut trades = 0;
    while updates < 200 || trades < 20 {
        let ev = run.until("updates", |_| true).await;
        assert_eq!(ev.source, Source::Market);
        match &ev.payload {
            Payload::BookUpdate(u) => {
                updates += 1;
                assert!(u.best_bid.unwrap().price < u.best_ask.unwrap().price);
            }
            Payload::Trade { .. } => trades += 1,
            Payload::BookInvalid { reason, .. } => panic!("book invalid: {reason}"),
            _ => {}
        }
    }
    let handle = run.server.handle();
    for channel in ["instrument", "book", "trade", "ticker"] {
        assert_eq!(handle.count("subscribe", channel), 1, "{channel}");
    }
    let stats = run.stop().await;
    assert_eq!(stats.mismatches(), 0);
    assert!(stats.updates_verified() >= 200);
}

#[tokio::test]
async fn dropped_connection_reconnects_resubscribes_and_rebuilds_books() {
    let mut run = start(|_| {}).await;
    run.both_snapshots().await;
    let handle = run.server.handle();
    handle.drop_connections();
    let lost = run
        .until("book invalid", |e| {
            matches!(&e.payload, Payload::BookInvalid { .. })
        })
        .await;
    let Payload::BookInvalid { reason, .. } = &lost.payload else {
        unreachable!()
    };
    assert!(reason.contains("connection lost"), "{reason}");
    run.until("disconnected", |e| {
        matches!(
            &e.payload,
            Payload::Connection {
                state: ConnectionState::Disconnected,
                ..
            }
        )
    })
    .await;
    run.until("reconnected", |e| {
        matches!(
            &e.payload,
            Payload::Connection {
                state: ConnectionState::Connected,
                ..
            }
        )
    })
    .await;
    run.both_snapshots().await;
    run.until("an update after reconnecting", |e| {
        matches!(e.payload, Payload::BookUpdate(_))
    })
    .await;
    assert_eq!(handle.connections(), 2);
    for channel in ["instrument", "book", "trade", "ticker"] {
        assert_eq!(handle.count("subscribe", channel), 2, "{channel}");
    }
    let second: Vec<_> = handle
        .requests()
        .into_iter()
        .filter(|r| r.connection == 2)
        .collect();
    assert!(
        second
            .iter()
            .any(|r| r.channel.as_deref() == Some("book") && r.symbols.len() == 2)
    );
    let stats = run.stop().await;
    assert_eq!(stats.mismatches(), 0);
}

#[tokio::test]
async fn corrupted_checksum_triggers_a_resync() {
    let mut run = start(|_| {}).await;
    run.both_snapshots().await;
    let handle = run.server.handle();
    handle.corrupt_next_checksum();
    let invalid = run
        .until("book invalid", |e| {
            matches!(&e.payload, Payload::BookInvalid { .. })
        })
        .await;
    let Payload::BookInvalid { pair, reason } = &invalid.payload else {
        unreachable!()
    };
    assert!(reason.contains("checksum mismatch on update"), "{reason}");
    let pair = pair.clone();
    // No update for that pair is published until the fresh snapshot.
    loop {
        let ev = run.until("resync snapshot", |_| true).await;
        match &ev.payload {
            Payload::BookUpdate(u) => assert_ne!(u.pair, pair, "update on an invalid book"),
            Payload::BookSnapshot(s) if s.pair == pair => break,
            _ => {}
        }
    }
    run.until(
        "updates after resync",
        |e| matches!(&e.payload, Payload::BookUpdate(u) if u.pair == pair),
    )
    .await;
    let book_requests: Vec<_> = handle
        .requests()
        .into_iter()
        .filter(|r| r.channel.as_deref() == Some("book"))
        .collect();
    assert_eq!(book_requests.len(), 3, "{book_requests:?}");
    assert_eq!(book_requests[1].method, "unsubscribe");
    assert_eq!(book_requests[2].method, "subscribe");
    assert_eq!(book_requests[2].symbols, vec![pair.to_string()]);
    assert_eq!(handle.connections(), 1, "a resync does not reconnect");
    let stats = run.stop().await;
    assert_eq!(stats.mismatches(), 1);
    assert_eq!(stats.resyncs, 1);
}

// Paused tokio time: the client's staleness checks (every 10 ms) run on tokio's clock, so
// "within 100 ms" and "not during 150 ms" are measured on it, not on a loaded machine's.
#[tokio::test(start_paused = true)]
async fn a_stall_raises_staleness_within_threshold_plus_100ms() {
    let mut run = start(|c| {
        c.staleness = Duration::from_secs(60);
        c.heartbeat_timeout = Duration::from_secs(30);
        c.ping_interval = Duration::from_secs(30);
    })
    .await;
    run.both_snapshots().await;
    run.server.handle().stall(true);
    // The client has read everything sent before the stall; the manual clock has not
    // moved, so every pair's last message is at `t0`.
    tokio::time::timeout(WAIT, run.server.handle().drained())
        .await
        .expect("the client never read what was sent before the stall");
    let t0 = run.clock.now();
    run.clock.advance(chrono::Duration::milliseconds(59_900));
    let early = tokio::time::timeout(
        Duration::from_millis(150),
        run.until("no staleness yet", |e| {
            matches!(e.payload, Payload::Staleness { .. })
        }),
    )
    .await;
    assert!(early.is_err(), "stale before the threshold: {early:?}");
    run.clock.set(t0 + chrono::Duration::seconds(60));
    let crossed = tokio::time::Instant::now();
    let ev = run
        .until("staleness", |e| {
            matches!(e.payload, Payload::Staleness { stale: true, .. })
        })
        .await;
    let latency = crossed.elapsed();
    assert!(
        latency <= Duration::from_millis(100),
        "staleness took {latency:?}"
    );
    let Payload::Staleness {
        age_ms,
        threshold_ms,
        ..
    } = ev.payload
    else {
        unreachable!()
    };
    assert_eq!((age_ms, threshold_ms), (60_000, 60_000));
    // Traffic resumes: fresh again.
    run.server.handle().stall(false);
    run.until("fresh", |e| {
        matches!(e.payload, Payload::Staleness { stale: false, .. })
    })
    .await;
    run.stop().await;
}

#[tokio::test]
async fn silence_beyond_the_heartbeat_timeout_reconnects() {
    let mut run = start(|c| {
        c.heartbeat_timeout = Duration::from_millis(300);
        c.ping_interval = Duration::from_secs(60);
    })
    .await;
    run.both_snapshots().await;
    let handle = run.server.handle();
    handle.stall(true);
    let ev = run
        .until("disconnected", |e| {
            matches!(
                &e.payload,
                Payload::Connection {
                    state: ConnectionState::Disconnected,
                    ..
                }
            )
        })
        .await;
    let Payload::Connection { detail, .. } = &ev.payload else {
        unreachable!()
    };
    assert!(detail.contains("heartbeat timeout"), "{detail}");
    handle.stall(false);
    run.both_snapshots().await;
    assert!(handle.connections() >= 2);
    run.stop().await;
}

#[tokio::test]
async fn garbage_and_bad_levels_are_counted_not_fatal() {
    let mut run = start(|_| {}).await;
    run.both_snapshots().await;
    let handle = run.server.handle();
    handle.send_garbage("this is not json");
    handle.send_garbage(r#"{"channel":"book","type":"update","data":[{"symbol":"XRP/USD","bids":[{"price":2.1,"qty":-5}],"asks":[],"checksum":1}]}"#);
    handle.send_garbage(r#"{"channel":"ohlc","type":"update","data":[]}"#);
    // The negative quantity invalidates XRP/USD's book; it is resynced.
    let ev = run
        .until("book invalid", |e| {
            matches!(&e.payload, Payload::BookInvalid { .. })
        })
        .await;
    let Payload::BookInvalid { reason, .. } = &ev.payload else {
        unreachable!()
    };
    assert!(reason.contains("negative quantity"), "{reason}");
    run.until("resync snapshot", |e| {
        matches!(e.payload, Payload::BookSnapshot(_))
    })
    .await;
    run.until("updates continue", |e| {
        matches!(e.payload, Payload::BookUpdate(_))
    })
    .await;
    let stats = run.stop().await;
    assert_eq!(stats.malformed, 2);
    assert_eq!(stats.unknown, 1);
    assert_eq!(stats.mismatches(), 0);
}

#[tokio::test]
async fn unreachable_server_backs_off_and_shuts_down_cleanly() {
    // Bind then drop a listener to get a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cfg = ClientConfig::new(format!("ws://127.0.0.1:{port}"), pairs());
    cfg.reconnect_initial = Duration::from_millis(10);
    cfg.reconnect_max = Duration::from_millis(40);
    let bus = EventBus::new(1024);
    let mut events = bus.subscribe(KindSet::market_data());
    let shutdown = CancellationToken::new();
    let mut client = MarketClient::new(cfg).unwrap();
    let task = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            client
                .run(bus, Arc::new(ManualClock::default()), shutdown)
                .await
        })
    };
    let mut attempts = 0;
    while attempts < 3 {
        let ev = tokio::time::timeout(WAIT, events.recv())
            .await
            .unwrap()
            .unwrap();
        if let Payload::Connection {
            state: ConnectionState::Disconnected,
            detail,
        } = &ev.payload
        {
            assert!(detail.contains("connect failed"), "{detail}");
            attempts += 1;
        }
    }
    shutdown.cancel();
    tokio::time::timeout(WAIT, task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn record_writes_a_recording_that_verifies() {
    let server = SimServer::start(&generate(Scenario::Paper), SimConfig::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("rec.jsonl");
    let shutdown = CancellationToken::new();
    let task = {
        let (url, out, shutdown) = (server.url(), out.clone(), shutdown.clone());
        tokio::spawn(
            async move { gf_market::record::record(&url, &pairs(), 10, &out, shutdown).await },
        )
    };
    // Record until a few hundred messages are on disk.
    let deadline = tokio::time::Instant::now() + WAIT;
    while server.handle().messages_sent() < 400 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "server sent too little"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shutdown.cancel();
    let stats = task.await.unwrap().unwrap();
    assert_eq!(stats.mismatches(), 0);
    let report = gf_market::verify::verify_recording(&out).unwrap();
    assert!(report.passed(), "{report}");
    assert!(report.updates_verified() > 100, "{report}");
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.lines().next().unwrap().contains("\"status\""));
    server.shutdown().await;
}

/// Every exchange time stamp in a recording, in order.
fn timestamps(recording: &[u8]) -> Vec<chrono::DateTime<chrono::Utc>> {
    const KEY: &str = "\"timestamp\":\"";
    let text = String::from_utf8_lossy(recording);
    text.split(KEY)
        .skip(1)
        .filter_map(|rest| rest.split('"').next()?.parse().ok())
        .collect()
}

#[tokio::test]
async fn ingest_latency_is_the_clock_at_receipt_minus_the_exchange_time_stamp() {
    let recording = generate(Scenario::Paper);
    let stamps = timestamps(&recording);
    assert!(!stamps.is_empty());
    // A clock standing a day after the recording's start: every message arrives at it.
    let now = stamps[0] + chrono::Duration::days(1);
    let log = Arc::new(gf_core::latency::LatencyLog::default());
    let mut run = start_with(
        |_| {},
        ManualClock::new(now),
        Some(log.clone() as gf_core::SharedLatency),
    )
    .await;
    run.both_snapshots().await;
    let mut updates = 0;
    while updates < 100 {
        let ev = run.until("updates", |_| true).await;
        if matches!(ev.payload, Payload::BookUpdate(_)) {
            updates += 1;
        }
    }
    run.stop().await;

    let expected: std::collections::BTreeSet<u64> = stamps
        .iter()
        .map(|t| gf_core::latency::micros_between(*t, now))
        .collect();
    let ingest = log.of("market_ingest");
    // One message in sixteen is timed.
    assert!(ingest.len() >= 5, "{} samples", ingest.len());
    for us in &ingest {
        assert!(
            expected.contains(us),
            "{us} µs is no message's age at receipt"
        );
    }
    // Every sampled text message, time-stamped or not (subscription acks, heartbeats), is
    // applied and timed.
    assert!(log.of("book_applied").len() >= ingest.len());
}
