//! `cargo xtask`: project automation that is easier to keep right in Rust than in shell.
//!
//! - `cargo xtask test [ARGS…]` is the README's test command: it checks every test peer
//!   ([`peers::PEERS`]), installs what is missing (Debian packages with apt-get as root or
//!   with sudo, Python packages into a venv under `target/`), says in one line per peer
//!   what it did, then runs `cargo test --workspace --locked [ARGS…]` with the venv on PATH.
//!   `cargo xtask peers` does only the checking and installing.
//! - `cargo xtask ci` runs exactly what `.ci/run` runs (fmt, clippy, `cargo xtask test`).
//! - `cargo xtask coverage [--min PCT]` runs the workspace tests under `cargo-llvm-cov`
//!   (installing it and `llvm-tools-preview` when missing), prints a per-crate table with
//!   each crate's target from `xtask/coverage.toml` (see [`coverage`]), writes an HTML
//!   report to `target/coverage/html`, and fails naming every crate under its target or
//!   in no class, or when the total is under the floor (default 80 %).
//! - `cargo xtask gen-fixtures` regenerates the market-data recordings under
//!   `fixtures/market/` with gf-market's seeded generator (`gf_market::fixtures`); the
//!   output is reproducible byte for byte, and gf-market's tests check the committed
//!   files against it.
//! - `cargo xtask fuzz [--secs N] [TARGET…]` runs the cargo-fuzz targets of `fuzz/` (see
//!   [`fuzz`]) one after the other for `N` seconds each from the seeds in `fixtures/fuzz/`,
//!   installing nightly and cargo-fuzz when missing; fails when a target crashes.
//! - `cargo xtask mutants [--area NAME]… [--iterate] [--report] [-- ARGS]` runs cargo-mutants
//!   over the safety core (see [`mutants`]), installing it when missing, and prints the
//!   mutation score per area; fails under the goals. Not part of `cargo xtask test`.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};

mod coverage;
mod fuzz;
mod mutants;
mod peers;

/// What `cargo xtask test` runs once the peers are there.
const TEST_COMMAND: &[&str] = &["test", "--workspace", "--locked"];

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// What `cargo xtask help` prints.
const USAGE: &str = "usage: cargo xtask <test [CARGO TEST ARGS…] | peers | ci | coverage [--min PCT] | gen-fixtures | fuzz [--secs N] [TARGET…] | mutants [--area NAME]… [--iterate] [--report] [-- ARGS]>";

