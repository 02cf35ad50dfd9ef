//! Where the journal key comes from: in live mode the secret provider's `journal_key`
//! field when the credentials' set holds one (then no key file is read or created), else
//! the key file outside the data directory; a malformed provider key is refused naming the
//! field, never showing the value.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use gf_core::Config;
use gf_core::config::{Mode, SecretProviderKind};
use gf_daemon::app::journal_key_for;
use gf_daemon::live::{LiveError, journal_key_from_provider};
use gf_secrets::env::{EnvProvider, env_from_pairs};

const API_KEY: &str =
    "kQH5HW/8p1uGOVjbgWA7FunAmGO8lsSUXNsu3eow76sz84Q18fWxnyRzBHCd3pd5nE9qa99HAZtuZuj6F1huXg==";

fn live_config(dir: &std::path::Path) -> Config {
    let mut cfg = Config::default();
    cfg.general.mode = Mode::Live;
    cfg.general.data_dir = dir.join("data");
    cfg.journal.key_file = Some(dir.join("keys/journal.key"));
    cfg.journal.witness_dir = Some(dir.join("keys/witness"));
    cfg.secrets.provider = SecretProviderKind::Env;
    cfg.secrets.set = "kraken".into();
    // The offline tools run on a data directory that exists (`journal adopt` creates it).
    std::fs::create_dir_all(&cfg.general.data_dir).unwrap();
    cfg
}

#[tokio::test]
async fn the_provider_key_is_used_and_no_key_file_is_made() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = live_config(dir.path());
    let hex_key = "5a".repeat(32);
    let env = env_from_pairs([
        ("KRAKEN_API_KEY", "k".repeat(56)),
        ("KRAKEN_API_SECRET", API_KEY.to_owned()),
        ("KRAKEN_JOURNAL_KEY", hex_key.clone()),
    ]);
    let provider = EnvProvider::new(env.clone());
    let from_provider = journal_key_from_provider(&provider, "kraken")
        .await
        .unwrap()
        .expect("the set holds journal_key");
    let expected = gf_halt::JournalKey::from_hex("test", &hex_key).unwrap();
    let key = journal_key_for(&cfg, &env, true).await.unwrap();
    assert!(
        !dir.path().join("keys/journal.key").exists(),
        "live mode with a provider key never writes a key file"
    );
    // Same key ⇔ same MAC for the same record at the same time.
    assert_eq!(mac_under(from_provider), mac_under(expected.clone()));
    assert_eq!(mac_under(key), mac_under(expected));
    assert_ne!(
        mac_under(gf_halt::JournalKey::random()),
        mac_under(gf_halt::JournalKey::from_hex("test", &hex_key).unwrap())
    );
}

fn mac_under(key: gf_halt::JournalKey) -> String {
    let clock: gf_core::SharedClock = Arc::new(gf_core::ManualClock::default());
    let journal = gf_halt::Journal::open(std::path::Path::new(":memory:"), clock, key).unwrap();
    journal.append("k", "a", &serde_json::json!(1)).unwrap().mac
}

#[tokio::test]
async fn without_a_provider_key_the_key_file_is_used() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = live_config(dir.path());
    let env = env_from_pairs([
        ("KRAKEN_API_KEY", "k".repeat(56)),
        ("KRAKEN_API_SECRET", API_KEY.to_owned()),
    ]);
    let provider = EnvProvider::new(env.clone());
    assert!(
        journal_key_from_provider(&provider, "kraken")
            .await
            .unwrap()
            .is_none()
    );
    journal_key_for(&cfg, &env, true).await.unwrap();
    assert!(dir.path().join("keys/journal.key").exists());
}

#[tokio::test]
async fn a_malformed_provider_key_is_refused_naming_the_field_not_the_value() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = live_config(dir.path());
    let env = env_from_pairs([
        ("KRAKEN_API_KEY", "k".repeat(56)),
        ("KRAKEN_API_SECRET", API_KEY.to_owned()),
        ("KRAKEN_JOURNAL_KEY", "secret-but-not-hex".to_owned()),
    ]);
    let provider = EnvProvider::new(env.clone());
    let err = journal_key_from_provider(&provider, "kraken")
        .await
        .unwrap_err();
    assert!(matches!(err, LiveError::JournalKey(_)), "{err}");
    let text = err.to_string();
    assert!(text.contains("field journal_key"), "{text}");
    assert!(!text.contains("secret-but-not-hex"), "{text}");
    let err = journal_key_for(&cfg, &env, true).await.unwrap_err();
    assert!(!format!("{err:#}").contains("secret-but-not-hex"));
    assert!(!dir.path().join("keys/journal.key").exists());
}
