//! The documented example config is the embedded default, and every key in it is real.

use gf_core::Config;

#[test]
fn documented_example_loads_and_equals_the_defaults() {
    let path = gf_e2e::fixture("config/default.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let from_file = Config::from_toml_str(&text).unwrap();
    let defaults = Config::from_toml_str("").unwrap();
    assert_eq!(
        from_file, defaults,
        "fixtures/config/default.toml drifted from the defaults"
    );
    // The example documents every section.
    for section in [
        "[general]",
        "[market]",
        "[exchange]",
        "[risk]",
        "[halt]",
        "[api]",
        "[secrets]",
        "[monitor]",
    ] {
        assert!(text.contains(section), "{section} missing from the example");
    }
}
