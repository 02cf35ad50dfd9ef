//! The fleet's halt conditions, registered with this node's halt coordinator like any
//! other: a breach halts this node (gate closed, its own halt behaviour), and while one is
//! breached the node's resume is refused.
//!
//! - [`FleetHaltCondition`] (`fleet_halt`): the fleet halt record is active, or has never
//!   been read (a node that cannot read the bucket does not know whether the fleet is
//!   halted, so it is).
//! - [`PartitionCondition`] (`fleet_partition`): NATS has not answered for longer than
//!   `fleet.partition_halt_secs`.
//! - [`FleetSumCondition`]: `fleet_total_drawdown` and `fleet_exposure`: the fleet's summed figures from the heartbeats, this node's own
//!   taken live from its portfolio. Every node evaluates them (no leader to lose); a halt
//!   they cause is escalated to the fleet.

use chrono::{DateTime, Utc};
use gf_core::{Event, KindSet};
use gf_halt::{Condition, EvalContext, ItemSpec};
use rust_decimal::Decimal;

use crate::view::{FleetView, Heartbeat};

/// Id of [`FleetHaltCondition`].
pub const FLEET_HALT: &str = "fleet_halt";
/// Id of [`PartitionCondition`].
pub const FLEET_PARTITION: &str = "fleet_partition";
/// Id of the [`FleetSumCondition`] over drawdown ([`FleetSum::TotalDrawdown`]).
pub const FLEET_TOTAL_DRAWDOWN: &str = "fleet_total_drawdown";
/// Id of the [`FleetSumCondition`] over exposure ([`FleetSum::Exposure`]).
pub const FLEET_EXPOSURE: &str = "fleet_exposure";

/// `fleet_halt`: 1 while the fleet halt is active or unknown, else 0 (limit 0).
#[derive(Debug)]
pub struct FleetHaltCondition {
    view: FleetView,
    detail: Option<String>,
}

impl FleetHaltCondition {
    /// Reads `view`.
    #[must_use]
    pub fn new(view: FleetView) -> Self {
        Self { view, detail: None }
    }
}

impl Condition for FleetHaltCondition {
    fn id(&self) -> &str {
        FLEET_HALT
    }
    fn name(&self) -> &str {
        "fleet halt"
    }
    fn threshold(&self) -> Decimal {
        Decimal::ZERO
    }
    fn kinds(&self) -> KindSet {
        KindSet::NONE
    }
    fn observe(&mut self, _event: &Event, ctx: &EvalContext<'_>) -> Decimal {
        self.sample(ctx)
    }
    fn sample(&mut self, _ctx: &EvalContext<'_>) -> Decimal {
        match self.view.halt() {
            None => {
                self.detail = Some(
                    "the fleet halt record could not be read (NATS unreachable): the fleet may be halted"
                        .into(),
                );
                Decimal::ONE
            }
            Some(r) if r.active => {
                self.detail = Some(format!("{} by {} on {}", r.reason, r.by, r.node));
                Decimal::ONE
            }
            Some(_) => {
                self.detail = None;
                Decimal::ZERO
            }
        }
    }
    fn detail(&self) -> Option<String> {
        self.detail.clone()
    }
    fn recovery_items(&self) -> Vec<ItemSpec> {
        vec![ItemSpec::new(
            "confirm_fleet_halt_cleared",
            "Confirm an administrator cleared the fleet halt (gf-daemon fleet status) and why it was raised",
        )]
    }
}

/// `fleet_partition`: seconds since NATS last answered (limit `fleet.partition_halt_secs`).
#[derive(Debug)]
pub struct PartitionCondition {
    view: FleetView,
    limit_secs: u64,
}

impl PartitionCondition {
    /// Reads `view`, breached after `limit_secs` of silence.
    #[must_use]
    pub fn new(view: FleetView, limit_secs: u64) -> Self {
        Self { view, limit_secs }
    }
}

impl Condition for PartitionCondition {
    fn id(&self) -> &str {
        FLEET_PARTITION
    }
    fn name(&self) -> &str {
        "fleet unreachable, seconds"
    }
    fn threshold(&self) -> Decimal {
        Decimal::from(self.limit_secs)
    }
    fn kinds(&self) -> KindSet {
        KindSet::NONE
    }
    fn observe(&mut self, _event: &Event, ctx: &EvalContext<'_>) -> Decimal {
        self.sample(ctx)
    }
    fn sample(&mut self, ctx: &EvalContext<'_>) -> Decimal {
        Decimal::new(self.view.silence(ctx.now).num_milliseconds(), 3)
    }
    fn detail(&self) -> Option<String> {
        Some(match self.view.last_contact() {
            Some(t) => format!("NATS last answered at {}", t.to_rfc3339()),
            None => "NATS has not answered since start".into(),
        })
    }
    fn recovery_items(&self) -> Vec<ItemSpec> {
        vec![ItemSpec::new(
            "confirm_fleet_reachable",
            "Confirm NATS is reachable again and read the fleet state (gf-daemon fleet status)",
        )]
    }
}

