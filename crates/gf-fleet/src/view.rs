//! What this node knows of the fleet: the fleet halt record, every node's newest heartbeat
//! and when NATS last answered. The NATS task writes it; the fleet conditions and the API
//! read it. Shared, cheap to clone.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use gf_api::FleetHaltRecord;
use parking_lot::Mutex;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

/// One node's heartbeat as it travels in the nodes bucket (`gf_fleet_<name>_nodes`, key =
/// node id). Figures are exact decimals (sent as strings).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// The node's id.
    pub node: String,
    /// Its halt state.
    pub state: gf_core::HaltState,
    /// Why it is halted, when it is.
    #[serde(default)]
    pub halt_reason: Option<String>,
    /// Its conditions breached now.
    #[serde(default)]
    pub breached: Vec<String>,
    /// Equity, quote currency.
    pub equity: Decimal,
    /// Peak equity, quote currency.
    pub peak_equity: Decimal,
    /// Drawdown from its peak, percent.
    pub drawdown_pct: Decimal,
    /// Open exposure, quote currency.
    pub exposure: Decimal,
    /// Its quote currency.
    pub quote: String,
    /// When it was sent, by the sender's clock.
    pub at: DateTime<Utc>,
}

/// The fleet's summed figures ([`FleetView::totals`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Totals {
    /// Summed equity.
    pub equity: Decimal,
    /// Summed peak equity.
    pub peak_equity: Decimal,
    /// `(Σ peak − Σ equity) / Σ peak`, percent. Each node's peak is its own high-water
    /// mark, reached at its own time, so the sum of peaks is at least the fleet's own peak:
    /// the figure overstates the fleet's drawdown, never understates it.
    pub drawdown_pct: Decimal,
    /// Summed open exposure.
    pub exposure: Decimal,
    /// Nodes counted.
    pub nodes: usize,
    /// Nodes whose quote currency differs from the first one's: their figures cannot be
    /// summed, and the fleet conditions treat that as a breach.
    pub mixed_quotes: Vec<String>,
}

#[derive(Debug, Default)]
struct Inner {
    /// `None` until the halt bucket has been read once.
    halt: Option<FleetHaltRecord>,
    nodes: BTreeMap<String, Heartbeat>,
    last_contact: Option<DateTime<Utc>>,
}

/// What this node knows of the fleet. Cheap to clone.
#[derive(Debug, Clone)]
pub struct FleetView {
    inner: Arc<Mutex<Inner>>,
    started: DateTime<Utc>,
    changed: Arc<Notify>,
}

impl FleetView {
    /// Empty: the halt record not read yet, no heartbeats, no contact since `started`.
    #[must_use]
    pub fn new(started: DateTime<Utc>) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner::default())),
            started,
            changed: Arc::new(Notify::new()),
        }
    }

    /// The fleet halt record, `None` until the bucket has been read once.
    #[must_use]
    pub fn halt(&self) -> Option<FleetHaltRecord> {
        self.inner.lock().halt.clone()
    }

    /// `Some(true)` while the fleet is halted, `None` while unknown (never read).
    #[must_use]
    pub fn fleet_halted(&self) -> Option<bool> {
        self.inner.lock().halt.as_ref().map(|h| h.active)
    }

    /// Records the halt record read from the bucket (an absent key is an inactive record).
    pub fn set_halt(&self, record: FleetHaltRecord) {
        self.inner.lock().halt = Some(record);
        self.changed.notify_waiters();
    }

    /// As [`FleetView::set_halt`], unless the view holds a newer revision already.
    pub fn set_halt_if_newer(&self, record: FleetHaltRecord) {
        {
            let mut g = self.inner.lock();
            if g.halt
                .as_ref()
                .is_some_and(|h| h.revision > record.revision)
            {
                return;
            }
            g.halt = Some(record);
        }
        self.changed.notify_waiters();
    }

    /// Records a heartbeat (this node's own included).
    pub fn set_node(&self, hb: Heartbeat) {
        self.inner.lock().nodes.insert(hb.node.clone(), hb);
        self.changed.notify_waiters();
    }

    /// Forgets a node whose heartbeat was deleted from the bucket.
    pub fn remove_node(&self, node: &str) {
        self.inner.lock().nodes.remove(node);
        self.changed.notify_waiters();
    }

    /// NATS answered at `now`.
    pub fn contact(&self, now: DateTime<Utc>) {
        {
            let mut g = self.inner.lock();
            if g.last_contact.is_none_or(|t| t < now) {
                g.last_contact = Some(now);
            }
        }
        self.changed.notify_waiters();
    }

    /// When NATS last answered.
    #[must_use]
    pub fn last_contact(&self) -> Option<DateTime<Utc>> {
        self.inner.lock().last_contact
    }

    /// How long NATS has not answered at `now`: since the last contact, or since start.
    #[must_use]
    pub fn silence(&self, now: DateTime<Utc>) -> chrono::Duration {
        let since = self.inner.lock().last_contact.unwrap_or(self.started);
        (now - since).max(chrono::Duration::zero())
    }

    /// Every node's newest heartbeat, by id.
    #[must_use]
    pub fn nodes(&self) -> Vec<Heartbeat> {
        self.inner.lock().nodes.values().cloned().collect()
    }

    /// The fleet's summed figures, with `own` (this node's figures now) in place of its
    /// own heartbeat.
    #[must_use]
    pub fn totals(&self, own: Option<&Heartbeat>) -> Totals {
        let g = self.inner.lock();
        let mut all: Vec<&Heartbeat> = g
            .nodes
            .values()
            .filter(|h| own.is_none_or(|o| o.node != h.node))
            .collect();
        if let Some(o) = own {
            all.push(o);
        }
        sum(&all)
    }

    /// Resolves on the next change of the halt record, a heartbeat or a contact with
    /// NATS. Create it **before** looking at the view: it receives every change from its
    /// creation on, even before it is first polled.
    pub fn changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.changed.notified()
    }
}

