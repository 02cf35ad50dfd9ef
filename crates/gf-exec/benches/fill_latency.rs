//! Fill detection latency: the mock Kraken executes part of a resting order → the `Fill`
//! is on the bus. Over the real loopback WebSocket (`executions` feed live), and, for
//! comparison, by the REST fallback alone (feed down, `QueryOrders` every second). The
//! client runs with the Starter tier's REST counter (also enforced by the mock) and the
//! lane plan of the default 60 s dead man's switch.
//!
//! Besides criterion's report, each run prints the median and p95 of the individual
//! latencies it measured (`cargo bench -p gf-exec --bench fill_latency`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, criterion_group, criterion_main};
use gf_core::{
    ClientOrderId, EventBus, EventKind, KindSet, OrderRequest, Pair, Payload, Side, Source,
    Subscription, SystemClock, TradingGate,
};
use gf_exec::events::Publisher;
use gf_exec::ratelimit::{Limits, Tier};
use gf_exec::sim::{MockConfig, MockKraken, MockKrakenHandle};
use gf_exec::{
    Exchange, ExecutionsConfig, ExecutionsFeed, FeedState, KrakenClient, KrakenConfig, SyncPlan,
};
use parking_lot::Mutex;
use rust_decimal::Decimal;

/// One resting buy this big, filled one unit per measurement.
const RESTING_QTY: i64 = 50_000;

struct Rig {
    server: MockKrakenHandle,
    client: Arc<KrakenClient>,
    fills: tokio::sync::Mutex<Subscription>,
    resting: Mutex<Option<(String, Decimal)>>,
    samples: Mutex<Vec<Duration>>,
    _tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Rig {
    async fn start(with_feed: bool) -> Self {
        let server = MockKraken::start(MockConfig {
            rest_limits: Some(Limits::rest(Tier::Starter)),
            // Enough for any number of resting orders a run places.
            balances: std::collections::BTreeMap::from([(
                "ZUSD".to_owned(),
                Decimal::from(1_000_000_000_i64),
            )]),
            ..MockConfig::default()
        })
        .await
        .expect("mock");
        let bus = EventBus::new(1 << 14);
        let mut cfg = KrakenConfig::new(server.url());
        cfg.dead_man_refresh = Some(Duration::from_secs(15));
        let client = Arc::new(
            KrakenClient::new(
                cfg,
                Arc::new(server.credentials()),
                Publisher::new(Some(bus.clone()), Arc::new(SystemClock), Source::Exec),
            )
            .expect("client")
            .with_gate(TradingGate::new_open()),
        );
        let fills = bus.subscribe(KindSet::of(&[EventKind::Fill]));
        let plan = SyncPlan {
            while_down: Duration::from_secs(1),
            while_live: Duration::from_secs(20),
        };
        let mut tasks = Vec::new();
        if with_feed {
            let feed = Arc::new(
                ExecutionsFeed::new(Arc::clone(&client), ExecutionsConfig::new(server.ws_url()))
                    .expect("feed"),
            );
            let mut state = feed.state();
            tasks.push(client.spawn_sync_fallback(feed.state(), plan));
            tasks.push(tokio::spawn(async move { feed.run().await }));
            state
                .wait_for(|s: &FeedState| s.live)
                .await
                .expect("feed live");
        } else {
            let (_never, down) = tokio::sync::watch::channel(FeedState::default());
            tasks.push(client.spawn_sync_fallback(down, plan));
        }
        Self {
            server,
            client,
            fills: tokio::sync::Mutex::new(fills),
            resting: Mutex::new(None),
            samples: Mutex::new(Vec::new()),
            _tasks: tasks,
        }
    }

    /// The resting order's txid, placing a new one when the last is used up.
    async fn resting(&self) -> String {
        let current = self.resting.lock().clone();
        if let Some((txid, left)) = current
            && left >= Decimal::ONE
        {
            return txid;
        }
        let n = self.samples.lock().len();
        let ack = self
            .client
            .place_order(&OrderRequest::limit(
                ClientOrderId::new(format!("bench-{n}")),
                Pair::new("XRP/USD").expect("pair"),
                Side::Buy,
                Decimal::from(RESTING_QTY),
                Decimal::new(4, 1),
            ))
            .await
            .expect("resting order");
        let txid = ack.order_id.to_string();
        *self.resting.lock() = Some((txid.clone(), Decimal::from(RESTING_QTY)));
        txid
    }

    /// One execution → its fill on the bus.
    async fn once(&self) -> Duration {
        let txid = self.resting().await;
        let mut fills = self.fills.lock().await;
        let started = Instant::now();
        assert!(
            self.server
                .fill_order(&txid, Decimal::ONE, Decimal::new(4, 1))
        );
        loop {
            let ev = fills.recv().await.expect("bus");
            if matches!(&ev.payload, Payload::Fill(f) if f.order_id.as_str() == txid) {
                break;
            }
        }
        let took = started.elapsed();
        if let Some((_, left)) = self.resting.lock().as_mut() {
            *left -= Decimal::ONE;
        }
        self.samples.lock().push(took);
        took
    }

    fn report(&self, name: &str) {
        let mut all = self.samples.lock().clone();
        if all.is_empty() {
            return;
        }
        all.sort();
        let at = |q: f64| {
            let i = ((all.len() - 1) as f64 * q).round() as usize;
            all[i.min(all.len() - 1)]
        };
        eprintln!(
            "{name}: {} fills, median {:?}, p95 {:?}, max {:?}",
            all.len(),
            at(0.5),
            at(0.95),
            all[all.len() - 1]
        );
    }
}

fn fill_latency(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");

    let pushed = Arc::new(rt.block_on(Rig::start(true)));
    let mut group = c.benchmark_group("fill_detection");
    group.sample_size(50);
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("executions_ws", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let rig = Arc::clone(&pushed);
            async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    total += rig.once().await;
                }
                total
            }
        });
    });
    pushed.report("fill_detection/executions_ws");

    let polled = Arc::new(rt.block_on(Rig::start(false)));
    // Polling takes seconds per fill: few samples, the same iteration count in each.
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.bench_function("rest_fallback_1s", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let rig = Arc::clone(&polled);
            async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    total += rig.once().await;
                }
                total
            }
        });
    });
    polled.report("fill_detection/rest_fallback_1s");
    group.finish();
}

criterion_group!(benches, fill_latency);
criterion_main!(benches);
