//! The backtest report: the run with the kill switch, the same run without it, and what
//! the halts saved — as JSON ([`Report`] serialises) and as one self-contained HTML page
//! ([`Report::html`]: tables and an inline SVG equity curve with halt markers and
//! drawdown shading; no script, no stylesheet or font from anywhere else).

use std::fmt::Write as _;

use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde::{Deserialize, Serialize};

use super::{EquityPoint, Run};

/// Points of an equity curve drawn at most (the run keeps one a second).
const CHART_POINTS: usize = 1200;

/// A backtest with its baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// What was replayed (a file name), for the page's title.
    pub recording: String,
    /// The run with the configured halt conditions.
    pub run: Run,
    /// The same run with every condition disabled, when it was run.
    pub baseline: Option<Baseline>,
}

/// The run without halts, in brief.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Baseline {
    /// Equity at the end.
    pub final_equity: Decimal,
    /// Largest total drawdown, percent.
    pub max_drawdown_pct: Decimal,
    /// Closed round trips.
    pub trades: u64,
    /// Its equity curve.
    pub equity: Vec<EquityPoint>,
}

impl Baseline {
    /// The brief of a run made with halts disabled.
    #[must_use]
    pub fn of(run: &Run) -> Self {
        Self {
            final_equity: run.final_equity,
            max_drawdown_pct: run.max_drawdown_pct,
            trades: run.statistics.count,
            equity: run.equity.clone(),
        }
    }
}

impl Report {
    /// What the halts saved: final equity with them minus without them (`None` without a
    /// baseline). Negative when the kill switch cost money (it sold before a recovery).
    #[must_use]
    pub fn saved(&self) -> Option<Decimal> {
        self.baseline
            .as_ref()
            .map(|b| self.run.final_equity - b.final_equity)
    }

    /// The largest drawdown avoided, percentage points (`None` without a baseline).
    #[must_use]
    pub fn drawdown_avoided_pct(&self) -> Option<Decimal> {
        self.baseline
            .as_ref()
            .map(|b| b.max_drawdown_pct - self.run.max_drawdown_pct)
    }

