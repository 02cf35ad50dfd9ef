//! Configuration: one TOML file deserialised into typed sections, with defaults equal to
//! the design's thresholds, `GF_<SECTION>__<KEY>` environment overrides and validation
//! that names the offending key and value.
//!
//! `fixtures/config/default.toml` is the documented example; every key there is optional.
//!
//! ```
//! use gf_core::config::Config;
//! let cfg = Config::from_toml_str("[halt]\nmax_total_drawdown_pct = 12\n").unwrap();
//! assert_eq!(cfg.halt.max_total_drawdown_pct.to_string(), "12");
//! assert_eq!(cfg.halt.max_daily_drawdown_pct.to_string(), "2");
//! assert!(Config::from_toml_str("[halt]\nmax_total_drawdown_pct = -1\n").is_err());
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::event::Severity;
use crate::types::Pair;

/// Prefix of environment overrides; `GF_API__BIND=0.0.0.0:9000` sets `api.bind`.
pub const ENV_PREFIX: &str = "GF_";

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The TOML is malformed or has an unknown key or a value of the wrong type.
    #[error("config {origin}: {message}")]
    Parse {
        /// The file name, or `<string>`.
        origin: String,
        /// The parser's message (it names the key and line).
        message: String,
    },
    /// An environment override could not be applied.
    #[error("environment override {var}: {reason}")]
    Env {
        /// The variable.
        var: String,
        /// What is wrong.
        reason: String,
    },
    /// A value is out of range or inconsistent.
    #[error("config key `{key}` = {value}: {reason}")]
    Invalid {
        /// Dotted key, e.g. `halt.max_daily_drawdown_pct`.
        key: String,
        /// The offending value.
        value: String,
        /// What is wrong.
        reason: String,
    },
}

impl ConfigError {
    fn invalid(key: &str, value: impl std::fmt::Display, reason: &str) -> Self {
        ConfigError::Invalid {
            key: key.to_owned(),
            value: value.to_string(),
            reason: reason.to_owned(),
        }
    }
}

/// Paper or live trading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Replayed or live market data, simulated fills. No credentials needed.
    #[default]
    Paper,
    /// Real orders on Kraken.
    Live,
}

/// What a halt does beyond closing the gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum HaltBehaviour {
    /// Cancel all open orders.
    CancelOnly,
    /// Cancel all open orders, then flatten every position with reduce-only market orders.
    #[default]
    ClosePositions,
    /// Close the gate, touch nothing else.
    Hold,
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Process-wide settings.
    pub general: GeneralConfig,
    /// The journal's key, witness and free-disk limit.
    pub journal: JournalConfig,
    /// Market data.
    pub market: MarketConfig,
    /// Exchange access.
    pub exchange: ExchangeConfig,
    /// Pre-trade risk limits.
    pub risk: RiskConfig,
    /// Halt conditions and behaviour.
    pub halt: HaltConfig,
    /// The HTTP/WebSocket API.
    pub api: ApiConfig,
    /// Where credentials come from.
    pub secrets: SecretsConfig,
    /// Metrics, alerts and health checks.
    pub monitor: MonitorConfig,
    /// Which strategy runs inside the daemon.
    pub strategy: StrategyConfig,
    /// The order gateway: external strategies placing orders through the API.
    pub gateway: GatewayConfig,
    /// Fleet membership over NATS JetStream (off by default).
    pub fleet: FleetConfig,
}

/// How a node authenticates to NATS (`fleet.auth`). The secret itself comes from the
/// `[secrets]` provider's set `fleet.secret_set`, never from the config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum FleetAuth {
    /// No credentials (a NATS server without authorization; development).
    #[default]
    None,
    /// A token: the set's field `token`.
    Token,
    /// User and password: the set's fields `user` and `password`.
    UserPassword,
}

impl FleetAuth {
    /// The config spelling.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            FleetAuth::None => "none",
            FleetAuth::Token => "token",
            FleetAuth::UserPassword => "user_password",
        }
    }
}

/// `[fleet]`: many daemons halted as one over NATS JetStream. Off by default; a single
/// daemon needs none of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FleetConfig {
    /// Join the fleet.
    pub enabled: bool,
    /// NATS servers (`nats://host:port`), tried in turn.
    pub nats_url: Vec<String>,
    /// The fleet's name: its JetStream buckets are `gf_fleet_<name>_halt` and
    /// `gf_fleet_<name>_nodes`. Letters, digits, `-` and `_`.
    pub name: String,
    /// This node's id, unique in the fleet (letters, digits, `-` and `_`). Required when
    /// enabled.
    pub node: String,
    /// How the node authenticates to NATS.
    pub auth: FleetAuth,
    /// The `[secrets]` provider's set holding `token` or `user`/`password`.
    pub secret_set: String,
    /// A node that cannot reach NATS for longer than this halts itself
    /// (`auto:fleet_partition`); also how long start-up waits to read the fleet halt.
    pub partition_halt_secs: u64,
    /// How often the node publishes its heartbeat, milliseconds.
    pub heartbeat_ms: u64,
    /// Local halt reasons that halt the whole fleet: condition ids (e.g.
    /// `max_total_drawdown`), `operator` (a halt by API, console, CLI or signal) or `any`.
    /// None by default: a node's own halt stays its own. The fleet conditions
    /// (`fleet_total_drawdown`, `fleet_exposure`) always halt the fleet.
    pub escalate: Vec<String>,
    /// `fleet_total_drawdown`: the fleet's summed drawdown from its nodes' peaks, percent;
    /// `0` disables.
    pub max_total_drawdown_pct: Decimal,
    /// `fleet_exposure`: the fleet's summed open exposure, quote currency; `0` disables.
    pub max_exposure_notional: Decimal,
    /// Clearing the fleet halt takes two different administrators.
    pub two_person_rule: bool,
}

impl Default for FleetConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            nats_url: vec!["nats://127.0.0.1:4222".into()],
            name: "default".into(),
            node: String::new(),
            auth: FleetAuth::None,
            secret_set: "nats".into(),
            partition_halt_secs: 10,
            heartbeat_ms: 1000,
            escalate: Vec::new(),
            max_total_drawdown_pct: Decimal::ZERO,
            max_exposure_notional: Decimal::ZERO,
            two_person_rule: false,
        }
    }
}

/// Reasons `fleet.escalate` may name besides condition ids.
pub const FLEET_ESCALATE_WORDS: &[&str] = &["operator", "any"];

/// Whether `s` is a valid fleet or node name: 1–64 of letters, digits, `-` and `_`.
#[must_use]
pub fn is_fleet_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `[gateway]`: orders from external strategies (`POST /api/v1/orders` with a `trader`
/// token). Each order passes the same pre-trade checks and gate as the daemon's own; these
/// limits apply per token on top of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// Accept orders from `trader` tokens. Off: `POST /api/v1/orders` answers 403
    /// `gateway_disabled`; cancels and reads still work.
    pub enabled: bool,
    /// Orders per second one token may place, sustained (a token bucket).
    pub orders_per_second: u32,
    /// Orders one token may place at once before the sustained rate applies.
    pub order_burst: u32,
    /// Orders one token may have open (accepted and not yet filled, cancelled, rejected
    /// or expired).
    pub max_open_orders: u32,
    /// Frames of `/ws/orders` kept per trader for clients that reconnect with `?since=`.
    pub feed_capacity: usize,
    /// Gateway orders (and their fills) remembered for reads and idempotent retries; the
    /// oldest finished ones are forgotten beyond it.
    pub max_remembered_orders: usize,
    /// Limits of one token, by its name, replacing the defaults above:
    /// `[gateway.traders."strat-a"] orders_per_second = 50`.
    pub traders: BTreeMap<String, TraderLimits>,
}

/// `[gateway.traders."<token name>"]`: one token's limits; an unset one is the
/// `[gateway]` default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TraderLimits {
    /// Orders per second, sustained.
    pub orders_per_second: Option<u32>,
    /// Orders at once before the sustained rate applies.
    pub order_burst: Option<u32>,
    /// Open orders.
    pub max_open_orders: Option<u32>,
}

/// One token's limits in force ([`GatewayConfig::limits`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Orders per second, sustained.
    pub orders_per_second: u32,
    /// Orders at once before the sustained rate applies.
    pub order_burst: u32,
    /// Open orders.
    pub max_open_orders: u32,
}

impl GatewayConfig {
    /// The limits of the token named `trader`: its `[gateway.traders]` entry over the
    /// defaults.
    #[must_use]
    pub fn limits(&self, trader: &str) -> Limits {
        let own = self.traders.get(trader).copied().unwrap_or_default();
        Limits {
            orders_per_second: own.orders_per_second.unwrap_or(self.orders_per_second),
            order_burst: own.order_burst.unwrap_or(self.order_burst),
            max_open_orders: own.max_open_orders.unwrap_or(self.max_open_orders),
        }
    }
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            orders_per_second: 10,
            order_burst: 20,
            max_open_orders: 50,
            feed_capacity: 10_000,
            max_remembered_orders: 100_000,
            traders: BTreeMap::new(),
        }
    }
}

