//! The dashboard payload: one serialisable snapshot of state, conditions, positions,
//! P&L, latency percentiles, alerts and health, pushed to `WS /ws/dashboard` each second.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use gf_core::{HaltState, Position};

use crate::alert::ActiveAlert;
use crate::health::Readiness;
use gf_risk::TradingStats;

use crate::metrics::Percentiles;
use crate::system::SystemSample;

/// A halt condition as last reported by gf-halt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConditionView {
    /// Condition id.
    pub id: String,
    /// Current value.
    pub value: Decimal,
    /// Threshold.
    pub threshold: Decimal,
    /// Whether it is breached.
    pub triggered: bool,
    /// When it was last evaluated.
    pub updated_at: DateTime<Utc>,
}

/// Portfolio figures (money as decimal strings in JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortfolioFigures {
    /// Equity, quote currency.
    pub equity: Decimal,
    /// Drawdown from peak, percent.
    pub total_drawdown_pct: Decimal,
    /// Drawdown from the UTC day's start, percent.
    pub daily_drawdown_pct: Decimal,
    /// Sum of absolute position notionals, quote currency.
    pub exposure: Decimal,
    /// Unrealised P&L of the open positions, quote currency.
    pub unrealised_pnl: Decimal,
    /// Equity now minus equity when the UTC day began (or when monitoring started,
    /// if later), quote currency.
    pub daily_pnl: Decimal,
    /// Open positions.
    pub positions: Vec<Position>,
}

/// Everything the dashboard shows, at one instant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DashboardSnapshot {
    /// When the snapshot was taken.
    pub ts: DateTime<Utc>,
    /// Halt state.
    pub halt_state: HaltState,
    /// Source of the latest halt transition, if any.
    pub halt_source: Option<String>,
    /// Reason of the latest halt transition, if any.
    pub halt_reason: Option<String>,
    /// Halt conditions, by id.
    pub conditions: Vec<ConditionView>,
    /// Portfolio, when a portfolio view is attached.
    pub portfolio: Option<PortfolioFigures>,
    /// Trading statistics (from the portfolio view, or as last set on the metrics).
    pub stats: Option<TradingStats>,
    /// Latency percentiles per stage, microseconds.
    pub latency: BTreeMap<String, Percentiles>,
    /// Alerts firing.
    pub alerts: Vec<ActiveAlert>,
    /// The latest health aggregate.
    pub health: Option<Readiness>,
    /// The latest process sample.
    pub system: Option<SystemSample>,
}
