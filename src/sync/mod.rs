//! Sync: back up git repositories into the store, incrementally, with a
//! snapshot of each one's refs.
//!
//! For each source: list the remote's refs; when they equal the last
//! snapshot's, only record that the repository was checked (`checked_at` of
//! that snapshot). Otherwise fetch into the mirror cache (gix), decode the
//! packs not yet in the store, put their objects (with git's delta bases),
//! check that everything the refs need is present, and record the snapshot:
//! first as a file, then as index rows, after the objects are durable.

pub mod fetch;
pub mod ingest;
mod local;
pub mod mirror;
pub mod nightly;
pub mod plan;
mod redirect;
pub mod refs;
pub mod run;
mod source;

pub use source::{existing_name, repos_synced_from, Source};

use crate::index;
use crate::snapshot::{RefEntry, SkippedRef, Snapshot};
use crate::store::{self, Store, Writer};
use gix::ObjectId;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Mutex;
use std::time::Instant;

/// Errors syncing one repository.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The source cannot be used.
    #[error("source {spec:?}: {reason}")]
    BadSource {
        /// The source as given.
        spec: String,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// The mirror cache failed.
    #[error("mirror {path}: {reason}")]
    Mirror {
        /// The mirror.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// Fetching failed.
    #[error("fetch failed: {0}")]
    Fetch(#[from] fetch::FetchError),
    /// The remote rejected the credentials.
    #[error("{url}: authentication failed ({reason}): check the token (--token-env) and its permissions")]
    Auth {
        /// The remote.
        url: String,
        /// What the remote said.
        reason: String,
    },
    /// The source lacks objects its refs need.
    #[error("the source lacks {} object(s) that {} need: repair the source, or sync with --allow-incomplete to back up what is there; nothing was recorded ({}; the full lists are in --json)",
        .objects.len(),
        if .refs.is_empty() { "its refs".to_owned() } else { format!("{} ref(s)", .refs.len()) },
        missing_text(.objects, .refs))]
    MissingObjects {
        /// Every missing object.
        objects: Vec<ObjectId>,
        /// Every ref that needs one of them (empty when not found).
        refs: Vec<String>,
    },
    /// Writing a snapshot record failed.
    #[error("snapshot record {path}: {source}")]
    SnapshotFile {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] store::Error),
    /// The index failed.
    #[error(transparent)]
    Index(#[from] index::Error),
    /// Interrupted by the user.
    #[error("interrupted")]
    Interrupted,
}

impl Error {
    /// Whether syncing the repository again may succeed: only a transient
    /// network failure of the fetch is ([`fetch::FetchError::is_retryable`]);
    /// rejected credentials, a bad source and damage are not.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Fetch(e) => e.is_retryable(),
            _ => false,
        }
    }
}

/// How many names an error message lists before "and N more".
const NAMES_IN_MESSAGES: usize = 5;

/// The first few `names`, and how many more there are.
fn first_few(names: &[String]) -> String {
    let mut s = names
        .iter()
        .take(NAMES_IN_MESSAGES)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > NAMES_IN_MESSAGES {
        s.push_str(&format!(" and {} more", names.len() - NAMES_IN_MESSAGES));
    }
    s
}

fn missing_text(objects: &[ObjectId], refs: &[String]) -> String {
    let objects: Vec<String> = objects.iter().map(|o| o.to_string()).collect();
    if refs.is_empty() {
        format!("missing {}", first_few(&objects))
    } else {
        format!(
            "missing {}; needed by {}",
            first_few(&objects),
            first_few(refs)
        )
    }
}

pub use crate::progress::Progress;

/// Options of a sync run.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// The mirror cache directory.
    pub cache: PathBuf,
    /// Record a snapshot even when the source lacks objects (marked incomplete).
    pub allow_incomplete: bool,
}

/// How a repository's sync ended (the index records it as the repository's last status).
pub use crate::index::SyncStatus as Status;