/// `[strategy]`: the signal source inside the daemon. Gal-Friday is the safety layer; the
/// bundled strategies are examples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct StrategyConfig {
    /// `none`, `ema_cross` or `hold_long` (`gf-daemon launch --strategy` overrides it).
    /// Unset: paper mode runs its scenario's example; live mode runs none — a live daemon
    /// trades only a strategy chosen explicitly.
    pub kind: Option<StrategyKind>,
}

impl StrategyConfig {
    /// The strategy that runs in `mode`: the configured one, else none in live mode;
    /// `None` in paper mode means the scenario's example.
    #[must_use]
    pub fn effective(&self, mode: Mode) -> Option<StrategyKind> {
        match (self.kind, mode) {
            (Some(kind), _) => Some(kind),
            (None, Mode::Live) => Some(StrategyKind::None),
            (None, Mode::Paper) => None,
        }
    }
}

/// The strategies the daemon can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StrategyKind {
    /// No strategy: the daemon places no order of its own (orders come only from the
    /// halt's closure).
    None,
    /// The example EMA crossover (long only).
    EmaCross,
    /// The example buy-and-hold.
    HoldLong,
}

impl StrategyKind {
    /// The name in configuration and on the command line.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::EmaCross => "ema_cross",
            Self::HoldLong => "hold_long",
        }
    }
}

impl std::fmt::Display for StrategyKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for StrategyKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Self::None, Self::EmaCross, Self::HoldLong]
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown strategy {s:?}: use none, ema_cross or hold_long"))
    }
}

/// `[general]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GeneralConfig {
    /// Paper or live.
    pub mode: Mode,
    /// Where the SQLite database and generated tokens live.
    pub data_dir: PathBuf,
    /// Log format: `auto` (human on a TTY, JSON otherwise), `human` or `json`.
    pub log_format: LogFormat,
}

/// `general.log_format` (and `gf-daemon --log-format`): how logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable on a TTY, JSON lines otherwise.
    #[default]
    Auto,
    /// Human-readable lines.
    Human,
    /// JSON lines.
    Json,
}

impl LogFormat {
    /// Every format, in documentation order.
    pub const ALL: [Self; 3] = [Self::Auto, Self::Human, Self::Json];

    /// The name in configuration and on the command line.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Human => "human",
            Self::Json => "json",
        }
    }
}

impl std::fmt::Display for LogFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| format!("unknown log format {s:?}: expected auto, human or json"))
    }
}

impl Default for GeneralConfig {
    fn default() -> Self {
        Self {
            mode: Mode::Paper,
            data_dir: PathBuf::from("./data"),
            log_format: LogFormat::Auto,
        }
    }
}

/// `[journal]`: what protects the journal from outside the data directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JournalConfig {
    /// The journal key file (64 hex characters, mode `0600`), created at the first
    /// launch. Must not be inside the data directory. Default (unset):
    /// `$XDG_CONFIG_HOME/gal-friday/journal.key`, else
    /// `$HOME/.config/gal-friday/journal.key`.
    pub key_file: Option<PathBuf>,
    /// Where the journal's witness files are written (one per data directory, named by
    /// its identity). Must not be inside the data directory. Default (unset): `witness/`
    /// beside the key file.
    pub witness_dir: Option<PathBuf>,
    /// Halt (`disk_space_low`) when the data directory's file system has less free space
    /// than this, MiB, before the journal can no longer be written. 0 disables it.
    pub min_free_disk_mb: u64,
}

impl Default for JournalConfig {
    fn default() -> Self {
        Self {
            key_file: None,
            witness_dir: None,
            min_free_disk_mb: 256,
        }
    }
}

impl JournalConfig {
    /// Key file `<dir>/journal.key` and witnesses under `<dir>/witness`: everything the
    /// journal keeps outside the data directory, in one place (tests, packaged
    /// installs). `dir` must not be inside the data directory.
    #[must_use]
    pub fn under(dir: &Path) -> Self {
        Self {
            key_file: Some(dir.join("journal.key")),
            witness_dir: Some(dir.join("witness")),
            ..Self::default()
        }
    }

    /// The key file: `key_file`, else the default under the user's configuration
    /// directory, read from `env` (`XDG_CONFIG_HOME`, `HOME`). `None` when neither is set.
    #[must_use]
    pub fn key_file_path(&self, env: impl Fn(&str) -> Option<String>) -> Option<PathBuf> {
        if let Some(p) = &self.key_file {
            return Some(p.clone());
        }
        let base = env("XDG_CONFIG_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| {
                env("HOME")
                    .filter(|v| !v.is_empty())
                    .map(|h| PathBuf::from(h).join(".config"))
            })?;
        Some(base.join("gal-friday").join("journal.key"))
    }

    /// The witness directory: `witness_dir`, else `witness/` beside the key file.
    #[must_use]
    pub fn witness_dir_path(&self, env: impl Fn(&str) -> Option<String>) -> Option<PathBuf> {
        if let Some(p) = &self.witness_dir {
            return Some(p.clone());
        }
        let key = self.key_file_path(env)?;
        Some(key.parent().unwrap_or(Path::new(".")).join("witness"))
    }
}

/// `[market]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MarketConfig {
    /// Kraken WebSocket v2 public endpoint.
    pub ws_url: String,
    /// Pairs traded and watched.
    pub pairs: Vec<Pair>,
    /// Book depth subscribed: 10, 25, 100, 500 or 1000.
    pub book_depth: u32,
    /// A pair is stale after this many seconds without a message.
    pub staleness_secs: u64,
    /// Seconds without any message (heartbeats included) before reconnecting.
    pub heartbeat_timeout_secs: u64,
    /// Reconnect backoff: first delay, milliseconds.
    pub reconnect_initial_ms: u64,
    /// Reconnect backoff: cap, milliseconds.
    pub reconnect_max_ms: u64,
    /// In paper mode: the recording replayed (JSON lines); empty means the bundled one.
    pub replay_file: Option<PathBuf>,
    /// Replay pace: `0` full speed, `1.0` real time, `10` ten times faster.
    pub replay_speed: Decimal,
}

impl Default for MarketConfig {
    fn default() -> Self {
        Self {
            ws_url: "wss://ws.kraken.com/v2".into(),
            pairs: vec![
                Pair::new("XRP/USD").expect("valid literal"),
                Pair::new("DOGE/USD").expect("valid literal"),
            ],
            book_depth: 10,
            staleness_secs: 60,
            heartbeat_timeout_secs: 10,
            reconnect_initial_ms: 500,
            reconnect_max_ms: 30_000,
            replay_file: None,
            replay_speed: Decimal::ONE,
        }
    }
}

/// `[exchange]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExchangeConfig {
    /// Kraken REST base URL.
    pub rest_url: String,
    /// Kraken's private WebSocket v2 URL: fills are pushed on its `executions` channel
    /// (REST order-status polling is the fallback while it is down).
    pub ws_auth_url: String,
    /// Kraken verification tier (`starter`, `intermediate`, `pro`), for the rate limiter.
    pub tier: Tier,
    /// Per-call timeout, milliseconds.
    pub timeout_ms: u64,
    /// Dead man's switch (`CancelAllOrdersAfter`) timeout, seconds; 0 disables.
    pub dead_man_switch_secs: u64,
    /// Disarm the dead man's switch on clean shutdown (otherwise it fires and cancels).
    pub disarm_on_shutdown: bool,
    /// Paper exchange taker fee, percent.
    pub paper_taker_fee_pct: Decimal,
    /// Paper exchange maker fee, percent.
    pub paper_maker_fee_pct: Decimal,
    /// Paper exchange starting balances per asset.
    pub paper_balances: BTreeMap<String, Decimal>,
    /// What live start-up does with orders already open on the account (left by a
    /// previous run or placed by hand): `cancel` (default) or `adopt`.
    pub unknown_orders: UnknownOrders,
}

/// `exchange.unknown_orders`: what live start-up does with open orders it finds on the
/// account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum UnknownOrders {
    /// Cancel every one before the gate can open (fail closed: nothing trades on an intent
    /// this process does not know).
    #[default]
    Cancel,
    /// Keep them and track them like orders this daemon placed: their fills change the
    /// positions, a halt cancels them.
    Adopt,
}

impl Default for ExchangeConfig {
    fn default() -> Self {
        Self {
            rest_url: "https://api.kraken.com".into(),
            ws_auth_url: "wss://ws-auth.kraken.com/v2".into(),
            tier: Tier::Starter,
            timeout_ms: 5_000,
            dead_man_switch_secs: 60,
            disarm_on_shutdown: false,
            paper_taker_fee_pct: Decimal::new(40, 2),
            paper_maker_fee_pct: Decimal::new(25, 2),
            paper_balances: BTreeMap::from([("USD".to_owned(), Decimal::new(100_000, 0))]),
            unknown_orders: UnknownOrders::Cancel,
        }
    }
}

/// `exchange.tier`: the account's Kraken verification tier, which sets its rate limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    /// Starter.
    #[default]
    Starter,
    /// Intermediate.
    Intermediate,
    /// Pro.
    Pro,
}

