//! SMS through an HTTP gateway speaking Twilio's Messages API: a form POST of `To`,
//! `From` and `Body` with HTTP basic auth (account SID, auth token), one per recipient.

use std::time::Duration;

use async_trait::async_trait;

use super::settings::Settings;
use super::webhook::check_response;
use super::{Channel, Notice};
use crate::Error;

/// Twilio's limit for one message body.
const MAX_BODY: usize = 1600;

/// Sends notices as text messages.
#[derive(Clone)]
pub struct SmsChannel {
    name: String,
    url: reqwest::Url,
    account_sid: String,
    auth_token: String,
    from: String,
    to: Vec<String>,
    client: reqwest::Client,
}

impl std::fmt::Debug for SmsChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmsChannel")
            .field("name", &self.name)
            .field("url", &self.url.as_str())
            .field("account_sid", &self.account_sid)
            .field("auth_token", &"<redacted>")
            .field("from", &self.from)
            .field("to", &self.to)
            .finish()
    }
}

impl SmsChannel {
    pub(crate) fn from_settings(s: &mut Settings<'_>, timeout: Duration) -> Result<Self, Error> {
        let url = s.url("url")?;
        let account_sid = s.req_str("account_sid")?;
        let auth_token = s.req_secret("auth_token_env")?;
        let from = s.req_str("from")?;
        let to = s.req_strings("to")?;
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| s.invalid("url", format!("http client: {e}")))?;
        Ok(Self {
            name: s.name().to_owned(),
            url,
            account_sid,
            auth_token,
            from,
            to,
            client,
        })
    }
}

#[async_trait]
impl Channel for SmsChannel {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "sms"
    }

    async fn send(&self, notice: &Notice) -> Result<(), Error> {
        let body: String = notice.subject().chars().take(MAX_BODY).collect();
        for to in &self.to {
            let form = [
                ("To", to.as_str()),
                ("From", self.from.as_str()),
                ("Body", body.as_str()),
            ];
            let res = self
                .client
                .post(self.url.clone())
                .basic_auth(&self.account_sid, Some(&self.auth_token))
                .form(&form)
                .send()
                .await;
            check_response(&self.name, res)?;
        }
        Ok(())
    }
}
