//! Rendering: [`render`] draws the [`State`] and nothing else — no I/O, no clock, no
//! mutation — so a state always draws the same screen (the snapshot tests rely on it).

use chrono::{DateTime, Utc};
use ratatui::Frame;
use ratatui::layout::{Alignment, Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{
    Block, BorderType, Cell, Clear, LineGauge, Paragraph, Row, Table, TableState, Wrap,
};

use crate::app::{Dialog, Level, Link, Screen, State};
use crate::model::{FleetStatus, GatewayOrder, GatewaySummary, HaltState, JournalRecord, ratio};

/// Amber, for Recovering and warnings.
const AMBER: Color = Color::Yellow;

/// The colour of a halt state: Running green, Halting/Halted red, Recovering amber.
#[must_use]
pub fn state_color(state: HaltState) -> Color {
    match state {
        HaltState::Running => Color::Green,
        HaltState::Halting | HaltState::Halted => Color::Red,
        HaltState::Recovering => AMBER,
        HaltState::Unknown => Color::Gray,
    }
}

/// Every key, by context: (keys, what they do). Help lists all of them; the footer shows
/// those of the current screen.
pub const KEYS: &[(&str, &[(&str, &str)])] = &[
    (
        "Everywhere",
        &[
            ("H", "halt trading: type a reason, Enter"),
            ("R", "resume (once the checklist is done)"),
            ("1 2 3", "Overview, Recovery, Journal"),
            ("Tab/S-Tab", "next / previous screen"),
            ("r", "refresh from the daemon"),
            ("?", "this help"),
            ("q, Ctrl-C", "quit the console (the daemon keeps running)"),
        ],
    ),
    (
        "Recovery",
        &[
            ("↑ ↓ (k j)", "select a checklist item"),
            ("Enter", "complete it (optional note, Enter again)"),
        ],
    ),
    (
        "Journal",
        &[
            ("↑ ↓", "scroll one record"),
            ("PgUp PgDn", "scroll ten records"),
            ("Home End", "newest / oldest"),
        ],
    ),
    (
        "Dialogs",
        &[
            ("Enter", "confirm (halt, complete)"),
            ("Esc", "cancel"),
            ("Backspace", "delete a character"),
        ],
    ),
];

/// Draws the whole console.
pub fn render(frame: &mut Frame<'_>, state: &State) {
    let area = frame.area();
    let banner = u16::from(state.is_disconnected());
    let [header, banner_area, notice, body, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(banner),
        Constraint::Length(1),
        Constraint::Min(0),
        Constraint::Length(2),
    ])
    .areas(area);
    render_header(frame, header, state);
    if banner > 0 {
        render_banner(frame, banner_area, state);
    }
    render_notice(frame, notice, state);
    match state.screen {
        Screen::Overview => render_overview(frame, body, state),
        Screen::Recovery => render_recovery(frame, body, state),
        Screen::Journal => render_journal(frame, body, state),
    }
    render_footer(frame, footer, state);
    match &state.dialog {
        Dialog::None => {}
        Dialog::Halt { reason, error } => render_halt_dialog(frame, area, reason, error.as_deref()),
        Dialog::Complete { title, note, .. } => render_note_dialog(frame, area, title, note),
        Dialog::Help => render_help(frame, area),
    }
}

fn key(k: &str) -> Span<'_> {
    Span::styled(
        format!(" {k} "),
        Style::new()
            .fg(Color::Black)
            .bg(Color::Cyan)
            .add_modifier(Modifier::BOLD),
    )
}

fn render_header(frame: &mut Frame<'_>, area: Rect, state: &State) {
    let mut left = vec![Span::styled(" GAL-FRIDAY ", Style::new().bold().reversed())];
    for (screen, k, name) in Screen::ALL {
        let style = if screen == state.screen {
            Style::new().bold().underlined()
        } else {
            Style::new().dim()
        };
        left.push(Span::raw(" "));
        left.push(Span::styled(format!("{k} {name}"), style));
    }
    frame.render_widget(Paragraph::new(Line::from(left)), area);

    let hs = state.halt_state();
    let who = state.identity.as_ref().map_or_else(
        || "operator ?".to_owned(),
        |i| {
            if i.can_operate() {
                format!("{} ({})", i.name, i.role)
            } else {
                format!("{} ({}: read-only)", i.name, i.role)
            }
        },
    );
    let mut right = vec![Span::raw(format!("{who} "))];
    if area.width >= 110 {
        right.insert(
            0,
            Span::styled(format!("{}  ", state.url), Style::new().dim()),
        );
    }
    right.push(Span::styled(
        format!(" ● {} ", hs.label()),
        Style::new()
            .fg(Color::Black)
            .bg(state_color(hs))
            .add_modifier(Modifier::BOLD),
    ));
    frame.render_widget(
        Paragraph::new(Line::from(right)).alignment(Alignment::Right),
        area,
    );
}

fn render_banner(frame: &mut Frame<'_>, area: Rect, state: &State) {
    let (error, retry) = [&state.status_link, &state.dashboard_link]
        .into_iter()
        .find_map(|l| match l {
            Link::Down {
                error,
                retry_in_secs,
            } => Some((error.as_str(), *retry_in_secs)),
            _ => None,
        })
        .unwrap_or(("", 0));
    let text = format!(
        " ⚠ DAEMON UNREACHABLE — reconnecting in {retry}s — shown state may be stale — {} — {error} ",
        state.url
    );
    frame.render_widget(
        Paragraph::new(text).style(Style::new().fg(Color::White).bg(Color::Red).bold()),
        area,
    );
}

fn render_notice(frame: &mut Frame<'_>, area: Rect, state: &State) {
    let line = if let Some(p) = &state.pending {
        Line::styled(
            format!(" … {p}: waiting for the daemon"),
            Style::new().fg(AMBER),
        )
    } else if let Some(n) = &state.notice {
        let style = match n.level {
            Level::Info => Style::new(),
            Level::Success => Style::new().fg(Color::Green),
            Level::Error => Style::new().fg(Color::Red).bold(),
        };
        Line::styled(format!(" {}", n.text), style)
    } else if !state.have_status {
        Line::styled(" connecting to the daemon…", Style::new().dim())
    } else {
        Line::default()
    };
    frame.render_widget(Paragraph::new(line), area);
}