impl Tier {
    /// The name in configuration.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starter => "starter",
            Self::Intermediate => "intermediate",
            Self::Pro => "pro",
        }
    }

    /// Kraken's REST API counter of this tier: the maximum, in points, and the decay, in
    /// thousandths of a point per second (docs.kraken.com, "Spot REST Rate Limits": Starter
    /// max 15, −0.33/s; Intermediate max 20, −0.5/s; Pro max 20, −1/s).
    #[must_use]
    pub fn rest_counter(self) -> (u32, u32) {
        match self {
            Self::Starter => (15, 330),
            Self::Intermediate => (20, 500),
            Self::Pro => (20, 1000),
        }
    }
}

impl std::fmt::Display for Tier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The REST counter's shares (gf-exec's rate limiter lanes): the dead man's switch refresh
/// gets what it needs but at most half the decay; of the rest, halt traffic gets this many
/// percent …
pub const REST_PRIORITY_SHARE_PCT: u64 = 10;
/// … order-status sync this many percent, and everything else the remainder.
pub const REST_SYNC_SHARE_PCT: u64 = 65;
/// The slowest order-status sync `config check` accepts, in thousandths of a poll per
/// second (100: a poll every 10 s, i.e. fills seen within 10 s of execution).
pub const MIN_SYNC_MILLI_PER_SEC: u64 = 100;

/// How often the dead man's switch is refreshed for a `timeout_secs`: every quarter of it
/// (Kraken suggests refreshing a 60 s timeout every 15–30 s), at least every second.
#[must_use]
pub fn dead_man_refresh_secs(timeout_secs: u64) -> u64 {
    (timeout_secs / 4).max(1)
}

/// Thousandths of a point per second the dead man's switch needs for `timeout_secs`, and
/// what order-status sync gets beside it, on a counter decaying at `decay_milli_per_sec`:
/// `(needed, sync)`. The switch's lane is capped at half the decay.
#[must_use]
pub fn rest_budget(timeout_secs: u64, decay_milli_per_sec: u64) -> (u64, u64) {
    let needed = if timeout_secs == 0 {
        0
    } else {
        1000u64.div_ceil(dead_man_refresh_secs(timeout_secs))
    };
    let granted = needed.min(decay_milli_per_sec / 2);
    let sync = (decay_milli_per_sec - granted) * REST_SYNC_SHARE_PCT / 100;
    (needed, sync)
}

/// `None` when the tier can sustain a dead man's switch of `timeout_secs` beside the
/// minimum order-status sync; otherwise why not, naming the numbers.
fn dead_man_budget_problem(tier: Tier, timeout_secs: u64) -> Option<String> {
    let (_, decay) = tier.rest_counter();
    let decay = u64::from(decay);
    let fits = |t: u64| {
        let (needed, sync) = rest_budget(t, decay);
        needed <= decay / 2 && sync >= MIN_SYNC_MILLI_PER_SEC
    };
    if timeout_secs == 0 || fits(timeout_secs) {
        return None;
    }
    let (needed, sync) = rest_budget(timeout_secs, decay);
    let shortest = (1..=86_400).find(|t| fits(*t)).unwrap_or(86_400);
    let per_sec = |milli: u64| format!("{}.{:03}/s", milli / 1000, milli % 1000);
    let refresh = dead_man_refresh_secs(timeout_secs);
    let problem = if needed > decay / 2 {
        format!(
            "refreshed every {refresh} s it needs {} of the REST counter, more than the {} \
             (half the decay) its lane may use",
            per_sec(needed),
            per_sec(decay / 2)
        )
    } else {
        format!(
            "refreshed every {refresh} s it needs {} and leaves order-status sync {}",
            per_sec(needed),
            per_sec(sync)
        )
    };
    Some(format!(
        "on tier {tier} the REST counter decays {}; {problem}, while order-status sync needs \
         at least {} (a poll every {} s) to see fills: use at least {shortest} s on {tier}, \
         or a higher tier",
        per_sec(decay),
        per_sec(MIN_SYNC_MILLI_PER_SEC),
        1000 / MIN_SYNC_MILLI_PER_SEC,
    ))
}

/// Per-pair overrides under `[risk.pairs."XRP/USD"]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct PairRiskConfig {
    /// Maximum position notional for this pair, quote currency.
    pub max_position_notional: Option<Decimal>,
    /// Lot size (quantity step) for sizing.
    pub lot_size: Option<Decimal>,
}

/// `[risk]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RiskConfig {
    /// Equity risked per trade, percent.
    pub risk_per_trade_pct: Decimal,
    /// Reject limit prices further than this from the market, percent.
    pub price_collar_pct: Decimal,
    /// Maximum notional of one order, quote currency.
    pub max_order_notional: Decimal,
    /// Maximum notional of one position, quote currency.
    pub max_position_notional: Decimal,
    /// Maximum resting orders.
    pub max_open_orders: u32,
    /// Order-rate throttle: at most this many orders …
    pub max_orders_per_window: u32,
    /// … per this many seconds.
    pub order_window_secs: u64,
    /// Market prices older than this are stale for pre-trade checks, seconds.
    pub max_price_age_secs: u64,
    /// Default lot size when a pair has none.
    pub lot_size: Decimal,
    /// Per-pair overrides; keys must be configured pairs.
    pub pairs: BTreeMap<Pair, PairRiskConfig>,
}

impl Default for RiskConfig {
    fn default() -> Self {
        Self {
            risk_per_trade_pct: Decimal::new(5, 1),
            price_collar_pct: Decimal::new(5, 0),
            max_order_notional: Decimal::new(25_000, 0),
            max_position_notional: Decimal::new(50_000, 0),
            max_open_orders: 20,
            max_orders_per_window: 10,
            order_window_secs: 60,
            max_price_age_secs: 10,
            lot_size: Decimal::ONE,
            pairs: BTreeMap::new(),
        }
    }
}

/// Per-condition overrides under `[halt.conditions.<id>]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ConditionConfig {
    /// Set to `false` to disable the condition.
    pub enabled: Option<bool>,
    /// Behaviour for this condition instead of the global one.
    pub behaviour: Option<HaltBehaviour>,
}

/// Condition ids known to `[halt.conditions]`.
pub const CONDITION_IDS: &[&str] = &[
    "max_total_drawdown",
    "max_daily_drawdown",
    "max_consecutive_losses",
    "market_volatility",
    "api_error_rate",
    "market_data_staleness",
    "position_risk",
];

/// `[halt]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HaltConfig {
    /// Total drawdown from peak equity, percent.
    pub max_total_drawdown_pct: Decimal,
    /// Drawdown from the start-of-UTC-day equity, percent.
    pub max_daily_drawdown_pct: Decimal,
    /// Consecutive losing round trips.
    pub max_consecutive_losses: u32,
    /// Rolling volatility per pair, percent.
    pub max_volatility_pct: Decimal,
    /// Volatility window, minutes of 1-minute closes.
    pub volatility_window_mins: u32,
    /// API errors per rolling minute.
    pub max_api_errors_per_min: u32,
    /// Market-data staleness, seconds.
    pub max_staleness_secs: u64,
    /// Total open exposure, quote currency.
    pub max_exposure_notional: Decimal,
    /// What a halt does.
    pub behaviour: HaltBehaviour,
    /// Closure attempts before giving up and alerting.
    pub closure_max_attempts: u32,
    /// First closure retry delay, milliseconds (doubles each attempt).
    pub closure_backoff_ms: u64,
    /// The operator confirming resume must differ from the one who completed the rest.
    pub two_person_rule: bool,
    /// Per-condition overrides, keyed by condition id.
    pub conditions: BTreeMap<String, ConditionConfig>,
}

impl Default for HaltConfig {
    fn default() -> Self {
        Self {
            max_total_drawdown_pct: Decimal::new(15, 0),
            max_daily_drawdown_pct: Decimal::new(2, 0),
            max_consecutive_losses: 5,
            max_volatility_pct: Decimal::new(5, 0),
            volatility_window_mins: 60,
            max_api_errors_per_min: 10,
            max_staleness_secs: 60,
            max_exposure_notional: Decimal::new(100_000, 0),
            behaviour: HaltBehaviour::ClosePositions,
            closure_max_attempts: 10,
            closure_backoff_ms: 200,
            two_person_rule: false,
            conditions: BTreeMap::new(),
        }
    }
}

/// `[api]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Listen address. Loopback by default.
    pub bind: SocketAddr,
    /// Largest accepted request body, bytes.
    pub max_body_bytes: usize,
    /// Most connections served at once (lowered to fit the open-file limit). A new
    /// connection beyond it closes the longest-idle ones; with none idle, it is closed.
    pub max_connections: usize,
    /// A request head (request line and headers) whose first byte has arrived must be
    /// complete within this many milliseconds, else the connection is closed.
    pub header_read_timeout_ms: u64,
    /// A connection with no request in progress and no bytes exchanged for this many
    /// milliseconds (fresh, or kept alive after a response) is closed.
    pub idle_timeout_ms: u64,
    /// Serve `/metrics` and `/readyz?verbose` without a token (they show equity, P&L and
    /// the halt reason). Off: they need a viewer token.
    pub public_metrics: bool,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: 16 * 1024,
            max_connections: 256,
            header_read_timeout_ms: 5_000,
            idle_timeout_ms: 30_000,
            public_metrics: false,
        }
    }
}

/// Which secret provider is used, chosen explicitly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SecretProviderKind {
    /// No credentials (paper mode).
    #[default]
    None,
    /// `KRAKEN_API_KEY` / `KRAKEN_API_SECRET`.
    Env,
    /// An age-encrypted file.
    File,
    /// HashiCorp Vault KV v2.
    Vault,
    /// AWS Secrets Manager.
    Aws,
}

