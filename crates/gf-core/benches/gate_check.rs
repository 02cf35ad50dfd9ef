//! The order gate: cost of passing it (enter + drop the permit) and of a refused check.

use criterion::{Criterion, criterion_group, criterion_main};
use gf_core::{OrderPurpose, TradingGate};
use std::hint::black_box;

fn gate_check(c: &mut Criterion) {
    let open = TradingGate::new_open();
    c.bench_function("gate_enter_open", |b| {
        b.iter(|| drop(black_box(open.enter(black_box(OrderPurpose::Normal)))));
    });
    let closed = TradingGate::new_closed();
    c.bench_function("gate_enter_closed_refused", |b| {
        b.iter(|| black_box(closed.enter(black_box(OrderPurpose::Normal))).is_err());
    });
    c.bench_function("gate_is_open", |b| b.iter(|| black_box(open.is_open())));
}

criterion_group!(benches, gate_check);
criterion_main!(benches);
