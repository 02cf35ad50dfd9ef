//! `POST /api/v1/orders` latency over loopback (being written).

fn main() {}
