//! Interoperability with Debian's `age` command-line tool (`apt-get install age`): files
//! it encrypts, we decrypt; files we write, it decrypts — with an X25519 identity and
//! with a passphrase (typed into age's terminal prompt through `script`'s pseudo-tty).

#![allow(clippy::unwrap_used)]

mod support;

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use gf_secrets::Error;
use gf_secrets::file::{AgeFileProvider, EncryptTo, Unlock, encrypt_file};
use gf_secrets::secret::Credentials;
use secrecy::SecretString;
use support::{require_tool, sample_pair};

fn plain_doc(dir: &Path, seed: u8) -> (PathBuf, String) {
    let (k, s) = sample_pair(seed);
    let text =
        format!("{{\"api_key\":\"{k}\",\"api_secret\":\"{s}\",\"version\":\"cli-{seed}\"}}\n");
    let p = dir.join("plain.json");
    fs::write(&p, &text).unwrap();
    (p, text)
}

fn chmod600(p: &Path) {
    fs::set_permissions(p, fs::Permissions::from_mode(0o600)).unwrap();
}

/// `age-keygen -o key.txt`; returns the identity path and its `age1…` recipient.
fn keygen(dir: &Path) -> (PathBuf, String) {
    let keygen = require_tool("age-keygen", "apt-get install age");
    let key = dir.join("key.txt");
    let out = Command::new(&keygen).arg("-o").arg(&key).output().unwrap();
    assert!(
        out.status.success(),
        "age-keygen: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    chmod600(&key);
    let out = Command::new(&keygen).arg("-y").arg(&key).output().unwrap();
    assert!(out.status.success());
    (
        key,
        String::from_utf8(out.stdout).unwrap().trim().to_owned(),
    )
}

#[test]
fn a_file_the_age_cli_encrypts_to_an_identity_we_decrypt() {
    let age = require_tool("age", "apt-get install age");
    let dir = tempfile::tempdir().unwrap();
    let (key, recipient) = keygen(dir.path());
    let (plain, _) = plain_doc(dir.path(), 1);
    for armor in [false, true] {
        let out = dir.path().join(if armor { "k.age.asc" } else { "k.age" });
        let mut cmd = Command::new(&age);
        if armor {
            cmd.arg("-a");
        }
        let status = cmd
            .arg("-r")
            .arg(&recipient)
            .arg("-o")
            .arg(&out)
            .arg(&plain)
            .status()
            .unwrap();
        assert!(status.success());
        chmod600(&out);
        let set = AgeFileProvider::new(&out, Unlock::IdentityFile(key.clone()))
            .fetch_blocking("kraken")
            .unwrap();
        assert_eq!(set.version(), Some("cli-1"));
        Credentials::from_set(&set).unwrap();
    }
}

#[test]
fn a_file_we_encrypt_to_a_recipient_the_age_cli_decrypts() {
    let age = require_tool("age", "apt-get install age");
    let dir = tempfile::tempdir().unwrap();
    let (key, recipient) = keygen(dir.path());
    let (plain, text) = plain_doc(dir.path(), 2);
    let out = dir.path().join("k.age");
    encrypt_file(&plain, &out, &EncryptTo::Recipients(vec![recipient])).unwrap();
    let decrypted = Command::new(&age)
        .arg("-d")
        .arg("-i")
        .arg(&key)
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        decrypted.status.success(),
        "age -d: {}",
        String::from_utf8_lossy(&decrypted.stderr)
    );
    assert_eq!(String::from_utf8(decrypted.stdout).unwrap(), text);
}

/// Runs `age <args>` under `script` so it has a terminal, typing `passphrase` at each of
/// `prompts` passphrase prompts.
fn age_on_a_tty(args: &str, passphrase: &str, prompts: usize) -> String {
    let script = require_tool("script", "apt-get install bsdutils");
    require_tool("age", "apt-get install age");
    struct Kill(Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = Kill(
        Command::new(script)
            .args(["-qec", &format!("age {args}"), "/dev/null"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut stdin = child.0.stdin.take().unwrap();
    let mut stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1024];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = String::new();
    let mut typed = 0;
    loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(chunk) => seen.push_str(&String::from_utf8_lossy(&chunk)),
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => panic!("age {args} did not finish: {seen}"),
        }
        while typed < prompts && seen.to_lowercase().matches("passphrase").count() > typed {
            stdin
                .write_all(format!("{passphrase}\n").as_bytes())
                .unwrap();
            stdin.flush().unwrap();
            typed += 1;
        }
    }
    let status = child.0.wait().unwrap();
    assert!(status.success(), "age {args} failed: {seen}");
    assert_eq!(typed, prompts, "expected {prompts} prompts: {seen}");
    seen
}

#[test]
fn passphrase_files_interoperate_both_ways_with_the_age_cli() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let (plain, text) = plain_doc(dir.path(), 3);

    // age -p encrypts, we decrypt.
    age_on_a_tty(
        &format!("-p -o {d}/cli.age {}", plain.display()),
        "tr0ub4dor&3",
        2,
    );
    let cli_file = dir.path().join("cli.age");
    chmod600(&cli_file);
    let pass = |p: &str| Unlock::Passphrase(SecretString::from(p.to_owned()));
    let set = AgeFileProvider::new(&cli_file, pass("tr0ub4dor&3"))
        .fetch_blocking("kraken")
        .unwrap();
    assert_eq!(set.version(), Some("cli-3"));
    let err = AgeFileProvider::new(&cli_file, pass("wrong"))
        .fetch_blocking("kraken")
        .unwrap_err();
    assert!(
        matches!(err, Error::Decrypt { .. }) && err.to_string().ends_with("wrong passphrase"),
        "{err}"
    );

    // We encrypt, age -d decrypts.
    let ours = dir.path().join("ours.age");
    encrypt_file(
        &plain,
        &ours,
        &EncryptTo::Passphrase {
            passphrase: SecretString::from("correct horse".to_owned()),
            work_factor: Some(12),
        },
    )
    .unwrap();
    age_on_a_tty(
        &format!("-d -o {d}/back.json {}", ours.display()),
        "correct horse",
        1,
    );
    assert_eq!(
        fs::read_to_string(dir.path().join("back.json")).unwrap(),
        text
    );
}
