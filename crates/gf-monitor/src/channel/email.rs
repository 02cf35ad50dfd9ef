//! E-mail over SMTP with `lettre`: STARTTLS (default, required), implicit TLS or plain,
//! with optional authentication and an optional private CA (`ca_file`).

use std::time::Duration;

use async_trait::async_trait;
use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::settings::Settings;
use super::{Channel, Notice};
use crate::Error;

/// How the SMTP connection is secured (the channel's `security` setting).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    /// Plain connection upgraded with STARTTLS, which is required (port 587).
    StartTls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No encryption (a local relay or a test server; port 25).
    None,
}

/// Sends notices as e-mail.
#[derive(Clone)]
pub struct EmailChannel {
    name: String,
    from: Mailbox,
    to: Vec<Mailbox>,
    transport: AsyncSmtpTransport<Tokio1Executor>,
    endpoint: String,
}

impl std::fmt::Debug for EmailChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailChannel")
            .field("name", &self.name)
            .field("endpoint", &self.endpoint)
            .field("from", &self.from.to_string())
            .finish_non_exhaustive()
    }
}

impl EmailChannel {
    pub(crate) fn from_settings(s: &mut Settings<'_>, timeout: Duration) -> Result<Self, Error> {
        let host = s.req_str("host")?;
        let security = s
            .opt_enum::<SmtpSecurity>("security")?
            .unwrap_or(SmtpSecurity::StartTls);
        let default_port = match security {
            SmtpSecurity::StartTls => 587,
            SmtpSecurity::Tls => 465,
            SmtpSecurity::None => 25,
        };
        let port = u16::try_from(s.u64_or("port", default_port)?)
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| s.invalid("port", "must be 1 to 65535".into()))?;
        let from_raw = s.req_str("from")?;
        let from: Mailbox = from_raw.parse().map_err(|e| {
            s.invalid(
                "from",
                format!("{from_raw:?} is not an e-mail address: {e}"),
            )
        })?;
        let mut to = Vec::new();
        for raw in s.req_strings("to")? {
            to.push(
                raw.parse::<Mailbox>().map_err(|e| {
                    s.invalid("to", format!("{raw:?} is not an e-mail address: {e}"))
                })?,
            );
        }
        let username = s.opt_str("username")?;
        let password = s.secret("password_env")?;
        let credentials = match (username, password) {
            (Some(u), Some(p)) => Some(Credentials::new(u, p)),
            (None, None) => None,
            (Some(_), None) => {
                return Err(s.invalid("password_env", "required with username".into()));
            }
            (None, Some(_)) => {
                return Err(s.invalid("username", "required with password_env".into()));
            }
        };
        // A private CA (an internal relay's) can be trusted in addition to the web roots.
        let ca = match s.opt_str("ca_file")? {
            Some(path) => {
                let pem = std::fs::read(&path)
                    .map_err(|e| s.invalid("ca_file", format!("cannot read {path}: {e}")))?;
                Some(Certificate::from_pem(&pem).map_err(|e| {
                    s.invalid("ca_file", format!("{path} is not a PEM certificate: {e}"))
                })?)
            }
            None => None,
        };
        let tls = match security {
            SmtpSecurity::None => Tls::None,
            SmtpSecurity::StartTls | SmtpSecurity::Tls => {
                let mut params = TlsParameters::builder(host.clone());
                if let Some(ca) = ca {
                    params = params.add_root_certificate(ca);
                }
                let params = params
                    .build_rustls()
                    .map_err(|e| s.invalid("host", format!("{host:?}: tls setup: {e}")))?;
                if security == SmtpSecurity::StartTls {
                    Tls::Required(params)
                } else {
                    Tls::Wrapper(params)
                }
            }
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&host)
            .port(port)
            .tls(tls)
            .timeout(Some(timeout));
        if let Some(c) = credentials {
            builder = builder.credentials(c);
        }
        Ok(Self {
            name: s.name().to_owned(),
            from,
            to,
            transport: builder.build(),
            endpoint: format!("{host}:{port}"),
        })
    }

    fn message(&self, notice: &Notice) -> Result<Message, Error> {
        let mut b = Message::builder()
            .from(self.from.clone())
            .subject(notice.subject())
            .header(ContentType::TEXT_PLAIN);
        for to in &self.to {
            b = b.to(to.clone());
        }
        b.body(notice.body()).map_err(|e| Error::Delivery {
            channel: self.name.clone(),
            reason: format!("building the message: {e}"),
            retryable: false,
        })
    }
}

/// Whether the error chain holds an I/O error of kind `InvalidData`: that is how the TLS
/// layer reports a rejected handshake (e.g. an untrusted certificate).
fn handshake_rejected(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::InvalidData)
        {
            return true;
        }
        cause = c.source();
    }
    false
}

#[async_trait]
impl Channel for EmailChannel {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "email"
    }

    async fn send(&self, notice: &Notice) -> Result<(), Error> {
        let msg = self.message(notice)?;
        self.transport
            .send(msg)
            .await
            .map(|_| ())
            .map_err(|e| Error::Delivery {
                channel: self.name.clone(),
                reason: format!("smtp {}: {e}", self.endpoint),
                // Permanent rejections (5xx), client-side errors (no common AUTH
                // mechanism) and TLS failures (untrusted certificate) will not change
                // on retry.
                retryable: !(e.is_permanent()
                    || e.is_client()
                    || e.is_tls()
                    || handshake_rejected(&e)),
            })
    }
}
