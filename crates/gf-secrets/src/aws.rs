//! The `aws` provider: AWS Secrets Manager `GetSecretValue` over the JSON 1.1 protocol,
//! signed with SigV4 ([`crate::sigv4`]). The secret's `SecretString` holds the JSON
//! document (`{"api_key": "…", "api_secret": "…"}`); its `VersionId` is the version the
//! rotation watcher compares. An endpoint override serves emulators (moto) and VPC
//! endpoints.
//!
//! Error answers come as JSON (`{"__type": "…#ResourceNotFoundException", "message":
//! …}`) or, for some authentication failures and from emulators, as XML
//! (`<ErrorResponse><Error><Code>…</Code><Message>…</Message>`); both are parsed.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use gf_core::SharedClock;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::http;
use crate::provider::SecretProvider;
use crate::secret::SecretSet;
use crate::sigv4::{self, AwsCredentials, SigningRequest};

const PROVIDER: &str = "aws";
const SERVICE: &str = "secretsmanager";
const OPERATION: &str = "GetSecretValue";

/// Where and how to read the secret.
#[derive(Debug)]
pub struct AwsSettings {
    /// Region, e.g. `eu-west-1`.
    pub region: String,
    /// Endpoint override (`http://127.0.0.1:5000` for moto); default
    /// `https://secretsmanager.<region>.amazonaws.com`.
    pub endpoint: Option<String>,
    /// Secret name or ARN.
    pub secret_id: String,
    /// The access key to sign with.
    pub credentials: AwsCredentials,
    /// `AWSCURRENT` unless set.
    pub version_stage: Option<String>,
    /// Bound on each request.
    pub timeout: Duration,
}

/// Reads secrets from AWS Secrets Manager.
pub struct AwsProvider {
    http: reqwest::Client,
    settings: AwsSettings,
    url: reqwest::Url,
    host: String,
    clock: SharedClock,
}

impl fmt::Debug for AwsProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsProvider")
            .field("settings", &self.settings)
            .field("url", &self.url.as_str())
            .finish_non_exhaustive()
    }
}

impl AwsProvider {
    /// A provider; nothing is sent until the first fetch.
    ///
    /// # Errors
    /// [`Error::Config`] for a malformed region, endpoint or secret id.
    pub fn new(settings: AwsSettings, clock: SharedClock) -> Result<Self> {
        if settings.region.is_empty()
            || !settings
                .region
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return Err(Error::Config {
                key: "secrets.aws_region",
                reason: "must look like `eu-west-1`".into(),
            });
        }
        if settings.secret_id.trim().is_empty() {
            return Err(Error::Config {
                key: "secrets.aws_secret_id",
                reason: "is empty".into(),
            });
        }
        let endpoint = settings
            .endpoint
            .clone()
            .unwrap_or_else(|| format!("https://{SERVICE}.{}.amazonaws.com", settings.region));
        let url = reqwest::Url::parse(&endpoint).map_err(|e| Error::Config {
            key: "secrets.aws_endpoint",
            reason: format!("is not a URL: {e}"),
        })?;
        let Some(host) = url
            .host_str()
            .filter(|_| matches!(url.scheme(), "http" | "https"))
        else {
            return Err(Error::Config {
                key: "secrets.aws_endpoint",
                reason: "must be an http:// or https:// URL with a host".into(),
            });
        };
        // The Host header reqwest sends: the port only when it is not the default.
        let host = match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        };
        let http = http::client(PROVIDER, settings.timeout)?;
        Ok(Self {
            http,
            settings,
            url,
            host,
            clock,
        })
    }

    fn request_headers(&self, body: &[u8]) -> Result<HeaderMap> {
        let amz_date = sigv4::amz_date(self.clock.now());
        let target = format!("{SERVICE}.{OPERATION}");
        let token = self
            .settings
            .credentials
            .session_token
            .as_ref()
            .map(|t| t.expose_secret().to_owned());
        let mut signed: Vec<(&str, &str)> = vec![
            ("content-type", "application/x-amz-json-1.1"),
            ("host", &self.host),
            ("x-amz-date", &amz_date),
            ("x-amz-target", &target),
        ];
        if let Some(t) = &token {
            signed.push(("x-amz-security-token", t));
        }
        let path = if self.url.path().is_empty() {
            "/"
        } else {
            self.url.path()
        };
        let auth = sigv4::authorization(
            &self.settings.credentials,
            &self.settings.region,
            SERVICE,
            self.clock.now(),
            &SigningRequest {
                method: "POST",
                path,
                query: &[],
                headers: &signed,
                payload: body,
            },
        );
        let mut headers = HeaderMap::new();
        for (name, value) in signed.iter().filter(|(n, _)| *n != "host") {
            let mut v = HeaderValue::from_str(value).map_err(|_| Error::Config {
                key: "secrets.aws_secret_id",
                reason: format!("header {name} is not a valid header value"),
            })?;
            if *name == "x-amz-security-token" {
                v.set_sensitive(true);
            }
            headers.insert(HeaderName::from_static(name), v);
        }
        let mut auth = HeaderValue::from_str(&auth).map_err(|_| Error::Config {
            key: "secrets.aws_region",
            reason: "produces an invalid Authorization header".into(),
        })?;
        auth.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, auth);
        Ok(headers)
    }
}

