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
use std::os::unix::fs::OpenOptionsExt;
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

/// Who holds a lock, as far as can be known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockHolder {
    /// A repovault process, as its lock file says.
    Repovault(Holder),
    /// A process that is not repovault (or left no holder record in the lock
    /// file): what the kernel's lock table says about it.
    Other {
        /// Its process id, from `/proc/locks`.
        pid: Option<u32>,
        /// Its command line, from `/proc/<pid>/cmdline`.
        command: Option<String>,
    },
}

impl LockHolder {
    /// The process id, when known.
    pub fn pid(&self) -> Option<u32> {
        match self {
            LockHolder::Repovault(h) => Some(h.pid),
            LockHolder::Other { pid, .. } => *pid,
        }
    }
}

impl std::fmt::Display for LockHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LockHolder::Repovault(h) => write!(
                f,
                "pid {} on {} (repovault {}, since {})",
                h.pid, h.host, h.command, h.started
            ),
            LockHolder::Other {
                pid: Some(pid),
                command: Some(c),
            } => write!(f, "pid {pid} (`{c}`, not repovault)"),
            LockHolder::Other {
                pid: Some(pid),
                command: None,
            } => write!(f, "pid {pid} (not repovault)"),
            LockHolder::Other { pid: None, .. } => write!(
                f,
                "a process that is not repovault (the lock file names no holder)"
            ),
        }
    }
}

/// Errors taking the lock.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Another process holds the lock and did not release it in time.
    #[error("store is locked by {holder}; waited {waited:.1?}. Wait for it to finish, or stop it (a killed holder releases the lock by itself)")]
    Locked {
        /// The holder, as far as can be known.
        holder: LockHolder,
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

/// The holder of the lock on `file` (at `path`): the lock file's record when
/// the kernel's lock table agrees that its pid holds the lock, otherwise what
/// the lock table says (a record left by a killed repovault, or a lock taken
/// by another program).
fn current_holder(file: &mut File) -> LockHolder {
    let recorded = read_holder(file);
    let locker = kernel_lock_holder(file);
    match (recorded, locker) {
        (Some(h), None) => LockHolder::Repovault(h),
        (Some(h), Some(pid)) if h.pid == pid => LockHolder::Repovault(h),
        (_, pid) => LockHolder::Other {
            pid,
            command: pid.and_then(command_line),
        },
    }
}

/// The pid that holds a lock on `file`, from `/proc/locks` (Linux).
fn kernel_lock_holder(file: &File) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    let meta = file.metadata().ok()?;
    let dev = meta.dev();
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    let want = format!("{major:02x}:{minor:02x}:{}", meta.ino());
    let table = std::fs::read_to_string("/proc/locks").ok()?;
    table.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF"; waiters have a "->" field.
        if fields.get(1) == Some(&"->") {
            return None;
        }
        let (pid, id) = (fields.get(4)?, fields.get(5)?);
        (*id == want).then(|| pid.parse().ok()).flatten()
    })
}

/// A process's command line, shortened.
fn command_line(pid: u32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let words: Vec<String> = raw
        .split(|b| *b == 0)
        .filter(|w| !w.is_empty())
        .map(|w| redact_userinfo(&String::from_utf8_lossy(w)))
        .collect();
    let line = words.join(" ");
    if line.is_empty() {
        return None;
    }
    Some(if line.chars().count() > 120 {
        format!("{}...", line.chars().take(120).collect::<String>())
    } else {
        line
    })
}

/// `scheme://user:token@host/...` -> `scheme://***@host/...`: another
/// program's command line may carry a credential in a URL.
fn redact_userinfo(word: &str) -> String {
    let Some(i) = word.find("://") else {
        return word.to_owned();
    };
    let rest = &word[i + 3..];
    let authority = rest.find('/').map_or(rest, |j| &rest[..j]);
    match authority.rfind('@') {
        Some(at) => format!("{}://***{}", &word[..i], &rest[at..]),
        None => word.to_owned(),
    }
}