fn footer_keys(state: &State) -> [Vec<(&'static str, &'static str)>; 2] {
    let global = vec![
        ("1/2/3", "screens"),
        ("r", "refresh"),
        ("?", "help"),
        ("q", "quit"),
    ];
    match (&state.dialog, state.screen) {
        (Dialog::Halt { .. }, _) => [
            vec![
                ("type", "the reason"),
                ("Enter", "HALT NOW"),
                ("Esc", "cancel"),
            ],
            vec![],
        ],
        (Dialog::Complete { .. }, _) => [
            vec![
                ("type", "optional note"),
                ("Enter", "complete"),
                ("Esc", "cancel"),
            ],
            vec![],
        ],
        (Dialog::Help, _) => [vec![("Esc", "close help")], vec![]],
        (Dialog::None, Screen::Overview) => [
            vec![("H", "halt"), ("2", "recovery checklist"), ("R", "resume")],
            global,
        ],
        (Dialog::None, Screen::Recovery) => [
            vec![
                ("↑↓", "select"),
                ("Enter", "complete item"),
                ("R", "resume"),
                ("H", "halt"),
            ],
            global,
        ],
        (Dialog::None, Screen::Journal) => [
            vec![
                ("↑↓", "scroll"),
                ("PgUp/PgDn", "page"),
                ("Home/End", "ends"),
                ("H", "halt"),
            ],
            global,
        ],
    }
}

fn render_footer(frame: &mut Frame<'_>, area: Rect, state: &State) {
    let lines: Vec<Line<'_>> = footer_keys(state)
        .into_iter()
        .map(|keys| {
            let mut spans = Vec::new();
            for (k, what) in keys {
                spans.push(key(k));
                spans.push(Span::raw(format!(" {what}  ")));
            }
            Line::from(spans)
        })
        .collect();
    frame.render_widget(Paragraph::new(lines), area);
}

/// `HH:MM:SS UTC (3m ago)` against the state's clock.
fn when(ts: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    match ts {
        Some(t) => format!("{} UTC ({} ago)", t.format("%H:%M:%S"), age(now - t)),
        None => "-".to_owned(),
    }
}

fn age(d: chrono::TimeDelta) -> String {
    let s = d.num_seconds().max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86_400 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d", s / 86_400),
    }
}

/// 3×5-pixel glyphs, drawn two pixel rows per text row with half blocks.
fn glyph(c: char) -> [&'static str; 5] {
    match c {
        'A' => [".#.", "#.#", "###", "#.#", "#.#"],
        'C' => ["###", "#..", "#..", "#..", "###"],
        'D' => ["##.", "#.#", "#.#", "#.#", "##."],
        'E' => ["###", "#..", "##.", "#..", "###"],
        'G' => ["###", "#..", "#.#", "#.#", "###"],
        'H' => ["#.#", "#.#", "###", "#.#", "#.#"],
        'I' => ["###", ".#.", ".#.", ".#.", "###"],
        'K' => ["#.#", "#.#", "##.", "#.#", "#.#"],
        'L' => ["#..", "#..", "#..", "#..", "###"],
        'N' => ["##.", "#.#", "#.#", "#.#", "#.#"],
        'O' => ["###", "#.#", "#.#", "#.#", "###"],
        'R' => ["##.", "#.#", "##.", "#.#", "#.#"],
        'T' => ["###", ".#.", ".#.", ".#.", ".#."],
        'U' => ["#.#", "#.#", "#.#", "#.#", "###"],
        'V' => ["#.#", "#.#", "#.#", "#.#", ".#."],
        'W' => ["#.#", "#.#", "#.#", "###", "#.#"],
        _ => ["...", "...", "...", "...", "..."],
    }
}

/// `word` in 3-row block letters (4 columns per letter).
#[must_use]
pub fn big_text(word: &str) -> [String; 3] {
    let mut rows = [String::new(), String::new(), String::new()];
    for c in word.chars() {
        let g = glyph(c.to_ascii_uppercase());
        for (r, row) in rows.iter_mut().enumerate() {
            let top = g[2 * r].as_bytes();
            let bottom = g.get(2 * r + 1).map_or(&b"..."[..], |s| s.as_bytes());
            for x in 0..3 {
                row.push(match (top[x] == b'#', bottom[x] == b'#') {
                    (true, true) => '█',
                    (true, false) => '▀',
                    (false, true) => '▄',
                    (false, false) => ' ',
                });
            }
            row.push(' ');
        }
    }
    rows
}

fn state_lines(state: &State) -> Vec<Line<'static>> {
    let halt = state.status.core.halt.as_ref();
    let label = |k: &str, v: String| {
        Line::from(vec![
            Span::styled(format!("{k:<8}"), Style::new().dim()),
            Span::raw(v),
        ])
    };
    let hs = state.halt_state();
    let mut lines = Vec::new();
    match (hs, halt) {
        (HaltState::Unknown, _) => {
            lines.push(Line::raw("No answer from the daemon yet."));
        }
        (HaltState::Running, _) => {
            lines.push(Line::styled(
                "Trading; orders pass the gate.",
                Style::new().fg(Color::Green),
            ));
            if let Some(h) = halt {
                lines.push(label("last", format!("#{} {}", h.id, h.reason)));
                lines.push(label(
                    "resumed",
                    state.status.core.resumed_by.clone().unwrap_or_default(),
                ));
            }
            lines.push(Line::raw("Press H to halt."));
        }
        (_, Some(h)) => {
            lines.push(label("reason", h.reason.clone()));
            lines.push(label("source", h.source.clone()));
            lines.push(label("since", when(h.triggered_at, state.now)));
            lines.push(Line::raw(match hs {
                HaltState::Halting => "Gate closed; cancelling orders…".to_owned(),
                HaltState::Halted => "Press 2: work the recovery checklist.".to_owned(),
                _ => {
                    let total = state.items().len();
                    let done = state.items().iter().filter(|i| i.is_done()).count();
                    format!("Checklist {done}/{total} done (press 2).")
                }
            }));
        }
        (_, None) => lines.push(Line::raw("Halted (no halt details).")),
    }
    if state.status.fills.as_deref() == Some("polled") {
        lines.insert(
            0,
            Line::styled(
                "Fills polled over REST: the executions socket is down.",
                Style::new().fg(Color::Yellow),
            ),
        );
    }
    if let Some(venue) = state
        .status
        .exchange_status
        .as_deref()
        .filter(|v| *v != "online")
    {
        let what = match venue {
            "cancel_only" => "only cancels and halt closures pass",
            "post_only" => "only post-only limit orders pass",
            _ => "no order passes",
        };
        lines.insert(
            0,
            Line::styled(
                format!("KRAKEN {}: {what}", venue.to_uppercase()),
                Style::new().fg(Color::Yellow).bold(),
            ),
        );
    }
    if let Some(f) = state.fleet.as_ref().filter(|f| f.enabled) {
        if let Some(h) = f.halt.as_ref().filter(|h| h.active) {
            lines.insert(
                0,
                Line::styled(
                    format!("FLEET HALT: {} — {}", h.reason, h.by),
                    Style::new().fg(Color::Red).bold(),
                ),
            );
        } else if !f.connected {
            lines.insert(
                0,
                Line::styled(
                    format!(
                        "FLEET: NATS unreachable; halts after {}s",
                        f.partition_halt_secs
                    ),
                    Style::new().fg(AMBER).bold(),
                ),
            );
        }
    }
    if let Some(problem) = &state.status.core.journal_problem {
        lines.insert(
            0,
            Line::styled(
                format!("JOURNAL PROBLEM: {problem}"),
                Style::new().fg(Color::Red).bold(),
            ),
        );
    }
    lines
}