/// `secrets.vault_auth`: how the `vault` provider logs in (its credentials come from the
/// environment).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum VaultAuthMethod {
    /// A token from `VAULT_TOKEN`.
    #[default]
    Token,
    /// AppRole login with `VAULT_ROLE_ID` and `VAULT_SECRET_ID`.
    #[serde(rename = "approle")]
    AppRole,
}

/// `[secrets]`. Provider-specific settings live in their own tables and are
/// validated by gf-secrets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecretsConfig {
    /// The provider.
    pub provider: SecretProviderKind,
    /// Name of the secret set holding the exchange keys.
    pub set: String,
    /// How often the rotation watcher polls, seconds; 0 disables.
    pub rotation_poll_secs: u64,
    /// `file` provider: path to the age file.
    pub file_path: Option<PathBuf>,
    /// `file` provider: X25519 identity file instead of a passphrase.
    pub file_identity: Option<PathBuf>,
    /// `vault` provider: server address.
    pub vault_addr: Option<String>,
    /// `vault` provider: namespace.
    pub vault_namespace: Option<String>,
    /// `vault` provider: KV v2 mount.
    pub vault_mount: String,
    /// `vault` provider: path under the mount.
    pub vault_path: Option<String>,
    /// `vault` provider: `token` or `approle`.
    pub vault_auth: VaultAuthMethod,
    /// `aws` provider: region.
    pub aws_region: Option<String>,
    /// `aws` provider: endpoint override (for emulators).
    pub aws_endpoint: Option<String>,
    /// `aws` provider: secret id.
    pub aws_secret_id: Option<String>,
}

impl Default for SecretsConfig {
    fn default() -> Self {
        Self {
            provider: SecretProviderKind::None,
            set: "kraken".into(),
            rotation_poll_secs: 300,
            file_path: None,
            file_identity: None,
            vault_addr: None,
            vault_namespace: None,
            vault_mount: "secret".into(),
            vault_path: None,
            vault_auth: VaultAuthMethod::Token,
            aws_region: None,
            aws_endpoint: None,
            aws_secret_id: None,
        }
    }
}

/// `[monitor]`. Alert channels live in `[[monitor.channels]]` tables validated by
/// gf-monitor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MonitorConfig {
    /// Dashboard push interval, milliseconds.
    pub dashboard_interval_ms: u64,
    /// Alert when drawdown exceeds this percent (warning before the halt limit).
    pub alert_drawdown_pct: Decimal,
    /// Alert when API errors per minute exceed this.
    pub alert_api_errors_per_min: u32,
    /// Alert when average latency exceeds this, milliseconds.
    pub alert_latency_ms: u64,
    /// Resident-memory threshold for the health check, MiB.
    pub max_memory_mib: u64,
    /// Free-disk threshold of the data directory for the health check, MiB.
    pub min_disk_free_mib: u64,
    /// Alert channels.
    pub channels: Vec<ChannelConfig>,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        Self {
            dashboard_interval_ms: 1_000,
            alert_drawdown_pct: Decimal::new(10, 0),
            alert_api_errors_per_min: 5,
            alert_latency_ms: 500,
            max_memory_mib: 512,
            min_disk_free_mib: 500,
            channels: Vec::new(),
        }
    }
}

/// One alert channel: `kind` is `log`, `email`, `webhook`, `slack`, `discord`,
/// `telegram` or `sms`; the remaining keys are the channel's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChannelConfig {
    /// A name for logs and errors.
    pub name: String,
    /// Channel type.
    pub kind: ChannelKind,
    /// Lowest severity delivered: `info` (unset), `warning`, `critical`.
    #[serde(default)]
    pub min_severity: Option<Severity>,
    /// Channel-specific settings (URL, SMTP host, …).
    #[serde(flatten)]
    pub settings: BTreeMap<String, toml::Value>,
}

/// `monitor.channels[].kind`: where an alert channel delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelKind {
    /// The daemon's own log.
    Log,
    /// E-mail over SMTP.
    Email,
    /// A generic webhook (the notice as JSON).
    Webhook,
    /// A Slack incoming webhook.
    Slack,
    /// A Discord webhook.
    Discord,
    /// Telegram's `sendMessage`.
    Telegram,
    /// A Twilio-compatible SMS endpoint.
    Sms,
}

impl ChannelKind {
    /// The name in configuration.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Log => "log",
            Self::Email => "email",
            Self::Webhook => "webhook",
            Self::Slack => "slack",
            Self::Discord => "discord",
            Self::Telegram => "telegram",
            Self::Sms => "sms",
        }
    }
}