/// The store a lock file belongs to, for messages.
fn store_of(path: &Path) -> std::borrow::Cow<'_, str> {
    path.parent().unwrap_or(path).to_string_lossy()
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
        let mut file = open_in_place(path).map_err(io)?;
        let start = Instant::now();
        let mut said = false;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(std::fs::TryLockError::WouldBlock) => {
                    if start.elapsed() >= wait {
                        return Err(Error::Locked {
                            holder: current_holder(&mut file),
                            waited: start.elapsed(),
                        });
                    }
                    if !said {
                        // Said once: the wait can be long (--lock-wait, 60 s by default).
                        said = true;
                        tracing::warn!(
                            "waiting up to {}s for the store lock on {}, held by {}",
                            wait.as_secs(),
                            store_of(path),
                            current_holder(&mut file)
                        );
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
        // Written in place, not through `durable`: the flock is on this very
        // file, so it cannot be replaced by a rename; its content only
        // describes the holder for messages and may be torn by a crash.
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

/// Readers (restore, verify) hold the readers lock shared for their whole
/// run; prune holds it exclusively only while it deletes pack files, so a
/// running reader never loses a pack its view of the index still names.
/// Released on drop.
#[derive(Debug)]
pub struct ReadLock {
    _file: File,
}

/// Opens a lock file read-write in place, creating it (mode 0600) when it is
/// missing and keeping its content: the flock is on this very file, so it is
/// never replaced through `durable`.
fn open_in_place(path: &Path) -> std::io::Result<File> {
    File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
}

/// Opens (creating it when it is missing) the readers lock file. It holds
/// only an flock, never content, so it is opened in place (not through `durable`).
fn open_readers(path: &Path) -> std::io::Result<File> {
    match open_in_place(path) {
        Ok(f) => Ok(f),
        // A read-only store: a shared flock needs no write access.
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => File::open(path),
        Err(e) => Err(e),
    }
}

impl ReadLock {
    /// Takes the readers lock shared, waiting while a prune deletes packs
    /// (seconds). `None` when the lock file can neither be opened nor created
    /// (a read-only store of an older repovault): the reader runs unprotected,
    /// with a warning.
    pub fn acquire(path: &Path) -> Option<ReadLock> {
        let file = match open_readers(path) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(
                    "cannot open the readers lock {}: {e}; a prune running now could delete packs this command reads",
                    path.display()
                );
                return None;
            }
        };
        match file.try_lock_shared() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                tracing::warn!(
                    "waiting for prune to finish deleting packs in {}",
                    store_of(path)
                );
                if let Err(e) = file.lock_shared() {
                    tracing::warn!("cannot lock {}: {e}", path.display());
                    return None;
                }
            }
            Err(std::fs::TryLockError::Error(e)) => {
                tracing::warn!("cannot lock {}: {e}", path.display());
                return None;
            }
        }
        Some(ReadLock { _file: file })
    }
}

/// The readers lock held exclusively: no reader runs. Released on drop.
#[derive(Debug)]
pub struct NoReaders {
    _file: File,
}

impl NoReaders {
    /// Waits at most `wait` until no reader holds the readers lock, saying once
    /// that it waits. `Ok(None)` when readers still run after `wait`.
    pub fn acquire(path: &Path, wait: Duration) -> Result<Option<NoReaders>, Error> {
        let file = open_readers(path).map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        })?;
        let start = Instant::now();
        let mut said = false;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(Some(NoReaders { _file: file })),
                Err(std::fs::TryLockError::WouldBlock) => {
                    if start.elapsed() >= wait {
                        return Ok(None);
                    }
                    if !said {
                        said = true;
                        tracing::warn!(
                            "waiting up to {}s for readers of {} (restore, verify) to finish before deleting packs",
                            wait.as_secs(),
                            store_of(path)
                        );
                    }
                    std::thread::sleep(Duration::from_millis(50).min(wait));
                }
                Err(std::fs::TryLockError::Error(source)) => {
                    return Err(Error::Io {
                        path: path.to_owned(),
                        source,
                    })
                }
            }
        }
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
            Error::Locked {
                holder: LockHolder::Repovault(holder),
                waited,
            } => {
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
    fn credentials_in_another_holders_command_line_are_hidden() {
        assert_eq!(
            redact_userinfo("https://u:tok3n@example.com/a@b.git"),
            "https://***@example.com/a@b.git"
        );
        assert_eq!(redact_userinfo("/srv/store/lock"), "/srv/store/lock");
        assert_eq!(redact_userinfo("git://h/x"), "git://h/x");
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
