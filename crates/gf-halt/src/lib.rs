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
//! use gf_exec::NullExchange;
//! use gf_halt::{HaltCoordinator, Journal};
//! use gf_risk::NullPortfolio;
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let gate = TradingGate::new_closed();
//! let clock = Arc::new(ManualClock::default());
//! let journal = Arc::new(Journal::in_memory(clock.clone()).unwrap());
//! let halt = HaltCoordinator::builder(&HaltConfig::default(), journal, gate.clone())
//!     .exchange(Arc::new(NullExchange))
//!     .portfolio(Arc::new(NullPortfolio::default()))
//!     .bus(EventBus::new(1024))
//!     .clock(clock)
//!     .open()
//!     .unwrap();
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
pub use coordinator::{HaltCoordinator, HaltCoordinatorBuilder, HaltOutcome, HaltStatus};
pub use datadir::DataDir;
pub use error::{Error, ResumeRefusal};
pub use journal::{AdoptReport, Entry, Journal, JournalRecord, JournalSummary, adopt};
pub use key::JournalKey;
pub use machine::{HaltInfo, Snapshot};
pub use witness::{UnjournaledHalt, Witness, WitnessRecord};