impl std::fmt::Display for ChannelKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Config {
    /// Loads a file, applies environment overrides and validates.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file, key and value.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml_with_env(&text, &path.display().to_string(), std::env::vars())
    }

    /// The embedded default (every key at its default), with environment overrides.
    ///
    /// # Errors
    /// [`ConfigError`] when an override is invalid.
    pub fn embedded_default() -> Result<Self, ConfigError> {
        Self::from_toml_with_env("", "<default>", std::env::vars())
    }

    /// Parses and validates TOML without looking at the environment.
    ///
    /// # Errors
    /// [`ConfigError`] naming the key and value.
    pub fn from_toml_str(text: &str) -> Result<Self, ConfigError> {
        Self::from_toml_with_env(text, "<string>", std::iter::empty())
    }

    /// Parses TOML, applies `GF_SECTION__KEY` overrides from `vars`, and validates.
    ///
    /// Override values are read as TOML values when they parse as one (`12`, `true`,
    /// `["XRP/USD"]`) and as strings otherwise.
    ///
    /// # Errors
    /// [`ConfigError`] naming the key and value.
    pub fn from_toml_with_env(
        text: &str,
        origin: &str,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut table: toml::Table =
            text.parse()
                .map_err(|e: toml::de::Error| ConfigError::Parse {
                    origin: origin.to_owned(),
                    message: one_line(&e.to_string()),
                })?;
        for (var, value) in vars {
            let Some(path) = var.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            if !path.contains("__") {
                continue; // GF_TOKEN, GF_MASTER_PASSWORD …: not config overrides.
            }
            apply_override(&mut table, &var, path, &value)?;
        }
        let config: Config =
            toml::Value::Table(table)
                .try_into()
                .map_err(|e: toml::de::Error| ConfigError::Parse {
                    origin: origin.to_owned(),
                    message: one_line(&e.to_string()),
                })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks ranges and cross-references.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] for the first offending key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let pct = |key: &str, v: Decimal, allow_zero: bool| {
            if v < Decimal::ZERO || (!allow_zero && v.is_zero()) || v > Decimal::ONE_HUNDRED {
                Err(ConfigError::invalid(
                    key,
                    v,
                    if allow_zero {
                        "must be a percentage between 0 and 100"
                    } else {
                        "must be a percentage above 0 and at most 100"
                    },
                ))
            } else {
                Ok(())
            }
        };
        let positive = |key: &str, v: Decimal| {
            if v <= Decimal::ZERO {
                Err(ConfigError::invalid(key, v, "must be positive"))
            } else {
                Ok(())
            }
        };
        let nonzero = |key: &str, v: u64| {
            if v == 0 {
                Err(ConfigError::invalid(key, v, "must be at least 1"))
            } else {
                Ok(())
            }
        };

        // [market]
        let m = &self.market;
        if m.pairs.is_empty() {
            return Err(ConfigError::invalid(
                "market.pairs",
                "[]",
                "at least one pair is needed",
            ));
        }
        for (i, p) in m.pairs.iter().enumerate() {
            if m.pairs[..i].contains(p) {
                return Err(ConfigError::invalid("market.pairs", p, "listed twice"));
            }
        }
        if ![10, 25, 100, 500, 1000].contains(&m.book_depth) {
            return Err(ConfigError::invalid(
                "market.book_depth",
                m.book_depth,
                "must be one of 10, 25, 100, 500, 1000",
            ));
        }
        url_scheme("market.ws_url", &m.ws_url, &["ws://", "wss://"])?;
        cleartext_only_on_loopback("market.ws_url", &m.ws_url, "ws://", "wss://")?;
        nonzero("market.staleness_secs", m.staleness_secs)?;
        nonzero("market.heartbeat_timeout_secs", m.heartbeat_timeout_secs)?;
        nonzero("market.reconnect_initial_ms", m.reconnect_initial_ms)?;
        if m.reconnect_max_ms < m.reconnect_initial_ms {
            return Err(ConfigError::invalid(
                "market.reconnect_max_ms",
                m.reconnect_max_ms,
                "must be at least market.reconnect_initial_ms",
            ));
        }
        if m.replay_speed < Decimal::ZERO {
            return Err(ConfigError::invalid(
                "market.replay_speed",
                m.replay_speed,
                "must be 0 (full speed) or positive",
            ));
        }

        // [exchange]
        let e = &self.exchange;
        url_scheme("exchange.rest_url", &e.rest_url, &["http://", "https://"])?;
        cleartext_only_on_loopback("exchange.rest_url", &e.rest_url, "http://", "https://")?;
        url_scheme("exchange.ws_auth_url", &e.ws_auth_url, &["ws://", "wss://"])?;
        cleartext_only_on_loopback("exchange.ws_auth_url", &e.ws_auth_url, "ws://", "wss://")?;
        nonzero("exchange.timeout_ms", e.timeout_ms)?;
        if e.dead_man_switch_secs > 86_400 {
            return Err(ConfigError::invalid(
                "exchange.dead_man_switch_secs",
                e.dead_man_switch_secs,
                "kraken accepts at most 86400 seconds",
            ));
        }
        if let Some(reason) = dead_man_budget_problem(e.tier, e.dead_man_switch_secs) {
            return Err(ConfigError::invalid(
                "exchange.dead_man_switch_secs",
                e.dead_man_switch_secs,
                &reason,
            ));
        }
        pct("exchange.paper_taker_fee_pct", e.paper_taker_fee_pct, true)?;
        pct("exchange.paper_maker_fee_pct", e.paper_maker_fee_pct, true)?;
        for (asset, amount) in &e.paper_balances {
            if *amount < Decimal::ZERO {
                return Err(ConfigError::invalid(
                    &format!("exchange.paper_balances.{asset}"),
                    amount,
                    "must not be negative",
                ));
            }
        }

        // [risk]
        let r = &self.risk;
        pct("risk.risk_per_trade_pct", r.risk_per_trade_pct, false)?;
        pct("risk.price_collar_pct", r.price_collar_pct, false)?;
        positive("risk.max_order_notional", r.max_order_notional)?;
        positive("risk.max_position_notional", r.max_position_notional)?;
        nonzero("risk.max_open_orders", r.max_open_orders.into())?;
        nonzero("risk.max_orders_per_window", r.max_orders_per_window.into())?;
        nonzero("risk.order_window_secs", r.order_window_secs)?;
        nonzero("risk.max_price_age_secs", r.max_price_age_secs)?;
        positive("risk.lot_size", r.lot_size)?;
        for (pair, over) in &r.pairs {
            if !m.pairs.contains(pair) {
                return Err(ConfigError::invalid(
                    &format!("risk.pairs.\"{pair}\""),
                    pair,
                    "unknown pair: not listed in market.pairs",
                ));
            }
            if let Some(v) = over.max_position_notional {
                positive(&format!("risk.pairs.\"{pair}\".max_position_notional"), v)?;
            }
            if let Some(v) = over.lot_size {
                positive(&format!("risk.pairs.\"{pair}\".lot_size"), v)?;
            }
        }

        // [halt]
        let h = &self.halt;
        pct(
            "halt.max_total_drawdown_pct",
            h.max_total_drawdown_pct,
            false,
        )?;
        pct(
            "halt.max_daily_drawdown_pct",
            h.max_daily_drawdown_pct,
            false,
        )?;
        nonzero(
            "halt.max_consecutive_losses",
            h.max_consecutive_losses.into(),
        )?;
        pct("halt.max_volatility_pct", h.max_volatility_pct, false)?;
        if h.volatility_window_mins < 2 {
            return Err(ConfigError::invalid(
                "halt.volatility_window_mins",
                h.volatility_window_mins,
                "must be at least 2 (a deviation needs two returns)",
            ));
        }
        nonzero(
            "halt.max_api_errors_per_min",
            h.max_api_errors_per_min.into(),
        )?;
        nonzero("halt.max_staleness_secs", h.max_staleness_secs)?;
        positive("halt.max_exposure_notional", h.max_exposure_notional)?;
        nonzero("halt.closure_max_attempts", h.closure_max_attempts.into())?;
        for id in h.conditions.keys() {
            if !CONDITION_IDS.contains(&id.as_str()) {
                return Err(ConfigError::invalid(
                    &format!("halt.conditions.{id}"),
                    id,
                    &format!("unknown condition; known: {}", CONDITION_IDS.join(", ")),
                ));
            }
        }

        // [api]
        if self.api.max_body_bytes < 256 {
            return Err(ConfigError::invalid(
                "api.max_body_bytes",
                self.api.max_body_bytes,
                "must be at least 256",
            ));
        }
        if self.api.max_connections < 8 {
            return Err(ConfigError::invalid(
                "api.max_connections",
                self.api.max_connections,
                "must be at least 8",
            ));
        }
        nonzero(
            "api.header_read_timeout_ms",
            self.api.header_read_timeout_ms,
        )?;
        nonzero("api.idle_timeout_ms", self.api.idle_timeout_ms)?;

        // [gateway]
        let g = &self.gateway;
        nonzero("gateway.orders_per_second", u64::from(g.orders_per_second))?;
        nonzero("gateway.order_burst", u64::from(g.order_burst))?;
        nonzero("gateway.max_open_orders", u64::from(g.max_open_orders))?;
        for (name, own) in &g.traders {
            for (key, v) in [
                ("orders_per_second", own.orders_per_second),
                ("order_burst", own.order_burst),
                ("max_open_orders", own.max_open_orders),
            ] {
                if let Some(v) = v {
                    nonzero(&format!("gateway.traders.\"{name}\".{key}"), u64::from(v))?;
                }
            }
        }
        if g.feed_capacity < 16 {
            return Err(ConfigError::invalid(
                "gateway.feed_capacity",
                g.feed_capacity,
                "must be at least 16",
            ));
        }
        if g.max_remembered_orders < 100 {
            return Err(ConfigError::invalid(
                "gateway.max_remembered_orders",
                g.max_remembered_orders,
                "must be at least 100",
            ));
        }

        // [fleet]
        self.validate_fleet()?;

        // [secrets]
        let s = &self.secrets;
        if self.general.mode == Mode::Live && s.provider == SecretProviderKind::None {
            return Err(ConfigError::invalid(
                "secrets.provider",
                "none",
                "live mode needs a secret provider (env, file, vault or aws)",
            ));
        }
        let need = |key: &str, present: bool, provider: &str| {
            if present {
                Ok(())
            } else {
                Err(ConfigError::invalid(
                    key,
                    "<missing>",
                    &format!("required by the {provider} provider"),
                ))
            }
        };
        match s.provider {
            SecretProviderKind::File => need("secrets.file_path", s.file_path.is_some(), "file")?,
            SecretProviderKind::Vault => {
                need("secrets.vault_addr", s.vault_addr.is_some(), "vault")?;
                need("secrets.vault_path", s.vault_path.is_some(), "vault")?;
            }
            SecretProviderKind::Aws => {
                need("secrets.aws_region", s.aws_region.is_some(), "aws")?;
                need("secrets.aws_secret_id", s.aws_secret_id.is_some(), "aws")?;
            }
            SecretProviderKind::None | SecretProviderKind::Env => {}
        }

        // [monitor]
        let mo = &self.monitor;
        nonzero("monitor.dashboard_interval_ms", mo.dashboard_interval_ms)?;
        pct("monitor.alert_drawdown_pct", mo.alert_drawdown_pct, false)?;
        Ok(())
    }

    fn validate_fleet(&self) -> Result<(), ConfigError> {
        let f = &self.fleet;
        if !is_fleet_name(&f.name) {
            return Err(ConfigError::invalid(
                "fleet.name",
                &f.name,
                "must be 1-64 letters, digits, '-' or '_'",
            ));
        }
        if f.enabled && !is_fleet_name(&f.node) {
            return Err(ConfigError::invalid(
                "fleet.node",
                if f.node.is_empty() {
                    "<missing>"
                } else {
                    &f.node
                },
                "must be set when the fleet is enabled: this node's unique id (1-64 letters, digits, '-' or '_')",
            ));
        }
        if f.enabled && f.nats_url.is_empty() {
            return Err(ConfigError::invalid(
                "fleet.nats_url",
                "[]",
                "needs at least one NATS server when the fleet is enabled",
            ));
        }
        for url in &f.nats_url {
            let ok = ["nats://", "tls://"]
                .iter()
                .any(|p| url.strip_prefix(p).is_some_and(|rest| !rest.is_empty()));
            if !ok {
                return Err(ConfigError::invalid(
                    "fleet.nats_url",
                    url,
                    "must be nats://host:port or tls://host:port",
                ));
            }
        }
        if f.partition_halt_secs == 0 || f.partition_halt_secs > 3600 {
            return Err(ConfigError::invalid(
                "fleet.partition_halt_secs",
                f.partition_halt_secs,
                "must be between 1 and 3600",
            ));
        }
        if f.heartbeat_ms < 50 || f.heartbeat_ms > f.partition_halt_secs * 1000 / 2 {
            return Err(ConfigError::invalid(
                "fleet.heartbeat_ms",
                f.heartbeat_ms,
                "must be at least 50 and at most half of fleet.partition_halt_secs (two heartbeats per partition timeout)",
            ));
        }
        for reason in &f.escalate {
            if !CONDITION_IDS.contains(&reason.as_str())
                && !FLEET_ESCALATE_WORDS.contains(&reason.as_str())
            {
                return Err(ConfigError::invalid(
                    "fleet.escalate",
                    reason,
                    &format!(
                        "unknown halt reason; use one of {} or a condition id ({})",
                        FLEET_ESCALATE_WORDS.join(", "),
                        CONDITION_IDS.join(", ")
                    ),
                ));
            }
        }
        if f.max_total_drawdown_pct < Decimal::ZERO
            || f.max_total_drawdown_pct > Decimal::ONE_HUNDRED
        {
            return Err(ConfigError::invalid(
                "fleet.max_total_drawdown_pct",
                f.max_total_drawdown_pct,
                "must be a percentage between 0 (off) and 100",
            ));
        }
        if f.max_exposure_notional < Decimal::ZERO {
            return Err(ConfigError::invalid(
                "fleet.max_exposure_notional",
                f.max_exposure_notional,
                "must be 0 (off) or positive",
            ));
        }
        if f.enabled
            && f.auth != FleetAuth::None
            && self.secrets.provider == SecretProviderKind::None
        {
            return Err(ConfigError::invalid(
                "fleet.auth",
                f.auth.as_str(),
                "needs a secret provider ([secrets] provider = env, file, vault or aws) holding the NATS credentials",
            ));
        }
        Ok(())
    }

    /// Serialises to TOML (for `config check` and docs).
    ///
    /// # Errors
    /// Never in practice; propagated from the serialiser.
    pub fn to_toml(&self) -> Result<String, ConfigError> {
        toml::to_string_pretty(self).map_err(|e| ConfigError::Parse {
            origin: "<serialise>".into(),
            message: e.to_string(),
        })
    }
}