/// The summary of one repository's sync.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RepoReport {
    /// Repository name.
    pub name: String,
    /// URL.
    pub url: String,
    /// Outcome.
    pub status: Status,
    /// The snapshot recorded or confirmed.
    pub snapshot: Option<String>,
    /// Refs in the snapshot.
    pub refs: usize,
    /// Objects received from the remote.
    pub objects_received: u64,
    /// Bytes of the pack received from the remote.
    pub bytes_received: u64,
    /// New objects stored.
    pub new_objects: u64,
    /// New chunks stored.
    pub new_chunks: u64,
    /// Compressed bytes of the new chunks.
    pub new_bytes_stored: u64,
    /// Bytes of the pack files written (chunks, object records and trailers).
    pub new_pack_bytes: u64,
    /// Wall time in milliseconds.
    pub millis: u64,
    /// Whether the snapshot lacks objects or refs.
    pub incomplete: bool,
    /// Refs of the source that could not be backed up (the snapshot names them too).
    pub skipped_refs: Vec<SkippedRef>,
    /// The error, for a failed sync.
    pub error: Option<String>,
    /// Every object the source lacks (a sync refused for missing objects).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub missing_objects: Vec<String>,
    /// Every ref that needs a missing object.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub missing_needed_by: Vec<String>,
}

impl RepoReport {
    /// A report for `source` with `status` and nothing counted yet.
    pub fn new(source: &Source, status: Status) -> Self {
        Self {
            name: source.name.clone(),
            url: source.url.clone(),
            status,
            snapshot: None,
            refs: 0,
            objects_received: 0,
            bytes_received: 0,
            new_objects: 0,
            new_chunks: 0,
            new_bytes_stored: 0,
            new_pack_bytes: 0,
            millis: 0,
            incomplete: false,
            skipped_refs: Vec::new(),
            error: None,
            missing_objects: Vec::new(),
            missing_needed_by: Vec::new(),
        }
    }
}

/// The shared writer, locked for one repository. When it is released (the
/// sync succeeded, failed or was interrupted) what was put is flushed into
/// packs and what this repository wrote is reported through
/// [`Progress::written`], so a failed or interrupted sync still says what it
/// left in the store.
struct Locked<'a, 'w> {
    w: std::sync::MutexGuard<'a, Writer<'w>>,
    before: store::WriteStats,
    progress: &'a dyn Progress,
}

fn lock_writer<'a, 'w>(
    writer: &'a Mutex<Writer<'w>>,
    progress: &'a dyn Progress,
) -> Locked<'a, 'w> {
    let w = writer.lock().unwrap_or_else(|p| p.into_inner());
    let before = w.stats();
    Locked {
        w,
        before,
        progress,
    }
}

impl<'w> std::ops::Deref for Locked<'_, 'w> {
    type Target = Writer<'w>;
    fn deref(&self) -> &Self::Target {
        &self.w
    }
}

impl std::ops::DerefMut for Locked<'_, '_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.w
    }
}

impl Drop for Locked<'_, '_> {
    fn drop(&mut self) {
        if let Err(e) = self.w.flush() {
            tracing::debug!("flushing after a failed sync: {e}");
        }
        let (a, b) = (self.w.stats(), self.before);
        self.progress.written(&store::WriteStats {
            objects: a.objects - b.objects,
            chunks: a.chunks - b.chunks,
            delta_chunks: a.delta_chunks - b.delta_chunks,
            raw_bytes: a.raw_bytes - b.raw_bytes,
            stored_bytes: a.stored_bytes - b.stored_bytes,
            packs: a.packs - b.packs,
            pack_bytes: a.pack_bytes - b.pack_bytes,
        });
    }
}

fn now() -> jiff::Timestamp {
    jiff::Timestamp::now()
}

/// Writes the snapshot's file: in a store of format 3 or later as a change to
/// the base of the repository's newest snapshot (or to that snapshot, when
/// its file has all its refs) when few refs differ, otherwise with all refs.
fn write_snapshot_file(
    store: &Store,
    index: &index::Index,
    repo: i64,
    snap: &Snapshot,
) -> Result<(), Error> {
    let dir = store.root().join(store::SNAPSHOTS_DIR);
    let err = |e: crate::snapshot::FileError| Error::SnapshotFile {
        path: e.path().to_owned(),
        source: e.into_io(),
    };
    if store.config().snapshot_changes() {
        if let Some(base) = file_base_for(&dir, index, repo) {
            crate::snapshot::write_file_against(&dir, snap, &base).map_err(err)?;
            return Ok(());
        }
    }
    crate::snapshot::write_file(&dir, snap).map_err(err)
}

