//! The live feeds: one task per WebSocket (`/ws/halt-status`, `/ws/dashboard`) that
//! connects, forwards every frame as a [`Msg`], and on any failure reports it and
//! reconnects with a capped backoff — never giving up, never panicking.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use gf_core::backoff::Backoff;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use crate::api::ws_url;
use crate::app::{Channel, FeedEvent, Msg};
use crate::model::Frame;

/// Longest wait for the WebSocket handshake.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// First reconnect delay; doubled on each failure up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// Longest reconnect delay.
pub const MAX_BACKOFF: Duration = Duration::from_secs(8);
/// The dashboard pushes every second; this long without a frame means the link is dead.
pub const DASHBOARD_IDLE: Duration = Duration::from_secs(5);
/// The status feed is quiet between events; ping it this often.
pub const STATUS_PING: Duration = Duration::from_secs(15);

/// The running feed tasks; dropping this stops them.
#[derive(Debug)]
pub struct Feeds {
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Feeds {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Starts both feeds of the daemon at `base`, sending into `tx`. The tasks end when
/// `tx`'s receiver is dropped or the returned [`Feeds`] is.
#[must_use]
pub fn spawn(base: &str, token: &str, tx: &mpsc::Sender<Msg>) -> Feeds {
    let tasks = [
        (Channel::HaltStatus, "/ws/halt-status"),
        (Channel::Dashboard, "/ws/dashboard"),
    ]
    .into_iter()
    .map(|(channel, path)| {
        tokio::spawn(run(
            ws_url(base, path),
            token.to_owned(),
            channel,
            tx.clone(),
        ))
    })
    .collect();
    Feeds { tasks }
}

/// One feed: connect, pump, report, back off, again — until the receiver is gone.
pub async fn run(url: String, token: String, channel: Channel, tx: mpsc::Sender<Msg>) {
    run_with_backoff(url, token, channel, tx, FIRST_BACKOFF, MAX_BACKOFF).await;
}

/// [`run`] with the backoff given: `first` after the first failure, doubling to `max`, no
/// jitter (the workspace's one [`Backoff`]); back to `first` after a connection.
pub async fn run_with_backoff(
    url: String,
    token: String,
    channel: Channel,
    tx: mpsc::Sender<Msg>,
    first: Duration,
    max: Duration,
) {
    let mut backoff = Backoff::exponential(first, max);
    loop {
        let error = match connect(&url, &token).await {
            Ok(ws) => {
                backoff.reset();
                if tx
                    .send(Msg::Feed(FeedEvent::Connected(channel)))
                    .await
                    .is_err()
                {
                    return;
                }
                match pump(ws, channel, &tx).await {
                    Ok(()) => return,
                    Err(e) => e,
                }
            }
            Err(e) => e,
        };
        let delay = backoff.next_delay();
        let down = FeedEvent::Down {
            channel,
            error,
            retry_in_secs: delay.as_secs().max(1),
        };
        if tx.send(Msg::Feed(down)).await.is_err() {
            return;
        }
        tokio::time::sleep(delay).await;
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(url: &str, token: &str) -> Result<Ws, String> {
    let mut req = url.into_client_request().map_err(|e| e.to_string())?;
    let auth = HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| "the token contains characters not allowed in a header".to_owned())?;
    req.headers_mut().insert("authorization", auth);
    match tokio::time::timeout(CONNECT_TIMEOUT, tokio_tungstenite::connect_async(req)).await {
        Ok(Ok((ws, _))) => Ok(ws),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!(
            "no WebSocket handshake within {}s",
            CONNECT_TIMEOUT.as_secs()
        )),
    }
}

/// Forwards frames until the link fails (`Err(why)`) or the receiver is gone (`Ok`).
async fn pump(mut ws: Ws, channel: Channel, tx: &mpsc::Sender<Msg>) -> Result<(), String> {
    let idle = match channel {
        Channel::Dashboard => DASHBOARD_IDLE,
        Channel::HaltStatus => STATUS_PING,
    };
    loop {
        let next = match tokio::time::timeout(idle, ws.next()).await {
            Ok(next) => next,
            Err(_) if channel == Channel::HaltStatus => {
                ws.send(Message::Ping(Vec::new().into()))
                    .await
                    .map_err(|e| e.to_string())?;
                continue;
            }
            Err(_) => return Err(format!("no dashboard frame for {}s", idle.as_secs())),
        };
        let msg = match next {
            None => return Err("the daemon closed the connection".to_owned()),
            Some(Err(e)) => return Err(e.to_string()),
            Some(Ok(Message::Close(_))) => {
                return Err("the daemon closed the connection".to_owned());
            }
            Some(Ok(Message::Text(text))) => match serde_json::from_str::<Value>(&text)
                .map(crate::model::printable)
                .and_then(serde_json::from_value::<Frame>)
            {
                Ok(frame) => FeedEvent::Frame(Box::new(frame)),
                Err(e) => FeedEvent::BadFrame(e.to_string()),
            },
            Some(Ok(_)) => continue,
        };
        if tx.send(Msg::Feed(msg)).await.is_err() {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};

    /// A daemon stand-in: accepts `connections` WebSockets in turn, checks the bearer
    /// token, sends one status frame (and a frame of an unknown type) on each, then drops it.
    // The handshake callback's error type is tungstenite's, large by its design.
    #[allow(clippy::result_large_err)]
    async fn flaky_server(connections: usize) -> (String, tokio::task::JoinHandle<Vec<String>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}/ws/halt-status", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let mut auths = Vec::new();
            for n in 0..connections {
                let (tcp, _) = listener.accept().await.unwrap();
                let mut auth = String::new();
                let mut ws =
                    tokio_tungstenite::accept_hdr_async(tcp, |req: &Request, resp: Response| {
                        auth = req
                            .headers()
                            .get("authorization")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned();
                        Ok(resp)
                    })
                    .await
                    .unwrap();
                auths.push(auth);
                let state = if n == 0 { "halted" } else { "recovering" };
                let frame = format!(
                    r#"{{"type":"status","status":{{"state":"{state}"}},"checklist":null}}"#
                );
                ws.send(Message::Text(r#"{"type":"news"}"#.into()))
                    .await
                    .unwrap();
                ws.send(Message::Text(frame.into())).await.unwrap();
                ws.send(Message::Text("not json".into())).await.unwrap();
                ws.close(None).await.unwrap();
            }
            auths
        });
        (url, task)
    }

    #[tokio::test]
    async fn a_dropped_connection_is_reported_and_reconnected() {
        let (url, server) = flaky_server(2).await;
        let (tx, mut rx) = mpsc::channel(32);
        let feed = tokio::spawn(run_with_backoff(
            url,
            "gf_secret".into(),
            Channel::HaltStatus,
            tx,
            Duration::from_millis(10),
            Duration::from_millis(20),
        ));
        let mut seen = Vec::new();
        while seen.len() < 10 {
            let msg = tokio::time::timeout(Duration::from_secs(10), rx.recv())
                .await
                .expect("feed events")
                .unwrap();
            seen.push(match msg {
                Msg::Feed(FeedEvent::Connected(_)) => "connected".to_owned(),
                Msg::Feed(FeedEvent::Frame(f)) => match *f {
                    Frame::Status { status, .. } => format!("status {}", status.core.state),
                    Frame::Other => "other".to_owned(),
                    Frame::Dashboard { .. } => "dashboard".to_owned(),
                },
                Msg::Feed(FeedEvent::BadFrame(_)) => "bad frame".to_owned(),
                Msg::Feed(FeedEvent::Down { retry_in_secs, .. }) => {
                    assert_eq!(retry_in_secs, 1);
                    "down".to_owned()
                }
                other => panic!("unexpected {other:?}"),
            });
        }
        assert_eq!(
            seen,
            [
                "connected",
                "other",
                "status halted",
                "bad frame",
                "down",
                "connected",
                "other",
                "status recovering",
                "bad frame",
                "down",
            ]
        );
        assert_eq!(
            server.await.unwrap(),
            ["Bearer gf_secret", "Bearer gf_secret"]
        );
        feed.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn unreachable_daemon_reports_down_and_retries_with_backoff() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let (tx, mut rx) = mpsc::channel(8);
        let task = tokio::spawn(run(
            format!("ws://127.0.0.1:{port}/ws/halt-status"),
            "t".into(),
            Channel::HaltStatus,
            tx,
        ));
        let mut delays = Vec::new();
        for _ in 0..5 {
            match rx.recv().await.unwrap() {
                Msg::Feed(FeedEvent::Down {
                    channel,
                    retry_in_secs,
                    error,
                }) => {
                    assert_eq!(channel, Channel::HaltStatus);
                    assert!(!error.is_empty());
                    delays.push(retry_in_secs);
                }
                other => panic!("expected Down, got {other:?}"),
            }
        }
        assert_eq!(delays, vec![1, 2, 4, 8, 8]);
        drop(rx);
        tokio::time::advance(MAX_BACKOFF).await;
        tokio::time::timeout(Duration::from_secs(60), task)
            .await
            .expect("the feed stops once nobody listens")
            .unwrap();
    }
}
