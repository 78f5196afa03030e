//! Crash-safe file writes: the one place that puts a file in place so that a
//! crash (power loss, `kill -9`) leaves either the old file or the new one,
//! complete, and never a torn or empty file under the final name.
//!
//! Every file repovault writes whole (packs, `config.json`, snapshot files, a
//! restored repository's pack, index, refs and `HEAD`) goes through
//! [`TempFile`] or [`write_atomic`]: write a temporary file in the same
//! directory, fsync it, rename it over the final name, fsync the directory.
//! Files that are deliberately written in place say why where they are written
//! (the lock files, which hold an `flock`; the mirror's append-only list of
//! ingested packs).
//!
//! A crash before the rename leaves a temporary file named
//! `.tmp-<16 hex>[suffix]`: every listing of the store ignores names that start
//! with `.`, and a writer removes the leftovers once it holds the write lock
//! (see `store::Store::writer_for`).

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Prefix of every temporary file (a pack's ends in `.pack`).
pub const TMP_PREFIX: &str = ".tmp-";

/// Mode of the store's files: the owner's only, whatever the umask.
pub const PRIVATE: u32 = 0o600;
/// Mode of files written for the user (a restored repository, `--report`):
/// what the umask leaves of read-write for everyone, as `std::fs::write` does.
pub const USER: u32 = 0o666;

/// A new file in a directory, under a temporary name until [`TempFile::persist`]
/// moves it to its final name; removed when dropped before that.
#[derive(Debug)]
pub struct TempFile {
    path: PathBuf,
    file: Option<File>,
}

impl TempFile {
    /// Creates `dir/.tmp-<random><suffix>` with `mode` (less the umask):
    /// [`PRIVATE`] or [`USER`].
    ///
    /// # Errors
    /// The I/O error of creating the file.
    pub fn new_in(dir: &Path, suffix: &str, mode: u32) -> std::io::Result<TempFile> {
        let path = dir.join(format!(
            "{TMP_PREFIX}{:016x}{suffix}",
            rand::random::<u64>()
        ));
        let file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&path)?;
        Ok(TempFile {
            path,
            file: Some(file),
        })
    }

    /// The temporary file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The open file (for positioned reads of what was written).
    pub fn file(&self) -> &File {
        self.file.as_ref().expect("present until persist")
    }

    /// fsyncs the file, renames it to `dest` (replacing a file there) and
    /// fsyncs `dest`'s directory: once this returns, `dest` holds exactly
    /// what was written, whatever happens next.
    ///
    /// `dest` must be in the same directory (or at least the same file
    /// system) as the temporary file.
    ///
    /// # Errors
    /// The first I/O error; the temporary file is removed then.
    pub fn persist(mut self, dest: &Path) -> std::io::Result<()> {
        let file = self.file.take().expect("present until persist");
        let synced = file.sync_all();
        drop(file);
        if let Err(e) = synced {
            let _ = std::fs::remove_file(&self.path);
            return Err(e);
        }
        // Crash tests stop here: the data is durable, the rename is not done.
        let ext = dest.extension().map(|e| e.to_string_lossy().into_owned());
        crate::crash_point(&format!("before-rename-{}", ext.unwrap_or_default()));
        if let Err(e) = std::fs::rename(&self.path, dest) {
            let _ = std::fs::remove_file(&self.path);
            return Err(e);
        }
        sync_dir(parent_of(dest))
    }
}

impl Write for TempFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.file
            .as_mut()
            .expect("present until persist")
            .write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.as_mut().expect("present until persist").flush()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            // Abandoned before persist: the temporary file is garbage.
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Writes `bytes` to `path` crash-safely (see the module doc): the file
/// holds the old content or `bytes`, never a part. The new file has `mode`
/// (less the umask): [`PRIVATE`] or [`USER`].
///
/// # Errors
/// The first I/O error; nothing is left behind then.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let mut t = TempFile::new_in(parent_of(path), ".tmp", mode)?;
    t.write_all(bytes)?;
    t.persist(path)
}

/// Renames `from` (a file or directory that is durable already: fsynced, or
/// a SQLite database, which syncs its own commits) to `to` and fsyncs `to`'s
/// directory, so the new name survives a crash. For a directory, `to` may be
/// an empty directory, which rename(2) replaces atomically.
///
/// # Errors
/// The I/O error of the rename or of the directory fsync.
pub fn rename(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::rename(from, to)?;
    sync_dir(parent_of(to))
}

/// fsyncs a directory so that a rename or removal in it is durable.
///
/// # Errors
/// The I/O error of opening or syncing the directory.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Removes the temporary files a killed writer left in `dir` (names starting
/// with [`TMP_PREFIX`]); returns how many. Only for a caller that holds the
/// lock of whatever writes into `dir`.
///
/// # Errors
/// The I/O error of listing `dir`.
pub fn remove_leftovers(dir: &Path) -> std::io::Result<usize> {
    let mut n = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
            tracing::info!(file = %entry.path().display(), "removing a temporary file left by an interrupted writer");
            if std::fs::remove_file(entry.path()).is_ok() {
                n += 1;
            }
        }
    }
    Ok(n)
}

fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn write_atomic_replaces_the_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.json");
        write_atomic(&p, b"old", PRIVATE).unwrap();
        write_atomic(&p, b"new content", PRIVATE).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new content");
        assert_eq!(names(dir.path()), ["config.json"]);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&p).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    /// What a crash between writing and renaming leaves: the old file as it
    /// was, and a temporary name that starts with `.` (which every listing of
    /// the store skips) until a writer removes it.
    #[test]
    fn unpersisted_write_leaves_the_old_file_intact() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.json");
        write_atomic(&p, b"old", PRIVATE).unwrap();
        let mut t = TempFile::new_in(dir.path(), ".json", PRIVATE).unwrap();
        t.write_all(b"new, half written").unwrap();
        let tmp = t.path().to_owned();
        // A crash keeps the temporary file: leak it as a killed process would.
        std::mem::forget(t);
        assert_eq!(std::fs::read(&p).unwrap(), b"old");
        let left = names(dir.path());
        assert_eq!(left.len(), 2);
        assert!(left.iter().any(|n| n.starts_with(TMP_PREFIX)), "{left:?}");
        assert!(tmp.exists());
        assert_eq!(remove_leftovers(dir.path()).unwrap(), 1);
        assert_eq!(names(dir.path()), ["a.json"]);
        assert_eq!(std::fs::read(&p).unwrap(), b"old");
    }

    #[test]
    fn dropped_temporary_is_removed_and_failed_persist_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = TempFile::new_in(dir.path(), ".pack", PRIVATE).unwrap();
        t.write_all(b"x").unwrap();
        drop(t);
        assert!(names(dir.path()).is_empty());
        let mut t = TempFile::new_in(dir.path(), "", USER).unwrap();
        t.write_all(b"x").unwrap();
        let missing = dir.path().join("no such dir").join("f");
        assert!(t.persist(&missing).is_err());
        assert!(names(dir.path()).is_empty());
    }
}
