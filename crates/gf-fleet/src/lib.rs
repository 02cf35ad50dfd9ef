//! gf-fleet: many Gal-Friday daemons halted as one, over NATS JetStream.
//!
//! Each node (one daemon, `[fleet]` in its config) publishes a heartbeat — its halt state,
//! breached conditions, equity, drawdown and exposure — into a key-value bucket, and
//! watches a second bucket holding the **fleet halt record**. The record is written with
//! compare-and-set, so two nodes breaching at once create one fleet halt.
//!
//! The fleet reaches each node's halt coordinator as ordinary conditions
//! ([`condition`]): `fleet_halt` (the record is active, or could not be read),
//! `fleet_partition` (NATS silent for longer than `fleet.partition_halt_secs`),
//! `fleet_total_drawdown` and `fleet_exposure` (sums over the heartbeats, evaluated by
//! every node). A breach halts the node with its own halt behaviour; while one is breached
//! the node's resume is refused. Local halts whose reason `fleet.escalate` names, and every
//! fleet-condition halt, are written to the fleet ([`Fleet::run`]).
//!
//! Clearing the fleet halt ([`Fleet::clear`]) takes an administrator (two under
//! `fleet.two_person_rule`); each node then walks its own recovery checklist.

pub mod client;
pub mod condition;
pub mod error;
pub mod testing;
pub mod view;

pub use client::{Fleet, NatsCredentials, RunContext, halt_bucket, nodes_bucket, own_figures};
pub use condition::{FleetHaltCondition, FleetSum, FleetSumCondition, PartitionCondition};
pub use error::FleetError;
pub use view::{FleetView, Heartbeat, Totals};