/// A task and the arguments after its name.
#[derive(Debug, PartialEq, Eq)]
enum Task<'a> {
    Ci,
    Test(&'a [String]),
    Peers,
    Coverage(&'a [String]),
    GenFixtures,
    Fuzz(&'a [String]),
    Mutants(&'a [String]),
    Help,
}

/// Reads the task from the command line (without the program name).
fn parse_task(args: &[String]) -> Result<Task<'_>> {
    let rest = args.get(1..).unwrap_or_default();
    Ok(match args.first().map(String::as_str) {
        Some("ci") => Task::Ci,
        Some("test") => Task::Test(rest),
        Some("peers") => Task::Peers,
        Some("coverage") => Task::Coverage(rest),
        Some("gen-fixtures") => Task::GenFixtures,
        Some("fuzz") => Task::Fuzz(rest),
        Some("mutants") => Task::Mutants(rest),
        Some("help" | "--help" | "-h") | None => Task::Help,
        Some(other) => bail!("unknown task {other:?}; try `cargo xtask help`"),
    })
}

fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match parse_task(&args)? {
        Task::Ci => ci(),
        Task::Test(extra) => test(extra),
        Task::Peers => ensure_peers().map(|(venv, _)| {
            println!("python peers: {}", venv.display());
        }),
        Task::Coverage(rest) => coverage::coverage(&root(), rest),
        Task::GenFixtures => gen_fixtures(),
        Task::Fuzz(rest) => fuzz::fuzz(&root(), rest),
        Task::Mutants(rest) => mutants::run(rest),
        Task::Help => {
            println!("{USAGE}");
            Ok(())
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

fn cargo(args: &[&str]) -> Result<()> {
    cargo_in(
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())),
        args,
    )
}

/// `cargo ARGS` with the test peers of [`ensure_peers`] on `PATH` (and its venv active).
fn cargo_with_peers(args: &[&str], venv: &Path, path: &std::ffi::OsStr) -> Result<()> {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.env("PATH", path).env("VIRTUAL_ENV", venv);
    cargo_in(cmd, args)
}

fn cargo_in(mut cmd: Command, args: &[&str]) -> Result<()> {
    eprintln!("xtask: cargo {}", args.join(" "));
    let status = cmd
        .args(args)
        .current_dir(root())
        .status()
        .with_context(|| format!("running cargo {}", args.join(" ")))?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}

/// What `cargo xtask ci` runs before `cargo xtask test`, as `.ci/run` does.
const CI_STEPS: &[&[&str]] = &[
    &["fmt", "--all", "--check"],
    &[
        "clippy",
        "--workspace",
        "--all-targets",
        "--locked",
        "--",
        "-D",
        "warnings",
    ],
];

fn ci() -> Result<()> {
    for step in CI_STEPS {
        cargo(step)?;
    }
    test(&[])
}

/// The machine as it is.
struct RealProbe {
    venv: PathBuf,
}

impl peers::Probe for RealProbe {
    fn has_program(&self, program: &str, path: &std::ffi::OsString) -> bool {
        peers::on_path(program, path)
    }

    fn has_module(&self, module: &str) -> bool {
        let python = self.venv.join("bin").join("python3");
        python.exists()
            && Command::new(python)
                .args(["-c", &format!("import {module}")])
                .output()
                .is_ok_and(|o| o.status.success())
    }
}

fn privilege() -> peers::Privilege {
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    peers::privilege(uid.as_deref(), || {
        Command::new("sudo")
            .args(["-n", "true"])
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// The last `n` lines of a failed command's stderr, joined with ` | `.
fn stderr_tail(stderr: &[u8], n: usize) -> String {
    let stderr = String::from_utf8_lossy(stderr);
    let tail: Vec<&str> = stderr.lines().rev().take(n).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    tail.join(" | ")
}

fn run_step(step: &peers::Step) -> Result<()> {
    eprintln!("xtask: {}", step.display());
    let output = Command::new(&step.program)
        .args(&step.args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .output()
        .with_context(|| format!("running {}", step.display()))?;
    if !output.status.success() {
        bail!(
            "{} failed ({}): {}",
            step.display(),
            output.status,
            stderr_tail(&output.stderr, 5)
        );
    }
    Ok(())
}

/// Checks and installs the test peers, then runs the workspace tests with them on PATH.
fn test(extra: &[String]) -> Result<()> {
    let root = root();
    let (venv, path) = ensure_peers()?;
    let cargo_bin = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let args = test_args(extra);
    eprintln!("xtask: cargo {}", args.join(" "));
    let status = Command::new(&cargo_bin)
        .args(&args)
        .current_dir(&root)
        .env("PATH", &path)
        .env("VIRTUAL_ENV", &venv)
        .status()
        .with_context(|| format!("running cargo {}", args.join(" ")))?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}

/// `cargo test` arguments: [`TEST_COMMAND`] with `extra` appended, except that naming a
/// package (`-p`/`--package`) replaces `--workspace`, which would otherwise win.
fn test_args(extra: &[String]) -> Vec<&str> {
    let names_package = extra
        .iter()
        .any(|a| a == "-p" || a == "--package" || a.starts_with("--package="));
    let mut args: Vec<&str> = TEST_COMMAND
        .iter()
        .copied()
        .filter(|a| !(names_package && *a == "--workspace"))
        .collect();
    args.extend(extra.iter().map(String::as_str));
    args
}

/// Checks every test peer and installs the missing ones; returns the venv and the PATH the
/// tests must run with.
fn ensure_peers() -> Result<(PathBuf, std::ffi::OsString)> {
    let root = root();
    let venv = peers::venv_dir(&root);
    let path = peers::test_path(&venv, std::env::var_os("PATH").as_ref());
    let probe = RealProbe { venv: venv.clone() };
    let before: Vec<bool> = peers::PEERS
        .iter()
        .map(|p| peers::is_present(p, &probe, &path))
        .collect();
    let missing = peers::missing(peers::PEERS, &probe, &path);
    if !missing.is_empty() {
        let venv_exists = venv.join("bin").join("python3").exists();
        let plan = peers::full_plan(&missing, privilege(), &venv, venv_exists, || {
            Command::new("python3")
                .args(["-c", "import ensurepip"])
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .map_err(anyhow::Error::msg)?;
        if let Some(parent) = venv.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        for step in &plan {
            run_step(step)?;
        }
    }
    let (lines, outcome) = peers::outcome(peers::PEERS, &before, |peer| {
        peers::is_present(peer, &probe, &path)
    });
    for line in lines {
        println!("{line}");
    }
    outcome.map_err(anyhow::Error::msg)?;
    Ok((venv, path))
}

fn gen_fixtures() -> Result<()> {
    let dir = root().join("fixtures/market");
    for path in gf_market::fixtures::write_all(&dir)? {
        let report = gf_market::verify::verify_recording(&path)?;
        anyhow::ensure!(
            report.passed(),
            "{} does not verify:\n{report}",
            path.display()
        );
        let bytes = std::fs::metadata(&path)?.len();
        println!(
            "{}: {bytes} bytes, {} lines, {} updates verified",
            path.display(),
            report.lines,
            report.updates_verified()
        );
    }
    Ok(())
}

fn run_tool(tool: &str, args: &[&str]) -> Result<()> {
    eprintln!("xtask: {tool} {}", args.join(" "));
    let status = Command::new(tool)
        .args(args)
        .status()
        .with_context(|| format!("running {tool}"))?;
    if !status.success() {
        bail!("{tool} {} failed ({status})", args.join(" "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn tasks_are_read_with_the_arguments_after_their_name() {
        let args = own(&["fuzz", "--secs", "5", "config"]);
        assert_eq!(parse_task(&args).unwrap(), Task::Fuzz(&args[1..]));
        let args = own(&["test", "-p", "gf-core"]);
        assert_eq!(parse_task(&args).unwrap(), Task::Test(&args[1..]));
        let args = own(&["coverage", "--min", "85"]);
        assert_eq!(parse_task(&args).unwrap(), Task::Coverage(&args[1..]));
        let args = own(&["mutants", "--report"]);
        assert_eq!(parse_task(&args).unwrap(), Task::Mutants(&args[1..]));
        for (word, task) in [
            ("ci", Task::Ci),
            ("peers", Task::Peers),
            ("gen-fixtures", Task::GenFixtures),
            ("help", Task::Help),
            ("--help", Task::Help),
            ("-h", Task::Help),
        ] {
            assert_eq!(parse_task(&own(&[word])).unwrap(), task, "{word}");
        }
        assert_eq!(parse_task(&[]).unwrap(), Task::Help);
        let err = parse_task(&own(&["covrage"])).unwrap_err().to_string();
        assert!(err.contains("unknown task \"covrage\""), "{err}");
        for task in [
            "test",
            "peers",
            "ci",
            "coverage",
            "gen-fixtures",
            "fuzz",
            "mutants",
        ] {
            assert!(USAGE.contains(task), "usage does not mention {task}");
        }
    }

    /// `cargo xtask ci` runs what `.ci/run` runs, in the same order.
    #[test]
    fn ci_runs_the_steps_of_the_ci_script() {
        let script = std::fs::read_to_string(root().join(".ci/run")).unwrap();
        let ran: Vec<String> = script
            .lines()
            .filter_map(|l| l.trim().strip_prefix("cargo "))
            .map(str::to_owned)
            .collect();
        let ours: Vec<String> = CI_STEPS
            .iter()
            .map(|s| s.join(" "))
            .chain(["xtask test".to_owned()])
            .collect();
        assert_eq!(ran, ours);
    }

    #[test]
    fn a_failed_step_names_the_command_and_the_end_of_its_stderr() {
        assert_eq!(stderr_tail(b"a\nb\nc\n", 2), "b | c");
        assert_eq!(stderr_tail(b"", 5), "");
        let step = peers::Step {
            program: "sh".into(),
            args: own(&["-c", "echo one >&2; echo two >&2; exit 3"]),
        };
        let err = run_step(&step).unwrap_err().to_string();
        assert!(err.starts_with("sh -c echo one"), "{err}");
        assert!(err.contains("one | two"), "{err}");
        assert!(err.contains('3'), "{err}");
        let ok = peers::Step {
            program: "sh".into(),
            args: own(&["-c", "test \"$DEBIAN_FRONTEND\" = noninteractive"]),
        };
        run_step(&ok).unwrap();
        let err = run_step(&peers::Step {
            program: "/nonexistent/xtask-program".into(),
            args: vec![],
        })
        .unwrap_err();
        assert!(
            format!("{err:#}").contains("running /nonexistent"),
            "{err:#}"
        );
    }

    #[test]
    fn run_tool_fails_with_the_command_line() {
        run_tool("sh", &["-c", "exit 0"]).unwrap();
        let err = run_tool("sh", &["-c", "exit 4"]).unwrap_err().to_string();
        assert!(err.starts_with("sh -c exit 4 failed"), "{err}");
        assert!(run_tool("/nonexistent/xtask-tool", &[]).is_err());
    }

    #[test]
    fn the_real_probe_looks_in_the_venv_and_on_path() {
        use peers::Probe as _;
        let probe = RealProbe {
            venv: PathBuf::from("/nonexistent/venv"),
        };
        // No venv: no module, not even the standard library's.
        assert!(!probe.has_module("os"));
        assert!(probe.has_program("sh", &std::ffi::OsString::from("/bin:/usr/bin")));
        assert!(!probe.has_program("sh", &std::ffi::OsString::from("/nonexistent")));
    }

    #[test]
    fn test_args_narrow_to_a_package_when_one_is_named() {
        assert_eq!(test_args(&[]), ["test", "--workspace", "--locked"]);
        assert_eq!(
            test_args(&own(&["--no-fail-fast"])),
            ["test", "--workspace", "--locked", "--no-fail-fast"]
        );
        assert_eq!(
            test_args(&own(&["-p", "gf-halt"])),
            ["test", "--locked", "-p", "gf-halt"]
        );
        assert_eq!(
            test_args(&own(&["--package=gf-core", "gate"])),
            ["test", "--locked", "--package=gf-core", "gate"]
        );
    }
}