/// Builds this node's heartbeat figures from its portfolio now.
pub type OwnFigures = Box<dyn Fn(&EvalContext<'_>, DateTime<Utc>) -> Heartbeat + Send>;

/// Which summed figure a [`FleetSumCondition`] watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FleetSum {
    /// `fleet_total_drawdown`: the fleet's summed drawdown from its nodes' peaks, percent.
    TotalDrawdown,
    /// `fleet_exposure`: the fleet's summed open exposure, quote currency.
    Exposure,
}

/// A limit on a figure summed over the fleet's heartbeats, this node's own figures taken
/// live: `fleet_total_drawdown` or `fleet_exposure` ([`FleetSum`]). Nodes in another
/// quote currency cannot be summed: that is a breach naming them.
pub struct FleetSumCondition {
    sum: FleetSum,
    view: FleetView,
    limit: Decimal,
    own: OwnFigures,
    detail: Option<String>,
}

impl std::fmt::Debug for FleetSumCondition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetSumCondition")
            .field("sum", &self.sum)
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

impl FleetSumCondition {
    /// `sum` over the heartbeats in `view` against `limit`, with this node's figures from
    /// `own`.
    #[must_use]
    pub fn new(sum: FleetSum, view: FleetView, limit: Decimal, own: OwnFigures) -> Self {
        Self {
            sum,
            view,
            limit,
            own,
            detail: None,
        }
    }
}

impl Condition for FleetSumCondition {
    fn id(&self) -> &str {
        match self.sum {
            FleetSum::TotalDrawdown => FLEET_TOTAL_DRAWDOWN,
            FleetSum::Exposure => FLEET_EXPOSURE,
        }
    }
    fn name(&self) -> &str {
        match self.sum {
            FleetSum::TotalDrawdown => "fleet total drawdown %",
            FleetSum::Exposure => "fleet exposure",
        }
    }
    fn threshold(&self) -> Decimal {
        self.limit
    }
    fn kinds(&self) -> KindSet {
        KindSet::NONE
    }
    fn observe(&mut self, _event: &Event, ctx: &EvalContext<'_>) -> Decimal {
        self.sample(ctx)
    }
    fn sample(&mut self, ctx: &EvalContext<'_>) -> Decimal {
        let own = (self.own)(ctx, ctx.now);
        let t = self.view.totals(Some(&own));
        if !t.mixed_quotes.is_empty() {
            self.detail = Some(format!(
                "cannot sum the fleet: quote currency other than {} at {}",
                own.quote,
                t.mixed_quotes.join(", ")
            ));
            return self.limit + Decimal::ONE;
        }
        match self.sum {
            FleetSum::TotalDrawdown => {
                self.detail = Some(format!(
                    "{} nodes: equity {} of peaks {}",
                    t.nodes, t.equity, t.peak_equity
                ));
                t.drawdown_pct
            }
            FleetSum::Exposure => {
                self.detail = Some(format!("{} nodes", t.nodes));
                t.exposure
            }
        }
    }
    fn detail(&self) -> Option<String> {
        self.detail.clone()
    }
    fn recovery_items(&self) -> Vec<ItemSpec> {
        vec![match self.sum {
            FleetSum::TotalDrawdown => ItemSpec::new(
                "review_fleet_losses",
                "Review every node's losses (gf-daemon fleet status) before resuming",
            ),
            FleetSum::Exposure => ItemSpec::new(
                "review_fleet_exposure",
                "Review every node's open positions (gf-daemon fleet status) before resuming",
            ),
        }]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gf_api::FleetHaltRecord;
    use gf_risk::PortfolioView;
    use rust_decimal_macros::dec;

    #[derive(Debug)]
    struct Flat;
    impl PortfolioView for Flat {
        fn equity(&self) -> Decimal {
            dec!(1000)
        }
        fn peak_equity(&self) -> Decimal {
            dec!(1000)
        }
        fn total_drawdown_pct(&self) -> Decimal {
            Decimal::ZERO
        }
        fn daily_drawdown_pct(&self) -> Decimal {
            Decimal::ZERO
        }
        fn consecutive_losses(&self) -> u32 {
            0
        }
        fn positions(&self) -> Vec<gf_core::Position> {
            Vec::new()
        }
        fn exposure(&self) -> Decimal {
            dec!(100)
        }
        fn volatility_pct(&self, _pair: &gf_core::Pair) -> Option<Decimal> {
            None
        }
    }

    fn own() -> OwnFigures {
        Box::new(|ctx, now| Heartbeat {
            node: "me".into(),
            state: gf_core::HaltState::Running,
            halt_reason: None,
            breached: Vec::new(),
            equity: ctx.portfolio.equity(),
            peak_equity: ctx.portfolio.peak_equity(),
            drawdown_pct: ctx.portfolio.total_drawdown_pct(),
            exposure: ctx.portfolio.exposure(),
            quote: "USD".into(),
            at: now,
        })
    }

    fn ctx(now: DateTime<Utc>) -> EvalContext<'static> {
        EvalContext {
            now,
            portfolio: &Flat,
        }
    }

