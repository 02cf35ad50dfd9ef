//! A backtest from code: the deterministic driver over a bundled recording or a file, with
//! the run without halts beside it, its summary printed and the HTML report written.
//!
//! ```text
//! cargo run -p gf-strategy --example backtest                      # the bundled crash
//! cargo run -p gf-strategy --example backtest -- paper report.html # bundled: crash, paper, gap
//! cargo run -p gf-strategy --example backtest -- my-recording.jsonl report.html
//! ```
//!
//! A file is what `gf-daemon market record` writes. The crash recording runs `HoldLong`
//! (it buys and holds into the slide, so the daily-drawdown halt has something to save);
//! anything else runs the `EmaCross` example.

use std::error::Error;
use std::path::Path;

use gf_core::Config;
use gf_strategy::StrategyKind;
use gf_strategy::backtest::Backtest;
use gf_strategy::backtest::report::{Baseline, Report};

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let data = args.next().unwrap_or_else(|| "crash".to_owned());
    let report_path = args.next();
    let (name, bytes) = load(&data)?;
    let report = backtest(&Config::default(), &name, &bytes)?;
    print!("{}", report.summary());
    if let Some(path) = report_path {
        std::fs::write(&path, report.html())?;
        println!("report: {path}");
    }
    Ok(())
}

/// A bundled recording by name (`crash`, `paper`, `gap`), else the file at `data`.
fn load(data: &str) -> Result<(String, Vec<u8>), Box<dyn Error>> {
    let bundled = match data {
        "crash" => Some(gf_market::bundled::CRASH),
        "paper" => Some(gf_market::bundled::PAPER),
        "gap" => Some(gf_market::bundled::GAP),
        _ => None,
    };
    if let Some(bytes) = bundled {
        return Ok((format!("bundled {data}.jsonl"), bytes.to_vec()));
    }
    let path = Path::new(data);
    let bytes = std::fs::read(path)
        .map_err(|e| format!("cannot read the recording {}: {e}", path.display()))?;
    let name = path
        .file_name()
        .map_or_else(|| data.to_owned(), |n| n.to_string_lossy().into_owned());
    Ok((name, bytes))
}

/// Runs `recording` twice — with the configured halt conditions and with none — on two
/// threads, and puts both in a report.
fn backtest(config: &Config, name: &str, recording: &[u8]) -> Result<Report, Box<dyn Error>> {
    let strategy = if name.contains("crash") {
        StrategyKind::HoldLong
    } else {
        StrategyKind::EmaCross
    };
    let (run, baseline) = std::thread::scope(|scope| {
        let baseline = scope.spawn(|| {
            Backtest::new(config, recording, strategy)
                .halts(false)
                .run()
        });
        let run = Backtest::new(config, recording, strategy).run();
        (run, baseline.join())
    });
    let baseline = baseline.map_err(|_| "the run without halts panicked")??;
    Ok(Report {
        recording: name.to_owned(),
        run: run?,
        baseline: Some(Baseline::of(&baseline)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_crash_backtest_reports_the_daily_drawdown_halt_and_what_it_saved() {
        let (name, bytes) = load("crash").unwrap();
        let report = backtest(&Config::default(), &name, &bytes).unwrap();
        let summary = report.summary();
        assert!(summary.contains("with hold_long"), "{summary}");
        assert!(summary.contains("auto:max_daily_drawdown"), "{summary}");
        assert!(summary.contains("the halts saved"), "{summary}");
        assert!(
            report.saved().unwrap() > rust_decimal::Decimal::ZERO,
            "{summary}"
        );
        let html = report.html();
        assert!(html.contains("<svg id=\"equity\""));
        assert!(html.contains("class=\"halt-marker\""));
    }

    #[test]
    fn a_recording_file_runs_like_the_bundled_one_and_a_missing_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("my-recording.jsonl");
        std::fs::write(&path, gf_market::bundled::GAP).unwrap();
        let (name, bytes) = load(path.to_str().unwrap()).unwrap();
        assert_eq!(name, "my-recording.jsonl");
        assert_eq!(bytes, gf_market::bundled::GAP);

        let missing = dir.path().join("nothing.jsonl");
        let err = load(missing.to_str().unwrap()).unwrap_err().to_string();
        assert!(err.contains("nothing.jsonl"), "{err}");
    }
}