fn sum(all: &[&Heartbeat]) -> Totals {
    let mut t = Totals::default();
    let Some(first) = all.first() else {
        return t;
    };
    for h in all {
        if h.quote != first.quote {
            t.mixed_quotes.push(format!("{} ({})", h.node, h.quote));
            continue;
        }
        t.equity += h.equity;
        t.peak_equity += h.peak_equity.max(h.equity);
        t.exposure += h.exposure.abs();
        t.nodes += 1;
    }
    if t.peak_equity > Decimal::ZERO {
        t.drawdown_pct = ((t.peak_equity - t.equity) / t.peak_equity * Decimal::ONE_HUNDRED)
            .max(Decimal::ZERO)
            .round_dp(6);
    }
    t
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    pub(crate) fn hb(node: &str, equity: Decimal, peak: Decimal, exposure: Decimal) -> Heartbeat {
        Heartbeat {
            node: node.into(),
            state: gf_core::HaltState::Running,
            halt_reason: None,
            breached: Vec::new(),
            equity,
            peak_equity: peak,
            drawdown_pct: Decimal::ZERO,
            exposure,
            quote: "USD".into(),
            at: DateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn totals_sum_equity_peaks_and_exposure_and_replace_the_own_heartbeat() {
        let v = FleetView::new(DateTime::UNIX_EPOCH);
        v.set_node(hb("a", dec!(900), dec!(1000), dec!(50)));
        v.set_node(hb("b", dec!(1000), dec!(1000), dec!(-30)));
        v.set_node(hb("me", dec!(1), dec!(1), dec!(0)));
        let own = hb("me", dec!(800), dec!(1000), dec!(20));
        let t = v.totals(Some(&own));
        assert_eq!(t.nodes, 3);
        assert_eq!(t.equity, dec!(2700));
        assert_eq!(t.peak_equity, dec!(3000));
        assert_eq!(t.drawdown_pct, dec!(10));
        assert_eq!(
            t.exposure,
            dec!(100),
            "exposure counts short and long alike"
        );
        assert!(t.mixed_quotes.is_empty());
    }

    #[test]
    fn a_node_in_another_quote_currency_is_named_not_summed() {
        let v = FleetView::new(DateTime::UNIX_EPOCH);
        v.set_node(hb("a", dec!(900), dec!(1000), dec!(50)));
        let mut eur = hb("b", dec!(10), dec!(10), dec!(5));
        eur.quote = "EUR".into();
        v.set_node(eur);
        let t = v.totals(None);
        assert_eq!(t.nodes, 1);
        assert_eq!(t.mixed_quotes, vec!["b (EUR)".to_string()]);
    }

    #[test]
    fn silence_counts_from_start_until_the_first_contact() {
        let start = DateTime::UNIX_EPOCH;
        let v = FleetView::new(start);
        let later = start + chrono::Duration::seconds(5);
        assert_eq!(v.silence(later), chrono::Duration::seconds(5));
        v.contact(later);
        assert_eq!(v.silence(later), chrono::Duration::zero());
        v.contact(start);
        assert_eq!(
            v.last_contact(),
            Some(later),
            "contact never goes back in time"
        );
        assert_eq!(v.fleet_halted(), None, "unknown until read");
        v.set_halt(FleetHaltRecord {
            active: true,
            ..FleetHaltRecord::default()
        });
        assert_eq!(v.fleet_halted(), Some(true));
        v.set_halt(FleetHaltRecord {
            active: true,
            revision: 5,
            ..FleetHaltRecord::default()
        });
        v.set_halt_if_newer(FleetHaltRecord {
            revision: 4,
            ..FleetHaltRecord::default()
        });
        assert_eq!(v.fleet_halted(), Some(true), "an older value is ignored");
        v.set_halt_if_newer(FleetHaltRecord {
            revision: 6,
            ..FleetHaltRecord::default()
        });
        assert_eq!(v.fleet_halted(), Some(false));
        v.set_halt(FleetHaltRecord {
            active: true,
            revision: 1,
            ..FleetHaltRecord::default()
        });
        assert_eq!(
            v.fleet_halted(),
            Some(true),
            "a read always wins (a store started over)"
        );
    }
}
