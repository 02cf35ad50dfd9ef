//! An external strategy in Rust trading through Gal-Friday's order gateway, with the
//! shared API types of `gf-api` (the same types the daemon serves, so a renamed field
//! breaks this build rather than the strategy at run time).
//!
//! It follows its `/ws/orders` feed, places a resting limit buy a little below the market
//! and stops at the first halt, after checking that the halt cancelled its order.
//!
//! ```text
//! gf-daemon token create --name my-strategy --role trader --data-dir ./data > trader.token
//! GF_TOKEN=$(cat trader.token) cargo run -p gf-daemon --example trader -- http://127.0.0.1:8080
//! ```

use std::time::Duration;

use futures::StreamExt;
use gf_api::{OrderFeedFrame, PlaceOrder, PlaceOrderReply};
use gf_core::{OrderType, Side};
use rust_decimal::Decimal;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// What the example saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The id of the halt that stopped it.
    pub halt_id: u64,
    /// Its reason.
    pub reason: String,
    /// The status of its resting order after the halt.
    pub order_status: String,
}

/// Runs the strategy against the daemon at `url` with a trader `token` until a halt.
/// `placed` is told once its order rests (tests halt then).
///
/// # Errors
/// Any HTTP, WebSocket or protocol failure, as one line.
pub async fn run(
    url: &str,
    token: &str,
    placed: Option<tokio::sync::oneshot::Sender<()>>,
) -> Result<Outcome, String> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| e.to_string())?;

    // The feed first, so nothing that happens to the order is missed.
    let mut request = format!("{}/ws/orders", url.replacen("http", "ws", 1))
        .into_client_request()
        .map_err(|e| e.to_string())?;
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {token}")
            .parse()
            .map_err(|_| "the token is not a valid header value".to_owned())?,
    );
    let (mut feed, _) = tokio_tungstenite::connect_async(request)
        .await
        .map_err(|e| format!("/ws/orders: {e}"))?;
    let mut next = async || -> Result<OrderFeedFrame, String> {
        loop {
            match feed.next().await {
                Some(Ok(Message::Text(text))) => {
                    return serde_json::from_str(&text).map_err(|e| format!("feed frame: {e}"));
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(format!("feed: {e}")),
                None => return Err("the feed closed".into()),
            }
        }
    };
    let OrderFeedFrame::Hello { status, .. } = next().await? else {
        return Err("the feed did not start with hello".into());
    };
    if !status.core.gate_open {
        return Err("trading is halted; nothing to do".into());
    }

    // A resting limit buy 3 % below the last price of XRP/USD; a real strategy would
    // have its own prices. The id is the idempotency key: retrying with it is safe.
    let price = Decimal::new(212, 2);
    let order = PlaceOrder {
        client_order_id: format!("rust-example-{}", std::process::id()),
        pair: "XRP/USD".into(),
        side: Side::Buy,
        order_type: OrderType::Limit,
        qty: Decimal::TEN,
        limit_price: Some(price),
        time_in_force: None,
        post_only: true,
    };
    let response = http
        .post(format!("{url}/api/v1/orders"))
        .bearer_auth(token)
        .json(&order)
        .send()
        .await
        .map_err(|e| format!("POST /api/v1/orders: {e}"))?;
    let status = response.status();
    let body = response.text().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!("order refused ({status}): {body}"));
    }
    let reply: PlaceOrderReply = serde_json::from_str(&body).map_err(|e| e.to_string())?;
    println!(
        "placed {} {} {} @ {}: {}",
        reply.order.client_order_id, reply.order.side, reply.order.qty, price, reply.order.status
    );
    if let Some(tx) = placed {
        let _ = tx.send(());
    }

    let mut order_status = reply.order.status;
    loop {
        match next().await? {
            OrderFeedFrame::Order { seq, order } => {
                println!("#{seq} order {} {}", order.client_order_id, order.status);
                order_status = order.status;
            }
            OrderFeedFrame::Fill { seq, fill } => {
                println!(
                    "#{seq} fill {} {} @ {}",
                    fill.client_order_id, fill.qty, fill.price
                );
            }
            OrderFeedFrame::Halt { seq, halt } => {
                println!("#{seq} HALT {}: {}", halt.id, halt.reason);
                // The halt cancels resting orders; the cancellation follows on the feed.
                while order_status != "cancelled" && order_status != "filled" {
                    if let OrderFeedFrame::Order { order, .. } = next().await? {
                        order_status = order.status;
                    }
                }
                return Ok(Outcome {
                    halt_id: halt.id,
                    reason: halt.reason,
                    order_status,
                });
            }
            OrderFeedFrame::Resume { .. } | OrderFeedFrame::Hello { .. } => {}
            OrderFeedFrame::Gap { .. } => {
                return Err("the feed lost frames; re-read GET /api/v1/orders".into());
            }
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "http://127.0.0.1:8080".into());
    let Ok(token) = std::env::var("GF_TOKEN") else {
        eprintln!("error: set GF_TOKEN to a trader token (gf-daemon token create --role trader)");
        std::process::exit(2);
    };
    match run(&url, &token, None).await {
        Ok(outcome) => println!("stopped by halt {}: {outcome:?}", outcome.halt_id),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use gf_core::{Config, SystemClock};
    use gf_daemon::app::{Scenario, start};
    use gf_daemon::auth::Role;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_example_trades_a_paper_daemon_and_stops_at_a_halt() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = Config::from_toml_str("").unwrap();
        cfg.general.data_dir = dir.path().join("data");
        cfg.journal = gf_core::config::JournalConfig::under(&dir.path().join("keys"));
        cfg.api.bind = "127.0.0.1:0".parse().unwrap();
        // The internal example strategy runs too: one daemon, both kinds of strategy.
        let running = start(cfg, Scenario::Normal, Arc::new(SystemClock))
            .await
            .unwrap();
        let pair: gf_core::Pair = "XRP/USD".parse().unwrap();
        running
            .wait_for_price(&pair, std::time::Duration::from_secs(30))
            .await
            .unwrap();
        let trader = running.create_token("rust-example", Role::Trader).unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let url = running.url();
        let strategy = tokio::spawn(async move { super::run(&url, &trader, Some(tx)).await });
        rx.await.unwrap();
        let outcome = running
            .daemon
            .halt
            .halt(gf_core::HaltSource::Cli, "example test")
            .await;
        assert!(outcome.durable);
        let seen = strategy.await.unwrap().unwrap();
        assert_eq!(seen.reason, "example test");
        assert_eq!(seen.order_status, "cancelled");
        assert_eq!(
            Some(seen.halt_id),
            running.daemon.halt.status().halt.map(|h| h.id)
        );
        running.stop().await;
    }
}
