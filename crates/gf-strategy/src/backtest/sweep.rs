//! Parameter sweeps: the same backtest over a grid of one or two numeric configuration
//! keys (`halt.max_daily_drawdown_pct=1,2,3`), the points run in parallel on every core,
//! one row per point in grid order.

use std::fmt::Write as _;
use std::num::NonZeroUsize;
use std::sync::Mutex;

use gf_core::Config;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::{Backtest, Error, Parsed, Run};
use crate::StrategyKind;

/// One swept key and its values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Axis {
    /// The dotted configuration key (`halt.max_daily_drawdown_pct`).
    pub key: String,
    /// Its values, as written.
    pub values: Vec<String>,
}

impl std::str::FromStr for Axis {
    type Err = Error;

    /// Parses `section.key=v1,v2,…`; every value must be a number.
    fn from_str(text: &str) -> Result<Self, Error> {
        let bad = |why: &str| Error::Config(format!("--sweep {text:?}: {why}"));
        let (key, values) = text
            .split_once('=')
            .ok_or_else(|| bad("expected KEY=V1,V2,… (e.g. halt.max_daily_drawdown_pct=1,2,3)"))?;
        let key = key.trim();
        if key.is_empty() || !key.contains('.') {
            return Err(bad(
                "the key is a dotted path such as halt.max_daily_drawdown_pct",
            ));
        }
        let values: Vec<String> = values
            .split(',')
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
            .collect();
        if values.is_empty() {
            return Err(bad("no value"));
        }
        for v in &values {
            if v.parse::<Decimal>().is_err() {
                return Err(bad(&format!("{v:?} is not a number")));
            }
        }
        Ok(Self {
            key: key.to_owned(),
            values,
        })
    }
}

/// A point of the grid and what its run did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// `(key, value)` per axis.
    pub settings: Vec<(String, String)>,
    /// Final equity.
    pub final_equity: Decimal,
    /// Profit or loss.
    pub pnl: Decimal,
    /// Largest total drawdown, percent.
    pub max_drawdown_pct: Decimal,
    /// Closed round trips.
    pub trades: u64,
    /// Win rate, percent.
    pub win_rate_pct: Option<Decimal>,
    /// Halts that fired.
    pub halts: usize,
    /// The first halt: time and source.
    pub first_halt: Option<String>,
}

impl Point {
    fn of(settings: Vec<(String, String)>, run: &Run) -> Self {
        Self {
            settings,
            final_equity: run.final_equity,
            pnl: run.pnl(),
            max_drawdown_pct: run.max_drawdown_pct,
            trades: run.statistics.count,
            win_rate_pct: run.statistics.win_rate_pct,
            halts: run.halts.len(),
            first_halt: run
                .halts
                .first()
                .map(|h| format!("{} {}", h.at.to_rfc3339(), h.source)),
        }
    }
}

/// `config` with `key` set to the number `value`, validated as a configuration file is.
/// The value takes the key's current TOML type (integer, float or decimal string).
///
/// # Errors
/// [`Error::Config`] naming the key when it does not exist, is not numeric, or the result
/// does not validate.
pub fn with_setting(config: &Config, key: &str, value: &str) -> Result<Config, Error> {
    let bad = |why: String| Error::Config(format!("{key}={value}: {why}"));
    let text = config.to_toml().map_err(|e| bad(e.to_string()))?;
    let mut table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| bad(e.to_string()))?;
    let mut parts: Vec<&str> = key.split('.').collect();
    let Some(last) = parts.pop() else {
        return Err(bad("empty key".into()));
    };
    let mut at = &mut table;
    for p in parts {
        at = at
            .entry(p.to_owned())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .ok_or_else(|| bad(format!("{p} is not a section")))?;
    }
    let new = match at.get(last) {
        Some(toml::Value::Integer(_)) => toml::Value::Integer(
            value
                .parse()
                .map_err(|_| bad("this key takes a whole number".into()))?,
        ),
        Some(toml::Value::Float(_)) => toml::Value::Float(
            value
                .parse()
                .map_err(|_| bad("this key takes a number".into()))?,
        ),
        Some(toml::Value::String(_)) | None => toml::Value::String(value.to_owned()),
        Some(other) => {
            return Err(bad(format!(
                "this key holds a {}, not a number",
                other.type_str()
            )));
        }
    };
    at.insert(last.to_owned(), new);
    let text = toml::to_string(&table).map_err(|e| bad(e.to_string()))?;
    let changed = Config::from_toml_str(&text).map_err(|e| {
        let text = e.to_string();
        if text.contains("unknown field") {
            bad("no such configuration key".into())
        } else {
            bad(text)
        }
    })?;
    Ok(changed)
}

/// The grid's points in order: the first axis outermost.
///
/// # Errors
/// When there are not one or two axes.
pub fn grid(axes: &[Axis]) -> Result<Vec<Vec<(String, String)>>, Error> {
    match axes {
        [a] => Ok(a
            .values
            .iter()
            .map(|v| vec![(a.key.clone(), v.clone())])
            .collect()),
        [a, b] => Ok(a
            .values
            .iter()
            .flat_map(|va| {
                b.values
                    .iter()
                    .map(move |vb| vec![(a.key.clone(), va.clone()), (b.key.clone(), vb.clone())])
            })
            .collect()),
        _ => Err(Error::Config(
            "a sweep takes one or two keys (--sweep KEY=V1,V2 [--sweep KEY2=…])".into(),
        )),
    }
}