fn render_overview(frame: &mut Frame<'_>, area: Rect, state: &State) {
    let cond_rows = u16::try_from(state.snapshot.conditions.len())
        .unwrap_or(u16::MAX)
        .max(7);
    let [top, middle, bottom] = Layout::vertical([
        Constraint::Length(6),
        Constraint::Length(cond_rows.saturating_add(2)),
        Constraint::Min(3),
    ])
    .areas(area);
    let hs = state.halt_state();
    let color = state_color(hs);
    let block = Block::bordered()
        .border_type(BorderType::Thick)
        .border_style(Style::new().fg(color))
        .title(" Halt state ");
    let inner = block.inner(top);
    frame.render_widget(block, top);
    let big = big_text(hs.label());
    let big_w = u16::try_from(big[0].chars().count()).unwrap_or(u16::MAX);
    let [big_area, info_area] =
        Layout::horizontal([Constraint::Length(big_w + 1), Constraint::Min(0)]).areas(inner);
    let big_lines: Vec<Line<'_>> = big
        .into_iter()
        .map(|r| Line::styled(r, Style::new().fg(color).bold()))
        .collect();
    frame.render_widget(Paragraph::new(big_lines), big_area);
    frame.render_widget(
        Paragraph::new(state_lines(state)).wrap(Wrap { trim: true }),
        info_area,
    );

    let [cond_area, pos_area] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(middle);
    render_conditions(frame, cond_area, state);
    render_positions(frame, pos_area, state);
    // The gateway panel shares the alerts' space: under them when wide (the journal on
    // the right), beside them when narrow; absent for a daemon that sends no gateway.
    let halves = |r: Rect| {
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(r)
    };
    // The fleet panel (a daemon in a fleet): above the journal when wide; under the
    // alerts when narrow and tall enough. At 80×24 only the state box's FLEET line shows.
    let fleet = state.fleet.as_ref().filter(|f| f.enabled);
    let wide = area.width >= 120;
    let mut bottom = bottom;
    if let Some(f) = fleet
        && !wide
    {
        let h = fleet_height(f);
        if bottom.height >= h.saturating_add(5) {
            let [rest, fleet_area] =
                Layout::vertical([Constraint::Min(5), Constraint::Length(h)]).areas(bottom);
            render_fleet(frame, fleet_area, f, state.now);
            bottom = rest;
        }
    }
    let journal_column = |frame: &mut Frame<'_>, area: Rect| match fleet {
        Some(f) => {
            let h = fleet_height(f).min(area.height.saturating_mul(2) / 3);
            let [fleet_area, journal] =
                Layout::vertical([Constraint::Length(h), Constraint::Min(0)]).areas(area);
            render_fleet(frame, fleet_area, f, state.now);
            render_recent_journal(frame, journal, state);
        }
        None => render_recent_journal(frame, area, state),
    };
    match (&state.gateway, wide) {
        (Some(gateway), true) => {
            let [left, journal] = halves(bottom);
            let alerts_h = u16::try_from(state.snapshot.alerts.len().max(1))
                .unwrap_or(u16::MAX)
                .saturating_add(2)
                .min(left.height / 2);
            let [alerts, gateway_area] =
                Layout::vertical([Constraint::Length(alerts_h), Constraint::Min(0)]).areas(left);
            render_alerts(frame, alerts, state);
            render_gateway(frame, gateway_area, gateway);
            journal_column(frame, journal);
        }
        (None, true) => {
            let [alerts, journal] = halves(bottom);
            render_alerts(frame, alerts, state);
            journal_column(frame, journal);
        }
        (Some(gateway), false) => {
            let [alerts, gateway_area] = halves(bottom);
            render_alerts(frame, alerts, state);
            render_gateway(frame, gateway_area, gateway);
        }
        (None, false) => render_alerts(frame, bottom, state),
    }
}

/// Rows the fleet panel needs: borders, the fleet halt (two lines while in force), NATS,
/// the header, one per node (at least one), the totals.
fn fleet_height(f: &FleetStatus) -> u16 {
    let active = f.halt.as_ref().is_some_and(|h| h.active);
    u16::try_from(f.nodes.len().max(1))
        .unwrap_or(u16::MAX)
        .saturating_add(6 + u16::from(active))
}

