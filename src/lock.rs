//! The store's write lock: one writer (sync, forget, prune) at a time.
//!
//! The lock is an OS advisory lock (`flock`) on the file `lock` in the store,
//! which the kernel releases when the holder dies, so a lock left by a killed
//! process is never stuck. The file's content names the holder (pid, start
//! time, host, command) so that a waiting writer can say who holds it; a
//! holder truncates it when it releases the lock, so content found by a new
//! holder means the previous one was killed.

use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Who holds (or held) the lock.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Holder {
    /// Process id.
    pub pid: u32,
    /// When it took the lock (RFC 3339, UTC).
    pub started: String,
    /// Host name.
    pub host: String,
    /// What it is doing (`sync`, `prune`, ...).
    pub command: String,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pid {} on {} (`{}`, started {})",
            self.pid, self.host, self.command, self.started
        )
    }
}

/// Errors taking the lock.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Another process holds the lock and did not release it in time.
    #[error("store is locked by {holder}; waited {waited:?}. Wait for it to finish, or stop it (a killed holder releases the lock by itself)")]
    Locked {
        /// The holder, as far as the lock file says.
        holder: Holder,
        /// How long we waited.
        waited: Duration,
    },
    /// I/O on the lock file.
    #[error("lock file {path}: {source}")]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// A held write lock; released on drop.
#[derive(Debug)]
pub struct WriteLock {
    file: File,
    path: PathBuf,
}

fn read_holder(file: &mut File) -> Option<Holder> {
    let mut s = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.read_to_string(&mut s).ok()?;
    serde_json::from_str(s.trim()).ok()
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into())
}

impl WriteLock {
    /// Takes the lock at `path`, waiting at most `wait` for another holder.
    pub fn acquire(path: &Path, wait: Duration, command: &str) -> Result<Self, Error> {
        let io = |source| Error::Io {
            path: path.to_owned(),
            source,
        };
        let mut file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io)?;
        let start = Instant::now();
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(std::fs::TryLockError::WouldBlock) => {
                    if start.elapsed() >= wait {
                        let holder = read_holder(&mut file).unwrap_or(Holder {
                            pid: 0,
                            started: "unknown".into(),
                            host: "unknown".into(),
                            command: "unknown".into(),
                        });
                        return Err(Error::Locked {
                            holder,
                            waited: start.elapsed(),
                        });
                    }
                    std::thread::sleep(Duration::from_millis(50).min(wait));
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
            }
        }
        if let Some(stale) = read_holder(&mut file) {
            tracing::warn!(previous = %stale, "taking over a stale store lock: its holder ended without releasing it");
        }
        let me = Holder {
            pid: std::process::id(),
            started: jiff::Timestamp::now().to_string(),
            host: host_name(),
            command: command.to_owned(),
        };
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        file.write_all(
            serde_json::to_string(&me)
                .expect("plain struct serializes")
                .as_bytes(),
        )
        .map_err(io)?;
        file.sync_data().map_err(io)?;
        Ok(Self {
            file,
            path: path.to_owned(),
        })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for WriteLock {
    fn drop(&mut self) {
        // An empty file tells the next holder that this one ended cleanly.
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_writer_waits_then_fails_naming_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("lock");
        let held = WriteLock::acquire(&p, Duration::ZERO, "sync").unwrap();
        let err = WriteLock::acquire(&p, Duration::from_millis(200), "prune").unwrap_err();
        match err {
            Error::Locked { holder, waited } => {
                assert_eq!(holder.pid, std::process::id());
                assert_eq!(holder.command, "sync");
                assert!(waited >= Duration::from_millis(200));
            }
            e => panic!("unexpected {e}"),
        }
        drop(held);
        WriteLock::acquire(&p, Duration::ZERO, "prune").unwrap();
    }

    #[test]
    fn stale_content_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("lock");
        std::fs::write(
            &p,
            r#"{"pid":999999,"started":"2020-01-01T00:00:00Z","host":"h","command":"sync"}"#,
        )
        .unwrap();
        let l = WriteLock::acquire(&p, Duration::ZERO, "sync").unwrap();
        let s = std::fs::read_to_string(l.path()).unwrap();
        assert!(s.contains(&format!("\"pid\":{}", std::process::id())));
    }
}
