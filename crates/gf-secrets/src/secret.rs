//! Secret values: a fetched [`SecretSet`] and validated Kraken [`Credentials`].
//!
//! Every value lives in a `secrecy` box: zeroized on drop, redacted in `Debug`, not
//! `Display`, never `Serialize`. The only place the plain key and decoded secret are
//! handed out is [`Credentials::lend`] (and the [`CredentialHandle`] impl built on it),
//! for the duration of one signature.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use gf_core::CredentialHandle;
use secrecy::{ExposeSecret, SecretSlice, SecretString};
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// Field holding the Kraken API key.
pub const API_KEY_FIELD: &str = "api_key";
/// Field holding the Kraken API secret (base64).
pub const API_SECRET_FIELD: &str = "api_secret";
/// Length of a Kraken API key, characters.
pub const KRAKEN_KEY_LEN: usize = 56;
/// Length of a Kraken API secret once base64-decoded, bytes.
pub const KRAKEN_SECRET_LEN: usize = 64;

/// A named set of secret fields (e.g. `kraken` → `api_key`, `api_secret`) with the
/// provider's version of it.
pub struct SecretSet {
    name: String,
    provider: &'static str,
    version: Option<String>,
    fields: BTreeMap<String, SecretString>,
}

impl SecretSet {
    /// An empty set.
    #[must_use]
    pub fn new(name: impl Into<String>, provider: &'static str, version: Option<String>) -> Self {
        Self {
            name: name.into(),
            provider,
            version,
            fields: BTreeMap::new(),
        }
    }

    /// Adds (or replaces) a field. The `String` is moved into a zeroizing box.
    pub fn insert(&mut self, field: impl Into<String>, value: String) {
        self.fields.insert(field.into(), SecretString::from(value));
    }

    /// Builder form of [`Self::insert`].
    #[must_use]
    pub fn with(mut self, field: impl Into<String>, value: impl Into<String>) -> Self {
        self.insert(field, value.into());
        self
    }

    /// Sets the version (providers whose document carries none).
    pub(crate) fn set_version(&mut self, version: String) {
        self.version = Some(version);
    }

    /// The set's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The provider it came from (`env`, `file`, `vault`, `aws`).
    #[must_use]
    pub fn provider(&self) -> &'static str {
        self.provider
    }

    /// The provider's version (Vault metadata version, AWS VersionId, file digest).
    #[must_use]
    pub fn version(&self) -> Option<&str> {
        self.version.as_deref()
    }

    /// A field, still boxed.
    #[must_use]
    pub fn get(&self, field: &str) -> Option<&SecretString> {
        self.fields.get(field)
    }

    /// The field names (not their values).
    pub fn field_names(&self) -> impl Iterator<Item = &str> {
        self.fields.keys().map(String::as_str)
    }

    fn require(&self, field: &str) -> Result<&SecretString> {
        self.get(field).ok_or_else(|| Error::MissingField {
            set: self.name.clone(),
            field: field.to_owned(),
        })
    }

    /// Builds a set from a JSON object document (the format of the age file, the Vault
    /// `data.data` object and the AWS `SecretString`). String, number and boolean values
    /// become fields; a top-level `"version"` string or number is taken as the version
    /// when `version` is `None`. The document buffer is the caller's to zeroize.
    ///
    /// # Errors
    /// [`Error::Malformed`] when the document is not a JSON object or a field is an
    /// object, array or null; the message names the field, never a value.
    pub fn from_json(
        name: &str,
        provider: &'static str,
        version: Option<String>,
        source_name: &str,
        document: &[u8],
    ) -> Result<Self> {
        let value: serde_json::Value =
            serde_json::from_slice(document).map_err(|e| Error::Malformed {
                source_name: source_name.to_owned(),
                // serde_json's messages give line/column and category, not content.
                reason: format!("not valid JSON ({})", json_error_category(&e)),
            })?;
        Self::from_json_value(name, provider, version, source_name, value)
    }

    /// As [`Self::from_json`], from an already parsed value (consumed, so its strings
    /// move into zeroizing boxes).
    ///
    /// # Errors
    /// As [`Self::from_json`].
    pub fn from_json_value(
        name: &str,
        provider: &'static str,
        version: Option<String>,
        source_name: &str,
        value: serde_json::Value,
    ) -> Result<Self> {
        let serde_json::Value::Object(map) = value else {
            return Err(Error::Malformed {
                source_name: source_name.to_owned(),
                reason: "expected a JSON object of string fields".into(),
            });
        };
        let mut set = SecretSet::new(name, provider, version);
        for (field, value) in map {
            let text = match value {
                serde_json::Value::String(s) => s,
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::Bool(b) => b.to_string(),
                _ => {
                    return Err(Error::Malformed {
                        source_name: source_name.to_owned(),
                        reason: format!("field `{field}` must be a string"),
                    });
                }
            };
            if field == "version" {
                if set.version.is_none() {
                    set.version = Some(text);
                }
                continue;
            }
            set.insert(field, text);
        }
        Ok(set)
    }
}

