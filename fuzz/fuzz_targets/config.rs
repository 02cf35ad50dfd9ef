//! The configuration loader: any text through `Config::from_toml_str` (parse, defaults,
//! validation) must give a config or a typed error, and a config that loads renders back to
//! TOML that loads again to the same config.
#![no_main]

use gf_core::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = Config::from_toml_str(text) else {
        return;
    };
    if let Ok(rendered) = toml::to_string(&config) {
        let again = Config::from_toml_str(&rendered)
            .unwrap_or_else(|e| panic!("rendered config does not load: {e}\n{rendered}"));
        assert_eq!(again, config, "config changed through TOML:\n{rendered}");
    }
});