    /// A few lines for a terminal.
    #[must_use]
    pub fn summary(&self) -> String {
        let r = &self.run;
        let s = &r.statistics;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "backtest {} with {}: {} → {} ({} market events, {} .. {})",
            self.recording,
            r.strategy,
            r.starting_equity.round_dp(2),
            r.final_equity.round_dp(2),
            r.market_events,
            r.start.to_rfc3339(),
            r.end.to_rfc3339()
        );
        let _ = writeln!(
            out,
            "trades {}  win rate {}  profit factor {}  sharpe {}  max drawdown {}%",
            s.count,
            opt(s.win_rate_pct.map(|w| w.round_dp(2)), "%"),
            opt(s.profit_factor.map(|p| p.round_dp(3)), ""),
            opt(s.sharpe.map(|p| p.round_dp(3)), ""),
            r.max_drawdown_pct.round_dp(2)
        );
        if r.halts.is_empty() {
            let _ = writeln!(out, "no halt fired");
        }
        for h in &r.halts {
            let _ = writeln!(
                out,
                "halt at {}: {} ({}) — {}",
                h.at.to_rfc3339(),
                h.source,
                value_vs_threshold(h.value, h.threshold),
                h.closure.as_deref().unwrap_or("closure unfinished")
            );
        }
        if let (Some(b), Some(saved)) = (&self.baseline, self.saved()) {
            let _ = writeln!(
                out,
                "without halts: {} (max drawdown {}%); the halts saved {}",
                b.final_equity.round_dp(2),
                b.max_drawdown_pct.round_dp(2),
                saved.round_dp(2)
            );
        }
        out
    }

    /// The report as one self-contained HTML page.
    #[must_use]
    pub fn html(&self) -> String {
        let r = &self.run;
        let s = &r.statistics;
        let mut h = String::with_capacity(64 * 1024);
        let title = format!("Gal-Friday backtest — {} — {}", self.recording, r.strategy);
        let _ = write!(
            h,
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
             <title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>{}</h1>\n",
            esc(&title),
            esc(&title)
        );
        let _ = writeln!(
            h,
            "<p class=\"sub\">{} .. {} · {} messages · {} market events · halts {}</p>",
            esc(&r.start.to_rfc3339()),
            esc(&r.end.to_rfc3339()),
            r.messages,
            r.market_events,
            if r.halts_enabled { "live" } else { "disabled" }
        );

        h.push_str("<h2>Summary</h2>\n<table class=\"kv\">\n");
        row(
            &mut h,
            "Starting equity",
            &r.starting_equity.round_dp(2).to_string(),
        );
        row(
            &mut h,
            "Final equity",
            &r.final_equity.round_dp(2).to_string(),
        );
        row(&mut h, "Profit / loss", &r.pnl().round_dp(2).to_string());
        row(
            &mut h,
            "Max drawdown",
            &format!("{}%", r.max_drawdown_pct.round_dp(2)),
        );
        row(&mut h, "Trades", &s.count.to_string());
        row(
            &mut h,
            "Win rate",
            &opt(s.win_rate_pct.map(|w| w.round_dp(2)), "%"),
        );
        row(
            &mut h,
            "Profit factor",
            &opt(s.profit_factor.map(|p| p.round_dp(3)), ""),
        );
        row(
            &mut h,
            "Sharpe (daily)",
            &opt(s.sharpe.map(|p| p.round_dp(3)), ""),
        );
        row(
            &mut h,
            "Signals",
            &format!("{} ({} not placed)", r.signals, r.refused),
        );
        if let Some(b) = &self.baseline {
            row(
                &mut h,
                "Without halts: final equity",
                &b.final_equity.to_string(),
            );
            row(
                &mut h,
                "Without halts: max drawdown",
                &format!("{}%", b.max_drawdown_pct.round_dp(2)),
            );
            row(
                &mut h,
                "Saved by the halts",
                &self
                    .saved()
                    .map_or_else(String::new, |d| d.round_dp(2).to_string()),
            );
            row(
                &mut h,
                "Drawdown avoided",
                &self
                    .drawdown_avoided_pct()
                    .map_or_else(String::new, |d| format!("{} points", d.round_dp(2))),
            );
        }
        h.push_str("</table>\n");

        h.push_str("<h2>Equity</h2>\n");
        h.push_str(&self.svg());

        h.push_str("<h2>Halts</h2>\n");
        if r.halts.is_empty() {
            h.push_str("<p>No halt would have fired.</p>\n");
        } else {
            h.push_str(
                "<table>\n<tr><th>Time</th><th>Condition</th><th>Value vs threshold</th>\
                 <th>Reason</th><th>Equity</th><th>Closure</th></tr>\n",
            );
            for x in &r.halts {
                let _ = writeln!(
                    h,
                    "<tr class=\"halt\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    esc(&x.at.to_rfc3339()),
                    esc(&x.source),
                    esc(&value_vs_threshold(x.value, x.threshold)),
                    esc(&x.reason),
                    x.equity.round_dp(2),
                    esc(x.closure.as_deref().unwrap_or("unfinished"))
                );
            }
            h.push_str("</table>\n");
        }

        h.push_str("<h2>Trades</h2>\n");
        if r.trades.is_empty() {
            h.push_str("<p>No round trip closed.</p>\n");
        } else {
            h.push_str(
                "<div class=\"scroll\"><table>\n<tr><th>Opened</th><th>Closed</th><th>Pair</th><th>Side</th>\
                 <th>Qty</th><th>Entry</th><th>Exit</th><th>Net P&amp;L</th></tr>\n",
            );
            for t in &r.trades {
                let class = if t.net_pnl.is_sign_negative() {
                    "loss"
                } else {
                    "win"
                };
                let _ = writeln!(
                    h,
                    "<tr class=\"{class}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    esc(&t.opened_at.to_rfc3339()),
                    esc(&t.closed_at.to_rfc3339()),
                    esc(&t.pair.to_string()),
                    t.side,
                    t.qty,
                    t.avg_entry.round_dp(8),
                    t.avg_exit.round_dp(8),
                    t.net_pnl.round_dp(4)
                );
            }
            h.push_str("</table></div>\n");
        }
        h.push_str(
            "<p class=\"sub\">Generated by <code>gf-daemon backtest</code>: the daemon's own \
             market, risk, gate, paper-exchange and halt code on the recording's event time.</p>\n\
             </body>\n</html>\n",
        );
        h
    }

    /// The equity curve (and the baseline's, dashed), drawdown from the running peak
    /// shaded, and a marker at each halt.
    fn svg(&self) -> String {
        const W: f64 = 960.0;
        const H: f64 = 320.0;
        const PAD: f64 = 48.0;
        // Room on the left for the value labels ("100000.00" at 11 px is ~60 px wide).
        const LEFT: f64 = 88.0;
        // The run keeps a point only when equity changes: a flat tail (after a halt's
        // closure, say) is drawn to the recording's end, not cut off at its last change.
        let to_end = |mut pts: Vec<EquityPoint>| {
            if let Some(last) = pts.last().copied()
                && last.at < self.run.end
            {
                pts.push(EquityPoint {
                    at: self.run.end,
                    equity: last.equity,
                });
            }
            pts
        };
        let run = to_end(thin(&self.run.equity, CHART_POINTS));
        let base = self
            .baseline
            .as_ref()
            .map(|b| to_end(thin(&b.equity, CHART_POINTS)))
            .unwrap_or_default();
        let t0 = self.run.start.timestamp_millis();
        let t1 = self.run.end.timestamp_millis().max(t0 + 1);
        let values = run.iter().chain(base.iter()).map(|p| f(p.equity));
        let (mut lo, mut hi) =
            values.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
        if lo > hi {
            (lo, hi) = (0.0, 1.0);
        }
        if (hi - lo).abs() < f64::EPSILON {
            lo -= 1.0;
            hi += 1.0;
        }
        #[allow(clippy::cast_precision_loss)]
        let x = |ms: i64| LEFT + (ms - t0) as f64 / (t1 - t0) as f64 * (W - LEFT - PAD);
        let y = |v: f64| H - PAD - (v - lo) / (hi - lo) * (H - 2.0 * PAD);
        let mut s = String::new();
        let _ = write!(
            s,
            "<svg id=\"equity\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {W} {H}\" \
             role=\"img\" aria-label=\"equity curve\">\n\
             <rect x=\"0\" y=\"0\" width=\"{W}\" height=\"{H}\" fill=\"#fff\"/>\n"
        );
        // Axes and their labels.
        let _ = writeln!(
            s,
            "<line x1=\"{LEFT}\" y1=\"{0:.1}\" x2=\"{1:.1}\" y2=\"{0:.1}\" stroke=\"#999\"/>\
             <line x1=\"{LEFT}\" y1=\"{PAD}\" x2=\"{LEFT}\" y2=\"{0:.1}\" stroke=\"#999\"/>",
            H - PAD,
            W - PAD
        );
        for (v, anchor) in [(hi, PAD), (lo, H - PAD)] {
            let _ = writeln!(
                s,
                "<text x=\"{:.1}\" y=\"{:.1}\" class=\"axis\" text-anchor=\"end\">{:.2}</text>",
                LEFT - 4.0,
                anchor + 4.0,
                v
            );
        }
        let _ = writeln!(
            s,
            "<text x=\"{LEFT}\" y=\"{:.1}\" class=\"axis\">{}</text>\
             <text x=\"{:.1}\" y=\"{:.1}\" class=\"axis\" text-anchor=\"end\">{}</text>",
            H - PAD + 16.0,
            esc(&self.run.start.to_rfc3339()),
            W - PAD,
            H - PAD + 16.0,
            esc(&self.run.end.to_rfc3339())
        );
        // Drawdown shading: the band between the running peak and equity.
        if run.len() > 1 {
            let mut peak = f64::MIN;
            let mut top = Vec::with_capacity(run.len());
            let mut bottom = Vec::with_capacity(run.len());
            for p in &run {
                let v = f(p.equity);
                peak = peak.max(v);
                let px = x(p.at.timestamp_millis());
                top.push(format!("{px:.1},{:.1}", y(peak)));
                bottom.push(format!("{px:.1},{:.1}", y(v)));
            }
            bottom.reverse();
            let _ = writeln!(
                s,
                "<polygon class=\"drawdown\" points=\"{} {}\" fill=\"#d33\" fill-opacity=\"0.18\" stroke=\"none\"/>",
                top.join(" "),
                bottom.join(" ")
            );
        }
        let line = |pts: &[EquityPoint]| -> String {
            pts.iter()
                .map(|p| format!("{:.1},{:.1}", x(p.at.timestamp_millis()), y(f(p.equity))))
                .collect::<Vec<_>>()
                .join(" ")
        };
        if base.len() > 1 {
            let _ = writeln!(
                s,
                "<polyline class=\"baseline\" points=\"{}\" fill=\"none\" stroke=\"#888\" stroke-dasharray=\"5 4\" stroke-width=\"1.2\"/>",
                line(&base)
            );
        }
        if run.len() > 1 {
            let _ = writeln!(
                s,
                "<polyline class=\"equity\" points=\"{}\" fill=\"none\" stroke=\"#1565c0\" stroke-width=\"1.6\"/>",
                line(&run)
            );
        }
        for (i, hx) in self.run.halts.iter().enumerate() {
            let px = x(hx.at.timestamp_millis());
            // A label past the middle goes left of its line, so it stays in the chart.
            let (lx, anchor) = if px > W / 2.0 {
                (px - 3.0, "end")
            } else {
                (px + 3.0, "start")
            };
            let _ = writeln!(
                s,
                "<g class=\"halt-marker\"><line x1=\"{px:.1}\" y1=\"{PAD}\" x2=\"{px:.1}\" y2=\"{:.1}\" stroke=\"#c62828\" stroke-width=\"1.5\"/>\
                 <text x=\"{:.1}\" y=\"{:.1}\" class=\"marker\" fill=\"#c62828\" text-anchor=\"{anchor}\">halt {}: {}</text>\
                 <title>{}</title></g>",
                H - PAD,
                lx,
                PAD + 12.0 + 14.0 * f64::from(u32::try_from(i % 8).unwrap_or(0)),
                i + 1,
                esc(hx.condition.as_deref().unwrap_or(&hx.source)),
                esc(&format!("{} at {}", hx.reason, hx.at.to_rfc3339()))
            );
        }
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"20\" class=\"axis\" text-anchor=\"end\">\
             <tspan fill=\"#1565c0\">— with halts</tspan>{}</text>",
            W - PAD,
            if base.is_empty() {
                ""
            } else {
                "  <tspan fill=\"#888\">- - without halts</tspan>"
            }
        );
        s.push_str("</svg>\n");
        s
    }
}

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em auto;max-width:1000px;color:#222;padding:0 1em}\
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em}.sub{color:#666;font-size:.9em}\
table{border-collapse:collapse;}.scroll{overflow-x:auto}table{font-size:.9em;margin:.5em 0}td,th{border:1px solid #ddd;padding:.25em .6em;text-align:left}\
th{background:#f4f4f4}.kv td:first-child{font-weight:600}tr.loss td:last-child{color:#c62828}tr.win td:last-child{color:#2e7d32}\
tr.halt{background:#fff3f3}svg{width:100%;height:auto;border:1px solid #ddd}.axis{font-size:11px;fill:#555}.marker{font-size:11px}";

fn row(h: &mut String, k: &str, v: &str) {
    let _ = writeln!(h, "<tr><td>{}</td><td>{}</td></tr>", esc(k), esc(v));
}

fn opt(v: Option<Decimal>, unit: &str) -> String {
    v.map_or_else(|| "n/a".to_owned(), |d| format!("{d}{unit}"))
}

fn value_vs_threshold(value: Option<Decimal>, threshold: Option<Decimal>) -> String {
    match (value, threshold) {
        (Some(v), Some(t)) => format!("{} ≥ {}", v.round_dp(4), t),
        _ => "n/a".to_owned(),
    }
}

fn f(d: Decimal) -> f64 {
    d.to_f64().unwrap_or(0.0)
}

/// At most about `max` points: for each time bucket its lowest and highest point, in
/// time order, so dips survive thinning; the first and last points are kept.
fn thin(points: &[EquityPoint], max: usize) -> Vec<EquityPoint> {
    if points.len() <= max || max < 4 {
        return points.to_vec();
    }
    let buckets = max / 2;
    let per = points.len().div_ceil(buckets);
    let mut out = Vec::with_capacity(max + 2);
    for chunk in points.chunks(per) {
        let lo = chunk.iter().min_by_key(|p| p.equity);
        let hi = chunk.iter().max_by_key(|p| p.equity);
        if let (Some(lo), Some(hi)) = (lo, hi) {
            if lo.at <= hi.at {
                out.extend([*lo, *hi]);
            } else {
                out.extend([*hi, *lo]);
            }
        }
    }
    out.dedup();
    if let (Some(first), Some(last)) = (points.first(), points.last()) {
        if out.first() != Some(first) {
            out.insert(0, *first);
        }
        if out.last() != Some(last) {
            out.push(*last);
        }
    }
    out
}

/// Escapes text for HTML content and attributes.
#[must_use]
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn pt(s: i64, e: i64) -> EquityPoint {
        EquityPoint {
            at: Utc.timestamp_opt(1_700_000_000 + s, 0).unwrap(),
            equity: Decimal::from(e),
        }
    }

    #[test]
    fn escapes_markup() {
        assert_eq!(
            esc(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }

    #[test]
    fn thinning_keeps_the_dip_and_the_ends() {
        let mut pts: Vec<EquityPoint> = (0..10_000).map(|i| pt(i, 1000)).collect();
        pts[5_001].equity = Decimal::from(10);
        let thinned = thin(&pts, 100);
        assert!(thinned.len() <= 102, "{}", thinned.len());
        assert!(thinned.iter().any(|p| p.equity == Decimal::from(10)));
        assert_eq!(thinned.first(), pts.first());
        assert_eq!(thinned.last(), pts.last());
        assert!(thinned.windows(2).all(|w| w[0].at <= w[1].at));
        let few = vec![pt(0, 1), pt(1, 2)];
        assert_eq!(thin(&few, 100), few);
    }
}
