//! The daemon's side of the fleet (`[fleet]`, off by default): joining at start-up before
//! the gate may open, the fleet conditions on this daemon's halt coordinator, the fleet
//! task, and the status the API, dashboard and console show. gf-fleet does the NATS work.
//!
//! Start-up order, so that a node that was offline during a fleet halt comes up halted:
//! connect and read the fleet halt record (retrying for up to `fleet.partition_halt_secs`)
//! → build the daemon (journal restore; the gate may be opened by the restore, but no task
//! that places orders runs yet) → register the fleet conditions and sweep them (a fleet
//! halt in force, or a record that could not be read, halts here) → start the tasks.

use std::sync::Arc;

use anyhow::{Context, Result};
use gf_core::config::{Config, FleetAuth};
use gf_core::{EventKind, KindSet, SharedClock};
use gf_fleet::{Fleet, NatsCredentials, RunContext};
use secrecy::{ExposeSecret, SecretString};

use crate::app::Daemon;

/// Reads the NATS credentials `fleet.auth` names from the `[secrets]` provider's set
/// `fleet.secret_set` (fields `token`, or `user` and `password`).
///
/// # Errors
/// The provider cannot be built or read, or a field is missing.
pub async fn credentials(
    config: &Config,
    env: &crate::live::EnvLookup,
    clock: SharedClock,
) -> Result<NatsCredentials> {
    let f = &config.fleet;
    if f.auth == FleetAuth::None {
        return Ok(NatsCredentials::None);
    }
    let provider = gf_secrets::cli::provider_from_config(
        &config.secrets,
        env,
        clock,
        gf_secrets::cli::Prompt::IfTerminal,
    )
    .context("fleet.auth: building the secret provider")?;
    let set = provider
        .fetch(&f.secret_set)
        .await
        .with_context(|| format!("fleet.auth: reading the secret set {:?}", f.secret_set))?;
    let field = |name: &str| -> Result<SecretString> {
        set.get(name)
            .map(|s| SecretString::from(s.expose_secret().to_owned()))
            .with_context(|| {
                format!(
                    "fleet.auth = {}: the secret set {:?} has no field `{name}`",
                    f.auth.as_str(),
                    f.secret_set
                )
            })
    };
    Ok(match f.auth {
        FleetAuth::None => NatsCredentials::None,
        FleetAuth::Token => NatsCredentials::Token(field("token")?),
        FleetAuth::UserPassword => NatsCredentials::UserPassword {
            user: field("user")?.expose_secret().to_owned(),
            password: field("password")?,
        },
    })
}

/// Joins the fleet when `fleet.enabled`: builds the node and reads the fleet halt record,
/// retrying for up to `fleet.partition_halt_secs`. A node that cannot read it still starts,
/// and its `fleet_halt` condition halts it (the fleet may be halted: it cannot tell).
///
/// # Errors
/// The credentials cannot be read.
pub async fn join(
    config: &Config,
    env: &crate::live::EnvLookup,
    clock: SharedClock,
) -> Result<Option<Fleet>> {
    if !config.fleet.enabled {
        return Ok(None);
    }
    let creds = credentials(config, env, clock.clone()).await?;
    let fleet = Fleet::new(config.fleet.clone(), creds, clock);
    let within = std::time::Duration::from_secs(config.fleet.partition_halt_secs);
    match fleet.connect_within(within).await {
        Ok(()) => tracing::info!(
            fleet = %config.fleet.name,
            node = %config.fleet.node,
            halted = fleet.view().fleet_halted().unwrap_or(true),
            "fleet: joined; fleet halt record read"
        ),
        Err(e) => tracing::error!(
            error = %e,
            "fleet: could not read the fleet halt record; starting halted (fleet_halt) until NATS answers and an operator walks the checklist"
        ),
    }
    Ok(Some(fleet))
}

/// Registers the fleet conditions on the daemon's halt coordinator and sweeps them once:
/// a fleet halt in force (or unknown) halts the node before any task starts.
pub async fn attach(d: &Daemon) {
    let Some(fleet) = d.fleet.as_ref() else {
        return;
    };
    fleet.register_conditions(&d.halt, d.config.halt.behaviour, &quote(d));
    let outcomes = d.halt.sweep().await;
    if !outcomes.is_empty() {
        tracing::warn!(
            "fleet: starting halted ({})",
            d.halt.status().halt.map(|h| h.reason).unwrap_or_default()
        );
    }
}

fn quote(d: &Daemon) -> String {
    d.portfolio.read(|p| p.quote().to_owned())
}

/// The fleet task's context: the coordinator, the portfolio, the node's halt triggers.
#[must_use]
pub fn run_context(d: &Daemon) -> RunContext {
    RunContext {
        halt: d.halt.clone(),
        portfolio: Arc::new(d.portfolio.clone()),
        quote: quote(d),
        events: d.bus.subscribe(KindSet::of(&[EventKind::HaltTriggered])),
        shutdown: d.shutdown.clone(),
        events_closed: false,
    }
}

/// The fleet as this node sees it (`enabled: false` when `[fleet]` is off).
#[must_use]
pub fn status(d: &Daemon) -> gf_api::FleetStatus {
    match d.fleet.as_ref() {
        None => gf_api::FleetStatus {
            enabled: false,
            fleet: d.config.fleet.name.clone(),
            node: d.config.fleet.node.clone(),
            partition_halt_secs: d.config.fleet.partition_halt_secs,
            ..gf_api::FleetStatus::default()
        },
        Some(fleet) => {
            let own = fleet.heartbeat_of(&d.halt, &d.portfolio, &quote(d));
            fleet.status(Some(&own))
        }
    }
}

/// Puts the fleet's figures into the metrics (`gf_fleet_*`), at every scrape.
pub fn export_metrics(d: &Daemon) {
    if d.fleet.is_none() {
        return;
    }
    let s = status(d);
    #[allow(clippy::cast_precision_loss)] // milliseconds as seconds for a gauge
    let secs = |ms: u64| ms as f64 / 1000.0;
    let ages: Vec<(String, f64)> = s
        .nodes
        .iter()
        .map(|n| (n.node.clone(), secs(n.age_ms)))
        .collect();
    d.monitor.metrics().set_fleet(
        s.connected,
        s.halt.as_ref().is_none_or(|h| h.active),
        s.last_contact_ms.map_or(f64::INFINITY, secs),
        &ages,
    );
}