    use crate::view::tests::hb as other;

    #[test]
    fn fleet_halt_is_breached_while_unknown_or_active_and_clear_once_cleared() {
        let view = FleetView::new(DateTime::UNIX_EPOCH);
        let mut c = FleetHaltCondition::new(view.clone());
        let now = DateTime::UNIX_EPOCH;
        assert_eq!(c.sample(&ctx(now)), Decimal::ONE, "unknown is halted");
        assert!(c.detail().unwrap().contains("could not be read"));
        view.set_halt(FleetHaltRecord {
            active: true,
            reason: "desk loss".into(),
            by: "operator:alice".into(),
            node: "n1".into(),
            ..FleetHaltRecord::default()
        });
        assert_eq!(c.sample(&ctx(now)), Decimal::ONE);
        assert_eq!(c.detail().unwrap(), "desk loss by operator:alice on n1");
        view.set_halt(FleetHaltRecord::default());
        assert_eq!(c.sample(&ctx(now)), Decimal::ZERO);
        assert!(c.detail().is_none());
    }

    #[test]
    fn partition_counts_seconds_of_silence_against_the_limit() {
        let start = DateTime::UNIX_EPOCH;
        let view = FleetView::new(start);
        let mut c = PartitionCondition::new(view.clone(), 10);
        assert_eq!(c.threshold(), dec!(10));
        let at = |ms| start + chrono::Duration::milliseconds(ms);
        assert_eq!(
            c.sample(&ctx(at(10_000))),
            dec!(10.000),
            "at the limit: not over"
        );
        assert_eq!(c.sample(&ctx(at(10_001))), dec!(10.001));
        view.contact(at(10_001));
        assert_eq!(c.sample(&ctx(at(10_501))), dec!(0.500));
        assert!(c.detail().unwrap().contains("last answered"));
    }

    #[test]
    fn fleet_drawdown_sums_the_heartbeats_with_this_nodes_live_figures() {
        let view = FleetView::new(DateTime::UNIX_EPOCH);
        let mut c = FleetSumCondition::new(FleetSum::TotalDrawdown, view.clone(), dec!(15), own());
        let now = DateTime::UNIX_EPOCH;
        assert_eq!(c.sample(&ctx(now)), Decimal::ZERO, "alone and flat");
        view.set_node(other("a", dec!(500), dec!(1000), dec!(0)));
        // (2000 - 1500) / 2000 = 25 %
        assert_eq!(c.sample(&ctx(now)), dec!(25));
        assert!(c.detail().unwrap().starts_with("2 nodes"));
        let mut eur = other("b", dec!(1), dec!(1), dec!(0));
        eur.quote = "EUR".into();
        view.set_node(eur);
        assert!(
            c.sample(&ctx(now)) > dec!(15),
            "mixed currencies fail closed"
        );
        assert!(c.detail().unwrap().contains("b (EUR)"));
    }

    #[test]
    fn fleet_exposure_sums_every_nodes_exposure() {
        let view = FleetView::new(DateTime::UNIX_EPOCH);
        let mut c = FleetSumCondition::new(FleetSum::Exposure, view.clone(), dec!(250), own());
        let now = DateTime::UNIX_EPOCH;
        assert_eq!(c.sample(&ctx(now)), dec!(100));
        view.set_node(other("a", dec!(1), dec!(1), dec!(120)));
        view.set_node(other("b", dec!(1), dec!(1), dec!(40)));
        assert_eq!(c.sample(&ctx(now)), dec!(260));
        assert!(c.sample(&ctx(now)) > c.threshold());
    }
}
