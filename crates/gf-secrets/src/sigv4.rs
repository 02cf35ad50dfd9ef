//! AWS Signature Version 4, written against AWS's published description and checked
//! against its published test vectors (the SigV4 test suite's `get-vanilla`,
//! `post-vanilla` and `get-vanilla-query-order-key-case`, and the S3 reference's
//! "GET Object" example), and end to end against moto's signature verification.
//!
//! Why by hand rather than the `aws-sigv4` crate: we sign exactly one request shape
//! (`POST /` with a JSON body), and SigV4 is ~100 lines of HMAC-SHA256 over the
//! `hmac`/`sha2` crates we already depend on; `aws-sigv4` would bring the smithy runtime
//! types and a second `http` stack into the crate that holds our keys, and couple us to
//! its fast-moving API. The time comes from our [`gf_core::Clock`], so signing is
//! deterministic in tests.

use std::fmt;

use chrono::{DateTime, Utc};
use hmac::{KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

type HmacSha256 = hmac::Hmac<Sha256>;

/// An AWS access key pair (and an optional STS session token).
pub struct AwsCredentials {
    /// The access key id (`AKIA…`); not secret, appears in the Authorization header.
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: SecretString,
    /// A session token for temporary credentials.
    pub session_token: Option<SecretString>,
}

impl fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"[REDACTED]")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "[REDACTED]"),
            )
            .finish()
    }
}

/// The parts of a request that SigV4 signs.
#[derive(Debug, Clone)]
pub struct SigningRequest<'a> {
    /// `GET`, `POST` …
    pub method: &'a str,
    /// The path, already URI-encoded (`/` for the JSON APIs).
    pub path: &'a str,
    /// Query parameters, unencoded; they are encoded and sorted here.
    pub query: &'a [(&'a str, &'a str)],
    /// Headers to sign, including `host` and `x-amz-date`; names any case.
    pub headers: &'a [(&'a str, &'a str)],
    /// The body.
    pub payload: &'a [u8],
}

/// The `x-amz-date` value for `t` (`20150830T123600Z`).
#[must_use]
pub fn amz_date(t: DateTime<Utc>) -> String {
    t.format("%Y%m%dT%H%M%SZ").to_string()
}

/// Lower-case hex SHA-256.
#[must_use]
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length; new_from_slice cannot fail.
    let mut mac = HmacSha256::new_from_slice(key).expect("hmac takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn uri_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The canonical request (step 1 of SigV4) and the signed-headers list.
#[must_use]
pub fn canonical_request(req: &SigningRequest<'_>) -> (String, String) {
    let mut query: Vec<(String, String)> = req
        .query
        .iter()
        .map(|(k, v)| (uri_encode(k), uri_encode(v)))
        .collect();
    query.sort();
    let query = query
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let mut headers: Vec<(String, String)> = req
        .headers
        .iter()
        .map(|(k, v)| {
            let value = v.split_whitespace().collect::<Vec<_>>().join(" ");
            (k.to_ascii_lowercase(), value)
        })
        .collect();
    headers.sort();
    let canonical_headers: String = headers.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let signed_headers = headers
        .iter()
        .map(|(k, _)| k.as_str())
        .collect::<Vec<_>>()
        .join(";");
    let canonical = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        req.method,
        req.path,
        query,
        canonical_headers,
        signed_headers,
        sha256_hex(req.payload)
    );
    (canonical, signed_headers)
}

/// The `Authorization` header value for `req`, signed at `time` for `region`/`service`.
#[must_use]
pub fn authorization(
    creds: &AwsCredentials,
    region: &str,
    service: &str,
    time: DateTime<Utc>,
    req: &SigningRequest<'_>,
) -> String {
    let (canonical, signed_headers) = canonical_request(req);
    let amz = amz_date(time);
    let date = &amz[..8];
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz}\n{scope}\n{}",
        sha256_hex(canonical.as_bytes())
    );
    let secret =
        zeroize::Zeroizing::new(format!("AWS4{}", creds.secret_access_key.expose_secret()));
    let k_date = zeroize::Zeroizing::new(hmac(secret.as_bytes(), date.as_bytes()));
    let k_region = zeroize::Zeroizing::new(hmac(&k_date, region.as_bytes()));
    let k_service = zeroize::Zeroizing::new(hmac(&k_region, service.as_bytes()));
    let k_signing = zeroize::Zeroizing::new(hmac(&k_service, b"aws4_request"));
    let signature = hex::encode(hmac(&k_signing, string_to_sign.as_bytes()));
    format!(
        "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
        creds.access_key_id
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn suite_creds() -> AwsCredentials {
        AwsCredentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: SecretString::from("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
            session_token: None,
        }
    }

    fn suite_time() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2015, 8, 30, 12, 36, 0).unwrap()
    }

    struct Case {
        name: &'static str,
        method: &'static str,
        query: &'static [(&'static str, &'static str)],
        signature: &'static str,
    }

    #[test]
    fn aws_test_suite_vectors() {
        let cases = [
            Case {
                name: "get-vanilla",
                method: "GET",
                query: &[],
                signature: "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
            },
            Case {
                name: "post-vanilla",
                method: "POST",
                query: &[],
                signature: "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b",
            },
            Case {
                name: "get-vanilla-query-order-key-case",
                method: "GET",
                query: &[("Param2", "value2"), ("Param1", "value1")],
                signature: "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
            },
        ];
        for case in cases {
            let req = SigningRequest {
                method: case.method,
                path: "/",
                query: case.query,
                headers: &[
                    ("Host", "example.amazonaws.com"),
                    ("X-Amz-Date", "20150830T123600Z"),
                ],
                payload: b"",
            };
            let auth = authorization(&suite_creds(), "us-east-1", "service", suite_time(), &req);
            assert_eq!(
                auth,
                format!(
                    "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature={}",
                    case.signature
                ),
                "{}",
                case.name
            );
        }
    }

    #[test]
    fn s3_reference_get_object_example() {
        let creds = AwsCredentials {
            access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_access_key: SecretString::from("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
            session_token: None,
        };
        let empty = sha256_hex(b"");
        let headers = [
            ("Host", "examplebucket.s3.amazonaws.com"),
            ("Range", "bytes=0-9"),
            ("x-amz-content-sha256", empty.as_str()),
            ("x-amz-date", "20130524T000000Z"),
        ];
        let req = SigningRequest {
            method: "GET",
            path: "/test.txt",
            query: &[],
            headers: &headers,
            payload: b"",
        };
        let (canonical, _) = canonical_request(&req);
        assert_eq!(
            sha256_hex(canonical.as_bytes()),
            "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972"
        );
        let auth = authorization(
            &creds,
            "us-east-1",
            "s3",
            Utc.with_ymd_and_hms(2013, 5, 24, 0, 0, 0).unwrap(),
            &req,
        );
        assert!(
            auth.ends_with(
                "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
            ),
            "{auth}"
        );
    }

    #[test]
    fn debug_redacts_the_secret_key() {
        let text = format!("{:?}", suite_creds());
        assert!(!text.contains("EXAMPLEKEY"), "{text}");
        assert!(text.contains("AKIDEXAMPLE"));
    }

    #[test]
    fn uri_encoding_is_rfc3986() {
        assert_eq!(uri_encode("a b/c~d"), "a%20b%2Fc~d");
    }
}