/// The fleet: the fleet halt (red while in force), this node's link to NATS, then one
/// line per node — state, heartbeat age (stale in amber), equity, drawdown, exposure,
/// breached conditions — and the totals the fleet conditions judge.
fn render_fleet(frame: &mut Frame<'_>, area: Rect, f: &FleetStatus, now: DateTime<Utc>) {
    let active = f.halt.as_ref().filter(|h| h.active);
    let mut title = vec![Span::raw(format!(" Fleet {} · node {} ", f.fleet, f.node))];
    if active.is_some() {
        title.push(Span::styled(
            "FLEET HALT",
            Style::new().fg(Color::White).bg(Color::Red).bold(),
        ));
        title.push(Span::raw(" "));
    }
    let border = if active.is_some() {
        Style::new().fg(Color::Red)
    } else {
        Style::new()
    };
    let block = Block::bordered()
        .border_style(border)
        .title(Line::from(title));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let mut lines = Vec::with_capacity(f.nodes.len() + 5);
    let halt_line = match (active, &f.halt) {
        (Some(h), _) => {
            let approvals = if h.approvals.is_empty() {
                String::new()
            } else {
                format!("; clear approvals: {}", h.approvals.join(", "))
            };
            lines.push(Line::styled(
                format!("HALT: {}", h.reason),
                Style::new().fg(Color::Red).bold(),
            ));
            Line::styled(
                format!(
                    "by {} on {}, {}; rev {}{approvals}",
                    h.by,
                    h.node,
                    when(h.at, now),
                    h.revision
                ),
                Style::new().fg(Color::Red),
            )
        }
        (None, Some(h)) if h.cleared_by.is_some() => Line::styled(
            format!(
                "no fleet halt (last: {} — cleared by {})",
                h.reason,
                h.cleared_by.as_deref().unwrap_or_default()
            ),
            Style::new().dim(),
        ),
        _ => Line::styled("no fleet halt", Style::new().dim()),
    };
    lines.push(halt_line);
    let contact = f.last_contact_ms.map_or_else(
        || "never".to_owned(),
        |ms| format!("{} ago", gf_api::format_age_ms(ms)),
    );
    lines.push(if f.connected {
        Line::styled(
            format!(
                "NATS connected · last contact {contact} · partition halt after {}s",
                f.partition_halt_secs
            ),
            Style::new().dim(),
        )
    } else {
        Line::styled(
            format!(
                "NATS UNREACHABLE · last contact {contact} · partition halt after {}s",
                f.partition_halt_secs
            ),
            Style::new().fg(AMBER).bold(),
        )
    });
    let cells: Vec<[String; 6]> = f
        .nodes
        .iter()
        .map(|n| {
            let age = gf_api::format_age_ms(n.age_ms);
            [
                n.node.clone(),
                n.state.to_string(),
                if n.stale { format!("{age} STALE") } else { age },
                n.equity.to_string(),
                format!("{}%", n.drawdown_pct),
                n.exposure.to_string(),
            ]
        })
        .collect();
    let header = ["node", "state", "beat", "equity", "dd", "exposure"];
    let mut w = header.map(|h| h.chars().count());
    for row in &cells {
        for (w, c) in w.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let pad = |text: &str, i: usize| {
        if i >= 3 {
            format!("{text:>width$} ", width = w[i])
        } else {
            format!("{text:<width$} ", width = w[i])
        }
    };
    let mut head: String = header.iter().enumerate().map(|(i, h)| pad(h, i)).collect();
    head.push_str("breached");
    lines.push(Line::styled(head, Style::new().dim()));
    if f.nodes.is_empty() {
        lines.push(Line::styled("no node heartbeats yet", Style::new().dim()));
    }
    for (n, row) in f.nodes.iter().zip(&cells) {
        let stale = if n.stale {
            Style::new().fg(AMBER).bold()
        } else {
            Style::new()
        };
        let breached = if n.breached.is_empty() {
            Span::styled("-", Style::new().dim())
        } else {
            Span::styled(n.breached.join(", "), Style::new().fg(Color::Red))
        };
        lines.push(Line::from(vec![
            Span::styled(pad(&row[0], 0), Style::new().bold()),
            Span::styled(pad(&row[1], 1), Style::new().fg(state_color(n.state))),
            Span::styled(pad(&row[2], 2), stale),
            Span::raw(pad(&row[3], 3)),
            Span::raw(pad(&row[4], 4)),
            Span::raw(pad(&row[5], 5)),
            breached,
        ]));
    }
    let stale = f.nodes.iter().filter(|n| n.stale).count();
    lines.push(Line::styled(
        format!(
            "total equity {} · drawdown {}% · exposure {} · {} nodes, {stale} stale",
            f.total_equity,
            f.total_drawdown_pct,
            f.total_exposure,
            f.nodes.len()
        ),
        Style::new().dim(),
    ));
    frame.render_widget(Paragraph::new(lines), inner);
}

/// Below this inner width the gateway panel drops prices, ids and reasons, and cuts
/// lines rather than wrapping them.
const GATEWAY_COMPACT_BELOW: u16 = 60;

/// The order gateway: each trader's open orders on one line, then the newest orders.
fn render_gateway(frame: &mut Frame<'_>, area: Rect, gateway: &GatewaySummary) {
    let mut title = vec![Span::raw(" Gateway ")];
    if !gateway.enabled {
        title.push(Span::styled("DISABLED", Style::new().fg(AMBER).bold()));
        title.push(Span::raw(" "));
    }
    let block = Block::bordered().title(Line::from(title));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let compact = inner.width < GATEWAY_COMPACT_BELOW;
    let mut lines = Vec::with_capacity(gateway.recent.len() + 1);
    if gateway.traders.is_empty() {
        lines.push(Line::styled(
            "no trader has placed an order",
            Style::new().dim(),
        ));
    } else if compact {
        let mut spans = vec![Span::styled("open ", Style::new().dim())];
        for (i, t) in gateway.traders.iter().enumerate() {
            if i > 0 {
                spans.push(Span::styled(" · ", Style::new().dim()));
            }
            spans.push(Span::styled(t.name.clone(), Style::new().bold()));
            spans.push(Span::raw(format!(" {}", t.open)));
        }
        lines.push(Line::from(spans));
    } else {
        let mut spans = Vec::new();
        for (i, t) in gateway.traders.iter().enumerate() {
            if i > 0 {
                spans.push(Span::styled(" · ", Style::new().dim()));
            }
            spans.push(Span::styled(t.name.clone(), Style::new().bold()));
            spans.push(Span::raw(format!(" {} open", t.open)));
            spans.push(Span::styled(
                format!(", {} accepted", t.accepted),
                Style::new().dim(),
            ));
            if t.refused > 0 {
                spans.push(Span::styled(
                    format!(", {} refused", t.refused),
                    Style::new().fg(Color::Red),
                ));
            }
        }
        lines.push(Line::from(spans));
    }
    lines.extend(gateway.recent.iter().map(|o| order_line(o, compact)));
    let paragraph = Paragraph::new(lines);
    // Wide, a long reason wraps rather than being cut; compact lines are cut.
    let paragraph = if compact {
        paragraph
    } else {
        paragraph.wrap(Wrap { trim: true })
    };
    frame.render_widget(paragraph, inner);
}

/// One gateway order: `14:04:58 strat-a buy 10 XRP/USD @ 2.10 open s1-0004 — reason`,
/// or when `compact` `14:04 open buy 10 XRP/USD strat-a`. Quantities and prices are
/// shown as the daemon wrote them.
fn order_line(o: &GatewayOrder, compact: bool) -> Line<'static> {
    let (format, unknown) = if compact {
        ("%H:%M ", "--:-- ")
    } else {
        ("%H:%M:%S ", "--:--:-- ")
    };
    let time = o
        .created_at
        .map_or_else(|| unknown.to_owned(), |t| t.format(format).to_string());
    let side = if o.side == "sell" {
        Style::new().fg(Color::Red)
    } else {
        Style::new().fg(Color::Green)
    };
    let price = match &o.limit_price {
        Some(p) if o.order_type != "market" => format!(" @ {p}"),
        _ => " market".to_owned(),
    };
    let status = match o.status.as_str() {
        "filled" => Style::new().fg(Color::Green).bold(),
        "rejected" => Style::new().fg(Color::Red).bold(),
        "cancelled" | "expired" => Style::new().dim(),
        _ => Style::new().fg(Color::Cyan).bold(),
    };
    if compact {
        let label = match o.status.as_str() {
            "partially_filled" => format!("partial {}/{}", o.filled_qty, o.qty),
            other => other.to_owned(),
        };
        return Line::from(vec![
            Span::styled(time, Style::new().dim()),
            Span::styled(label, status),
            Span::raw(" "),
            Span::styled(o.side.clone(), side),
            Span::raw(format!(" {} {} {}", o.qty, o.pair, o.trader)),
        ]);
    }
    let mut spans = vec![
        Span::styled(time, Style::new().dim()),
        Span::raw(format!("{} ", o.trader)),
        Span::styled(o.side.clone(), side),
        Span::raw(format!(" {} {}{price} ", o.qty, o.pair)),
        Span::styled(o.status.clone(), status),
    ];
    if o.status == "partially_filled" {
        spans.push(Span::raw(format!(" {}/{}", o.filled_qty, o.qty)));
    }
    spans.push(Span::styled(
        format!(" {}", o.client_order_id),
        Style::new().dim(),
    ));
    if let Some(reason) = o.reason.as_deref().filter(|r| !r.is_empty()) {
        spans.push(Span::styled(format!(" — {reason}"), Style::new().dim()));
    }
    Line::from(spans)
}

