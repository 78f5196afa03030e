//! Snapshots: the full ref set of one repository at one point in time.
//!
//! A snapshot is recorded twice: as rows of the index (`snapshots`,
//! `snapshot_refs`) and as a small JSON file `snapshots/<sid>.json` in the
//! store, so that losing the index loses no history. The file is written and
//! fsynced before the index rows are committed; both are written only after
//! every object the snapshot needs is durable in the store.

use gix::ObjectId;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// One ref of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RefEntry {
    /// Full ref name (`HEAD`, `refs/heads/main`, ...). Git ref names are bytes;
    /// in JSON a name that is not UTF-8 is written as `"hex:<hex>"`.
    #[serde(with = "bytes_as_str")]
    pub name: Vec<u8>,
    /// The object the ref points to (for a symbolic ref: what its target resolved to,
    /// `None` for an unborn target).
    #[serde(with = "oid_hex::opt")]
    pub target: Option<ObjectId>,
    /// For a symbolic ref: the ref it points to.
    #[serde(
        with = "opt_bytes_as_str",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub symref: Option<Vec<u8>>,
    /// For an annotated tag: the object it finally points to.
    #[serde(
        with = "oid_hex::opt",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub peeled: Option<ObjectId>,
}

impl RefEntry {
    /// The name, lossily as UTF-8 for display.
    pub fn name_lossy(&self) -> String {
        String::from_utf8_lossy(&self.name).into_owned()
    }
}

/// A snapshot of one repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Id: 64 hex digits (blake3 of repo, time and refs); any unique prefix names it.
    pub id: String,
    /// Repository name.
    pub repo: String,
    /// The repository's URL (never with credentials).
    pub url: String,
    /// When it was taken (RFC 3339, UTC).
    pub time: jiff::Timestamp,
    /// The last time a sync found the repository still in this state.
    pub checked_at: jiff::Timestamp,
    /// All refs, sorted by name; `HEAD` included.
    pub refs: Vec<RefEntry>,
    /// False when the source lacked objects and the snapshot was recorded anyway.
    pub complete: bool,
    /// Objects the source lacked (only for incomplete snapshots).
    #[serde(with = "oid_hex::vec", default, skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<ObjectId>,
    /// Refs the source advertised that could not be backed up (only for
    /// incomplete snapshots; absent from files written before it existed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<SkippedRef>,
}

/// A ref of the source that was left out of a snapshot, and why.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SkippedRef {
    /// Its full name as the source advertised it (`"hex:<hex>"` in JSON when not UTF-8).
    #[serde(with = "bytes_as_str")]
    pub name: Vec<u8>,
    /// The object it pointed to, when the source said.
    #[serde(
        with = "oid_hex::opt",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub target: Option<ObjectId>,
    /// Why it could not be backed up.
    pub reason: String,
}

impl SkippedRef {
    /// The name, lossily as UTF-8 and shortened to 100 characters, for messages.
    pub fn display_name(&self) -> String {
        let s = String::from_utf8_lossy(&self.name);
        if s.chars().count() > 100 {
            let head: String = s.chars().take(60).collect();
            format!("{head}... ({} bytes)", self.name.len())
        } else {
            s.into_owned()
        }
    }
}

