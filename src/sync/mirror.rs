//! Keeping the mirror cache usable: one user of a mirror at a time, what a
//! killed user left behind cleaned up before the next fetch, and a missing or
//! unreadable mirror rebuilt from the store ([`rebuild`], through
//! [`crate::restore`]: rebuilding a mirror is restoring the last snapshot).
//!
//! A sync holds an exclusive `flock` on `<mirror>.git.repovault-lock` (beside
//! the mirror) for as long as it works in the mirror. Holding it, nothing else
//! can be writing there, so every git lock file (`packed-refs.lock`,
//! `refs/**.lock`, `HEAD.lock`, ...) and every half-written pack file in the
//! mirror was left by a killed process and is removed. A mirror that still
//! cannot be read is removed, and the sync rebuilds it from the store.

use super::Error;
use crate::snapshot::Snapshot;
use crate::store::Store;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The exclusive lock of one mirror, released on drop (or by the kernel when
/// the holder dies).
#[derive(Debug)]
pub struct MirrorLock {
    _file: File,
}

fn lock_path(mirror: &Path) -> PathBuf {
    let mut name = mirror.file_name().unwrap_or_default().to_owned();
    name.push(".repovault-lock");
    mirror.with_file_name(name)
}

/// Takes the lock of `mirror`, waiting while another sync (another store
/// sharing the cache, or another job of this run) holds it.
///
/// # Errors
/// [`Error::Mirror`] when the lock file cannot be opened, [`Error::Interrupted`].
pub fn lock(mirror: &Path, interrupt: &AtomicBool) -> Result<MirrorLock, Error> {
    let path = lock_path(mirror);
    let err = |e: std::io::Error| Error::Mirror {
        path: path.clone(),
        reason: format!("cannot lock the mirror: {e}"),
    };
    // A lock file holds an flock and no content: opened in place, not through `durable`.
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(err)?;
    let start = Instant::now();
    let mut said = false;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(MirrorLock { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => {}
            Err(std::fs::TryLockError::Error(e)) => return Err(err(e)),
        }
        if interrupt.load(Ordering::Relaxed) {
            return Err(Error::Interrupted);
        }
        if !said && start.elapsed() > Duration::from_secs(1) {
            tracing::info!(mirror = %mirror.display(), "waiting for another repovault using this mirror");
            said = true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What [`recover`] removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Recovered {
    /// Stale `*.lock` files.
    pub locks: usize,
    /// Temporary or orphaned pack files.
    pub pack_files: usize,
}

/// Removes what a killed process left in `mirror`: every `*.lock` file, and
/// temporary, half-persisted or orphaned files in `objects/pack`. Only call
/// it while holding the mirror's [`lock`].
///
/// # Errors
/// [`Error::Mirror`] when a leftover cannot be removed.
pub fn recover(mirror: &Path) -> Result<Recovered, Error> {
    let mut out = Recovered::default();
    if !mirror.is_dir() {
        return Ok(out);
    }
    let mut stack = vec![mirror.to_owned()];
    while let Some(dir) = stack.pop() {
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err(&dir, e)),
        };
        for entry in rd {
            let entry = entry.map_err(|e| io_err(&dir, e))?;
            let path = entry.path();
            let ft = entry.file_type().map_err(|e| io_err(&path, e))?;
            if ft.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|x| x == "lock") {
                remove(&path)?;
                out.locks += 1;
            }
        }
    }
    let packs = mirror.join("objects/pack");
    if let Ok(rd) = std::fs::read_dir(&packs) {
        for entry in rd {
            let entry = entry.map_err(|e| io_err(&packs, e))?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let sibling = |ext: &str| path.with_extension(ext).is_file();
            let leftover = if name.starts_with(".tmp") || name.starts_with("tmp_") {
                true
            } else if name.ends_with(".pack") {
                // gix persists the pack before its index: a pack without one is half-written.
                !sibling("idx")
            } else if name.ends_with(".idx") {
                !sibling("pack")
            } else {
                false
            };
            if leftover && entry.file_type().is_ok_and(|t| t.is_file()) {
                remove(&path)?;
                out.pack_files += 1;
            }
        }
    }
    if out != Recovered::default() {
        tracing::warn!(
            mirror = %mirror.display(),
            locks = out.locks,
            pack_files = out.pack_files,
            "removed what an interrupted sync left in the mirror cache"
        );
    }
    Ok(out)
}

/// Whether `mirror` opens and its refs and pack indexes can be read: what a
/// fetch needs of it.
pub fn check(mirror: &Path) -> Result<(), String> {
    let repo = gix::open(mirror).map_err(|e| format!("{e:#}"))?;
    let platform = repo.references().map_err(|e| format!("{e:#}"))?;
    for r in platform.all().map_err(|e| format!("{e:#}"))? {
        r.map_err(|e| format!("{e:#}"))?;
    }
    repo.head().map_err(|e| format!("HEAD: {e:#}"))?;
    if let Ok(rd) = std::fs::read_dir(mirror.join("objects/pack")) {
        for entry in rd.flatten() {
            let p = entry.path();
            if p.extension().is_some_and(|x| x == "idx") {
                gix::odb::pack::index::File::at(&p, gix::hash::Kind::Sha1)
                    .map_err(|e| format!("{}: {e:#}", p.display()))?;
            }
        }
    }
    Ok(())
}

/// Removes the mirror entirely (it is only a cache: the sync rebuilds it).
///
/// # Errors
/// [`Error::Mirror`] when it cannot be removed.
pub fn discard(mirror: &Path, why: &str) -> Result<(), Error> {
    tracing::warn!(mirror = %mirror.display(), "{why}: removing the mirror cache, it is rebuilt from the store");
    match std::fs::remove_dir_all(mirror) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::Mirror {
            path: mirror.to_owned(),
            reason: format!("{why}, and it cannot be removed ({e}): delete it by hand"),
        }),
    }
}

