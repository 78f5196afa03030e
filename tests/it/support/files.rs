//! Looking at directories and bytes: every file below a directory
//! ([`files_below`]), a byte search ([`contains`]) and a snapshot of a tree
//! ([`listing`]) to prove that a command changed nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Appends every regular file below `dir` (recursively) to `out`; a missing
/// `dir` adds nothing.
pub fn files_below(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd {
        let e = e.unwrap();
        let t = e.file_type().unwrap();
        if t.is_dir() {
            files_below(&e.path(), out);
        } else if t.is_file() {
            out.push(e.path());
        }
    }
}

/// Whether `needle` occurs in `haystack`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// What [`listing`] records of one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Modification time.
    pub modified: Option<SystemTime>,
    /// A file's contents (`None` for a directory or a link).
    pub bytes: Option<Vec<u8>>,
}

/// Every path below `dir` (relative to it, recursively, links not followed)
/// with its modification time and, for files, its contents: equal listings
/// before and after a command mean it wrote nothing there.
pub fn listing(dir: &Path) -> BTreeMap<PathBuf, Entry> {
    fn walk(base: &Path, p: &Path, out: &mut BTreeMap<PathBuf, Entry>) {
        let Ok(meta) = std::fs::symlink_metadata(p) else {
            return;
        };
        let rel = p.strip_prefix(base).unwrap().to_owned();
        let bytes = meta.is_file().then(|| std::fs::read(p).unwrap_or_default());
        let modified = meta.modified().ok();
        out.insert(rel, Entry { modified, bytes });
        if meta.is_dir() {
            for e in std::fs::read_dir(p).unwrap() {
                walk(base, &e.unwrap().path(), out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}