/// An AWS error answer reduced to its code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsError {
    /// e.g. `ResourceNotFoundException`, `InvalidClientTokenId`.
    pub code: String,
    /// AWS's message.
    pub message: String,
}

/// Parses an error body in either JSON (`__type`/`message`) or XML (`<Code>`/
/// `<Message>`) form.
#[must_use]
pub fn parse_error_body(body: &[u8]) -> Option<AwsError> {
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        let code = v["__type"]
            .as_str()
            .or_else(|| v["code"].as_str())
            .or_else(|| v["Code"].as_str())?;
        let code = code.rsplit('#').next().unwrap_or(code);
        let code = code.split(':').next().unwrap_or(code);
        let message = v["message"]
            .as_str()
            .or_else(|| v["Message"].as_str())
            .unwrap_or("");
        return Some(AwsError {
            code: http::short(code),
            message: http::short(message),
        });
    }
    let text = String::from_utf8_lossy(body);
    let code = xml_element(&text, "Code")?;
    let message = xml_element(&text, "Message").unwrap_or_default();
    Some(AwsError {
        code: http::short(&code),
        message: http::short(&xml_unescape(&message)),
    })
}

fn xml_element(text: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let start = text.find(&open)? + open.len();
    let len = text[start..].find(&close)?;
    Some(text[start..start + len].trim().to_owned())
}

fn xml_unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

fn classify(status: reqwest::StatusCode, err: Option<AwsError>, secret_id: &str) -> Error {
    let Some(AwsError { code, message }) = err else {
        return Error::Provider {
            provider: PROVIDER,
            operation: OPERATION.into(),
            status: status.as_u16().to_string(),
            message: "unparseable error answer".into(),
        };
    };
    match code.as_str() {
        "ResourceNotFoundException" => Error::NotFound {
            provider: PROVIDER,
            name: secret_id.to_owned(),
        },
        "UnrecognizedClientException"
        | "InvalidClientTokenId"
        | "InvalidSignatureException"
        | "SignatureDoesNotMatch"
        | "IncompleteSignature"
        | "IncompleteSignatureException"
        | "MissingAuthenticationToken"
        | "MissingAuthenticationTokenException"
        | "ExpiredToken"
        | "ExpiredTokenException" => Error::Auth {
            provider: PROVIDER,
            operation: OPERATION.into(),
            code,
            message,
        },
        "AccessDenied" | "AccessDeniedException" => Error::Forbidden {
            provider: PROVIDER,
            operation: format!("{OPERATION} {secret_id}"),
            message,
        },
        _ => Error::Provider {
            provider: PROVIDER,
            operation: OPERATION.into(),
            status: if code.is_empty() {
                status.as_u16().to_string()
            } else {
                code
            },
            message,
        },
    }
}