/// The first 8 characters of a snapshot id, as listings show it (all of a
/// shorter or odd one, as a damaged index may hold: never a panic).
pub fn short_id(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

impl Snapshot {
    /// Computes the id from repo, time and refs.
    pub fn compute_id(repo: &str, time: &jiff::Timestamp, refs: &[RefEntry]) -> String {
        let mut h = blake3::Hasher::new();
        h.update(repo.as_bytes());
        h.update(&[0]);
        h.update(time.to_string().as_bytes());
        for r in refs {
            h.update(&[0]);
            h.update(&r.name);
            h.update(&[1]);
            if let Some(t) = r.target {
                h.update(t.as_bytes());
            }
            if let Some(s) = &r.symref {
                h.update(&[2]);
                h.update(s);
            }
        }
        h.finalize().to_hex().to_string()
    }

    /// The first 8 hex digits of the id, as shown in listings.
    pub fn short_id(&self) -> &str {
        short_id(&self.id)
    }

    /// Every object the snapshot's refs point at directly.
    pub fn tips(&self) -> Vec<ObjectId> {
        let mut v: Vec<ObjectId> = self.refs.iter().filter_map(|r| r.target).collect();
        v.sort();
        v.dedup();
        v
    }

    /// HEAD's entry.
    pub fn head(&self) -> Option<&RefEntry> {
        self.refs.iter().find(|r| r.name == b"HEAD")
    }
}

/// A snapshot file that cannot be written, read, listed or removed.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// An I/O error on the file or its directory.
    #[error("snapshot file {path}: {source}")]
    Io {
        /// The file (or the directory).
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not a snapshot record.
    #[error("snapshot file {path} is not a snapshot record: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: serde_json::Error,
    },
    /// The file records its refs as a change to a base snapshot that cannot
    /// be used: its file is missing or unreadable, of another repository,
    /// itself a change, or the refs it gives do not hash to the snapshot's id.
    #[error(
        "snapshot file {path}: its refs are recorded as a change to snapshot {base}, but {reason}"
    )]
    Base {
        /// The file.
        path: PathBuf,
        /// The base it names.
        base: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The file records another snapshot than its name says.
    #[error("snapshot file {path}: it records snapshot {found}, not {expected}")]
    WrongId {
        /// The file.
        path: PathBuf,
        /// The id inside.
        found: String,
        /// The id of its name.
        expected: String,
    },
}

impl FileError {
    /// The file (or directory) concerned.
    pub fn path(&self) -> &Path {
        match self {
            FileError::Io { path, .. }
            | FileError::Parse { path, .. }
            | FileError::Base { path, .. }
            | FileError::WrongId { path, .. } => path,
        }
    }

    /// What is wrong, without the path (for listings that name the file already).
    pub fn reason(&self) -> String {
        match self {
            FileError::Io { source, .. } => source.to_string(),
            FileError::Parse { source, .. } => source.to_string(),
            FileError::Base { base, reason, .. } => {
                format!("its refs are recorded as a change to snapshot {base}, but {reason}")
            }
            FileError::WrongId {
                found, expected, ..
            } => format!("it records snapshot {found}, not {expected}"),
        }
    }

    /// As an I/O error (for callers whose error type carries one).
    pub fn into_io(self) -> std::io::Error {
        match self {
            FileError::Io { source, .. } => source,
            other => std::io::Error::new(std::io::ErrorKind::InvalidData, other),
        }
    }
}

/// The file of snapshot `id` in the snapshot directory `dir`.
pub fn file_path(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("{id}.json"))
}

/// A snapshot file as it is on disk: a snapshot with all its refs, or (store
/// format 3) with only the refs that differ from those of `base`, a snapshot
/// of the same repository whose file has all of its refs, and the names of
/// `base`'s refs it does not have.
#[derive(Serialize, Deserialize)]
struct FileRecord {
    #[serde(flatten)]
    snap: Snapshot,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    base: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    removed: Vec<Name>,
}

