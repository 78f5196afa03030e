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
    // The connectivity check first, before anything is written: objects are
    // looked up by header and only commits, trees and tags are read, as
    // `git fsck --connectivity-only` does.
    progress.begin("checking the source", None);
    let t = Instant::now();
    let stored = |oid: &ObjectId| store.with_index(|i| i.has_object(oid)).unwrap_or(false);
    // Nothing is skipped: whether the source itself lacks anything decides
    // between this path and the fetch's own error; what it lacks that the
    // store holds is not missing.
    let needs = crate::closure::needing(
        &tips,
        &crate::closure::MirrorSource::new(&repo),
        |_| false,
        stored,
        interrupt,
    )
    .map_err(|_| Error::Interrupted)?;
    tracing::debug!(
        ms = t.elapsed().as_millis() as u64,
        absent = needs.absent.len(),
        "connectivity of the source checked"
    );
    let missing = needs.absent;
    if missing.is_empty() && needs.elsewhere == 0 {
        // An intact source: the fetch failed for another reason.
        return Err(fetch_error);
    }
    tracing::warn!(
        "{}; the source lacks {} object(s) ({} of them in the store): reading its objects directly",
        first_line(&fetch_error),
        missing.len() + needs.elsewhere,
        needs.elsewhere
    );
    if !missing.is_empty() && !opts.allow_incomplete {
        // Refused before anything is stored: the store does not grow.
        let refs_needing = super::refs_reaching(&refs, &needs.tips);
        let mut w = lock_writer(writer, progress);
        return Err(super::refuse_incomplete(
            &mut w,
            source,
            missing,
            refs_needing,
        )?);
    }
    let mut w = lock_writer(writer, progress);
    let before = w.stats();
    // Its packs first, with the deltas git chose (a damaged pack is left to the
    // walk below), then every reachable object the store still lacks (loose
    // ones), each as a delta against the same path's object in a newer commit.
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
    put_from_odb(&mut w, &repo, tips)?;
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

/// The first line of an error's text, at most a few hundred characters (a
/// failed fetch's text can name every ref of the source).
fn first_line(e: &dyn std::fmt::Display) -> String {
    const MAX: usize = 300;
    let text = e.to_string();
    let line = text.lines().next().unwrap_or_default();
    match line.char_indices().nth(MAX) {
        Some((at, _)) => format!("{}...", &line[..at]),
        None => line.to_owned(),
    }
}

/// Puts `missing` objects, and what they reference that the store lacks, from
/// the mirror's object database; returns the objects the mirror lacks too.
pub(super) fn fill_from_mirror(
    w: &mut Writer<'_>,
    mirror: &gix::Repository,
    missing: Vec<ObjectId>,
) -> Result<Vec<ObjectId>, Error> {
    put_from_odb(w, mirror, missing)
}

/// Walks `repo`'s object database from `tips`, putting every object the
/// store lacks and following what it references (objects the store has are
/// not walked below); returns the objects neither `repo` nor the store has.
///
/// Each object read this way (a loose object, or one of a damaged pack) is
/// given a delta base: the object at the same path in a newer commit (the
/// walk goes from the tips down, so that one is stored first), as git's own
/// packs are deltified newest-first, so such a repository is not stored at
/// several times its pack's size.
fn put_from_odb(
    w: &mut Writer<'_>,
    repo: &gix::Repository,
    tips: Vec<ObjectId>,
) -> Result<Vec<ObjectId>, Error> {
    use gix::prelude::Find;
    use std::collections::{HashMap, HashSet};
    let h = gix::hash::Kind::Sha1;
    let mut absent = Vec::new();
    // (object, the same path's object in a newer commit; for a commit: a
    // child's tree)
    let mut stack: Vec<(ObjectId, Option<ObjectId>)> =
        tips.into_iter().map(|t| (t, None)).collect();
    let mut seen = HashSet::new();
    let mut batch = Vec::new();
    let mut buf = Vec::new();
    let mut hint_buf = Vec::new();
    let mut found = 0u64;
    while let Some((oid, hint)) = stack.pop() {
        if !seen.insert(oid) || w.contains(&oid)? {
            continue;
        }
        let Ok(Some(o)) = repo.objects.try_find(&oid, &mut buf) else {
            absent.push(oid);
            continue;
        };
        let kind: crate::ObjectKind = o.kind.into();
        let data = o.data.to_vec();
        let mut base = hint;
        match kind {
            crate::ObjectKind::Commit => {
                base = None;
                if let Ok(c) = gix::objs::CommitRef::from_bytes(&data, h) {
                    let tree = c.tree();
                    // Parents below the tree, so the tree (their trees' base) is stored first.
                    stack.extend(c.parents().map(|p| (p, Some(tree))));
                    stack.push((tree, hint));
                }
            }
            crate::ObjectKind::Tree => {
                // The newer tree's entries by name: the bases of this tree's entries.
                let mut newer: HashMap<Vec<u8>, (ObjectId, bool)> = HashMap::new();
                if let Some(Ok(Some(n))) = hint.map(|h| repo.objects.try_find(&h, &mut hint_buf)) {
                    for e in gix::objs::TreeRefIter::from_bytes(n.data, h).flatten() {
                        newer.insert(e.filename.to_vec(), (e.oid.to_owned(), e.mode.is_tree()));
                    }
                }
                for e in gix::objs::TreeRefIter::from_bytes(&data, h).flatten() {
                    if e.mode.is_commit() {
                        continue;
                    }
                    let entry = e.oid.to_owned();
                    // Same kind only: a delta's object has its base's kind in a git pack.
                    let base_of = newer
                        .get(e.filename.as_ref() as &[u8])
                        .filter(|(b, tree)| *b != entry && *tree == e.mode.is_tree())
                        .map(|(b, _)| *b);
                    stack.push((entry, base_of));
                }
            }
            crate::ObjectKind::Tag => {
                base = None;
                if let Ok(refs) = crate::object::references(kind, &data) {
                    stack.extend(refs.into_iter().map(|r| (r, None)));
                }
            }
            crate::ObjectKind::Blob => {}
        }
        batch.push(crate::store::NewObject {
            oid,
            kind,
            data,
            base: base.map(|oid| crate::store::DeltaBase { oid, delta: None }),
        });
        found += 1;
        if batch.len() >= 1024 {
            w.put(std::mem::take(&mut batch))?;
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