#[async_trait]
impl SecretProvider for AwsProvider {
    fn kind(&self) -> &'static str {
        PROVIDER
    }

    #[tracing::instrument(skip(self), fields(secret_id = %self.settings.secret_id, region = %self.settings.region))]
    async fn fetch(&self, set: &str) -> Result<SecretSet> {
        let mut request = json!({"SecretId": self.settings.secret_id});
        if let Some(stage) = &self.settings.version_stage {
            request["VersionStage"] = json!(stage);
        }
        let body = serde_json::to_vec(&request).unwrap_or_default();
        let headers = self.request_headers(&body)?;
        let (status, answer) = http::send(
            PROVIDER,
            OPERATION,
            self.http.post(self.url.clone()).headers(headers).body(body),
        )
        .await?;
        if !status.is_success() {
            return Err(classify(
                status,
                parse_error_body(&answer),
                &self.settings.secret_id,
            ));
        }
        let source_name = format!("aws secret {}", self.settings.secret_id);
        let mut v: Value = serde_json::from_slice(&answer).map_err(|_| Error::Malformed {
            source_name: source_name.clone(),
            reason: "answer is not JSON".into(),
        })?;
        drop(answer);
        let version = v["VersionId"].as_str().map(str::to_owned);
        let Value::String(document) = v["SecretString"].take() else {
            return Err(Error::Malformed {
                source_name,
                reason: "no SecretString (binary secrets are not supported)".into(),
            });
        };
        let document = Zeroizing::new(document);
        SecretSet::from_json(set, PROVIDER, version, &source_name, document.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gf_core::ManualClock;
    use secrecy::SecretString;
    use std::sync::Arc;

    fn settings(region: &str, endpoint: Option<&str>) -> AwsSettings {
        AwsSettings {
            region: region.into(),
            endpoint: endpoint.map(str::to_owned),
            secret_id: "gal-friday/kraken".into(),
            credentials: AwsCredentials {
                access_key_id: "AKIDEXAMPLE".into(),
                secret_access_key: SecretString::from("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
                session_token: Some(SecretString::from("session-token-123")),
            },
            version_stage: None,
            timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn error_bodies_parse_in_json_and_xml() {
        struct Case {
            body: &'static str,
            code: &'static str,
            message: &'static str,
        }
        for case in [
            Case {
                body: r#"{"__type":"com.amazonaws.secretsmanager#ResourceNotFoundException","message":"Secrets Manager can't find the specified secret."}"#,
                code: "ResourceNotFoundException",
                message: "Secrets Manager can't find the specified secret.",
            },
            Case {
                body: r#"{"__type":"UnrecognizedClientException","Message":"The security token included in the request is invalid."}"#,
                code: "UnrecognizedClientException",
                message: "The security token included in the request is invalid.",
            },
            Case {
                body: "<?xml version=\"1.0\"?><ErrorResponse><Error><Type>Sender</Type><Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated does not match the signature you provided. Check your &quot;secret&quot; key.</Message></Error></ErrorResponse>",
                code: "SignatureDoesNotMatch",
                message: "The request signature we calculated does not match the signature you provided. Check your \"secret\" key.",
            },
        ] {
            let e = parse_error_body(case.body.as_bytes()).unwrap();
            assert_eq!(e.code, case.code);
            assert_eq!(e.message, case.message);
        }
        assert_eq!(parse_error_body(b"<html>oops</html>"), None);
        assert_eq!(parse_error_body(b"\xff\x00"), None);
    }

    #[test]
    fn classification() {
        let nf = classify(
            reqwest::StatusCode::BAD_REQUEST,
            Some(AwsError {
                code: "ResourceNotFoundException".into(),
                message: String::new(),
            }),
            "x",
        );
        assert_eq!(nf.to_string(), "aws: secret x not found");
        let auth = classify(
            reqwest::StatusCode::FORBIDDEN,
            Some(AwsError {
                code: "InvalidClientTokenId".into(),
                message: "bad".into(),
            }),
            "x",
        );
        assert!(matches!(auth, Error::Auth { .. }));
        let other = classify(reqwest::StatusCode::BAD_GATEWAY, None, "x");
        assert!(other.is_retryable());
    }

    #[test]
    fn config_is_checked_and_debug_redacted() {
        let clock: SharedClock = Arc::new(ManualClock::default());
        for (region, endpoint, key) in [
            ("EU West", None, "secrets.aws_region"),
            ("eu-west-1", Some("ftp://x"), "secrets.aws_endpoint"),
            ("eu-west-1", Some("::"), "secrets.aws_endpoint"),
        ] {
            match AwsProvider::new(settings(region, endpoint), clock.clone()) {
                Err(Error::Config { key: k, .. }) => assert_eq!(k, key),
                other => panic!("{region}: {other:?}"),
            }
        }
        let p = AwsProvider::new(settings("eu-west-1", None), clock).unwrap();
        assert_eq!(
            p.url.as_str(),
            "https://secretsmanager.eu-west-1.amazonaws.com/"
        );
        let text = format!("{p:?}");
        assert!(
            !text.contains("EXAMPLEKEY") && !text.contains("session-token-123"),
            "{text}"
        );
    }

    #[test]
    fn requests_are_signed_with_the_clock_and_the_endpoint_host() {
        let clock = ManualClock::at_ymd_hms(2026, 3, 4, 5, 6, 7);
        let p = AwsProvider::new(
            settings("us-east-1", Some("http://127.0.0.1:4566")),
            Arc::new(clock),
        )
        .unwrap();
        let body = br#"{"SecretId":"gal-friday/kraken"}"#;
        let h = p.request_headers(body).unwrap();
        assert_eq!(h["x-amz-date"], "20260304T050607Z");
        assert_eq!(h["x-amz-target"], "secretsmanager.GetSecretValue");
        let auth = h["authorization"].to_str().unwrap();
        assert!(auth.starts_with(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260304/us-east-1/secretsmanager/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-security-token;x-amz-target, Signature="
        ), "{auth}");
        assert_eq!(p.host, "127.0.0.1:4566");
    }
}

#[cfg(test)]
mod property_tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn prop_error_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse_error_body(&body);
        }

        #[test]
        fn prop_xml_like_bodies_never_panic(code in "[<>/A-Za-z]{0,20}", msg in ".{0,40}") {
            let body = format!("<Error><Code>{code}</Code><Message>{msg}</Message>");
            if let Some(e) = parse_error_body(body.as_bytes()) {
                prop_assert!(e.message.chars().all(|c| !c.is_control()));
            }
        }
    }
}