/// A ref name in a file's `removed` list (`"hex:<hex>"` when not UTF-8).
#[derive(Serialize, Deserialize)]
struct Name(#[serde(with = "bytes_as_str")] Vec<u8>);

/// A snapshot file is written as a change to a base when at most one in this
/// many of the base's refs differ (changed, added or removed): a nightly
/// snapshot of a repository with thousands of refs, of which a few moved,
/// then costs a few lines instead of thousands. Above it, the file has every
/// ref and becomes the base of the snapshots after it.
pub const DELTA_SHARE: usize = 4;

/// The refs that are new in `refs` or differ from `base`'s, and the names of
/// `base`'s refs that `refs` lacks.
pub(crate) fn changes(base: &[RefEntry], refs: &[RefEntry]) -> (Vec<RefEntry>, Vec<Vec<u8>>) {
    let old: std::collections::HashMap<&[u8], &RefEntry> =
        base.iter().map(|r| (&r.name[..], r)).collect();
    let new: std::collections::HashSet<&[u8]> = refs.iter().map(|r| &r.name[..]).collect();
    let changed = refs
        .iter()
        .filter(|r| old.get(&r.name[..]) != Some(r))
        .cloned()
        .collect();
    let removed = base
        .iter()
        .filter(|r| !new.contains(&r.name[..]))
        .map(|r| r.name.clone())
        .collect();
    (changed, removed)
}

/// `base`'s refs with `changed` put in and `removed` taken out, sorted by name.
pub(crate) fn apply_changes(
    base: &[RefEntry],
    changed: Vec<RefEntry>,
    removed: &[Vec<u8>],
) -> Vec<RefEntry> {
    let mut refs: std::collections::BTreeMap<Vec<u8>, RefEntry> =
        base.iter().map(|r| (r.name.clone(), r.clone())).collect();
    for name in removed {
        refs.remove(name);
    }
    for r in changed {
        refs.insert(r.name.clone(), r);
    }
    refs.into_values().collect()
}

/// Writes `snap` as `dir/<id>.json` with all its refs, crash-safely (see
/// [`crate::durable`]); an existing file of that name is replaced atomically.
///
/// # Errors
/// [`FileError::Io`].
pub fn write_file(dir: &Path, snap: &Snapshot) -> Result<(), FileError> {
    write_record(dir, snap, None, Vec::new(), Vec::new())
}

/// Writes `snap` as a change to `base` (another snapshot of its repository
/// whose file has all its refs) when at most one in [`DELTA_SHARE`] of the
/// base's refs differ, and with all its refs otherwise. Returns whether it
/// was written as a change. Only for stores of format 3 and later.
///
/// # Errors
/// [`FileError::Io`].
pub fn write_file_against(dir: &Path, snap: &Snapshot, base: &Snapshot) -> Result<bool, FileError> {
    let (changed, removed) = changes(&base.refs, &snap.refs);
    if base.repo != snap.repo
        || base.refs.is_empty()
        || (changed.len() + removed.len()) * DELTA_SHARE > base.refs.len()
    {
        write_file(dir, snap)?;
        return Ok(false);
    }
    write_record(dir, snap, Some(base.id.clone()), changed, removed)?;
    Ok(true)
}

fn write_record(
    dir: &Path,
    snap: &Snapshot,
    base: Option<String>,
    changed: Vec<RefEntry>,
    removed: Vec<Vec<u8>>,
) -> Result<(), FileError> {
    let path = file_path(dir, &snap.id);
    let record = FileRecord {
        snap: match base {
            Some(_) => Snapshot {
                refs: changed,
                ..snap.clone()
            },
            None => snap.clone(),
        },
        base,
        removed: removed.into_iter().map(Name).collect(),
    };
    let json = serde_json::to_string(&record).expect("snapshot serializes");
    crate::durable::write_atomic(&path, json.as_bytes(), crate::durable::PRIVATE)
        .map_err(|source| FileError::Io { path, source })
}

/// Reads a file as it is: the record, and its base when it is a change.
fn read_record(dir: &Path, id: &str) -> Result<FileRecord, FileError> {
    let path = file_path(dir, id);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(source) => return Err(FileError::Io { path, source }),
    };
    let r: FileRecord = match serde_json::from_slice(&bytes) {
        Ok(s) => s,
        Err(source) => return Err(FileError::Parse { path, source }),
    };
    if r.snap.id != id {
        return Err(FileError::WrongId {
            path,
            found: r.snap.id,
            expected: id.to_owned(),
        });
    }
    Ok(r)
}

/// The base a snapshot file is recorded against, `None` when it has all its refs.
///
/// # Errors
/// As [`read_file`], for the file itself (its base is not read).
pub fn file_base(dir: &Path, id: &str) -> Result<Option<String>, FileError> {
    Ok(read_record(dir, id)?.base)
}

/// Reads the snapshot file `dir/<id>.json` with all its refs: the id inside
/// must be its name, and a file recorded as a change is applied to its base's
/// file, which must have all its refs and be of the same repository; the
/// refs so found must hash to the id.
///
/// # Errors
/// [`FileError::Io`], [`FileError::Parse`], [`FileError::WrongId`], [`FileError::Base`].
pub fn read_file(dir: &Path, id: &str) -> Result<Snapshot, FileError> {
    let r = read_record(dir, id)?;
    let Some(base_id) = r.base else {
        return Ok(r.snap);
    };
    let fail = |reason: String| FileError::Base {
        path: file_path(dir, id),
        base: base_id.clone(),
        reason,
    };
    if !is_snapshot_id(&base_id) {
        return Err(fail("that is not a snapshot id".into()));
    }
    let base = read_record(dir, &base_id).map_err(|e| fail(format!("its file: {}", e.reason())))?;
    if base.base.is_some() {
        return Err(fail("that file is itself recorded as a change".into()));
    }
    if base.snap.repo != r.snap.repo {
        return Err(fail(format!("that is a snapshot of {}", base.snap.repo)));
    }
    let removed: Vec<Vec<u8>> = r.removed.into_iter().map(|n| n.0).collect();
    let mut snap = r.snap;
    snap.refs = apply_changes(&base.snap.refs, std::mem::take(&mut snap.refs), &removed);
    if Snapshot::compute_id(&snap.repo, &snap.time, &snap.refs) != snap.id {
        return Err(fail(
            "the refs they give do not hash to this snapshot's id".into(),
        ));
    }
    Ok(snap)
}

