//! Syncing a local repository that cannot serve a pack (a corrupt or partial
//! repository whose upload-pack fails): its objects are read directly from its
//! object database, and the same walk stores objects the mirror still has but
//! the store lost (a branch deleted, pruned, then pushed again).

use super::{
    fetch, ingest, lock_writer, record_snapshot, Error, Progress, RepoReport, Source, SyncOptions,
};
use crate::store::{Store, Writer};
use gix::ObjectId;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Mutex;
use std::time::Instant;

/// The repository path of a local source (a path or a `file://` URL).
pub(super) fn local_path(url: &str) -> Option<PathBuf> {
    if let Some(p) = url.strip_prefix("file://") {
        return Some(PathBuf::from(p));
    }
    (!url.contains("://") && Path::new(url).is_absolute()).then(|| PathBuf::from(url))
}

/// Backs up a local repository whose upload-pack failed (`fetch_error`) by
/// reading it directly, but only when it really lacks objects: an intact
/// source fails with `fetch_error` (the fallback never stands in for a
/// working fetch). The refs are the source's own advertisement (every ref,
/// with peeled tag targets); objects are taken from its packs with git's
/// deltas, then from its object database (loose objects, damaged packs). The
/// missing objects fail the sync, or with `allow_incomplete` are listed in an
/// incomplete snapshot.
#[allow(clippy::too_many_arguments)]
pub(super) fn sync_from_local_odb(
    store: &Store,
    writer: &Mutex<Writer<'_>>,
    source: &Source,
    path: &Path,
    opts: &SyncOptions,
    had_snapshot: bool,
    start: Instant,
    fetch_error: Error,
    mirror: &gix::Repository,
    interrupt: &AtomicBool,
    progress: &dyn Progress,
) -> Result<RepoReport, Error> {
    let merr = |e: &dyn std::fmt::Display| Error::Mirror {
        path: path.to_owned(),
        reason: e.to_string(),
    };
    let Ok(fetch::Listing { refs, skipped }) =
        fetch::list_remote(mirror.clone(), &source.url, None)
    else {
        return Err(fetch_error);
    };
    let repo = gix::open(path).map_err(|e| merr(&e))?;
    let tips: Vec<ObjectId> = refs
        .iter()
        .flat_map(|r| [r.target, r.peeled])
        .flatten()
        .collect();
    let lacking = absent_in_odb(&repo, tips.clone());
    if lacking.is_empty() {
        return Err(fetch_error);
    }
    tracing::warn!(
        "{fetch_error}; the source lacks {} object(s): reading its objects directly",
        lacking.len()
    );
    let mut w = lock_writer(writer, progress);
    let before = w.stats();
    // Its packs first, with the deltas git chose (a damaged pack is left to the
    // walk below), then every reachable object (loose ones, and objects stored by
    // an earlier failed attempt may themselves miss what they refer to). What is
    // present is stored even when the sync is refused, for the next attempt.
    for idx in ingest::packs_to_ingest(repo.path(), "")? {
        if let Err(e) = ingest::ingest_packs(
            &mut w,
            std::slice::from_ref(&idx),
            None,
            interrupt,
            progress,
        ) {
            if matches!(e, Error::Interrupted) {
                return Err(e);
            }
            tracing::warn!("{e}; reading its objects one by one instead");
        }
    }
    let mut missing = put_from_odb(&mut w, &repo, tips, false)?;
    missing.sort();
    let (snap, status) = record_snapshot(
        store,
        &mut w,
        source,
        refs,
        skipped,
        missing,
        &repo,
        opts.allow_incomplete,
        had_snapshot,
    )?;
    let after = w.stats();
    Ok(RepoReport {
        skipped_refs: snap.skipped.clone(),
        snapshot: Some(snap.id.clone()),
        refs: snap.refs.len(),
        new_objects: after.objects - before.objects,
        new_chunks: after.chunks - before.chunks,
        new_bytes_stored: after.stored_bytes - before.stored_bytes,
        new_pack_bytes: after.pack_bytes - before.pack_bytes,
        millis: start.elapsed().as_millis() as u64,
        incomplete: !snap.complete,
        ..RepoReport::new(source, status)
    })
}

/// The objects reachable from `tips` that `repo` lacks (read-only walk).
fn absent_in_odb(repo: &gix::Repository, tips: Vec<ObjectId>) -> Vec<ObjectId> {
    use gix::prelude::Find;
    let mut absent = Vec::new();
    let mut stack = tips;
    let mut seen = std::collections::HashSet::new();
    let mut buf = Vec::new();
    while let Some(oid) = stack.pop() {
        if !seen.insert(oid) {
            continue;
        }
        match repo.objects.try_find(&oid, &mut buf) {
            Ok(Some(o)) => {
                if let Ok(refs) = crate::object::references(o.kind.into(), o.data) {
                    stack.extend(refs);
                }
            }
            _ => absent.push(oid),
        }
    }
    absent.sort();
    absent
}

/// Puts `missing` objects, and what they reference that the store lacks, from
/// the mirror's object database; returns the objects the mirror lacks too.
pub(super) fn fill_from_mirror(
    w: &mut Writer<'_>,
    mirror: &gix::Repository,
    missing: Vec<ObjectId>,
) -> Result<Vec<ObjectId>, Error> {
    put_from_odb(w, mirror, missing, true)
}

/// Walks `repo`'s object database from `tips`, putting every object found and
/// following what it references; returns the objects neither `repo` nor the
/// store has. With `skip_stored`, objects already in the store are not walked.
fn put_from_odb(
    w: &mut Writer<'_>,
    repo: &gix::Repository,
    tips: Vec<ObjectId>,
    skip_stored: bool,
) -> Result<Vec<ObjectId>, Error> {
    use gix::prelude::Find;
    let mut absent = Vec::new();
    let mut stack = tips;
    let mut seen = std::collections::HashSet::new();
    let mut batch = Vec::new();
    let mut buf = Vec::new();
    let mut found = 0u64;
    while let Some(oid) = stack.pop() {
        if !seen.insert(oid) || (skip_stored && w.contains(&oid)?) {
            continue;
        }
        match repo.objects.try_find(&oid, &mut buf) {
            Ok(Some(o)) => {
                let kind: crate::ObjectKind = o.kind.into();
                let data = o.data.to_vec();
                if let Ok(refs) = crate::object::references(kind, &data) {
                    stack.extend(refs);
                }
                batch.push(crate::store::NewObject {
                    oid,
                    kind,
                    data,
                    base: None,
                });
                found += 1;
                if batch.len() >= 1024 {
                    w.put(std::mem::take(&mut batch))?;
                }
            }
            _ => {
                if !w.contains(&oid)? {
                    absent.push(oid);
                }
            }
        }
    }
    tracing::debug!(
        objects = found,
        absent = absent.len(),
        "read objects from a local object database"
    );
    w.put(batch)?;
    w.flush()?;
    Ok(absent)
}
