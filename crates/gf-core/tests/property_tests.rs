//! Property tests: every `Event` round-trips through JSON unchanged; `Pair` parsing
//! accepts exactly the valid forms.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use gf_core::{
    AlertStatus, ApiErrorKind, BookSnapshot, BookUpdate, ClientOrderId, ConnectionState, Event,
    EventKind, Fill, HaltSource, HaltState, HealthStatus, Level, OrderId, OrderPurpose,
    OrderRequest, OrderStatus, OrderType, Pair, Payload, Severity, Side, Source, TimeInForce,
};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use rust_decimal::Decimal;

fn decimal() -> impl Strategy<Value = Decimal> {
    (any::<i64>(), 0u32..=12).prop_map(|(m, s)| Decimal::new(m, s))
}

fn ts() -> impl Strategy<Value = DateTime<Utc>> {
    // 1970 .. 2100, nanosecond precision.
    (0i64..4_102_444_800, 0u32..1_000_000_000)
        .prop_map(|(s, n)| DateTime::from_timestamp(s, n).expect("in range"))
}

fn pair() -> impl Strategy<Value = Pair> {
    ("[A-Z][A-Z0-9]{0,6}", "[A-Z][A-Z0-9]{0,6}")
        .prop_filter("base and quote differ", |(b, q)| b != q)
        .prop_map(|(b, q)| Pair::new(&format!("{b}/{q}")).expect("generated valid"))
}

fn side() -> impl Strategy<Value = Side> {
    prop_oneof![Just(Side::Buy), Just(Side::Sell)]
}

fn level() -> impl Strategy<Value = Level> {
    (decimal(), decimal()).prop_map(|(p, q)| Level::new(p, q))
}

fn levels() -> impl Strategy<Value = Vec<Level>> {
    prop::collection::vec(level(), 0..5)
}

fn text() -> impl Strategy<Value = String> {
    "\\PC{0,20}"
}

fn halt_source() -> impl Strategy<Value = HaltSource> {
    let name = "[a-z_]{1,10}";
    prop_oneof![
        name.prop_map(HaltSource::Auto),
        name.prop_map(HaltSource::Api),
        name.prop_map(HaltSource::Console),
        Just(HaltSource::Cli),
        Just(HaltSource::Signal),
        Just(HaltSource::Fleet),
    ]
}

fn halt_state() -> impl Strategy<Value = HaltState> {
    prop_oneof![
        Just(HaltState::Running),
        Just(HaltState::Halting),
        Just(HaltState::Halted),
        Just(HaltState::Recovering),
    ]
}

fn order_request() -> impl Strategy<Value = OrderRequest> {
    (
        "[a-z0-9-]{1,12}",
        pair(),
        side(),
        prop_oneof![Just(OrderType::Market), Just(OrderType::Limit)],
        decimal(),
        prop::option::of(decimal()),
        prop_oneof![Just(TimeInForce::Gtc), Just(TimeInForce::Ioc)],
        any::<bool>(),
        any::<bool>(),
        prop::option::of(any::<i32>()),
        prop_oneof![Just(OrderPurpose::Normal), Just(OrderPurpose::HaltClosure)],
    )
        .prop_map(
            |(id, pair, side, order_type, qty, limit_price, tif, ro, po, ur, purpose)| {
                OrderRequest {
                    client_order_id: ClientOrderId::new(id),
                    pair,
                    side,
                    order_type,
                    qty,
                    limit_price,
                    time_in_force: tif,
                    reduce_only: ro,
                    post_only: po,
                    user_ref: ur,
                    purpose,
                    closure_seal: None,
                }
            },
        )
}

fn order_status() -> impl Strategy<Value = OrderStatus> {
    prop_oneof![
        Just(OrderStatus::Pending),
        Just(OrderStatus::Open),
        Just(OrderStatus::PartiallyFilled),
        Just(OrderStatus::Filled),
        Just(OrderStatus::Cancelled),
        Just(OrderStatus::Rejected),
        Just(OrderStatus::Expired),
    ]
}

