//! The halt coordinator: conditions, state machine, closure, recovery checklist and journal.
//!
//! This crate is being built under its own issue; it has no public items yet.
