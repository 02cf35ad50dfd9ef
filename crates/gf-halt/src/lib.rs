//! The halt coordinator: conditions, state machine, closure, recovery checklist and journal.
//!
//! - [`condition`]: the [`Condition`] trait, the seven built-in conditions and the
//!   [`ConditionSet`] (a condition is breached when `value > threshold`, strictly).
//! - [`machine`]: the pure state machine `Running → Halting → Halted → Recovering → Running`.
//! - [`closure`]: cancel-all and idempotent reduce-only closure orders with retry.
//! - [`checklist`]: the recovery checklist.
//! - [`journal`]: the SQLite journal, chained with HMAC-SHA256 under a [`JournalKey`]
//!   and witnessed outside the data directory ([`witness`]).
//! - [`datadir`]: the data directory's lock (one daemon per directory) and identity.
//! - [`coordinator`]: [`HaltCoordinator`], which ties them to the gate, the exchange, the
//!   portfolio view, the bus and the clock.
//!
//! This crate is an **API boundary**: research code may embed the conditions and the
//! coordinator (with an in-memory journal and gf-exec's paper exchange) in backtests.
//!
//! ```
//! use std::sync::Arc;
//! use gf_core::{config::HaltConfig, EventBus, HaltSource, HaltState, ManualClock, TradingGate};
//! use gf_halt::Journal;
//! use gf_halt::HaltCoordinator;
//! # use gf_core::{OrderRequest, Position, Pair};
//! # use gf_exec::{DeadManStatus, Exchange, OrderAck, OrderInfo, OrderRef};
//! # use rust_decimal::Decimal;
//! # struct NoExchange;
//! # #[async_trait::async_trait]
//! # impl Exchange for NoExchange {
//! #     async fn place_order(&self, o: &OrderRequest) -> Result<OrderAck, gf_exec::Error> { Err(gf_exec::Error::Halted) }
//! #     async fn cancel_order(&self, _: &OrderRef) -> Result<(), gf_exec::Error> { Ok(()) }
//! #     async fn cancel_all(&self) -> Result<u32, gf_exec::Error> { Ok(0) }
//! #     async fn cancel_all_after(&self, _: u32) -> Result<DeadManStatus, gf_exec::Error> { Ok(DeadManStatus { trigger_at: None }) }
//! #     async fn open_orders(&self) -> Result<Vec<OrderInfo>, gf_exec::Error> { Ok(vec![]) }
//! #     async fn order_status(&self, o: &OrderRef) -> Result<OrderInfo, gf_exec::Error> { Err(gf_exec::Error::UnknownOrder(format!("{o:?}"))) }
//! #     async fn balances(&self) -> Result<std::collections::BTreeMap<String, Decimal>, gf_exec::Error> { Ok(Default::default()) }
//! #     async fn open_positions(&self) -> Result<Vec<Position>, gf_exec::Error> { Ok(vec![]) }
//! #     async fn check(&self) -> Result<(), gf_exec::Error> { Ok(()) }
//! # }
//! # struct Flat;
//! # impl gf_risk::PortfolioView for Flat {
//! #     fn equity(&self) -> Decimal { Decimal::ONE_HUNDRED }
//! #     fn peak_equity(&self) -> Decimal { Decimal::ONE_HUNDRED }
//! #     fn total_drawdown_pct(&self) -> Decimal { Decimal::ZERO }
//! #     fn daily_drawdown_pct(&self) -> Decimal { Decimal::ZERO }
//! #     fn consecutive_losses(&self) -> u32 { 0 }
//! #     fn positions(&self) -> Vec<Position> { vec![] }
//! #     fn exposure(&self) -> Decimal { Decimal::ZERO }
//! #     fn volatility_pct(&self, _: &Pair) -> Option<Decimal> { None }
//! # }
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let gate = TradingGate::new_closed();
//! let clock = Arc::new(ManualClock::default());
//! let halt = HaltCoordinator::open(
//!     &HaltConfig::default(),
//!     Arc::new(Journal::in_memory(clock.clone()).unwrap()),
//!     gate.clone(),
//!     Arc::new(NoExchange),
//!     Arc::new(Flat),
//!     EventBus::new(1024),
//!     clock,
//! )
//! .unwrap();
//! assert!(gate.is_open(), "a fresh journal starts running");
//!
//! let mut state = halt.watch_state();
//! let outcome = halt.halt(HaltSource::Cli, "operator pressed the button").await;
//! assert!(outcome.started && !gate.is_open());
//! state.wait_for(|s| *s == HaltState::Halted).await.unwrap();
//!
//! halt.begin_recovery("alice").await.unwrap();
//! let refused = halt.resume("alice").await.unwrap_err();
//! assert!(refused.to_string().contains("confirm_resume"));
//! for item in halt.checklist().unwrap().missing() {
//!     halt.complete_item(&item, "alice", None).await.unwrap();
//! }
//! halt.resume("alice").await.unwrap();
//! assert!(gate.is_open());
//! assert!(halt.journal().verify().is_ok());
//! # });
//! ```

pub mod checklist;
pub mod closure;
pub mod condition;
pub mod coordinator;
pub mod datadir;
pub mod error;
pub mod journal;
pub mod key;
pub mod machine;
pub mod witness;

pub use checklist::{Checklist, ChecklistItem, ItemSpec};
pub use closure::{ClosureReport, PairClosure, RetryPolicy};
pub use condition::{
    Breach, Condition, ConditionSet, ConditionStatus, DiskSpace, EvalContext, FreeSpaceSampler,
};
pub use coordinator::{HaltCoordinator, HaltOutcome, HaltStatus};
pub use datadir::DataDir;
pub use error::{Error, ResumeRefusal};
pub use journal::{AdoptReport, Entry, Journal, JournalRecord, JournalSummary, adopt};
pub use key::JournalKey;
pub use machine::{HaltInfo, Snapshot};
pub use witness::{UnjournaledHalt, Witness, WitnessRecord};
