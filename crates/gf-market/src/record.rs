//! Recording the live feed to a file (JSON lines, one raw text message per line), the
//! format [`crate::ReplaySource`] and [`crate::verify::verify_recording`] read. Backs
//! `gf-daemon market record --pairs XRP/USD,DOGE/USD --out FILE`.

use std::path::Path;
use std::sync::Arc;

use gf_core::{EventBus, Pair, SystemClock};
use tokio_util::sync::CancellationToken;

use crate::client::{ClientConfig, MarketClient};
use crate::error::Error;
use crate::feed::FeedStats;
use crate::source::MarketSource;

/// Connects to `url`, subscribes to `pairs` (book at `depth`, trades, tickers,
/// instruments) and writes every text message received to `out_path` (truncated first),
/// reconnecting as the live client does, until `shutdown` is cancelled. Returns the feed
/// counters (checksums are verified while recording, so mismatches show up at once).
///
/// Cancellation: cancel `shutdown` rather than dropping the future, so the last buffered
/// lines are flushed to the file.
///
/// # Errors
/// [`Error::InvalidDepth`] / [`Error::InvalidUrl`] for bad settings, [`Error::Io`] when
/// the file cannot be written.
pub async fn record(
    url: &str,
    pairs: &[Pair],
    depth: u32,
    out_path: &Path,
    shutdown: CancellationToken,
) -> Result<FeedStats, Error> {
    let mut cfg = ClientConfig::new(url, pairs.to_vec());
    cfg.depth = depth;
    cfg.record = Some(out_path.to_path_buf());
    let mut client = MarketClient::new(cfg)?;
    std::fs::File::create(out_path).map_err(|e| Error::io(out_path, e))?;
    // Nobody listens on this bus: recording only needs the client's tap.
    let bus = EventBus::new(16);
    client.run(bus, Arc::new(SystemClock), shutdown).await
}
