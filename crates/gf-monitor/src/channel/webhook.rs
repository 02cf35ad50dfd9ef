//! Webhook channels: generic JSON, and the message shapes of Slack incoming webhooks
//! (`{"text"}`), Discord webhooks (`{"content"}`, at most 2000 characters) and the
//! Telegram Bot API `sendMessage` method (`{"chat_id", "text"}`, at most 4096).

use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};

use super::settings::Settings;
use super::{Channel, Notice};
use crate::Error;

/// Which JSON body the webhook receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookShape {
    /// The [`Notice`] itself, as JSON.
    Generic,
    /// Slack incoming webhook: `{"text": …}`.
    Slack,
    /// Discord webhook: `{"content": …}`.
    Discord,
    /// Telegram `sendMessage`: `{"chat_id": …, "text": …}`.
    Telegram,
}

/// POSTs notices as JSON to a URL.
#[derive(Debug, Clone)]
pub struct WebhookChannel {
    name: String,
    shape: WebhookShape,
    url: reqwest::Url,
    chat_id: Option<String>,
    bearer: Option<String>,
    client: reqwest::Client,
}

impl WebhookChannel {
    /// A webhook channel with an explicit URL.
    ///
    /// # Errors
    /// [`Error::ChannelConfig`] if the HTTP client cannot be built.
    pub fn new(
        name: &str,
        shape: WebhookShape,
        url: reqwest::Url,
        chat_id: Option<String>,
        timeout: Duration,
    ) -> Result<Self, Error> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| Error::ChannelConfig {
                channel: name.to_owned(),
                key: "url".into(),
                reason: format!("http client: {e}"),
            })?;
        Ok(Self {
            name: name.to_owned(),
            shape,
            url,
            chat_id,
            bearer: None,
            client,
        })
    }

    pub(crate) fn from_settings(
        s: &mut Settings<'_>,
        shape: WebhookShape,
        timeout: Duration,
    ) -> Result<Self, Error> {
        let (url, chat_id) = if shape == WebhookShape::Telegram {
            let chat_id = s.req_str("chat_id")?;
            // Either the full sendMessage URL, or an API base plus a bot token from the
            // environment (the token is part of the URL path, so it is a secret).
            let url = match s.secret("bot_token_env")? {
                Some(token) => {
                    let base = s
                        .opt_str("api_base")?
                        .unwrap_or_else(|| "https://api.telegram.org".into());
                    let raw = format!("{}/bot{token}/sendMessage", base.trim_end_matches('/'));
                    reqwest::Url::parse(&raw)
                        .map_err(|e| s.invalid("api_base", format!("not a URL: {e}")))?
                }
                None => s.url("url")?,
            };
            (url, Some(chat_id))
        } else {
            (s.url("url")?, None)
        };
        let bearer = if shape == WebhookShape::Generic {
            s.secret("bearer_token_env")?
        } else {
            None
        };
        let mut ch = Self::new(s.name(), shape, url, chat_id, timeout)?;
        ch.bearer = bearer;
        Ok(ch)
    }

    /// The JSON body for `notice`.
    #[must_use]
    pub fn body(&self, notice: &Notice) -> Value {
        let text = || format!("{}\n{}", notice.subject(), rest_of_body(notice));
        match self.shape {
            WebhookShape::Generic => serde_json::to_value(notice).unwrap_or(Value::Null),
            WebhookShape::Slack => json!({ "text": text() }),
            WebhookShape::Discord => json!({ "content": clip(&text(), 2000) }),
            WebhookShape::Telegram => json!({
                "chat_id": self.chat_id,
                "text": clip(&text(), 4096),
                "disable_web_page_preview": true,
            }),
        }
    }
}

fn rest_of_body(n: &Notice) -> String {
    n.body().lines().skip(1).collect::<Vec<_>>().join("\n")
}

fn clip(s: &str, max_chars: usize) -> String {
    if s.chars().count() <= max_chars {
        s.to_owned()
    } else {
        let mut out: String = s.chars().take(max_chars - 1).collect();
        out.push('…');
        out
    }
}

/// Maps an HTTP outcome to a delivery result: 2xx is success, 408/429/5xx and transport
/// errors may be retried, other statuses are final.
pub(crate) fn check_response(
    channel: &str,
    res: Result<reqwest::Response, reqwest::Error>,
) -> Result<(), Error> {
    match res {
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) => {
            let st = r.status();
            Err(Error::Delivery {
                channel: channel.to_owned(),
                reason: format!("http status {st}"),
                retryable: st.is_server_error() || st.as_u16() == 429 || st.as_u16() == 408,
            })
        }
        Err(e) if e.is_timeout() => Err(Error::Delivery {
            channel: channel.to_owned(),
            reason: "http request timed out".into(),
            retryable: true,
        }),
        Err(e) => Err(Error::Delivery {
            channel: channel.to_owned(),
            reason: format!("http request failed: {e}"),
            retryable: true,
        }),
    }
}

#[async_trait]
impl Channel for WebhookChannel {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        match self.shape {
            WebhookShape::Generic => "webhook",
            WebhookShape::Slack => "slack",
            WebhookShape::Discord => "discord",
            WebhookShape::Telegram => "telegram",
        }
    }

    async fn send(&self, notice: &Notice) -> Result<(), Error> {
        let mut req = self.client.post(self.url.clone()).json(&self.body(notice));
        if let Some(token) = &self.bearer {
            req = req.bearer_auth(token);
        }
        check_response(&self.name, req.send().await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::tests::notice;
    use gf_core::Severity;

    fn ch(shape: WebhookShape) -> WebhookChannel {
        WebhookChannel::new(
            "t",
            shape,
            reqwest::Url::parse("http://127.0.0.1:9/").unwrap(),
            Some("-100".into()),
            Duration::from_secs(1),
        )
        .unwrap()
    }

    #[test]
    fn shapes() {
        let mut n = notice(Severity::Critical);
        assert_eq!(ch(WebhookShape::Generic).body(&n)["key"], "halt");
        assert!(
            ch(WebhookShape::Slack).body(&n)["text"]
                .as_str()
                .unwrap()
                .starts_with("[CRITICAL]")
        );
        let t = ch(WebhookShape::Telegram).body(&n);
        assert_eq!(t["chat_id"], "-100");
        n.summary = "x".repeat(5000);
        let d = ch(WebhookShape::Discord).body(&n);
        assert_eq!(d["content"].as_str().unwrap().chars().count(), 2000);
        let t = ch(WebhookShape::Telegram).body(&n);
        assert_eq!(t["text"].as_str().unwrap().chars().count(), 4096);
    }
}