fn json_error_category(e: &serde_json::Error) -> String {
    let what = match e.classify() {
        serde_json::error::Category::Io => "i/o error",
        serde_json::error::Category::Syntax => "syntax error",
        serde_json::error::Category::Data => "unexpected data",
        serde_json::error::Category::Eof => "unexpected end",
    };
    format!("{what} at line {} column {}", e.line(), e.column())
}

impl fmt::Debug for SecretSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretSet")
            .field("name", &self.name)
            .field("provider", &self.provider)
            .field("version", &self.version)
            .field("fields", &self.fields.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// Validated Kraken credentials: the API key and the base64-decoded API secret.
pub struct Credentials {
    set: String,
    provider: &'static str,
    version: Option<String>,
    api_key: SecretString,
    api_secret: SecretSlice<u8>,
}

impl Credentials {
    /// Validates and takes the Kraken fields of `set`.
    ///
    /// # Errors
    /// [`Error::MissingField`] or [`Error::InvalidField`] naming the field; see
    /// [`validate_kraken`].
    pub fn from_set(set: &SecretSet) -> Result<Self> {
        let key = set.require(API_KEY_FIELD)?;
        let secret = set.require(API_SECRET_FIELD)?;
        let (api_key, api_secret) =
            validate_kraken(&set.name, key.expose_secret(), secret.expose_secret())?;
        Ok(Self {
            set: set.name.clone(),
            provider: set.provider,
            version: set.version.clone(),
            api_key,
            api_secret,
        })
    }

    /// The secret set they came from.
    #[must_use]
    pub fn set(&self) -> &str {
        &self.set
    }

    /// The provider they came from.
    #[must_use]
    pub fn provider(&self) -> &'static str {
        self.provider
    }

    /// The provider's version.
    #[must_use]
    pub fn version(&self) -> Option<&str> {
        self.version.as_deref()
    }

    /// Lends the API key and decoded secret to `sign` — the single point where plaintext
    /// credentials leave this crate. Do not keep copies beyond the call.
    pub fn lend<R>(&self, sign: impl FnOnce(&str, &[u8]) -> R) -> R {
        sign(
            self.api_key.expose_secret(),
            self.api_secret.expose_secret(),
        )
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("set", &self.set)
            .field("provider", &self.provider)
            .field("version", &self.version)
            .field("api_key", &"[REDACTED]")
            .field("api_secret", &"[REDACTED]")
            .finish()
    }
}

impl CredentialHandle for Credentials {
    fn with_credentials(&self, sign: &mut dyn FnMut(&str, &[u8])) -> bool {
        self.lend(|k, s| sign(k, s));
        true
    }

    fn version(&self) -> Option<String> {
        self.version.clone()
    }
}