fn payload() -> impl Strategy<Value = Payload> {
    let market = prop_oneof![
        (pair(), levels(), levels(), any::<u32>()).prop_map(|(pair, bids, asks, checksum)| {
            Payload::BookSnapshot(BookSnapshot {
                pair,
                bids,
                asks,
                checksum,
            })
        }),
        (
            pair(),
            levels(),
            levels(),
            any::<u32>(),
            prop::option::of(level()),
            prop::option::of(level())
        )
            .prop_map(|(pair, bids, asks, checksum, best_bid, best_ask)| {
                Payload::BookUpdate(BookUpdate {
                    pair,
                    bids: bids.into(),
                    asks: asks.into(),
                    checksum,
                    best_bid,
                    best_ask,
                })
            }),
        (pair(), text()).prop_map(|(pair, reason)| Payload::BookInvalid { pair, reason }),
        (pair(), side(), decimal(), decimal(), any::<u64>()).prop_map(
            |(pair, side, price, qty, trade_id)| Payload::Trade {
                pair,
                side,
                price,
                qty,
                trade_id
            }
        ),
        (pair(), decimal(), decimal(), decimal(), decimal()).prop_map(
            |(pair, bid, ask, last, volume)| Payload::Ticker {
                pair,
                bid,
                ask,
                last,
                volume
            }
        ),
        (pair(), any::<bool>(), any::<u64>(), any::<u64>()).prop_map(
            |(pair, stale, age_ms, threshold_ms)| Payload::Staleness {
                pair,
                stale,
                age_ms,
                threshold_ms
            }
        ),
        (
            prop_oneof![
                Just(ConnectionState::Connecting),
                Just(ConnectionState::Connected),
                Just(ConnectionState::Disconnected)
            ],
            text()
        )
            .prop_map(|(state, detail)| Payload::Connection { state, detail }),
    ];
    let trading = prop_oneof![
        (
            text(),
            pair(),
            side(),
            decimal(),
            prop::option::of(decimal())
        )
            .prop_map(|(strategy, pair, side, entry, stop)| Payload::Signal {
                strategy,
                pair,
                side,
                entry,
                stop
            }),
        order_request().prop_map(Payload::OrderRequested),
        (
            "[a-z0-9]{1,8}",
            prop::option::of("[A-Z0-9-]{1,8}"),
            pair(),
            order_status(),
            decimal(),
            prop::option::of(text())
        )
            .prop_map(
                |(c, o, pair, status, filled_qty, reason)| Payload::OrderUpdate {
                    client_order_id: ClientOrderId::new(c),
                    order_id: o.map(OrderId::new),
                    pair,
                    status,
                    filled_qty,
                    reason,
                }
            ),
        (
            text(),
            "[A-Z0-9-]{1,8}",
            prop::option::of("[a-z0-9]{1,8}"),
            pair(),
            side(),
            decimal(),
            decimal(),
            decimal(),
            ts(),
            prop_oneof![Just(OrderPurpose::Normal), Just(OrderPurpose::HaltClosure)]
        )
            .prop_map(
                |(trade_id, o, c, pair, side, qty, price, fee, ts, purpose)| {
                    Payload::Fill(Fill {
                        trade_id,
                        order_id: OrderId::new(o),
                        client_order_id: c.map(ClientOrderId::new),
                        pair,
                        side,
                        qty,
                        price,
                        fee,
                        ts,
                        purpose,
                    })
                }
            ),
        (
            text(),
            prop_oneof![
                Just(ApiErrorKind::InvalidNonce),
                Just(ApiErrorKind::RateLimit),
                Just(ApiErrorKind::Timeout),
                Just(ApiErrorKind::Other)
            ],
            text(),
            any::<bool>()
        )
            .prop_map(|(endpoint, kind, message, retryable)| Payload::ApiError {
                endpoint,
                kind,
                message,
                retryable
            }),
        (text(), any::<u64>()).prop_map(|(stage, micros)| Payload::Latency { stage, micros }),
    ];
    let control = prop_oneof![
        (halt_source(), text())
            .prop_map(|(source, reason)| Payload::HaltTriggered { source, reason }),
        (halt_state(), halt_state(), halt_source(), text()).prop_map(
            |(from, to, source, reason)| {
                Payload::HaltStateChanged {
                    from,
                    to,
                    source,
                    reason,
                }
            }
        ),
        text().prop_map(|operator| Payload::Resumed { operator }),
        (text(), text(), prop::option::of(text())).prop_map(|(item, operator, note)| {
            Payload::ChecklistStep {
                item,
                operator,
                note,
            }
        }),
        (any::<bool>(), text()).prop_map(|(flat, detail)| Payload::ClosureResult { flat, detail }),
        (text(), decimal(), decimal(), any::<bool>()).prop_map(
            |(id, value, threshold, triggered)| {
                Payload::ConditionValue {
                    id,
                    value,
                    threshold,
                    triggered,
                }
            }
        ),
        (
            text(),
            prop_oneof![
                Just(Severity::Info),
                Just(Severity::Warning),
                Just(Severity::Critical)
            ],
            prop_oneof![Just(AlertStatus::Firing), Just(AlertStatus::Resolved)],
            text()
        )
            .prop_map(|(key, severity, status, summary)| Payload::Alert {
                key,
                severity,
                status,
                summary
            }),
        (
            text(),
            prop_oneof![
                Just(HealthStatus::Healthy),
                Just(HealthStatus::Degraded),
                Just(HealthStatus::Unhealthy)
            ],
            text(),
            any::<u64>()
        )
            .prop_map(|(check, status, message, latency_micros)| Payload::Health {
                check,
                status,
                message,
                latency_micros
            }),
        (text(), text(), prop::option::of(text()), text(), text()).prop_map(
            |(set, provider, version, action, outcome)| Payload::SecretAudit {
                set,
                provider,
                version,
                action,
                outcome
            }
        ),
        (
            prop::sample::select(vec![
                gf_core::event::ExchangeSystem::Online,
                gf_core::event::ExchangeSystem::Maintenance,
                gf_core::event::ExchangeSystem::CancelOnly,
                gf_core::event::ExchangeSystem::PostOnly,
                gf_core::event::ExchangeSystem::Unknown,
            ]),
            text()
        )
            .prop_map(|(system, detail)| Payload::ExchangeStatus { system, detail }),
    ];
    prop_oneof![market, trading, control]
}