/// The snapshot whose file a new one of `repo` may be written against: the
/// newest one's base, or the newest one when its file has all its refs.
/// `None` when there is none or its file cannot be read (the new file then
/// has all its refs: a base that is not sound is never used).
fn file_base_for(dir: &std::path::Path, index: &index::Index, repo: i64) -> Option<Snapshot> {
    let newest = index.latest_snapshot(repo).ok()??;
    let base = match crate::snapshot::file_base(dir, &newest.id) {
        Ok(Some(b)) => b,
        Ok(None) => newest.id,
        Err(e) => {
            tracing::debug!("snapshot file {} not used as a base: {e}", newest.id);
            return None;
        }
    };
    match crate::snapshot::read_file(dir, &base) {
        Ok(s) if crate::snapshot::file_base(dir, &base).ok()?.is_none() => Some(s),
        Ok(_) => None,
        Err(e) => {
            tracing::debug!("snapshot file {base} not used as a base: {e}");
            None
        }
    }
}

/// Refs (by name) that need one of `missing`, found by one walk of the
/// mirror ([`crate::closure::needing`]; no cap).
fn refs_needing(mirror: &gix::Repository, refs: &[RefEntry], missing: &[ObjectId]) -> Vec<String> {
    use std::collections::HashSet;
    let missing: HashSet<&ObjectId> = missing.iter().collect();
    let tips: Vec<ObjectId> = refs
        .iter()
        .filter(|r| r.symref.is_none())
        .filter_map(|r| r.target)
        .collect();
    let source = crate::closure::MirrorSource::new(mirror);
    let never = AtomicBool::new(false);
    // What the mirror lacks but is not in `missing` is somewhere else (the
    // store): not walked, not counted.
    let Ok(needs) =
        crate::closure::needing(&tips, &source, |_| false, |o| !missing.contains(o), &never)
    else {
        return Vec::new();
    };
    refs_reaching(refs, &needs.tips)
}

/// The names of the refs (symbolic ones left out) whose target or peeled
/// object is one of `tips`: the refs that a walk's tainted tips name.
fn refs_reaching(refs: &[RefEntry], tips: &std::collections::HashSet<ObjectId>) -> Vec<String> {
    refs.iter()
        .filter(|r| r.symref.is_none())
        .filter(|r| {
            [r.target, r.peeled]
                .iter()
                .flatten()
                .any(|t| tips.contains(t))
        })
        .map(|r| r.name_lossy())
        .collect()
}