fn render_recent_journal(frame: &mut Frame<'_>, area: Rect, state: &State) {
    let block = Block::bordered().title(" Recent journal (3: all) ");
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let lines: Vec<Line<'_>> = state
        .journal
        .iter()
        .take(usize::from(inner.height))
        .map(|r| {
            Line::from(vec![
                Span::styled(
                    r.ts.map(|t| t.format("%H:%M:%S ").to_string())
                        .unwrap_or_default(),
                    Style::new().dim(),
                ),
                Span::styled(format!("{} ", r.kind), Style::new().bold()),
                Span::raw(format!("{} ", r.actor)),
                Span::styled(detail_text(r), Style::new().dim()),
            ])
        })
        .collect();
    frame.render_widget(Paragraph::new(lines), inner);
}

fn render_conditions(frame: &mut Frame<'_>, area: Rect, state: &State) {
    let block = Block::bordered().title(" Conditions: value / limit ");
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let conds = &state.snapshot.conditions;
    if conds.is_empty() {
        frame.render_widget(
            Paragraph::new("waiting for the dashboard feed…").dim(),
            inner,
        );
        return;
    }
    let name_w = if inner.width >= 60 { 24 } else { 15 };
    for (i, c) in conds.iter().enumerate() {
        let Ok(y) = u16::try_from(i) else { break };
        if y >= inner.height {
            break;
        }
        let row = Rect::new(inner.x, inner.y + y, inner.width, 1);
        let r = ratio(&c.value, &c.threshold);
        let color = if c.triggered {
            Color::Red
        } else if r >= 0.7 {
            AMBER
        } else {
            Color::Green
        };
        let mut name = condition_label(&c.id).to_owned();
        if c.triggered {
            name.insert(0, '!');
        }
        let name: String = name.chars().take(name_w).collect();
        let label = format!(
            "{name:<name_w$}{:>6}/{:<5}",
            c.value.show(2),
            c.threshold.show(2)
        );
        frame.render_widget(
            LineGauge::default()
                .ratio(r)
                .label(Span::styled(label, Style::new().fg(color)))
                .filled_symbol("█")
                .unfilled_symbol("░")
                .filled_style(Style::new().fg(color))
                .unfilled_style(Style::new().fg(Color::DarkGray)),
            row,
        );
    }
}

/// A short name for a condition id; unknown ids are shown as they are.
fn condition_label(id: &str) -> &str {
    match id {
        "max_total_drawdown" => "total drawdown%",
        "max_daily_drawdown" => "daily drawdown%",
        "max_consecutive_losses" => "losses in a row",
        "market_volatility" => "volatility %",
        "api_error_rate" => "API errors/min",
        "market_data_staleness" => "data age s",
        "position_risk" => "position risk",
        other => other,
    }
}

fn signed(n: &crate::model::Num) -> Span<'static> {
    let text = n.show(2);
    if n.is_negative() {
        Span::styled(text, Style::new().fg(Color::Red))
    } else {
        Span::styled(text, Style::new().fg(Color::Green))
    }
}

fn render_positions(frame: &mut Frame<'_>, area: Rect, state: &State) {
    let block = Block::bordered().title(" Positions and P&L ");
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let Some(p) = &state.snapshot.portfolio else {
        frame.render_widget(
            Paragraph::new("waiting for the dashboard feed…").dim(),
            inner,
        );
        return;
    };
    let [figures, table_area] =
        Layout::vertical([Constraint::Length(3), Constraint::Min(0)]).areas(inner);
    let dim = |t: &'static str| Span::styled(t, Style::new().dim());
    let lines = vec![
        Line::from(vec![
            dim("equity "),
            Span::raw(p.equity.show(2)).bold(),
            dim("  exposure "),
            Span::raw(p.exposure.show(2)),
        ]),
        Line::from(vec![
            dim("P&L day "),
            signed(&p.daily_pnl),
            dim("  real "),
            signed(&state.realised_pnl),
            dim("  unreal "),
            signed(&p.unrealised_pnl),
        ]),
        Line::from(vec![
            dim("drawdown "),
            Span::raw(format!("{}%", p.total_drawdown_pct.show(2))),
            dim("  today "),
            Span::raw(format!("{}%", p.daily_drawdown_pct.show(2))),
        ]),
    ];
    frame.render_widget(Paragraph::new(lines), figures);
    let open: Vec<_> = p
        .positions
        .iter()
        .filter(|pos| pos.qty.decimal().is_none_or(|q| !q.is_zero()))
        .collect();
    if open.is_empty() {
        frame.render_widget(Paragraph::new("no open positions").dim(), table_area);
        return;
    }
    let rows = open.iter().map(|pos| {
        Row::new(vec![
            Cell::from(pos.pair.clone()),
            Cell::from(pos.qty.show(4)),
            Cell::from(pos.avg_entry.show(4)),
            Cell::from(pos.mark.show(4)),
            Cell::from(signed(&pos.unrealised_pnl)),
        ])
    });
    let table = Table::new(
        rows,
        [
            Constraint::Length(9),
            Constraint::Fill(1),
            Constraint::Fill(1),
            Constraint::Fill(1),
            Constraint::Fill(1),
        ],
    )
    .header(Row::new(["pair", "qty", "entry", "mark", "uPnL"]).dim());
    frame.render_widget(table, table_area);
}

fn render_alerts(frame: &mut Frame<'_>, area: Rect, state: &State) {
    let block = Block::bordered().title(" Alerts ");
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let alerts = &state.snapshot.alerts;
    let lines: Vec<Line<'_>> = if alerts.is_empty() {
        vec![Line::styled("no alerts firing", Style::new().dim())]
    } else {
        alerts
            .iter()
            .map(|a| {
                let color = match a.severity.as_str() {
                    "critical" | "error" => Color::Red,
                    "warning" => AMBER,
                    _ => Color::Reset,
                };
                Line::from(vec![
                    Span::styled(format!("[{}] ", a.severity), Style::new().fg(color).bold()),
                    Span::raw(format!("{}: {}", a.rule, a.summary)),
                    Span::styled(
                        a.started_at
                            .map(|t| format!("  {} ago", age(state.now - t)))
                            .unwrap_or_default(),
                        Style::new().dim(),
                    ),
                ])
            })
            .collect()
    };
    frame.render_widget(Paragraph::new(lines), inner);
}