/// toml's messages span several lines (a source excerpt with a caret); errors here are
/// one line, so keep the text lines and drop the excerpt.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.contains('|'))
        .collect::<Vec<_>>()
        .join("; ")
}

fn url_scheme(key: &str, url: &str, schemes: &[&str]) -> Result<(), ConfigError> {
    if schemes
        .iter()
        .any(|s| url.starts_with(s) && url.len() > s.len())
    {
        Ok(())
    } else {
        Err(ConfigError::invalid(
            key,
            url,
            &format!("must be a URL starting with {}", schemes.join(" or ")),
        ))
    }
}

/// The host of `url` (no scheme, user info, port or path; IPv6 without brackets).
fn url_host(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if let Some(v6) = host_port.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        host_port.split(':').next().unwrap_or_default()
    }
}

/// Whether `host` is this machine: `localhost` or a loopback address.
fn is_loopback_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Refuses a cleartext exchange URL (`http://`, `ws://`) whose host is not loopback: the
/// API key, signatures and orders must not cross a network unencrypted. Loopback stays
/// allowed for test servers and local proxies.
fn cleartext_only_on_loopback(
    key: &str,
    url: &str,
    cleartext: &str,
    secure: &str,
) -> Result<(), ConfigError> {
    if url.starts_with(cleartext) && !is_loopback_host(url_host(url)) {
        return Err(ConfigError::invalid(
            key,
            url,
            &format!(
                "must use {secure} for a host that is not loopback (127.0.0.1, ::1, localhost); \
                 {cleartext} would send credentials and orders unencrypted"
            ),
        ));
    }
    Ok(())
}