/// Syncs one repository. `writer` is shared by the repositories of one run;
/// the network part runs without it.
pub fn sync_repo(
    store: &Store,
    writer: &Mutex<Writer<'_>>,
    source: &Source,
    opts: &SyncOptions,
    interrupt: &AtomicBool,
    progress: &dyn Progress,
) -> Result<RepoReport, Error> {
    let start = Instant::now();
    let span = tracing::info_span!("sync", repo = %source.name);
    let _g = span.enter();
    let mirror_dir = source.mirror_dir(&opts.cache);
    if let Some(parent) = mirror_dir.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::Mirror {
            path: parent.to_owned(),
            reason: e.to_string(),
        })?;
    }
    let store_id = store.config().store_id.clone();
    let last = store.with_index(|i| -> Result<Option<Snapshot>, index::Error> {
        let repo = i.repos()?.into_iter().find(|r| r.name == source.name);
        match repo {
            Some(r) => i.latest_snapshot(r.id),
            None => Ok(None),
        }
    })?;
    // One user of the mirror at a time; holding it, whatever a killed sync left
    // there (lock files, half-written packs) is stale and goes, and a mirror
    // that still cannot be read is rebuilt from the store.
    let _mirror_lock = mirror::lock(&mirror_dir, interrupt)?;
    mirror::recover(&mirror_dir)?;
    if mirror_dir.join("HEAD").is_file() {
        if let Err(why) = mirror::check(&mirror_dir) {
            mirror::discard(
                &mirror_dir,
                &format!("the mirror cache cannot be read ({why})"),
            )?;
        }
    }
    if !mirror_dir.join("HEAD").is_file() {
        if let Some(last) = last.as_ref().filter(|l| l.complete) {
            mirror::rebuild(store, last, &mirror_dir, &store_id, interrupt)?;
        }
    }
    let mut mirror = fetch::open_mirror(&mirror_dir)?;
    let mut report = RepoReport::new(source, Status::Failed);

    // Cheap check first: refs only, no pack.
    let pending_packs = ingest::packs_to_ingest(&mirror_dir, &store_id)?;
    if let Some(last) = &last {
        progress.begin("listing refs", None);
        let remote = fetch::list_remote(mirror.clone(), &source.url, source.auth.as_ref())?;
        if remote.refs == last.refs && remote.skipped == last.skipped {
            let t = now();
            let mut w = lock_writer(writer, progress);
            if !pending_packs.is_empty() {
                // Left by a sync killed after its snapshot (or after a fetch whose refs
                // moved back): store what they hold, but the state is unchanged.
                ingest::ingest_packs(&mut w, &pending_packs, None, interrupt, progress)?;
                w.flush()?;
                ingest::mark_ingested(&mirror_dir, &store_id, &pending_packs)?;
            }
            let repo_id = w
                .index()
                .upsert_repo(&source.name, &source.url, t.as_second())?;
            w.index().touch_snapshot(&last.id, t.as_microsecond())?;
            w.index()
                .set_repo_status(repo_id, t.as_second(), Status::Unchanged, None)?;
            report.status = Status::Unchanged;
            report.snapshot = Some(last.id.clone());
            report.refs = last.refs.len();
            report.incomplete = !last.complete;
            report.skipped_refs = last.skipped.clone();
            report.millis = start.elapsed().as_millis() as u64;
            for s in &last.skipped {
                tracing::warn!(reference = %s.display_name(), "not backed up: {}", s.reason);
            }
            tracing::info!("unchanged");
            return Ok(report);
        }
    }

    progress.begin("fetching", None);
    crate::interrupt_point("fetching", interrupt);
    let fetched = match fetch::fetch(
        mirror.clone(),
        &source.url,
        source.auth.as_ref(),
        interrupt,
        progress,
    ) {
        Ok(f) => f,
        Err(e @ Error::Mirror { .. }) => {
            // The cache failed (disk full, a path it refuses, damage): it is only a
            // cache, so rebuild it from the store and fetch once more.
            drop(mirror);
            mirror::discard(
                &mirror_dir,
                &format!("fetching failed in the mirror cache ({e})"),
            )?;
            if let Some(last) = last.as_ref().filter(|l| l.complete) {
                mirror::rebuild(store, last, &mirror_dir, &store_id, interrupt)?;
            }
            mirror = fetch::open_mirror(&mirror_dir)?;
            match fetch::fetch(mirror.clone(), &source.url, source.auth.as_ref(), interrupt, progress) {
                Ok(f) => f,
                Err(again) => {
                    return Err(Error::Mirror {
                        path: mirror_dir.clone(),
                        reason: format!(
                            "fetching failed in the mirror cache, and again after rebuilding it from the store: {again}. Check the cache's file system (free space, permissions) or give another --cache; nothing was recorded"
                        ),
                    })
                }
            }
        }
        Err(e @ Error::Fetch { .. }) => match local::local_path(&source.url) {
            // A local repository whose server side cannot send a pack because it
            // lacks objects (a corrupt or partial repository): read what it has.
            Some(path) => {
                return local::sync_from_local_odb(
                    store,
                    writer,
                    source,
                    &path,
                    opts,
                    last.is_some(),
                    start,
                    e,
                    &mirror,
                    interrupt,
                    progress,
                );
            }
            None => return Err(e),
        },
        Err(e) => return Err(e),
    };
    report.objects_received = fetched.objects_received;
    report.bytes_received = fetched.bytes_received;
    tracing::info!(
        objects = fetched.objects_received,
        bytes = fetched.bytes_received,
        "fetched"
    );
    let packs = ingest::packs_to_ingest(&mirror_dir, &store_id)?;
    crate::crash_point("fetched");
    // The mirror's object database keeps the packs it touched mapped; ingest
    // maps them itself, so close it now (a million-object pack and its index
    // mapped twice are ~200 MB of resident memory) and reopen it afterwards.
    drop(mirror);

    let mut w = lock_writer(writer, progress);
    let before = w.stats();
    let ingested = ingest::ingest_packs(
        &mut w,
        &packs,
        fetched.verified_pack.as_deref(),
        interrupt,
        progress,
    )?;
    w.flush()?;
    let mut missing = ingested.missing;
    for r in &fetched.refs {
        for oid in [r.target, r.peeled].into_iter().flatten() {
            if !w.contains(&oid)? && !missing.contains(&oid) {
                missing.push(oid);
            }
        }
    }
    let mirror = fetch::open_mirror(&mirror_dir)?;
    if !missing.is_empty() {
        // The mirror may hold them in packs ingested before a prune dropped them
        // from the store (a deleted branch that came back, say): store them again.
        missing = local::fill_from_mirror(&mut w, &mirror, missing)?;
    }
    let (snap, status) = record_snapshot(
        store,
        &mut w,
        source,
        fetched.refs,
        fetched.skipped,
        missing,
        &mirror,
        opts.allow_incomplete,
        last.is_some(),
    )?;
    let after = w.stats();
    drop(w);
    crate::crash_point("snapshot-committed");
    ingest::mark_ingested(&mirror_dir, &store_id, &packs)?;
    report.status = status;
    report.snapshot = Some(snap.id.clone());
    report.refs = snap.refs.len();
    report.new_objects = after.objects - before.objects;
    report.new_chunks = after.chunks - before.chunks;
    report.new_bytes_stored = after.stored_bytes - before.stored_bytes;
    report.new_pack_bytes = after.pack_bytes - before.pack_bytes;
    report.incomplete = !snap.complete;
    report.skipped_refs = snap.skipped.clone();
    report.millis = start.elapsed().as_millis() as u64;
    tracing::info!(
        snapshot = snap.short_id(),
        objects = report.new_objects,
        bytes = report.new_bytes_stored,
        "snapshot recorded"
    );
    Ok(report)
}

