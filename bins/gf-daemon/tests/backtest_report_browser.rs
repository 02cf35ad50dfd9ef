//! The backtest's HTML report in a real browser: headless Chromium over WebDriver
//! (chromedriver + fantoccini) opens the page the library writes for the bundled crash
//! recording, as a `file://` URL, and checks that it renders, says what the kill switch
//! did, and loads nothing from anywhere.
//!
//! Needs the Debian packages `chromium` and `chromium-driver` (see `common/browser.rs`);
//! without them the test fails and says what to install. Every error the browser logs
//! fails the test (a probe `console.error` first proves the log is really read). The page
//! goes to `target/backtest-report.html`, its screenshot to `target/backtest-report.png`.

mod common;

use anyhow::{Context, Result, ensure};
use gf_core::Config;
use gf_strategy::StrategyKind;
use gf_strategy::backtest::Backtest;
use gf_strategy::backtest::report::{Baseline, Report};
use serde_json::Value;

use common::browser::{LAPTOP, severe, target_dir, with_browser};

/// The crash recording with `HoldLong` under the default configuration, and its baseline
/// with the halts disabled: the report `gf-daemon backtest --scenario crash` writes.
fn crash_report() -> Result<Report> {
    let config = Config::default();
    let recording = gf_market::bundled::CRASH;
    let run = Backtest::new(&config, recording, StrategyKind::HoldLong).run()?;
    let baseline = Backtest::new(&config, recording, StrategyKind::HoldLong)
        .halts(false)
        .run()?;
    Ok(Report {
        recording: "bundled crash.jsonl".to_owned(),
        run,
        baseline: Some(Baseline::of(&baseline)),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_crash_report_renders_its_halt_and_loads_nothing_from_the_network() -> Result<()> {
    let report = tokio::task::spawn_blocking(crash_report).await??;
    let halt = report
        .run
        .halts
        .first()
        .context("the crash run halts")?
        .clone();
    assert_eq!(halt.source, "auto:max_daily_drawdown", "{halt:?}");
    let closure = halt
        .closure
        .clone()
        .context("the halt's closure finished")?;
    let title = format!(
        "Gal-Friday backtest — bundled crash.jsonl — {}",
        report.run.strategy
    );

    let dir = target_dir();
    std::fs::create_dir_all(&dir)?;
    let page = dir.canonicalize()?.join("backtest-report.html");
    std::fs::write(&page, report.html()).with_context(|| format!("writing {}", page.display()))?;
    let url = format!("file://{}", page.display());
    let halts = u64::try_from(report.run.halts.len())?;
    eprintln!("report: {url}");

    with_browser(move |b| async move {
        let mut errors = Vec::new();
        b.client.goto(&url).await?;
        b.probe_console(&mut errors).await?;

        assert_eq!(b.client.title().await?, title);

        // The chart: present, laid out with a size, with every layer drawn.
        let size = b
            .until_js(
                "the equity chart laid out",
                "const r = document.querySelector('svg#equity').getBoundingClientRect(); \
                 return r.width > 0 && r.height > 0 && [r.width, r.height]",
            )
            .await?;
        eprintln!("chart size: {size}");
        for (layer, what) in [
            (".halt-marker", "a halt marker"),
            ("polygon.drawdown", "the drawdown shading"),
            ("polyline.baseline", "the curve without halts"),
            ("polyline.equity", "the equity curve"),
        ] {
            let area = b
                .js(&format!(
                    "const e = document.querySelector('svg#equity {layer}'); \
                     if (!e) return null; const r = e.getBBox(); \
                     return r.width + r.height"
                ))
                .await?;
            assert!(
                area.as_f64().is_some_and(|a| a > 0.0),
                "{what} ({layer}) is drawn with a size: {area}"
            );
        }
        let markers = b
            .js("return document.querySelectorAll('svg#equity .halt-marker').length")
            .await?;
        let rows = b
            .js("return document.querySelectorAll('tr.halt').length")
            .await?;
        assert_eq!(markers.as_u64(), Some(halts), "one marker per halt");
        assert_eq!(rows.as_u64(), Some(halts), "one row per halt");
        // Both curves run to the recording's end (the one with halts is flat after the
        // closure, not cut off there).
        let ends = b
            .js("const end = s => { const r = document.querySelector(s).getBBox(); \
                 return r.x + r.width; }; \
                 return [end('svg#equity polyline.equity'), \
                         end('svg#equity polyline.baseline')]")
            .await?;
        let (eq_end, base_end) = (ends[0].as_f64(), ends[1].as_f64());
        assert!(
            eq_end.zip(base_end).is_some_and(|(e, b)| (e - b).abs() < 1.0),
            "curve ends: {ends}"
        );
        // Every label lies inside the chart (none cut off at an edge).
        let clipped = b
            .js("const svg = document.querySelector('svg#equity'); \
                 const v = svg.viewBox.baseVal; \
                 return [...svg.querySelectorAll('text')].filter(t => { \
                   const r = t.getBBox(); \
                   return r.x < v.x || r.y < v.y || r.x + r.width > v.x + v.width \
                     || r.y + r.height > v.y + v.height; \
                 }).map(t => t.textContent)")
            .await?;
        assert_eq!(clipped, Value::Array(vec![]), "labels cut off by the chart's edge");
        let marker = b.text("svg#equity .halt-marker text").await?;
        assert!(marker.contains("max_daily_drawdown"), "{marker}");

        // The halts table names the condition and the closure's result.
        let rows = b
            .js("return [...document.querySelectorAll('tr.halt')].map(r => r.innerText)")
            .await?;
        let first = rows
            .get(0)
            .and_then(Value::as_str)
            .with_context(|| format!("a halt row: {rows}"))?;
        assert!(first.contains("auto:max_daily_drawdown"), "{first}");
        assert!(first.contains(&closure), "{closure:?} in {first:?}");
        assert!(first.contains('≥'), "value vs threshold: {first}");
        let summary = b.text("table.kv").await?;
        assert!(summary.contains("Saved by the halts"), "{summary}");

        // Self-contained: no reference to anything outside the page, nothing fetched.
        let external = b
            .js("return [...document.querySelectorAll('[src],[href]')]\
                 .map(e => e.getAttribute('src') || e.getAttribute('href'))\
                 .filter(u => /^\\s*(https?:)?\\/\\//i.test(u))")
            .await?;
        assert_eq!(external, Value::Array(vec![]), "external references");
        let linked = b
            .js("return document.querySelectorAll('script[src],link,img,iframe,object,embed').length")
            .await?;
        assert_eq!(linked.as_u64(), Some(0), "linked resources");
        let fetched = b
            .js("return performance.getEntriesByType('resource').map(e => e.name)")
            .await?;
        assert_eq!(fetched, Value::Array(vec![]), "resources the page loaded");

        b.client.set_window_size(LAPTOP.0, 1600).await?;
        let shot = b.screenshot("backtest-report.png").await?;
        eprintln!("screenshot: {}", shot.display());

        errors.extend(b.console().await?);
        let severe = severe(&errors);
        ensure!(
            severe.is_empty(),
            "errors in the browser console: {severe:#?}"
        );
        Ok(())
    })
    .await
}