fn render_recovery(frame: &mut Frame<'_>, area: Rect, state: &State) {
    let [head, list, resume] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Min(3),
        Constraint::Length(5),
    ])
    .areas(area);
    let hs = state.halt_state();
    let head_lines = match (&state.status.core.halt, hs) {
        (Some(h), HaltState::Running) => vec![
            Line::styled(
                "Trading is running: nothing to recover.",
                Style::new().fg(Color::Green),
            ),
            Line::raw(format!(
                "The checklist of the last halt (#{}) is shown.",
                h.id
            )),
        ],
        (Some(h), _) => vec![
            Line::from(vec![
                Span::styled(
                    format!("Halt #{} ", h.id),
                    Style::new().fg(state_color(hs)).bold(),
                ),
                Span::raw(format!("{} — {}", h.source, h.reason)),
            ]),
            Line::raw(if hs == HaltState::Halting {
                "Orders are being cancelled; the checklist opens once Halted.".to_owned()
            } else {
                format!(
                    "Since {}. Select an item, Enter to complete.",
                    when(h.triggered_at, state.now)
                )
            }),
        ],
        (None, _) => vec![Line::raw(
            "No halt yet: the checklist appears when trading halts (H).",
        )],
    };
    frame.render_widget(Paragraph::new(head_lines).wrap(Wrap { trim: true }), head);

    let wide = area.width >= 120;
    let rows = state.items().iter().map(|i| {
        let (mark, style) = if i.is_done() {
            ("[x]", Style::new().fg(Color::Green))
        } else {
            ("[ ]", Style::new())
        };
        let mut title = vec![Span::raw(i.title.clone())];
        if let Some(why) = &i.added_for {
            title.push(Span::styled(format!(" (+{why})"), Style::new().fg(AMBER)));
        }
        let mut cells = vec![
            Cell::from(mark).style(style),
            Cell::from(Line::from(title)),
            Cell::from(i.completed_by.clone().unwrap_or_default()),
            Cell::from(
                i.completed_at
                    .map(|t| t.format("%H:%M:%S").to_string())
                    .unwrap_or_default(),
            ),
        ];
        if wide {
            cells.push(Cell::from(i.note.clone().unwrap_or_default()));
        }
        Row::new(cells)
    });
    let mut widths = vec![
        Constraint::Length(3),
        Constraint::Fill(3),
        Constraint::Length(12),
        Constraint::Length(8),
    ];
    let mut header = vec!["", "item", "done by", "at"];
    if wide {
        widths.push(Constraint::Fill(2));
        header.push("note");
    }
    let done = state.items().iter().filter(|i| i.is_done()).count();
    let table = Table::new(rows, widths)
        .header(Row::new(header).dim())
        .block(Block::bordered().title(format!(
            " Recovery checklist {done}/{} ",
            state.items().len()
        )))
        .row_highlight_style(Style::new().reversed())
        .highlight_symbol("▶ ");
    let mut ts = TableState::default().with_selected(
        (!state.items().is_empty()).then_some(state.selected.min(state.items().len() - 1)),
    );
    frame.render_stateful_widget(table, list, &mut ts);

    let blockers = state.resume_blockers();
    let mut lines = if blockers.is_empty() {
        vec![Line::from(vec![
            Span::styled("READY", Style::new().fg(Color::Green).bold()),
            Span::raw(" — every item is done; press "),
            key("R"),
            Span::raw(" to resume trading."),
        ])]
    } else {
        vec![Line::from(vec![
            Span::styled("DISABLED", Style::new().fg(AMBER).bold()),
            Span::raw(format!(" — {blockers}")),
        ])]
    };
    if let Some(r) = &state.refusal {
        lines.push(Line::styled(r.clone(), Style::new().fg(Color::Red)));
    }
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: true })
            .block(Block::bordered().title(" Resume ")),
        resume,
    );
}

/// A journal record's detail on one line: `key=value` pairs for an object.
fn detail_text(r: &JournalRecord) -> String {
    use serde_json::Value;
    let scalar = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    match &r.detail {
        Value::Null => String::new(),
        Value::Object(map) => map
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| format!("{k}={}", scalar(v)))
            .collect::<Vec<_>>()
            .join(" "),
        v => scalar(v),
    }
}

fn render_journal(frame: &mut Frame<'_>, area: Rect, state: &State) {
    let rows = state.journal.iter().skip(state.journal_scroll).map(|r| {
        Row::new(vec![
            Cell::from(r.id.to_string()),
            Cell::from(
                r.ts.map(|t| t.format("%m-%d %H:%M:%S").to_string())
                    .unwrap_or_default(),
            ),
            Cell::from(r.kind.clone()),
            Cell::from(r.actor.clone()),
            Cell::from(detail_text(r)),
        ])
    });
    let total = state.journal.len();
    let title = if total == 0 {
        " Journal (no records loaded) ".to_owned()
    } else {
        format!(
            " Journal, newest first: {}-{} of {total} ",
            state.journal_scroll + 1,
            total
        )
    };
    let table = Table::new(
        rows,
        [
            Constraint::Length(5),
            Constraint::Length(14),
            Constraint::Length(16),
            Constraint::Length(16),
            Constraint::Fill(1),
        ],
    )
    .header(Row::new(["id", "time (UTC)", "kind", "actor", "detail"]).dim())
    .block(Block::bordered().title(title));
    frame.render_widget(table, area);
}

fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let w = width.min(area.width);
    let h = height.min(area.height);
    Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    )
}

fn input_line(prompt: &str, text: &str, width: u16) -> Line<'static> {
    // Show the end of a long input, so the cursor stays visible.
    let room = usize::from(width).saturating_sub(prompt.chars().count() + 2);
    let n = text.chars().count();
    let shown: String = text.chars().skip(n.saturating_sub(room)).collect();
    Line::from(vec![
        Span::styled(prompt.to_owned(), Style::new().bold()),
        Span::raw(shown),
        Span::styled("█", Style::new().add_modifier(Modifier::SLOW_BLINK)),
    ])
}

fn render_halt_dialog(frame: &mut Frame<'_>, area: Rect, reason: &str, error: Option<&str>) {
    let rect = centered(area, 64, 8);
    frame.render_widget(Clear, rect);
    let block = Block::bordered()
        .border_type(BorderType::Thick)
        .border_style(Style::new().fg(Color::Red))
        .title(Line::styled(
            " HALT TRADING ",
            Style::new().fg(Color::Red).bold(),
        ));
    let inner = block.inner(rect);
    let mut lines = vec![
        Line::raw("Closes the order gate and cancels open orders at once."),
        Line::raw(""),
        input_line("Reason: ", reason, inner.width),
        Line::raw(""),
        Line::from(vec![
            key("Enter"),
            Span::raw(" halt now   "),
            key("Esc"),
            Span::raw(" cancel"),
        ]),
    ];
    if let Some(e) = error {
        lines.push(Line::styled(e.to_owned(), Style::new().fg(Color::Red)));
    }
    frame.render_widget(Paragraph::new(lines).block(block), rect);
}

