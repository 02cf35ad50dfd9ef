//! The committed recordings under `fixtures/market/` are exactly what the seeded
//! generator produces, and every one of them verifies with zero mismatches.

use std::path::PathBuf;

use gf_market::fixtures::{Scenario, generate};
use gf_market::verify::verify_recording;

fn fixture(s: Scenario) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/market")
        .join(s.file_name())
}

#[test]
fn committed_fixtures_equal_the_generator_output() {
    for s in Scenario::ALL {
        let path = fixture(s);
        let committed = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(
            committed == generate(s),
            "{} differs from the generator; run `cargo xtask gen-fixtures`",
            path.display()
        );
    }
}

#[test]
fn committed_fixtures_verify_with_zero_mismatches() {
    for s in Scenario::ALL {
        let report = verify_recording(&fixture(s)).unwrap();
        assert!(report.passed(), "{s:?}:\n{report}");
        assert_eq!(report.mismatches(), 0);
        assert!(report.updates_verified() > 1_500, "{report}");
        for (pair, stats) in &report.pairs {
            assert!(stats.trades > 100, "{pair}: {stats:?}");
            assert!(stats.tickers > 100, "{pair}: {stats:?}");
            assert_eq!(stats.snapshots_verified, 1, "{pair}");
        }
    }
}