/// Rebuilds a missing mirror from the store's last snapshot (through restore),
/// so that the fetch that follows only transfers what is new. Its packs are
/// recorded as ingested: their objects came from the store.
///
/// # Errors
/// [`Error::Mirror`] when the restore or the ingested list fails.
pub fn rebuild(
    store: &Store,
    last: &Snapshot,
    mirror_dir: &Path,
    store_id: &str,
    interrupt: &AtomicBool,
) -> Result<(), Error> {
    tracing::info!(
        snapshot = last.short_id(),
        "mirror cache missing: rebuilding it from the store"
    );
    let _ = std::fs::remove_dir(mirror_dir);
    crate::restore::restore(
        store,
        last,
        mirror_dir,
        crate::restore::RestoreOptions::default(),
        interrupt,
    )
    .map_err(|e| Error::Mirror {
        path: mirror_dir.to_owned(),
        reason: format!("rebuilding from the store failed: {e}"),
    })?;
    // The objects of the rebuilt mirror came from the store: nothing to ingest.
    let packs = super::ingest::packs_to_ingest(mirror_dir, store_id)?;
    super::ingest::mark_ingested(mirror_dir, store_id, &packs)
}

fn remove(path: &Path) -> Result<(), Error> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::Mirror {
            path: path.to_owned(),
            reason: format!(
                "cannot remove this leftover of an interrupted sync ({e}): delete it by hand"
            ),
        }),
    }
}

fn io_err(path: &Path, e: std::io::Error) -> Error {
    Error::Mirror {
        path: path.to_owned(),
        reason: e.to_string(),
    }
}

/// Whether a failed fetch failed on the local side (the mirror cache: disk
/// full, read-only, a path the file system refuses, a lock file in the way),
/// judged by the I/O error at its root. (Permission errors are left out: gix
/// reports an HTTP 401 as one.)
pub fn is_local_io_failure(e: &gix::Error) -> Option<std::io::ErrorKind> {
    use std::io::ErrorKind as K;
    let kind = e.downcast_any_ref::<std::io::Error>()?.kind();
    matches!(
        kind,
        K::StorageFull
            | K::QuotaExceeded
            | K::ReadOnlyFilesystem
            | K::NotADirectory
            | K::IsADirectory
            | K::InvalidFilename
            | K::FileTooLarge
            | K::AlreadyExists
            | K::DirectoryNotEmpty
    )
    .then_some(kind)
}
