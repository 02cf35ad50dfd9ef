//! Benchmarks: the gate check, signing one request, a paper market order against a
//! depth-100 book.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use gf_core::{
    BookSnapshot, ClientOrderId, Clock, Event, Level, ManualClock, OrderRequest, Pair, Payload,
    Side, Source, TradingGate,
};
use gf_exec::events::Publisher;
use gf_exec::sign::api_sign;
use gf_exec::wire::form_encode;
use gf_exec::{Exchange, GatedExchange, PaperConfig, PaperExchange};
use rust_decimal::Decimal;

fn order(id: String, pair: &Pair, qty: Decimal) -> OrderRequest {
    OrderRequest::market(ClientOrderId::new(id), pair.clone(), Side::Buy, qty)
}

fn gate_check(c: &mut Criterion) {
    let order = order(
        "bench-gate".into(),
        &Pair::new("XRP/USD").expect("pair"),
        10.into(),
    );
    let gate = TradingGate::new_open();
    c.bench_function("gate_check_open", |b| {
        b.iter(|| drop(black_box(gate.enter(black_box(&order)))));
    });
    let closed = TradingGate::new_closed();
    c.bench_function("gate_check_closed_refuses", |b| {
        b.iter(|| black_box(closed.enter(black_box(&order))).is_err());
    });
}

fn signing(c: &mut Criterion) {
    let secret = vec![0x5a_u8; 64];
    c.bench_function("sign_add_order", |b| {
        let mut nonce = 1_616_492_376_594_u64;
        b.iter(|| {
            nonce += 1;
            let body = form_encode(&[
                ("nonce", nonce.to_string()),
                ("ordertype", "limit".into()),
                ("pair", "XRPUSD".into()),
                ("price", "0.5123".into()),
                ("type", "buy".into()),
                ("volume", "1250".into()),
                ("cl_ord_id", "gf-000001".into()),
            ]);
            black_box(api_sign("/0/private/AddOrder", nonce, &body, &secret))
        });
    });
}

fn depth_100(clock: &ManualClock, pair: &Pair) -> Event {
    let level = |base: i64, i: i64| Level::new(Decimal::new(base + i, 4), Decimal::from(100 + i));
    Event::new(
        clock.now(),
        Source::Replay,
        Payload::BookSnapshot(BookSnapshot {
            pair: pair.clone(),
            bids: (0..100).map(|i| level(4_999, -i)).collect(),
            asks: (0..100).map(|i| level(5_001, i)).collect(),
            checksum: 0,
        }),
    )
}

fn paper_market_order(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let clock = ManualClock::default();
    let pair = Pair::new("XRP/USD").expect("pair");
    let mut cfg = PaperConfig::default();
    cfg.balances
        .insert("USD".into(), Decimal::from(1_000_000_000_000_i64));
    let publisher = Publisher::new(None, Arc::new(clock.clone()), Source::Paper);
    // The bench keeps its own handle on the paper exchange to feed it books (the gated
    // wrapper offers no way back to it).
    let paper = Arc::new(PaperExchange::new(cfg, publisher.clone()));
    let exchange = GatedExchange::new(paper.clone(), TradingGate::new_open(), publisher);
    let snapshot = depth_100(&clock, &pair);
    let mut n = 0_u64;
    // Sweeps 40 of the 100 ask levels (≈ 4 800 XRP); the book is restored untimed.
    c.bench_function("paper_market_order_depth_100", |b| {
        b.iter_batched(
            || {
                n += 1;
                paper.on_event(&snapshot);
                order(format!("bench-{n}"), &pair, Decimal::from(4_800))
            },
            |order| black_box(rt.block_on(exchange.place_order(&order)).expect("filled")),
            BatchSize::PerIteration,
        );
    });
    c.bench_function("paper_book_snapshot_depth_100", |b| {
        b.iter(|| paper.on_event(black_box(&snapshot)));
    });
}

criterion_group!(benches, gate_check, signing, paper_market_order);
criterion_main!(benches);
