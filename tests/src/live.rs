//! Building blocks of the live-mode end-to-end tests: the mock Kraken (REST and private
//! WebSocket) with the prices the bundled recordings start at, and a live config pointed
//! at the mocks — one place, so that every live test starts the daemon the same way.

use std::collections::BTreeMap;
use std::path::Path;

use gf_core::config::{SecretProviderKind, Tier};
use gf_core::{Config, Mode, Pair};
use gf_daemon::live::{EnvLookup, env_from_pairs};
use gf_exec::sim::{DEFAULT_SECRET_B64, MockConfig, MockKraken, MockKrakenHandle};
use rust_decimal::Decimal;

/// `s` as a pair; panics on a malformed one (test input).
#[must_use]
pub fn pair(s: &str) -> Pair {
    Pair::new(s).expect("a valid pair")
}

/// The mock's prices where the bundled recordings (`fixtures/market/*.jsonl`) start.
#[must_use]
pub fn start_prices() -> BTreeMap<Pair, Decimal> {
    BTreeMap::from([
        (pair("XRP/USD"), Decimal::new(218_445, 5)),
        (pair("DOGE/USD"), Decimal::new(17_234, 5)),
    ])
}

/// The mock Kraken for `api_key` (56 characters, like Kraken's) and the default secret,
/// holding `balances` (Kraken's asset names: `ZUSD`, `XXRP` …) at [`start_prices`]. The
/// key has a nonce window, as the runbook advises; the client also keeps its requests in
/// nonce order on the wire (crates/gf-exec/tests/nonce_order.rs checks that against a
/// mock without a window).
///
/// # Panics
/// When the key is not 56 characters or the mock cannot start.
pub async fn mock_kraken(api_key: &str, balances: &[(&str, Decimal)]) -> MockKrakenHandle {
    assert_eq!(api_key.len(), 56, "a Kraken API key is 56 characters");
    MockKraken::start(MockConfig {
        api_key: api_key.into(),
        secret_b64: DEFAULT_SECRET_B64.into(),
        balances: balances
            .iter()
            .map(|(asset, qty)| ((*asset).to_owned(), *qty))
            .collect(),
        prices: start_prices(),
        nonce_window: 1_000_000,
        ..MockConfig::default()
    })
    .await
    .expect("the mock Kraken starts")
}

/// The credentials of the mock for `api_key`, as the env secret provider reads them.
#[must_use]
pub fn mock_credentials(api_key: &str) -> EnvLookup {
    env_from_pairs([
        ("KRAKEN_API_KEY", api_key),
        ("KRAKEN_API_SECRET", DEFAULT_SECRET_B64),
    ])
}

/// A live config under `dir` (data dir `dir/data`; journal key and witness under
/// `dir/keys`, never the real `$HOME`), the API on an ephemeral loopback port, Kraken REST
/// at `rest_url` with its private WebSocket at `<rest_url>/v2` (where the mock serves it),
/// the public market WebSocket at `market_ws_url`, the pro tier and credentials from the
/// environment.
///
/// # Panics
/// When the empty config does not load (a bug).
#[must_use]
pub fn live_config(dir: &Path, rest_url: &str, market_ws_url: &str) -> Config {
    let mut cfg = Config::from_toml_str("").expect("the defaults load");
    cfg.general.mode = Mode::Live;
    cfg.general.data_dir = dir.join("data");
    cfg.journal = gf_core::config::JournalConfig::under(&dir.join("keys"));
    cfg.api.bind = "127.0.0.1:0".parse().expect("a loopback address");
    cfg.exchange.rest_url = rest_url.into();
    cfg.exchange.ws_auth_url = format!("{}/v2", rest_url.replacen("http://", "ws://", 1));
    cfg.exchange.tier = Tier::Pro;
    cfg.market.ws_url = market_ws_url.into();
    cfg.secrets.provider = SecretProviderKind::Env;
    cfg
}

/// The details of every start-up reconciliation record in `running`'s journal, oldest
/// first (one per live start).
///
/// # Panics
/// When the journal cannot be read.
#[must_use]
pub fn reconciliations(running: &gf_daemon::app::Running) -> Vec<serde_json::Value> {
    running
        .daemon
        .halt
        .journal()
        .records(1_000)
        .expect("the journal reads")
        .into_iter()
        .filter(|r| r.kind == gf_daemon::live::RECONCILIATION_KIND)
        .map(|r| r.detail)
        .collect()
}