/// Records a snapshot of `refs` (file first, then rows) and the repository's
/// status. When objects are `missing` and `allow_incomplete` is off, records
/// the failure instead and returns it, naming the missing objects and the refs
/// (walked in `repo`) that need them.
#[allow(clippy::too_many_arguments)]
fn record_snapshot(
    store: &Store,
    w: &mut Writer<'_>,
    source: &Source,
    refs: Vec<RefEntry>,
    skipped: Vec<SkippedRef>,
    missing: Vec<ObjectId>,
    repo: &gix::Repository,
    allow_incomplete: bool,
    had_snapshot: bool,
) -> Result<(Snapshot, Status), Error> {
    let t = now();
    if !missing.is_empty() && !allow_incomplete {
        let t = Instant::now();
        let needing = refs_needing(repo, &refs, &missing);
        tracing::debug!(
            ms = t.elapsed().as_millis() as u64,
            refs = needing.len(),
            "refs needing the missing objects found"
        );
        return Err(refuse_incomplete(w, source, missing, needing)?);
    }
    let repo_id = w
        .index()
        .upsert_repo(&source.name, &source.url, t.as_second())?;
    let mut snap = Snapshot {
        id: String::new(),
        repo: source.name.clone(),
        url: source.url.clone(),
        time: t,
        checked_at: t,
        complete: missing.is_empty() && skipped.is_empty(),
        refs,
        missing,
        skipped,
    };
    snap.id = Snapshot::compute_id(&snap.repo, &snap.time, &snap.refs);
    crate::crash_point("before-snapshot");
    write_snapshot_file(store, w.index(), repo_id, &snap)?;
    crate::crash_point("snapshot-file-written");
    w.index().insert_snapshot(repo_id, &snap)?;
    let status = if had_snapshot {
        Status::Changed
    } else {
        Status::New
    };
    w.index()
        .set_repo_status(repo_id, t.as_second(), status, None)?;
    Ok((snap, status))
}

/// The refusal of a source that lacks `missing` objects: the error naming
/// them and the refs that need them, recorded as the
/// repository's status when the store knows it (a repository the store does
/// not know yet gets no row for a failure).
fn refuse_incomplete(
    w: &mut Writer<'_>,
    source: &Source,
    missing: Vec<ObjectId>,
    refs_needing: Vec<String>,
) -> Result<Error, Error> {
    let err = Error::MissingObjects {
        objects: missing,
        refs: refs_needing,
    };
    if let Some(repo_id) = w.index().repo_id(&source.name)? {
        w.index().set_repo_status(
            repo_id,
            now().as_second(),
            Status::Failed,
            Some(&err.to_string()),
        )?;
    }
    Ok(err)
}

/// Records a failed attempt in the index (best effort), for a repository the
/// store already has (one with a snapshot, or registered by discovery): a
/// failed first sync (a typo'd URL, say) leaves no repository behind.
pub fn record_failure(writer: &Mutex<Writer<'_>>, source: &Source, error: &str) {
    let t = now();
    let mut w = writer.lock().unwrap_or_else(|p| p.into_inner());
    if let Ok(Some(id)) = w.index().repo_id(&source.name) {
        let _ = w
            .index()
            .set_repo_status(id, t.as_second(), Status::Failed, Some(error));
    }
}

/// The default mirror cache of a store: `$XDG_CACHE_HOME/repovault/<store id>`
/// (or `~/.cache/...`).
pub fn default_cache(store: &Store) -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| std::env::temp_dir().join("repovault-cache"));
    base.join("repovault").join(&store.config().store_id)
}