/// True for 64 lowercase hex digits (a snapshot id, safe as a file name).
fn is_snapshot_id(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The ids of the snapshot files in `dir`, sorted (temporary files, whose
/// names start with `.`, are not snapshot files).
///
/// # Errors
/// [`FileError::Io`] on the directory.
pub fn list_files(dir: &Path) -> Result<Vec<String>, FileError> {
    let io = |source| FileError::Io {
        path: dir.to_owned(),
        source,
    };
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).map_err(io)? {
        let name = e.map_err(io)?.file_name().to_string_lossy().into_owned();
        if let Some(stem) = name.strip_suffix(".json") {
            if !stem.starts_with('.') && !stem.is_empty() {
                out.push(stem.to_owned());
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Before the files of `gone` are removed: every other snapshot file that is
/// a change to one of them is rewritten with all its refs (atomically, under
/// the same name), so that no file is left naming a base that is gone.
/// Returns the ids rewritten. A file that cannot be read or resolved is left
/// as it is (it is damaged already; verify reports it).
///
/// # Errors
/// [`FileError::Io`] on the directory or on writing a file.
pub fn rebase_files(dir: &Path, gone: &[String]) -> Result<Vec<String>, FileError> {
    let gone: std::collections::HashSet<&str> = gone.iter().map(String::as_str).collect();
    let mut rewritten = Vec::new();
    for id in list_files(dir)? {
        if gone.contains(id.as_str()) {
            continue;
        }
        let Ok(FileRecord {
            base: Some(base), ..
        }) = read_record(dir, &id)
        else {
            continue;
        };
        if !gone.contains(base.as_str()) {
            continue;
        }
        match read_file(dir, &id) {
            Ok(snap) => {
                write_file(dir, &snap)?;
                rewritten.push(id);
            }
            Err(e) => tracing::warn!("snapshot file {id} left as it is: {e}"),
        }
    }
    Ok(rewritten)
}

/// Removes the files of snapshots `ids` from `dir` (a file already gone is
/// fine) and fsyncs the directory, so that the removal is durable before the
/// index forgets the snapshots.
///
/// # Errors
/// [`FileError::Io`].
pub fn remove_files(dir: &Path, ids: &[String]) -> Result<(), FileError> {
    for id in ids {
        let path = file_path(dir, id);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(FileError::Io { path, source }),
        }
    }
    crate::durable::sync_dir(dir).map_err(|source| FileError::Io {
        path: dir.to_owned(),
        source,
    })
}

/// A ref name as JSON writes it (`hex:<hex>` when it is not UTF-8).
pub(crate) fn encode_name(b: &[u8]) -> String {
    match std::str::from_utf8(b) {
        Ok(s) if !s.starts_with("hex:") => s.to_owned(),
        _ => format!("hex:{}", hex::encode(b)),
    }
}

fn decode_name(s: &str) -> Result<Vec<u8>, hex::FromHexError> {
    match s.strip_prefix("hex:") {
        Some(h) => hex::decode(h),
        None => Ok(s.as_bytes().to_vec()),
    }
}

/// Serde helpers that write object ids as 40 hex digits.
pub mod oid_hex {
    /// For `Option<ObjectId>`.
    pub mod opt {
        use gix::ObjectId;
        use serde::{Deserialize, Deserializer, Serializer};
        /// Serializes.
        pub fn serialize<S: Serializer>(o: &Option<ObjectId>, s: S) -> Result<S::Ok, S::Error> {
            match o {
                Some(o) => s.serialize_str(&o.to_string()),
                None => s.serialize_none(),
            }
        }
        /// Deserializes.
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<ObjectId>, D::Error> {
            Option::<String>::deserialize(d)?
                .map(|s| ObjectId::from_hex(s.as_bytes()).map_err(serde::de::Error::custom))
                .transpose()
        }
    }
    /// For `Vec<ObjectId>`.
    pub mod vec {
        use gix::ObjectId;
        use serde::{Deserialize, Deserializer, Serializer};
        /// Serializes.
        pub fn serialize<S: Serializer>(v: &[ObjectId], s: S) -> Result<S::Ok, S::Error> {
            s.collect_seq(v.iter().map(|o| o.to_string()))
        }
        /// Deserializes.
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<ObjectId>, D::Error> {
            Vec::<String>::deserialize(d)?
                .into_iter()
                .map(|s| ObjectId::from_hex(s.as_bytes()).map_err(serde::de::Error::custom))
                .collect()
        }
    }
}

mod bytes_as_str {
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::encode_name(b))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        super::decode_name(&s).map_err(serde::de::Error::custom)
    }
}

mod opt_bytes_as_str {
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(b: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match b {
            Some(b) => s.serialize_str(&super::encode_name(b)),
            None => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        let s = Option::<String>::deserialize(d)?;
        s.map(|s| super::decode_name(&s).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(repo: &str) -> Snapshot {
        let oid = crate::git_oid(crate::ObjectKind::Blob, b"x");
        with_refs(
            repo,
            vec![RefEntry {
                name: b"refs/heads/main".to_vec(),
                target: Some(oid),
                symref: None,
                peeled: None,
            }],
        )
    }

    fn with_refs(repo: &str, refs: Vec<RefEntry>) -> Snapshot {
        let time = jiff::Timestamp::from_second(1_700_000_000).unwrap();
        Snapshot {
            id: Snapshot::compute_id(repo, &time, &refs),
            repo: repo.into(),
            url: "/x".into(),
            time,
            checked_at: time,
            refs,
            complete: true,
            missing: vec![],
            skipped: vec![],
        }
    }

    /// Write, list, read and remove: what sync, repair, lag and forget use.
    #[test]
    fn snapshot_files_round_trip_and_refuse_a_wrong_name() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (sample("a"), sample("b"));
        write_file(dir.path(), &a).unwrap();
        write_file(dir.path(), &b).unwrap();
        // A leftover temporary file is not a snapshot file.
        std::fs::write(dir.path().join(".tmp-0123456789abcdef.tmp"), b"{").unwrap();
        let mut ids = vec![a.id.clone(), b.id.clone()];
        ids.sort();
        assert_eq!(list_files(dir.path()).unwrap(), ids);
        assert_eq!(read_file(dir.path(), &a.id).unwrap(), a);
        // A file whose name is not its id is refused, naming both.
        std::fs::copy(file_path(dir.path(), &a.id), file_path(dir.path(), &b.id)).unwrap();
        let e = read_file(dir.path(), &b.id).unwrap_err();
        assert!(matches!(e, FileError::WrongId { .. }), "{e}");
        assert_eq!(
            e.reason(),
            format!("it records snapshot {}, not {}", a.id, b.id)
        );
        std::fs::write(file_path(dir.path(), &b.id), b"not json").unwrap();
        assert!(matches!(
            read_file(dir.path(), &b.id),
            Err(FileError::Parse { .. })
        ));
        // Removing a file that is already gone is fine.
        remove_files(dir.path(), &[a.id.clone(), a.id.clone(), b.id.clone()]).unwrap();
        assert!(list_files(dir.path()).unwrap().is_empty());
    }

    #[test]
    fn json_round_trip_keeps_non_utf8_names() {
        let oid = crate::git_oid(crate::ObjectKind::Blob, b"x");
        let refs = vec![
            RefEntry {
                name: b"HEAD".to_vec(),
                target: Some(oid),
                symref: Some(b"refs/heads/main".to_vec()),
                peeled: None,
            },
            RefEntry {
                name: b"refs/heads/\xff\xfe".to_vec(),
                target: Some(oid),
                symref: None,
                peeled: None,
            },
        ];
        let s = with_refs("r", refs);
        let j = serde_json::to_string(&s).unwrap();
        assert!(j.contains("hex:"));
        let back: Snapshot = serde_json::from_str(&j).unwrap();
        assert_eq!(back, s);
    }
}
