//! `gf-daemon backtest`: wiring only — reads the recording and the configuration, runs
//! gf-strategy's deterministic driver (with and without halts, in parallel), and writes
//! the report, the journal and the summary. Sweeps run the grid on every core.

use std::io::Write as _;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use gf_core::Config;
use gf_strategy::StrategyKind;
use gf_strategy::backtest::report::{Baseline, Report};
use gf_strategy::backtest::sweep::{self, Axis};
use gf_strategy::backtest::{Backtest, Parsed, Run};

use crate::app::Scenario;

/// What `gf-daemon backtest` was asked (its command-line arguments).
#[derive(Debug, Clone, clap::Args)]
pub struct BacktestOptions {
    /// The recording (the format `market record` writes); default: the scenario's
    /// bundled recording.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// The bundled recording to replay when no --data is given.
    #[arg(long, value_enum, default_value = "normal")]
    pub scenario: Scenario,
    /// Strategy: none, ema_cross or hold_long (default: strategy.kind, else the
    /// scenario's example).
    #[arg(long, value_parser = parse_strategy)]
    pub strategy: Option<StrategyKind>,
    /// Configuration file (TOML); without it the embedded default.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Writes a self-contained HTML report (equity curve, halts, trades).
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Writes the run's journal as JSON lines.
    #[arg(long)]
    pub journal: Option<PathBuf>,
    /// Prints the report as JSON instead of the summary.
    #[arg(long)]
    pub json: bool,
    /// Skips the comparison run without halts (the report then cannot say what the
    /// halts saved).
    #[arg(long)]
    pub no_baseline: bool,
    /// Sweeps a numeric key over values, e.g. halt.max_daily_drawdown_pct=1,2,3 (give it
    /// twice for a two-key grid); prints one row per point.
    #[arg(long)]
    pub sweep: Vec<String>,
    /// Sweep points run at once (default: every core).
    #[arg(long)]
    pub jobs: Option<NonZeroUsize>,
}

fn parse_strategy(text: &str) -> Result<StrategyKind, String> {
    text.parse()
}

/// Runs the backtest and writes what was asked.
///
/// # Errors
/// An unreadable recording or configuration, an invalid sweep, a failed run, or an
/// output file that cannot be written — each named.
pub fn run(opts: &BacktestOptions) -> Result<()> {
    let config = match &opts.config {
        Some(path) => {
            Config::load(path).with_context(|| format!("configuration {}", path.display()))?
        }
        None => Config::embedded_default().context("the embedded default configuration")?,
    };
    let (name, bytes) = match &opts.data {
        Some(path) => (
            path.file_name().map_or_else(
                || path.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            ),
            std::fs::read(path)
                .with_context(|| format!("cannot read the recording {}", path.display()))?,
        ),
        None => {
            let (n, b) = opts.scenario.recording();
            (format!("bundled {n}"), b.to_vec())
        }
    };
    let strategy = opts
        .strategy
        .or(config.strategy.kind)
        .unwrap_or(opts.scenario.strategy());

    if !opts.sweep.is_empty() {
        if opts.report.is_some() || opts.journal.is_some() {
            bail!("--sweep prints one row per point; --report and --journal are for a single run");
        }
        let axes = opts
            .sweep
            .iter()
            .map(|s| s.parse::<Axis>())
            .collect::<Result<Vec<_>, _>>()?;
        let started = Instant::now();
        let points = sweep::run(&config, &bytes, strategy, &axes, opts.jobs)?;
        eprintln!(
            "gf-daemon backtest: {} sweep point(s) in {:.2} s",
            points.len(),
            started.elapsed().as_secs_f64()
        );
        let mut out = std::io::stdout().lock();
        if opts.json {
            serde_json::to_writer_pretty(&mut out, &points)?;
            writeln!(out)?;
        } else {
            write!(out, "{}", sweep::table(&points))?;
        }
        return Ok(());
    }

    let started = Instant::now();
    // Parsed once (the book code's work), run twice in parallel: with and without halts.
    let parsed = Parsed::parse(&config, &bytes).with_context(|| format!("recording {name}"))?;
    let parse_secs = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let (run, baseline) = std::thread::scope(|scope| {
        let base = (!opts.no_baseline).then(|| {
            scope.spawn(|| {
                Backtest::from_parsed(&config, &parsed, strategy)
                    .halts(false)
                    .run()
            })
        });
        let run = Backtest::from_parsed(&config, &parsed, strategy).run();
        let base = base.map(|h| h.join());
        (run, base)
    });
    let run: Run = run?;
    let baseline = match baseline {
        Some(Ok(b)) => Some(Baseline::of(&b?)),
        Some(Err(_)) => bail!("the run without halts panicked"),
        None => None,
    };
    let secs = started.elapsed().as_secs_f64();
    #[allow(clippy::cast_precision_loss)]
    let rate = run.market_events as f64 / secs.max(1e-9);
    eprintln!(
        "gf-daemon backtest: {} messages read and parsed in {parse_secs:.3} s; {} market events ({} events in all) run in {secs:.3} s: {rate:.0} market events/s per run",
        run.messages, run.market_events, run.events
    );
    if let Some(path) = &opts.journal {
        std::fs::write(path, run.journal_jsonl()?)
            .with_context(|| format!("cannot write the journal {}", path.display()))?;
    }
    let report = Report {
        recording: name,
        run,
        baseline,
    };
    if let Some(path) = &opts.report {
        std::fs::write(path, report.html())
            .with_context(|| format!("cannot write the report {}", path.display()))?;
    }
    let mut out = std::io::stdout().lock();
    if opts.json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        write!(out, "{}", report.summary())?;
        if let Some(path) = &opts.report {
            writeln!(out, "report: {}", path.display())?;
        }
    }
    Ok(())
}