fn render_note_dialog(frame: &mut Frame<'_>, area: Rect, title: &str, note: &str) {
    let rect = centered(area, 64, 7);
    frame.render_widget(Clear, rect);
    let block = Block::bordered()
        .border_style(Style::new().fg(AMBER))
        .title(" Complete checklist item ");
    let inner = block.inner(rect);
    let lines = vec![
        Line::styled(title.to_owned(), Style::new().bold()),
        Line::raw(""),
        input_line("Note (optional): ", note, inner.width),
        Line::raw(""),
        Line::from(vec![
            key("Enter"),
            Span::raw(" complete   "),
            key("Esc"),
            Span::raw(" cancel"),
        ]),
    ];
    frame.render_widget(Paragraph::new(lines).block(block), rect);
}

fn render_help(frame: &mut Frame<'_>, area: Rect) {
    let mut lines = Vec::new();
    for (group, keys) in KEYS {
        lines.push(Line::styled(*group, Style::new().bold().underlined()));
        for (k, what) in *keys {
            lines.push(Line::from(vec![
                Span::styled(format!("  {k:<11}"), Style::new().fg(Color::Cyan).bold()),
                Span::raw(*what),
            ]));
        }
    }
    let height = u16::try_from(lines.len())
        .unwrap_or(u16::MAX)
        .saturating_add(2);
    let rect = centered(area, 62, height);
    frame.render_widget(Clear, rect);
    frame.render_widget(
        Paragraph::new(Text::from(lines)).block(
            Block::bordered()
                .border_type(BorderType::Double)
                .title(" Keys — Esc closes "),
        ),
        rect,
    );
}

#[cfg(test)]
mod tests {
    //! Snapshot renders of every screen in every halt state, at 80×24 and 160×48, on a
    //! `TestBackend`; the fixtures' clock is frozen, so no timestamp needs filtering.

    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    use super::*;
    use crate::app::{Dialog, FeedEvent, Link, Msg, update};
    use crate::fixtures::console;

    const SIZES: [(u16, u16); 2] = [(80, 24), (160, 48)];
    const STATES: [HaltState; 4] = [
        HaltState::Running,
        HaltState::Halting,
        HaltState::Halted,
        HaltState::Recovering,
    ];

    fn draw(state: &State, (w, h): (u16, u16)) -> String {
        let mut terminal = Terminal::new(TestBackend::new(w, h)).unwrap();
        terminal.draw(|f| render(f, state)).unwrap();
        terminal.backend().to_string()
    }

    fn snap(name: &str, state: &State) {
        for size in SIZES {
            let text = draw(state, size);
            insta::assert_snapshot!(format!("{name}_{}x{}", size.0, size.1), text);
        }
    }

    fn each_state(screen: &str, setup: impl Fn(&mut State)) {
        for hs in STATES {
            let mut state = console(hs);
            setup(&mut state);
            snap(&format!("{screen}_{hs}"), &state);
        }
    }

    #[test]
    fn overview() {
        each_state("overview", |s| s.screen = Screen::Overview);
    }

    #[test]
    fn halt_dialog() {
        each_state("halt_dialog", |s| {
            s.dialog = Dialog::Halt {
                reason: "spread blew out on DOGE".into(),
                error: None,
            };
        });
    }

    #[test]
    fn recovery() {
        each_state("recovery", |s| s.screen = Screen::Recovery);
    }

    #[test]
    fn journal() {
        each_state("journal", |s| s.screen = Screen::Journal);
    }

    #[test]
    fn help() {
        each_state("help", |s| s.dialog = Dialog::Help);
    }

    #[test]
    fn complete_dialog_and_refusal() {
        let mut s = console(HaltState::Recovering);
        s.screen = Screen::Recovery;
        s.dialog = Dialog::Complete {
            item: "check_api_connectivity".into(),
            title: "Check API connectivity".into(),
            note: "REST and WS answer".into(),
        };
        snap("complete_dialog_recovering", &s);
        s.dialog = Dialog::None;
        s.refusal = Some("daemon refused resume: breached max_daily_drawdown".into());
        snap("resume_refused_recovering", &s);
    }

    #[test]
    fn disconnected_banner() {
        let mut s = console(HaltState::Halted);
        update(
            &mut s,
            Msg::Feed(FeedEvent::Down {
                channel: crate::app::Channel::HaltStatus,
                error: "Connection refused (os error 111)".into(),
                retry_in_secs: 4,
            }),
        );
        snap("disconnected_halted", &s);
        let text = draw(&s, (80, 24));
        assert!(text.contains("DAEMON UNREACHABLE"), "{text}");
    }

    #[test]
    fn before_the_daemon_answers() {
        let s = State::new("http://127.0.0.1:8080", crate::fixtures::now());
        assert_eq!(s.status_link, Link::Connecting);
        snap("connecting", &s);
    }

    /// The keys an operator needs are on screen without opening help: the footer and
    /// the dialogs name them.
    #[test]
    fn the_keys_to_halt_recover_and_resume_are_on_screen() {
        for size in SIZES {
            let mut s = console(HaltState::Running);
            assert!(draw(&s, size).contains(" H  halt"));
            s.dialog = Dialog::Halt {
                reason: String::new(),
                error: None,
            };
            let text = draw(&s, size);
            assert!(text.contains("Enter  halt now"), "{text}");
            let mut s = console(HaltState::Halted);
            assert!(draw(&s, size).contains(" 2  recovery checklist"));
            s.screen = Screen::Recovery;
            let text = draw(&s, size);
            assert!(text.contains("Enter  complete item"), "{text}");
            assert!(text.contains(" R  resume"), "{text}");
            s.dialog = Dialog::Help;
            let text = draw(&s, size);
            for (_, keys) in KEYS {
                for (k, _) in *keys {
                    assert!(text.contains(k), "help at {size:?} lacks {k}:\n{text}");
                }
            }
        }
    }

    /// Any terminal size draws without panicking, however small.
    #[test]
    fn tiny_and_odd_sizes_draw() {
        for hs in STATES {
            for (screen, dialog) in [
                (Screen::Overview, Dialog::None),
                (Screen::Recovery, Dialog::None),
                (Screen::Journal, Dialog::None),
                (Screen::Overview, Dialog::Help),
                (
                    Screen::Overview,
                    Dialog::Halt {
                        reason: "x".repeat(500),
                        error: Some("type a reason first".into()),
                    },
                ),
            ] {
                let mut s = console(hs);
                s.screen = screen;
                s.dialog = dialog;
                s.journal_scroll = 9;
                for size in [(1, 1), (20, 5), (40, 10), (79, 23), (300, 100)] {
                    let text = draw(&s, size);
                    assert_eq!(text.lines().count(), usize::from(size.1));
                }
            }
        }
    }