fn apply_override(
    table: &mut toml::Table,
    var: &str,
    path: &str,
    raw: &str,
) -> Result<(), ConfigError> {
    let keys: Vec<String> = path.split("__").map(str::to_ascii_lowercase).collect();
    if keys.iter().any(String::is_empty) {
        return Err(ConfigError::Env {
            var: var.to_owned(),
            reason: "empty key segment (use GF_SECTION__KEY)".into(),
        });
    }
    let value = parse_env_value(raw);
    let (last, parents) = keys.split_last().expect("split on a non-empty string");
    let mut node = table;
    for key in parents {
        let entry = node
            .entry(key.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        node = entry.as_table_mut().ok_or_else(|| ConfigError::Env {
            var: var.to_owned(),
            reason: format!("`{key}` is not a table"),
        })?;
    }
    node.insert(last.clone(), value);
    Ok(())
}

fn parse_env_value(raw: &str) -> toml::Value {
    // Parse as the right-hand side of a TOML assignment; fall back to a plain string.
    format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_match_the_design() {
        let c = Config::from_toml_str("").unwrap();
        assert_eq!(c.halt.max_total_drawdown_pct, Decimal::new(15, 0));
        assert_eq!(c.halt.max_daily_drawdown_pct, Decimal::new(2, 0));
        assert_eq!(c.halt.max_consecutive_losses, 5);
        assert_eq!(c.halt.max_volatility_pct, Decimal::new(5, 0));
        assert_eq!(c.halt.max_api_errors_per_min, 10);
        assert_eq!(c.halt.max_staleness_secs, 60);
        assert_eq!(c.api.bind.to_string(), "127.0.0.1:8080");
        assert_eq!(c.general.mode, Mode::Paper);
        assert_eq!(c.market.pairs.len(), 2);
        assert_eq!(c.journal.min_free_disk_mb, 256);
    }

    #[test]
    fn journal_paths_default_outside_the_data_dir() {
        let c = JournalConfig::default();
        let env = |k: &str| match k {
            "HOME" => Some("/home/op".to_owned()),
            _ => None,
        };
        assert_eq!(
            c.key_file_path(env),
            Some(PathBuf::from("/home/op/.config/gal-friday/journal.key"))
        );
        assert_eq!(
            c.witness_dir_path(env),
            Some(PathBuf::from("/home/op/.config/gal-friday/witness"))
        );
        let xdg = |k: &str| (k == "XDG_CONFIG_HOME").then(|| "/cfg".to_owned());
        assert_eq!(
            c.key_file_path(xdg),
            Some(PathBuf::from("/cfg/gal-friday/journal.key"))
        );
        assert_eq!(c.key_file_path(|_| None), None);
        let set = JournalConfig::under(Path::new("/srv/gf-keys"));
        assert_eq!(
            set.witness_dir_path(|_| None),
            Some(PathBuf::from("/srv/gf-keys/witness"))
        );
        let c = Config::from_toml_with_env(
            "",
            "t",
            vec![(
                "GF_JOURNAL__KEY_FILE".to_owned(),
                "/etc/gal-friday/journal.key".to_owned(),
            )],
        )
        .unwrap();
        assert_eq!(
            c.journal.key_file,
            Some(PathBuf::from("/etc/gal-friday/journal.key"))
        );
    }

    #[test]
    fn env_overrides_apply() {
        let c = Config::from_toml_with_env(
            "[api]\nbind = \"127.0.0.1:1\"\n",
            "t",
            env(&[
                ("GF_API__BIND", "127.0.0.1:9000"),
                ("GF_HALT__MAX_DAILY_DRAWDOWN_PCT", "3.5"),
                ("GF_MARKET__PAIRS", "[\"XRP/USD\"]"),
                ("GF_TOKEN", "ignored"),
                ("HOME", "/root"),
            ]),
        )
        .unwrap();
        assert_eq!(c.api.bind.to_string(), "127.0.0.1:9000");
        assert_eq!(c.halt.max_daily_drawdown_pct, Decimal::new(35, 1));
        assert_eq!(c.market.pairs, vec![Pair::new("XRP/USD").unwrap()]);
    }

    #[test]
    fn env_override_with_unknown_key_is_an_error() {
        let err = Config::from_toml_with_env("", "t", env(&[("GF_API__BINDD", "x")])).unwrap_err();
        assert!(err.to_string().contains("bindd"), "{err}");
    }

    #[test]
    fn dead_man_switch_the_tier_cannot_sustain_is_refused_with_the_numbers() {
        let mut cfg = Config::default();
        cfg.exchange.dead_man_switch_secs = 12;
        let err = cfg.validate().unwrap_err().to_string();
        for part in [
            "exchange.dead_man_switch_secs",
            "12",
            "starter",
            "0.330/s",
            "every 3 s",
            "0.334/s",
            "0.165/s",
            "0.100/s",
            "at least 28 s",
        ] {
            assert!(err.contains(part), "{part:?} missing from {err}");
        }
        cfg.exchange.dead_man_switch_secs = 27;
        assert!(cfg.validate().is_err());
        for (tier, shortest) in [
            (Tier::Starter, 28),
            (Tier::Intermediate, 16),
            (Tier::Pro, 8),
        ] {
            cfg.exchange.tier = tier;
            cfg.exchange.dead_man_switch_secs = shortest;
            cfg.validate().unwrap();
            cfg.exchange.dead_man_switch_secs = shortest - 1;
            let err = cfg.validate().unwrap_err().to_string();
            assert!(err.contains(&format!("at least {shortest} s")), "{err}");
        }
        // The default (60 s) and "off" pass on every tier.
        cfg.exchange.dead_man_switch_secs = 0;
        cfg.validate().unwrap();
        cfg.exchange.tier = Tier::Starter;
        cfg.exchange.dead_man_switch_secs = 60;
        cfg.validate().unwrap();
        let (needed, sync) = rest_budget(60, 330);
        assert_eq!((needed, sync), (67, 170));
        cfg.exchange.dead_man_switch_secs = 86_401;
        assert!(cfg.validate().unwrap_err().to_string().contains("86400"));
    }

    #[test]
    fn invalid_cases_name_the_key() {
        struct Case {
            toml: &'static str,
            key: &'static str,
        }
        let cases = [
            Case {
                toml: "[fleet]\nenabled = true",
                key: "fleet.node",
            },
            Case {
                toml: "[fleet]\nname = \"a b\"",
                key: "fleet.name",
            },
            Case {
                toml: "[fleet]\nnats_url = [\"http://x:4222\"]",
                key: "fleet.nats_url",
            },
            Case {
                toml: "[fleet]\nenabled = true\nnode = \"n\"\nnats_url = []",
                key: "fleet.nats_url",
            },
            Case {
                toml: "[fleet]\npartition_halt_secs = 0",
                key: "fleet.partition_halt_secs",
            },
            Case {
                toml: "[fleet]\npartition_halt_secs = 1\nheartbeat_ms = 600",
                key: "fleet.heartbeat_ms",
            },
            Case {
                toml: "[fleet]\nescalate = [\"bogus\"]",
                key: "fleet.escalate",
            },
            Case {
                toml: "[fleet]\nmax_total_drawdown_pct = 101",
                key: "fleet.max_total_drawdown_pct",
            },
            Case {
                toml: "[fleet]\nmax_exposure_notional = -1",
                key: "fleet.max_exposure_notional",
            },
            Case {
                toml: "[fleet]\nenabled = true\nnode = \"n\"\nauth = \"token\"",
                key: "fleet.auth",
            },
            Case {
                toml: "[halt]\nmax_total_drawdown_pct = -5",
                key: "halt.max_total_drawdown_pct",
            },
            Case {
                toml: "[halt]\nmax_daily_drawdown_pct = 150",
                key: "halt.max_daily_drawdown_pct",
            },
            Case {
                toml: "[halt]\nmax_consecutive_losses = 0",
                key: "halt.max_consecutive_losses",
            },
            Case {
                toml: "[halt]\nmax_staleness_secs = 0",
                key: "halt.max_staleness_secs",
            },
            Case {
                toml: "[halt]\nmax_drawdown = 5",
                key: "max_drawdown",
            },
            Case {
                toml: "[halt.conditions.bogus]\nenabled = false",
                key: "halt.conditions.bogus",
            },
            Case {
                toml: "[risk]\nprice_collar_pct = 0",
                key: "risk.price_collar_pct",
            },
            Case {
                toml: "[risk.pairs.\"ETH/USD\"]\nlot_size = 1",
                key: "risk.pairs.\"ETH/USD\"",
            },
            Case {
                toml: "[market]\npairs = [\"XRPUSD\"]",
                key: "XRPUSD",
            },
            Case {
                toml: "[market]\nbook_depth = 50",
                key: "market.book_depth",
            },
            Case {
                toml: "[exchange]\nrest_url = \"http://api.kraken.com\"",
                key: "exchange.rest_url",
            },
            Case {
                toml: "[exchange]\nrest_url = \"http://user@10.0.0.5:8080/x\"",
                key: "exchange.rest_url",
            },
            Case {
                toml: "[market]\nws_url = \"ws://ws.kraken.com/v2\"",
                key: "market.ws_url",
            },
            Case {
                toml: "[market]\nws_url = \"http://x\"",
                key: "market.ws_url",
            },
            Case {
                toml: "[exchange]\nws_auth_url = \"ws://ws-auth.kraken.com/v2\"",
                key: "exchange.ws_auth_url",
            },
            Case {
                toml: "[exchange]\nws_auth_url = \"https://ws-auth.kraken.com/v2\"",
                key: "exchange.ws_auth_url",
            },
            Case {
                toml: "[exchange]\ntier = \"gold\"",
                key: "exchange.tier",
            },
            Case {
                toml: "[exchange]\ndead_man_switch_secs = 12",
                key: "exchange.dead_man_switch_secs",
            },
            Case {
                toml: "[general]\nmode = \"live\"",
                key: "secrets.provider",
            },
            Case {
                toml: "[secrets]\nprovider = \"vault\"",
                key: "secrets.vault_addr",
            },
            Case {
                toml: "[[monitor.channels]]\nname = \"x\"\nkind = \"pager\"",
                key: "monitor.channels.kind",
            },
            Case {
                toml: "[nonsense]\nx = 1",
                key: "nonsense",
            },
            Case {
                toml: "[api]\nbind = \"localhost\"",
                key: "bind",
            },
            Case {
                toml: "[halt\n",
                key: "<string>",
            },
        ];
        for case in cases {
            let err = Config::from_toml_str(case.toml).unwrap_err().to_string();
            assert!(err.contains(case.key), "{:?} → {err}", case.toml);
        }
    }

    /// Every range and consistency rule refuses with its key and says what is allowed.
    #[test]
    fn each_rule_refuses_with_its_key_and_what_is_allowed() {
        let cases: &[(&str, &str, &str)] = &[
            ("[market]\npairs = []", "market.pairs", "at least one pair"),
            (
                "[market]\npairs = [\"XRP/USD\", \"DOGE/USD\", \"XRP/USD\"]",
                "market.pairs",
                "listed twice",
            ),
            (
                "[market]\nstaleness_secs = 0",
                "market.staleness_secs",
                "must be at least 1",
            ),
            (
                "[market]\nreconnect_initial_ms = 500\nreconnect_max_ms = 499",
                "market.reconnect_max_ms",
                "must be at least market.reconnect_initial_ms",
            ),
            (
                "[market]\nreplay_speed = -1",
                "market.replay_speed",
                "must be 0 (full speed) or positive",
            ),
            (
                "[exchange]\ntimeout_ms = 0",
                "exchange.timeout_ms",
                "must be at least 1",
            ),
            (
                "[exchange]\npaper_taker_fee_pct = 100.5",
                "exchange.paper_taker_fee_pct",
                "between 0 and 100",
            ),
            (
                "[exchange]\npaper_maker_fee_pct = -0.1",
                "exchange.paper_maker_fee_pct",
                "between 0 and 100",
            ),
            (
                "[exchange.paper_balances]\nUSD = -1",
                "exchange.paper_balances.USD",
                "must not be negative",
            ),
            (
                "[risk]\nrisk_per_trade_pct = 0",
                "risk.risk_per_trade_pct",
                "above 0 and at most 100",
            ),
            (
                "[risk]\nmax_order_notional = 0",
                "risk.max_order_notional",
                "must be positive",
            ),
            ("[risk]\nlot_size = -1", "risk.lot_size", "must be positive"),
            (
                "[risk]\nmax_open_orders = 0",
                "risk.max_open_orders",
                "must be at least 1",
            ),
            (
                "[risk.pairs.\"XRP/USD\"]\nmax_position_notional = 0",
                "risk.pairs.\"XRP/USD\".max_position_notional",
                "must be positive",
            ),
            (
                "[risk.pairs.\"XRP/USD\"]\nlot_size = -1",
                "risk.pairs.\"XRP/USD\".lot_size",
                "must be positive",
            ),
            (
                "[halt]\nmax_volatility_pct = 0",
                "halt.max_volatility_pct",
                "above 0",
            ),
            (
                "[halt]\nvolatility_window_mins = 1",
                "halt.volatility_window_mins",
                "at least 2",
            ),
            (
                "[halt]\nmax_api_errors_per_min = 0",
                "halt.max_api_errors_per_min",
                "must be at least 1",
            ),
            (
                "[halt]\nmax_exposure_notional = 0",
                "halt.max_exposure_notional",
                "must be positive",
            ),
            (
                "[halt]\nclosure_max_attempts = 0",
                "halt.closure_max_attempts",
                "must be at least 1",
            ),
            (
                "[api]\nmax_body_bytes = 255",
                "api.max_body_bytes",
                "must be at least 256",
            ),
            (
                "[api]\nmax_connections = 7",
                "api.max_connections",
                "must be at least 8",
            ),
            (
                "[api]\nidle_timeout_ms = 0",
                "api.idle_timeout_ms",
                "must be at least 1",
            ),
            (
                "[secrets]\nprovider = \"file\"",
                "secrets.file_path",
                "required by the file provider",
            ),
            (
                "[secrets]\nprovider = \"vault\"\nvault_addr = \"https://v:8200\"",
                "secrets.vault_path",
                "required by the vault provider",
            ),
            (
                "[secrets]\nprovider = \"aws\"",
                "secrets.aws_region",
                "required by the aws provider",
            ),
            (
                "[secrets]\nprovider = \"aws\"\naws_region = \"eu-west-1\"",
                "secrets.aws_secret_id",
                "required by the aws provider",
            ),
            (
                "[monitor]\ndashboard_interval_ms = 0",
                "monitor.dashboard_interval_ms",
                "must be at least 1",
            ),
            (
                "[monitor]\nalert_drawdown_pct = 101",
                "monitor.alert_drawdown_pct",
                "at most 100",
            ),
        ];
        for (text, key, reason) in cases {
            match Config::from_toml_str(text) {
                Err(ConfigError::Invalid {
                    key: k, reason: r, ..
                }) => {
                    assert_eq!(k, *key, "{text:?}");
                    assert!(r.contains(reason), "{text:?}: {r}");
                }
                other => panic!("{text:?}: expected {key} refused, got {other:?}"),
            }
        }
    }

    /// The values just inside each rule pass, and each provider passes with what it needs.
    #[test]
    fn the_edges_of_each_rule_and_complete_providers_pass() {
        for text in [
            "[market]\nreplay_speed = 0\nreconnect_initial_ms = 500\nreconnect_max_ms = 500",
            "[exchange]\npaper_taker_fee_pct = 0\npaper_maker_fee_pct = 100",
            "[exchange.paper_balances]\nUSD = 0",
            "[risk]\nrisk_per_trade_pct = 100",
            "[risk.pairs.\"XRP/USD\"]\nmax_position_notional = 1\nlot_size = 0.1",
            "[halt]\nvolatility_window_mins = 2",
            "[api]\nmax_body_bytes = 256\nmax_connections = 8",
            "[secrets]\nprovider = \"file\"\nfile_path = \"/s/secrets.age\"",
            "[secrets]\nprovider = \"vault\"\nvault_addr = \"https://v:8200\"\n\
             vault_path = \"gf\"\nvault_auth = \"approle\"",
            "[secrets]\nprovider = \"aws\"\naws_region = \"eu-west-1\"\naws_secret_id = \"gf\"",
            "[general]\nmode = \"live\"\n[secrets]\nprovider = \"env\"",
            "[[monitor.channels]]\nname = \"ops\"\nkind = \"slack\"\nmin_severity = \"critical\"",
        ] {
            Config::from_toml_str(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        }
    }

    #[test]
    fn bad_env_overrides_name_the_variable() {
        let err = Config::from_toml_with_env("", "t", env(&[("GF_API____BIND", "x")])).unwrap_err();
        match err {
            ConfigError::Env { var, reason } => {
                assert_eq!(var, "GF_API____BIND");
                assert!(reason.contains("empty key segment"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        // A key the file sets to a value cannot be descended into.
        let err = Config::from_toml_with_env(
            "[general]\nlog_format = \"json\"\n",
            "t",
            env(&[("GF_GENERAL__LOG_FORMAT__X", "1")]),
        )
        .unwrap_err();
        assert!(
            matches!(&err, ConfigError::Env { reason, .. } if reason.contains("`log_format` is not a table")),
            "{err}"
        );
        // An override is validated like the file.
        let err = Config::from_toml_with_env("", "t", env(&[("GF_API__MAX_CONNECTIONS", "2")]))
            .unwrap_err();
        assert!(err.to_string().contains("api.max_connections"), "{err}");
    }

    #[test]
    fn loading_a_file_names_it_in_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gal-friday.toml");
        let err = Config::load(&path).unwrap_err();
        assert!(matches!(&err, ConfigError::Read { path: p, .. } if *p == path));
        assert!(err.to_string().contains("gal-friday.toml"), "{err}");
        std::fs::write(&path, "[halt]\nmax_consecutive_losses = 7\n").unwrap();
        // Loading also reads the process environment; without GF_ overrides in it the
        // file's value holds.
        if !std::env::vars().any(|(k, _)| k.starts_with(ENV_PREFIX) && k.contains("__")) {
            assert_eq!(Config::load(&path).unwrap().halt.max_consecutive_losses, 7);
            assert_eq!(
                Config::embedded_default().unwrap(),
                Config::from_toml_str("").unwrap()
            );
        }
        std::fs::write(&path, "[halt\n").unwrap();
        let err = Config::load(&path).unwrap_err().to_string();
        assert!(err.contains("gal-friday.toml"), "{err}");
    }

    #[test]
    fn the_strategy_is_explicit_in_live_mode() {
        let none = StrategyConfig { kind: None };
        assert_eq!(none.effective(Mode::Live), Some(StrategyKind::None));
        assert_eq!(none.effective(Mode::Paper), None);
        let ema = StrategyConfig {
            kind: Some(StrategyKind::EmaCross),
        };
        assert_eq!(ema.effective(Mode::Live), Some(StrategyKind::EmaCross));
        assert_eq!(ema.effective(Mode::Paper), Some(StrategyKind::EmaCross));
        for kind in [
            StrategyKind::None,
            StrategyKind::EmaCross,
            StrategyKind::HoldLong,
        ] {
            assert_eq!(kind.to_string().parse::<StrategyKind>(), Ok(kind));
            let c = Config::from_toml_str(&format!("[strategy]\nkind = \"{kind}\"")).unwrap();
            assert_eq!(c.strategy.kind, Some(kind));
        }
        let err = "ema".parse::<StrategyKind>().unwrap_err();
        assert!(
            err.contains("\"ema\"") && err.contains("hold_long"),
            "{err}"
        );
    }

    #[test]
    fn an_explicit_journal_key_file_wins_over_the_environment() {
        let j = JournalConfig {
            key_file: Some(PathBuf::from("/k/journal.key")),
            ..JournalConfig::default()
        };
        assert_eq!(
            j.key_file_path(|_| Some("/home/u".into())),
            Some(PathBuf::from("/k/journal.key"))
        );
        assert_eq!(Tier::Pro.rest_counter(), (20, 1000));
    }

    /// A value outside a closed set (an enum) is refused by the parser, naming the key, the
    /// value and every allowed spelling.
    #[test]
    fn unknown_enum_values_name_the_key_and_the_allowed_values() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "[general]\nlog_format = \"xml\"",
                "general.log_format",
                "`auto`, `human`, `json`",
            ),
            (
                "[exchange]\ntier = \"gold\"",
                "exchange.tier",
                "`starter`, `intermediate`, `pro`",
            ),
            (
                "[secrets]\nprovider = \"vault\"\nvault_addr = \"https://v:8200\"\n\
                 vault_path = \"gf\"\nvault_auth = \"ldap\"",
                "secrets.vault_auth",
                "expected `token` or `approle`",
            ),
            (
                "[[monitor.channels]]\nname = \"ops\"\nkind = \"pager\"",
                "monitor.channels.kind",
                "`log`, `email`, `webhook`, `slack`, `discord`, `telegram`, `sms`",
            ),
            (
                "[[monitor.channels]]\nname = \"ops\"\nkind = \"log\"\n\
                 min_severity = \"debug\"",
                "monitor.channels.min_severity",
                "`info`, `warning`, `critical`",
            ),
        ];
        for (text, key, allowed) in cases {
            let err = Config::from_toml_str(text).unwrap_err();
            let ConfigError::Parse { ref message, .. } = err else {
                panic!("{text:?}: expected a parse error, got {err:?}");
            };
            let value = text.rsplit('"').nth(1).unwrap_or_default();
            assert!(
                message.contains(&format!("unknown variant `{value}`")),
                "{message}"
            );
            assert!(
                message.contains(allowed),
                "{allowed} missing from {message}"
            );
            assert!(message.contains(key), "{key} missing from {message}");
        }
        // Every spelling the reference file documents is accepted.
        let c = Config::from_toml_str(
            "[general]\nlog_format = \"json\"\n[exchange]\ntier = \"intermediate\"\n\
             [secrets]\nvault_auth = \"approle\"\n\
             [[monitor.channels]]\nname = \"a\"\nkind = \"sms\"\nmin_severity = \"warning\"",
        )
        .unwrap();
        assert_eq!(c.general.log_format, LogFormat::Json);
        assert_eq!(c.exchange.tier, Tier::Intermediate);
        assert_eq!(c.secrets.vault_auth, VaultAuthMethod::AppRole);
        assert_eq!(c.monitor.channels[0].kind, ChannelKind::Sms);
        assert_eq!(c.monitor.channels[0].min_severity, Some(Severity::Warning));
        for f in LogFormat::ALL {
            assert_eq!(f.to_string().parse::<LogFormat>(), Ok(f));
        }
        let err = "xml".parse::<LogFormat>().unwrap_err();
        assert!(err.contains("auto, human or json"), "{err}");
    }

    #[test]
    fn parse_errors_are_one_line() {
        for text in ["[halt\n", "[halt]\nmax_drawdown = 3\n", "x = = 1"] {
            let err = Config::from_toml_str(text).unwrap_err().to_string();
            assert!(!err.contains('\n'), "{err}");
        }
        let err = Config::from_toml_str("[halt\n").unwrap_err().to_string();
        assert!(err.contains("line 1"), "{err}");
    }

    #[test]
    fn cleartext_exchange_urls_only_on_loopback() {
        for (key, url) in [
            ("rest_url", "http://127.0.0.1:8080"),
            ("rest_url", "http://localhost/x"),
            ("rest_url", "http://[::1]:9000"),
            ("rest_url", "https://api.kraken.com"),
        ] {
            Config::from_toml_str(&format!("[exchange]\n{key} = \"{url}\""))
                .unwrap_or_else(|e| panic!("{url}: {e}"));
        }
        for url in ["ws://127.0.0.2:1/v2", "wss://ws.kraken.com/v2"] {
            Config::from_toml_str(&format!("[market]\nws_url = \"{url}\""))
                .unwrap_or_else(|e| panic!("{url}: {e}"));
        }
        for url in ["http://localhost.evil.com", "http://127.0.0.1.nip.io"] {
            let err = Config::from_toml_str(&format!("[exchange]\nrest_url = \"{url}\""))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("exchange.rest_url") && err.contains("https://"),
                "{err}"
            );
        }
        assert_eq!(url_host("https://u:p@[::1]:80/x?y"), "::1");
        assert_eq!(url_host("http://h.example:8080/p"), "h.example");
    }

    #[test]
    fn round_trips_through_toml() {
        let c = Config::from_toml_str("").unwrap();
        let text = c.to_toml().unwrap();
        assert_eq!(Config::from_toml_str(&text).unwrap(), c);
    }
}