/// Runs the grid over `recording`, `workers` points at a time (every core when `None`).
/// Rows come back in grid order whatever finished first.
///
/// # Errors
/// The first invalid setting (before anything runs), or the first failed run.
pub fn run(
    config: &Config,
    recording: &[u8],
    strategy: StrategyKind,
    axes: &[Axis],
    workers: Option<NonZeroUsize>,
) -> Result<Vec<Point>, Error> {
    let points = grid(axes)?;
    let mut configs = Vec::with_capacity(points.len());
    for settings in &points {
        let mut c = config.clone();
        for (k, v) in settings {
            c = with_setting(&c, k, v)?;
        }
        configs.push(c);
    }
    // The book code's work is shared by every point unless a point changes how the
    // recording is read.
    let parsed = if axes.iter().any(|a| a.key.starts_with("market.")) {
        None
    } else {
        Some(Parsed::parse(config, recording)?)
    };
    let workers = workers
        .or_else(|| std::thread::available_parallelism().ok())
        .map_or(1, NonZeroUsize::get)
        .min(configs.len())
        .max(1);
    let next = Mutex::new(0usize);
    let results: Mutex<Vec<Option<Result<Run, Error>>>> =
        Mutex::new((0..configs.len()).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let i = {
                        let Ok(mut n) = next.lock() else { return };
                        let i = *n;
                        *n += 1;
                        i
                    };
                    let Some(c) = configs.get(i) else { return };
                    let run = match &parsed {
                        Some(p) => Backtest::from_parsed(c, p, strategy).run(),
                        None => Backtest::new(c, recording, strategy).run(),
                    };
                    if let Ok(mut r) = results.lock() {
                        r[i] = Some(run);
                    }
                }
            });
        }
    });
    let results = results
        .into_inner()
        .map_err(|_| Error::Config("a sweep worker panicked".into()))?;
    let mut out = Vec::with_capacity(points.len());
    for (settings, run) in points.into_iter().zip(results) {
        let run = run.ok_or_else(|| Error::Config("a sweep point did not run".into()))??;
        out.push(Point::of(settings, &run));
    }
    Ok(out)
}

/// The rows as an aligned text table.
#[must_use]
pub fn table(points: &[Point]) -> String {
    let mut rows: Vec<Vec<String>> = Vec::with_capacity(points.len() + 1);
    let mut head: Vec<String> = points
        .first()
        .map(|p| p.settings.iter().map(|(k, _)| k.clone()).collect())
        .unwrap_or_default();
    head.extend(
        [
            "final_equity",
            "pnl",
            "max_dd_pct",
            "trades",
            "win_rate_pct",
            "halts",
            "first_halt",
        ]
        .map(str::to_owned),
    );
    rows.push(head);
    for p in points {
        let mut r: Vec<String> = p.settings.iter().map(|(_, v)| v.clone()).collect();
        r.extend([
            p.final_equity.round_dp(2).to_string(),
            p.pnl.round_dp(2).to_string(),
            p.max_drawdown_pct.round_dp(2).to_string(),
            p.trades.to_string(),
            p.win_rate_pct
                .map_or_else(|| "n/a".into(), |w| w.round_dp(2).to_string()),
            p.halts.to_string(),
            p.first_halt.clone().unwrap_or_else(|| "-".into()),
        ]);
        rows.push(r);
    }
    let cols = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .map(|r| r.get(c).map_or(0, |s| s.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(s, w)| format!("{s:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_an_axis_and_refuses_what_is_not_one() {
        let a: Axis = "halt.max_daily_drawdown_pct=1, 2,3".parse().unwrap();
        assert_eq!(a.key, "halt.max_daily_drawdown_pct");
        assert_eq!(a.values, ["1", "2", "3"]);
        for bad in ["nokey", "=1,2", "plain=1", "halt.x=", "halt.x=1,two"] {
            let e = bad.parse::<Axis>().unwrap_err().to_string();
            assert!(e.contains("--sweep"), "{bad}: {e}");
        }
    }

    #[test]
    fn a_two_key_grid_is_the_product_in_order() {
        let a: Axis = "halt.max_daily_drawdown_pct=1,2".parse().unwrap();
        let b: Axis = "risk.max_position_pct=5,10,20".parse().unwrap();
        let g = grid(&[a.clone(), b.clone()]).unwrap();
        assert_eq!(g.len(), 6);
        assert_eq!(g[0][0].1, "1");
        assert_eq!(g[0][1].1, "5");
        assert_eq!(g[5][0].1, "2");
        assert_eq!(g[5][1].1, "20");
        assert!(grid(&[]).is_err());
        assert!(grid(&[a.clone(), b, a]).is_err());
    }

    #[test]
    fn a_setting_changes_the_key_and_a_bad_one_names_it() {
        let c = Config::default();
        let changed = with_setting(&c, "halt.max_daily_drawdown_pct", "2.5").unwrap();
        assert_ne!(changed, c);
        let e = with_setting(&c, "halt.no_such_key", "1")
            .unwrap_err()
            .to_string();
        assert!(e.contains("halt.no_such_key"), "{e}");
        let e = with_setting(&c, "general.mode", "1")
            .unwrap_err()
            .to_string();
        assert!(e.contains("general.mode"), "{e}");
    }
}