/// Checks the shape of a Kraken key pair: the key is [`KRAKEN_KEY_LEN`] characters of
/// the base64 alphabet, the secret is standard base64 decoding to [`KRAKEN_SECRET_LEN`]
/// bytes. Surrounding whitespace (a trailing newline from a file) is ignored. Returns
/// the trimmed key and the decoded secret.
///
/// # Errors
/// [`Error::InvalidField`] naming `api_key` or `api_secret` and what is wrong with its
/// shape; the value is never part of the message.
pub fn validate_kraken(
    set: &str,
    key: &str,
    secret: &str,
) -> Result<(SecretString, SecretSlice<u8>)> {
    let invalid = |field: &str, reason: String| Error::InvalidField {
        set: set.to_owned(),
        field: field.to_owned(),
        reason,
    };
    let key = key.trim();
    if key.is_empty() {
        return Err(invalid(API_KEY_FIELD, "is empty".into()));
    }
    if key.len() != KRAKEN_KEY_LEN {
        return Err(invalid(
            API_KEY_FIELD,
            format!(
                "has {} characters, expected {KRAKEN_KEY_LEN}",
                key.chars().count()
            ),
        ));
    }
    if let Some(pos) = key.bytes().position(|b| !is_base64_char(b)) {
        return Err(invalid(
            API_KEY_FIELD,
            format!("has a character outside the base64 alphabet at position {pos}"),
        ));
    }
    let secret = secret.trim();
    if secret.is_empty() {
        return Err(invalid(API_SECRET_FIELD, "is empty".into()));
    }
    let decoded = Zeroizing::new(STANDARD.decode(secret.as_bytes()).map_err(|e| {
        invalid(
            API_SECRET_FIELD,
            format!("is not valid base64 ({})", base64_reason(&e)),
        )
    })?);
    if decoded.len() != KRAKEN_SECRET_LEN {
        return Err(invalid(
            API_SECRET_FIELD,
            format!(
                "decodes to {} bytes, expected {KRAKEN_SECRET_LEN}",
                decoded.len()
            ),
        ));
    }
    Ok((
        SecretString::from(key.to_owned()),
        SecretSlice::from(decoded.to_vec()),
    ))
}

fn is_base64_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=')
}

