//! Process and file-system figures (CPU, resident memory, descriptors, threads, free disk)
//! read with `sysinfo`, `/proc` and `statvfs`, never by running a command.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};

/// One reading of the process and the data directory's file system.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct SystemSample {
    /// CPU use since the previous sample, percent of one core (may exceed 100).
    pub cpu_percent: f32,
    /// Resident memory, bytes.
    pub resident_bytes: u64,
    /// Open file descriptors.
    pub open_fds: u64,
    /// Threads.
    pub threads: u64,
    /// Free space available to the process on the data directory's file system, bytes.
    pub disk_free_bytes: Option<u64>,
}

/// Samples this process. Keep one and call [`SystemSampler::sample`] periodically: CPU
/// use is measured between two calls.
pub struct SystemSampler {
    system: Option<System>,
    pid: Option<Pid>,
    data_dir: PathBuf,
}

impl std::fmt::Debug for SystemSampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SystemSampler")
            .field("pid", &self.pid)
            .field("data_dir", &self.data_dir)
            .finish_non_exhaustive()
    }
}

impl SystemSampler {
    /// A sampler for this process and the file system holding `data_dir`.
    #[must_use]
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            system: System::new().ok(),
            pid: sysinfo::get_current_pid().ok(),
            data_dir: data_dir.into(),
        }
    }

    /// Takes a reading. Figures the platform cannot provide read as zero.
    pub fn sample(&mut self) -> SystemSample {
        let mut out = SystemSample::default();
        if let (Some(sys), Some(pid)) = (self.system.as_mut(), self.pid) {
            sys.refresh_processes_specifics(
                ProcessesToUpdate::Some(&[pid]),
                true,
                ProcessRefreshKind::nothing().with_cpu().with_memory(),
            );
            if let Some(p) = sys.process(pid) {
                out.cpu_percent = p.cpu_usage();
                out.resident_bytes = p.memory();
                out.open_fds = p.open_files().map_or(0, |n| n as u64);
                out.threads = p.tasks().map_or(0, |t| t.len() as u64);
            }
        }
        if out.open_fds == 0 {
            out.open_fds = count_dir("/proc/self/fd");
        }
        if out.threads == 0 {
            out.threads = count_dir("/proc/self/task");
        }
        out.disk_free_bytes = free_space(&self.data_dir);
        out
    }
}

fn count_dir(path: &str) -> u64 {
    std::fs::read_dir(path).map_or(0, |d| d.count() as u64)
}

/// Space available to this process on the file system that holds `dir` (`statvfs` of
/// `dir` itself, so a data directory on its own mount — tmpfs, a small partition — is
/// measured there, not on `/`); `None` when `dir` cannot be examined.
#[must_use]
pub fn free_space(dir: &Path) -> Option<u64> {
    let st = rustix::fs::statvfs(dir).ok()?;
    st.f_bavail.checked_mul(st.f_frsize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_this_process() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = SystemSampler::new(dir.path());
        let a = s.sample();
        let _keep = std::fs::File::open(dir.path()).unwrap();
        let b = s.sample();
        assert!(a.resident_bytes > 1024 * 1024, "{a:?}");
        assert!(b.threads >= 1, "{b:?}");
        assert!(b.open_fds >= 3, "{b:?}");
        assert!(b.disk_free_bytes.is_some_and(|f| f > 0), "{b:?}");
        assert!(b.cpu_percent >= 0.0);
    }

    #[test]
    fn free_space_is_the_data_dirs_own_file_system() {
        let dir = tempfile::tempdir().unwrap();
        let free = free_space(dir.path()).unwrap();
        let st = rustix::fs::statvfs(dir.path()).unwrap();
        assert_eq!(free, st.f_bavail * st.f_frsize);
        // /dev/shm is its own (tmpfs) file system where it exists: a data dir there must
        // not report the root file system's space.
        let shm = Path::new("/dev/shm");
        if let (Ok(a), Ok(b)) = (
            rustix::fs::statvfs(shm),
            rustix::fs::statvfs(Path::new("/")),
        ) && a.f_fsid != b.f_fsid
        {
            assert_eq!(free_space(shm), Some(a.f_bavail * a.f_frsize));
        }
        assert_eq!(free_space(&dir.path().join("missing/nowhere")), None);
    }
}