fn source() -> impl Strategy<Value = Source> {
    prop_oneof![
        Just(Source::Market),
        Just(Source::Replay),
        Just(Source::Strategy),
        Just(Source::Risk),
        Just(Source::Exec),
        Just(Source::Paper),
        Just(Source::Halt),
        Just(Source::Secrets),
        Just(Source::Monitor),
        Just(Source::Daemon),
        Just(Source::Console),
        Just(Source::Test),
    ]
}

fn event() -> impl Strategy<Value = Event> {
    (ts(), source(), payload()).prop_map(|(ts, source, payload)| Event::new(ts, source, payload))
}

/// An independent statement of the valid pair forms, used as the oracle.
fn is_valid_pair(s: &str) -> bool {
    let Some((base, quote)) = s.split_once('/') else {
        return false;
    };
    let asset_ok = |a: &str| {
        (1..=16).contains(&a.len())
            && a.chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
            && a.chars().any(|c| c.is_ascii_uppercase())
    };
    asset_ok(base) && asset_ok(quote) && base != quote
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn prop_every_event_round_trips_through_json(ev in event()) {
        let json = serde_json::to_string(&ev).unwrap();
        let back: Event = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(&back, &ev);
        // And the JSON names the kind with its stable name.
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(value["kind"].as_str(), Some(ev.kind().name()));
    }

    #[test]
    fn prop_pair_accepts_exactly_the_valid_forms(s in "[A-Za-z0-9/ _.-]{0,20}") {
        prop_assert_eq!(Pair::new(&s).is_ok(), is_valid_pair(&s), "{:?}", s);
    }

    #[test]
    fn prop_pair_accepts_generated_valid_pairs(p in pair()) {
        let again = Pair::new(p.as_str()).unwrap();
        prop_assert_eq!(&again, &p);
        prop_assert_eq!(format!("{}/{}", p.base(), p.quote()), p.to_string());
        let json = serde_json::to_string(&p).unwrap();
        prop_assert_eq!(serde_json::from_str::<Pair>(&json).unwrap(), p);
    }

    #[test]
    fn prop_pair_rejects_arbitrary_unicode_without_panicking(s in "\\PC{0,24}") {
        prop_assert_eq!(Pair::new(&s).is_ok(), is_valid_pair(&s));
    }
}

#[test]
fn the_event_strategy_covers_every_kind() {
    let mut runner = TestRunner::deterministic();
    let strategy = event();
    let mut seen = BTreeSet::new();
    for _ in 0..5_000 {
        seen.insert(strategy.new_tree(&mut runner).unwrap().current().kind());
    }
    let all: BTreeSet<EventKind> = EventKind::ALL.iter().copied().collect();
    assert_eq!(
        seen, all,
        "a Payload variant is missing from the round-trip strategy"
    );
}