    /// The gateway panel: traders with their open orders, the newest orders with their
    /// status, "DISABLED" when the gateway is off; no panel for a daemon without one.
    #[test]
    fn the_gateway_panel_shows_traders_and_orders() {
        for size in SIZES {
            let text = draw(&console(HaltState::Running), size);
            assert!(text.contains("Gateway"), "{size:?}:\n{text}");
        }
        let narrow = draw(&console(HaltState::Running), (80, 24));
        for expected in [
            "open py-momo 0 · strat-a 2",
            "14:04 open buy 10 XRP/USD strat-a",
        ] {
            assert!(narrow.contains(expected), "{expected:?}:\n{narrow}");
        }
        let wide = draw(&console(HaltState::Running), (160, 48));
        for expected in [
            "strat-a 2 open, 3 accepted, 1 refused",
            "14:04:40 strat-a sell 500 XRP/USD @ 2.90 rejected s1-0004 — risk_refused:",
            "max_order_notional (notional 1450 > max 1000)",
            "14:03:10 py-momo buy 25 DOGE/USD market filled m-17",
            "14:02:00 strat-a buy 20 XRP/USD @ 2.05 partially_filled 8/20 s1-0002",
            "14:04:58 strat-a buy 10 XRP/USD @ 2.10 open s1-0005",
            "14:01:00 strat-a buy 10 XRP/USD @ 2.00 cancelled s1-0001 — cancelled by the",
        ] {
            assert!(wide.contains(expected), "{expected:?}:\n{wide}");
        }
        assert!(!wide.contains("DISABLED"), "{wide}");

        let mut s = console(HaltState::Halted);
        s.gateway = Some(GatewaySummary::default());
        snap("gateway_disabled_halted", &s);
        for size in SIZES {
            let text = draw(&s, size);
            assert!(text.contains("Gateway DISABLED"), "{size:?}:\n{text}");
            assert!(text.contains("no trader has placed an order"), "{text}");
        }

        s.gateway = None;
        for size in SIZES {
            let text = draw(&s, size);
            assert!(!text.contains("Gateway"), "{size:?}:\n{text}");
            assert!(text.contains("Alerts"), "{text}");
        }
    }

    /// The fleet panel: a fleet halt in force over three nodes (one stale). At 80×24 the
    /// state box names the fleet halt and the panel yields to alerts and gateway; wide,
    /// the panel sits above the journal; taller narrow terminals get it under the alerts.
    #[test]
    fn the_fleet_panel_shows_the_fleet_halt_and_every_node() {
        let mut s = console(HaltState::Halted);
        s.fleet = Some(serde_json::from_value(crate::fixtures::fleet_json()).unwrap());
        snap("fleet_halt_halted", &s);
        let small = draw(&s, (80, 24));
        assert!(
            small.contains("FLEET HALT: desk-wide drawdown drill — operator:alice"),
            "{small}"
        );
        // The local panels keep their place at 80×24.
        for expected in ["Alerts", "Gateway", "Conditions", "Positions and P&L"] {
            assert!(small.contains(expected), "{expected:?}:\n{small}");
        }
        let wide = draw(&s, (160, 48));
        for expected in [
            "Fleet prod · node alpha FLEET HALT",
            "HALT: desk-wide drawdown drill",
            "by operator:alice on alpha, 14:03:00 UTC (2m ago); rev 7; clear approvals: bob",
            "NATS connected · last contact 240ms ago · partition halt after 10s",
            "node    state   beat          equity     dd exposure breached",
            "alpha   halted  240ms       10123.46   3.1%   1520.5 fleet_halt",
            "beta    halting 1.2s        20500.25   0.4%        0 -",
            "gamma-3 running 1m15s STALE     9000 12.25%    100.5 max_total_drawdown",
            "total equity 39623.71 · drawdown 3.9% · exposure 1621 · 3 nodes, 1 stale",
            "Recent journal",
        ] {
            assert!(wide.contains(expected), "{expected:?}:\n{wide}");
        }
        let tall = draw(&s, (100, 40));
        assert!(tall.contains("gamma-3 running 1m15s STALE"), "{tall}");
        assert!(tall.contains("Alerts"), "{tall}");

        // NATS gone: the state box says the node halts on its own soon.
        if let Some(f) = s.fleet.as_mut() {
            f.connected = false;
            f.halt = None;
        }
        let small = draw(&s, (80, 24));
        assert!(
            small.contains("FLEET: NATS unreachable; halts after 10s"),
            "{small}"
        );
        let wide = draw(&s, (160, 48));
        assert!(wide.contains("no fleet halt"), "{wide}");
        assert!(
            wide.contains("NATS UNREACHABLE · last contact 240ms ago"),
            "{wide}"
        );

        // A daemon with the fleet off (or from before it): no panel, no line.
        for fleet in [Some(FleetStatus::default()), None] {
            s.fleet = fleet;
            for size in SIZES {
                let text = draw(&s, size);
                assert!(!text.contains("Fleet"), "{size:?}:\n{text}");
                assert!(!text.contains("FLEET"), "{size:?}:\n{text}");
            }
        }
    }

    #[test]
    fn a_journal_problem_is_shown_first() {
        let mut s = console(HaltState::Halted);
        s.status.core.journal_problem = Some("hash chain broken at record 12".into());
        assert!(draw(&s, (80, 24)).contains("JOURNAL PROBLEM: hash chain broken"));
    }

    #[test]
    fn the_exchange_mode_is_shown_unless_online() {
        let mut s = console(HaltState::Running);
        s.status.exchange_status = Some("online".into());
        assert!(!draw(&s, (80, 24)).contains("KRAKEN"));
        s.status.exchange_status = Some("cancel_only".into());
        assert!(draw(&s, (80, 24)).contains("KRAKEN CANCEL_ONLY"));
        s.status.fills = Some("pushed".into());
        assert!(!draw(&s, (160, 48)).contains("Fills polled"));
        s.status.fills = Some("polled".into());
        assert!(draw(&s, (160, 48)).contains("Fills polled over REST"));
        let wide = draw(&s, (160, 48));
        assert!(
            wide.contains("KRAKEN CANCEL_ONLY: only cancels and halt closures pass"),
            "{wide}"
        );
        s.status.exchange_status = Some("post_only".into());
        let wide = draw(&s, (160, 48));
        assert!(
            wide.contains("KRAKEN POST_ONLY: only post-only limit orders pass"),
            "{wide}"
        );
    }

    #[test]
    fn a_viewer_is_told_it_is_read_only() {
        let mut s = console(HaltState::Running);
        s.identity = Some(crate::model::Identity {
            name: "carol".into(),
            role: "viewer".into(),
        });
        assert!(draw(&s, (80, 24)).contains("carol (viewer: read-only)"));
    }

    #[test]
    fn big_text_draws_every_state_word() {
        for hs in STATES {
            let rows = big_text(hs.label());
            assert!(
                rows.iter()
                    .all(|r| r.chars().count() == 4 * hs.label().len())
            );
            assert!(rows[0].contains('█') || rows[0].contains('▀'));
        }
    }
}
