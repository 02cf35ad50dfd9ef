//! The order gate: cost of passing it (enter + drop the permit, which records the order's
//! client id for a halt's reconciliation) and of a refused check.

use criterion::{Criterion, criterion_group, criterion_main};
use gf_core::{ClientOrderId, OrderRequest, Pair, Side, TradingGate};
use rust_decimal::Decimal;
use std::hint::black_box;

fn order() -> OrderRequest {
    OrderRequest::market(
        ClientOrderId::new("bench-0001"),
        Pair::new("XRP/USD").expect("pair"),
        Side::Buy,
        Decimal::TEN,
    )
}

fn gate_check(c: &mut Criterion) {
    let order = order();
    let open = TradingGate::new_open();
    c.bench_function("gate_enter_open", |b| {
        b.iter(|| drop(black_box(open.enter(black_box(&order)))));
    });
    let closed = TradingGate::new_closed();
    c.bench_function("gate_enter_closed_refused", |b| {
        b.iter(|| black_box(closed.enter(black_box(&order))).is_err());
    });
    c.bench_function("gate_check_open", |b| {
        b.iter(|| black_box(open.check(black_box(&order))).is_ok());
    });
    c.bench_function("gate_is_open", |b| b.iter(|| black_box(open.is_open())));
}

criterion_group!(benches, gate_check);
criterion_main!(benches);