// The decode error's Display names the offending byte; we only keep its position.
fn base64_reason(e: &base64::DecodeError) -> String {
    match e {
        base64::DecodeError::InvalidByte(pos, _) => format!("invalid character at position {pos}"),
        base64::DecodeError::InvalidLength(len) => format!("invalid length {len}"),
        base64::DecodeError::InvalidLastSymbol { offset, .. } => {
            format!("invalid last symbol at position {offset}")
        }
        base64::DecodeError::InvalidPadding => "invalid padding".into(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A well-shaped key pair for tests (not a real Kraken key).
    pub(crate) fn sample_pair(seed: u8) -> (String, String) {
        let key: String = (0..KRAKEN_KEY_LEN)
            .map(|i| char::from(b'A' + ((i as u8).wrapping_add(seed) % 26)))
            .collect();
        let secret = STANDARD.encode(
            (0..KRAKEN_SECRET_LEN as u8)
                .map(|i| i ^ seed)
                .collect::<Vec<_>>(),
        );
        (key, secret)
    }

    #[test]
    fn validation_accepts_kraken_shape_and_trims() {
        let (key, secret) = sample_pair(3);
        let (k, s) =
            validate_kraken("kraken", &format!("{key}\n"), &format!(" {secret}\n")).unwrap();
        assert_eq!(k.expose_secret(), key);
        assert_eq!(s.expose_secret().len(), KRAKEN_SECRET_LEN);
    }

    #[test]
    fn validation_names_the_field_never_the_value() {
        struct Case {
            key: String,
            secret: String,
            field: &'static str,
            reason: &'static str,
        }
        let (key, secret) = sample_pair(9);
        let cases = [
            Case {
                key: String::new(),
                secret: secret.clone(),
                field: "api_key",
                reason: "is empty",
            },
            Case {
                key: "SHORTKEY".into(),
                secret: secret.clone(),
                field: "api_key",
                reason: "has 8 characters",
            },
            Case {
                key: format!("{}!", &key[..55]),
                secret: secret.clone(),
                field: "api_key",
                reason: "outside the base64 alphabet at position 55",
            },
            Case {
                key: key.clone(),
                secret: "%%%%".into(),
                field: "api_secret",
                reason: "not valid base64",
            },
            Case {
                key: key.clone(),
                secret: STANDARD.encode([1u8; 32]),
                field: "api_secret",
                reason: "decodes to 32 bytes, expected 64",
            },
            Case {
                key: key.clone(),
                secret: "  ".into(),
                field: "api_secret",
                reason: "is empty",
            },
        ];
        for case in cases {
            let err = validate_kraken("kraken", &case.key, &case.secret).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains(&format!("field `{}`", case.field)), "{msg}");
            assert!(msg.contains(case.reason), "{msg}");
            if !case.secret.trim().is_empty() {
                assert!(!msg.contains(case.secret.trim()), "secret leaked: {msg}");
            }
            if case.key.len() > 8 {
                assert!(!msg.contains(&case.key), "key leaked: {msg}");
            }
        }
    }

    #[test]
    fn missing_field_is_named() {
        let set = SecretSet::new("kraken", "env", None).with("api_key", "x");
        let err = Credentials::from_set(&set).unwrap_err();
        assert_eq!(
            err.to_string(),
            "secret set `kraken` has no field `api_secret`"
        );
    }

    #[test]
    fn debug_output_is_redacted() {
        let (key, secret) = sample_pair(1);
        let set = SecretSet::new("kraken", "env", Some("7".into()))
            .with("api_key", key.clone())
            .with("api_secret", secret.clone());
        let creds = Credentials::from_set(&set).unwrap();
        for text in [
            format!("{set:?}"),
            format!("{creds:?}"),
            format!("{creds:#?}"),
        ] {
            assert!(!text.contains(&key) && !text.contains(&secret), "{text}");
        }
        assert!(format!("{creds:?}").contains("[REDACTED]"));
        assert_eq!(creds.version(), Some("7"));
    }

    #[test]
    fn lend_gives_decoded_secret() {
        let (key, secret) = sample_pair(5);
        let set = SecretSet::new("kraken", "env", None)
            .with("api_key", key.clone())
            .with("api_secret", secret.clone());
        let creds = Credentials::from_set(&set).unwrap();
        let mut seen = None;
        assert!(
            creds.with_credentials(&mut |k, s| seen = Some((k.to_owned(), STANDARD.encode(s))))
        );
        assert_eq!(seen, Some((key, secret)));
    }

    #[test]
    fn json_documents_become_sets() {
        let doc = br#"{"api_key":"k","api_secret":"s","version":4,"note":true}"#;
        let set = SecretSet::from_json("kraken", "file", None, "f", doc).unwrap();
        assert_eq!(set.version(), Some("4"));
        assert_eq!(
            set.field_names().collect::<Vec<_>>(),
            ["api_key", "api_secret", "note"]
        );

        struct Case {
            doc: &'static [u8],
            reason: &'static str,
        }
        for case in [
            Case {
                doc: b"[1,2]",
                reason: "expected a JSON object",
            },
            Case {
                doc: br#"{"api_key":{"nested":1}}"#,
                reason: "field `api_key` must be a string",
            },
            Case {
                doc: br#"{"api_key":"hunter2"#,
                reason: "not valid JSON (unexpected end",
            },
            Case {
                doc: b"\xff\xfe",
                reason: "not valid JSON",
            },
        ] {
            let err = SecretSet::from_json("kraken", "file", None, "f", case.doc).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains(case.reason), "{msg}");
            assert!(!msg.contains("hunter2"), "{msg}");
        }
    }
}

#[cfg(test)]
mod property_tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn prop_validation_never_panics_and_never_echoes(key in ".{0,80}", secret in ".{0,120}") {
            if let Err(e) = validate_kraken("kraken", &key, &secret) {
                let msg = e.to_string();
                if secret.trim().len() >= 8 {
                    prop_assert!(!msg.contains(secret.trim()));
                }
                if key.trim().len() >= 8 {
                    prop_assert!(!msg.contains(key.trim()));
                }
            }
        }

        #[test]
        fn prop_well_shaped_pairs_validate(key in "[A-Za-z0-9+/]{56}", bytes in proptest::collection::vec(any::<u8>(), 64)) {
            let secret = STANDARD.encode(&bytes);
            let (k, s) = validate_kraken("kraken", &key, &secret).unwrap();
            prop_assert_eq!(k.expose_secret(), key.as_str());
            prop_assert_eq!(s.expose_secret(), bytes.as_slice());
        }

        #[test]
        fn prop_json_documents_never_panic(doc in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = SecretSet::from_json("kraken", "file", None, "f", &doc);
        }
    }
}
