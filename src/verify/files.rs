//! Verify's step 4: the store's files are the truth, so the index must know
//! every snapshot file and pack, and every snapshot row must have its file.

use super::{problem, Affected, Error, Run, VerifyReport};
use crate::snapshot::Snapshot;

impl Run<'_> {
    /// Step 4: The files are the truth: the index must know every snapshot file and
    /// pack (the index is checked whole, also for one repository). Returns the
    /// snapshots in scope.
    pub(super) fn check_files(&mut self) -> Result<Vec<Snapshot>, Error> {
        let (store, scope) = (self.store, self.scope);
        let all_snapshots = store.with_index(|i| i.snapshots(None))?;
        let files = store.with_index(|i| crate::store::lag::check(store.root(), i))?;
        compare_files(&files, &all_snapshots, &mut self.report);
        read_known_files(store.root(), &files, &all_snapshots, &mut self.report);
        Ok(all_snapshots
            .into_iter()
            .filter(|s| scope.is_none_or(|sc| s.repo == sc.repo))
            .collect())
    }
}

/// Reports what the store's files have that the index lacks, and the reverse.
fn compare_files(
    files: &crate::store::lag::FileState,
    snapshots: &[Snapshot],
    report: &mut VerifyReport,
) {
    let fix = "run `repovault repair-index` to rebuild it from the packs and snapshot files (sync, forget and prune do that first)";
    if !files.missing_packs.is_empty() && !files.unknown_packs.is_empty() {
        report.problems.push(problem(
            "index",
            format!(
                "the index names {} pack(s) that are gone while {} pack(s) it does not know are there: it is older than the packs (put back from a backup, or a prune ran since); {fix}",
                files.missing_packs.len(),
                files.unknown_packs.len()
            ),
        ));
    }
    for name in &files.unknown_packs {
        report.notes.push(format!(
            "pack {name} is not in the index (left by an interrupted writer or prune, or the index is older than it): prune removes it when no snapshot file needs it; repair-index indexes what of it is intact"
        ));
    }
    for u in &files.unknown_snapshots {
        let s = &u.snapshot;
        let mut p = problem("snapshot", String::new());
        p.detail = if u.unindexed_tips.is_empty() {
            format!(
                "snapshot file {}.json of {} (taken {}) is not in the index, which holds the objects its refs point to (a sync was interrupted after writing the file): the next sync, forget or prune records it, or {fix}",
                s.id, s.repo, s.time
            )
        } else {
            p.object = Some(u.unindexed_tips[0].to_string());
            format!(
                "snapshot file {}.json of {} (taken {}) is not in the index, which lacks {} of the objects its refs point to: the index is older than the store's files; {fix}",
                s.id,
                s.repo,
                s.time,
                u.unindexed_tips.len()
            )
        };
        report.problems.push(p);
        report.affected.push(Affected {
            repo: s.repo.clone(),
            snapshot: s.id.clone(),
            reason: "its file is not in the index (restore cannot find it until repair-index)"
                .into(),
        });
    }
    for (file, reason) in &files.unreadable_snapshots {
        report.problems.push(problem(
            "snapshot",
            format!("snapshot file {file} cannot be read ({reason}): repair-index cannot use it either; put it back from a backup, or move it away to drop that snapshot"),
        ));
    }
    for id in &files.missing_snapshot_files {
        let repo = snapshots
            .iter()
            .find(|s| &s.id == id)
            .map_or("?", |s| s.repo.as_str());
        let p = problem(
            "snapshot",
            format!(
                "snapshot {} of {repo} is in the index but its file snapshots/{id}.json is missing (deleted?): repair-index would lose it; {}",
                id.get(..8).unwrap_or(id),
                if files.missing_packs.is_empty() {
                    "the next sync, forget or prune writes it back from the index"
                } else {
                    "put the file back from a backup (packs are missing too, so it is not written back)"
                }
            ),
        );
        report.problems.push(p);
    }
}

/// Reads the file of every snapshot the index holds (a file written as a
/// change resolves through its base and must hash to its id) and compares
/// its refs with the index's: a file that would not give the snapshot back
/// to repair-index is damage of that snapshot, even while the index is fine.
fn read_known_files(
    root: &std::path::Path,
    files: &crate::store::lag::FileState,
    snapshots: &[Snapshot],
    report: &mut VerifyReport,
) {
    let dir = root.join(crate::store::SNAPSHOTS_DIR);
    for s in snapshots {
        if files.missing_snapshot_files.contains(&s.id) {
            continue;
        }
        let reason = match crate::snapshot::read_file(&dir, &s.id) {
            Ok(f) if f.refs == s.refs && f.repo == s.repo => continue,
            Ok(_) => "its refs differ from the index's".to_owned(),
            Err(e) => format!("it cannot be read ({})", e.reason()),
        };
        report.problems.push(problem(
            "snapshot",
            format!(
                "snapshot file {}.json of {} (taken {}): {reason}; repair-index would lose or change that snapshot: put the file back from a backup, or write it again from the index by moving it away (the next sync, forget or prune writes it back)",
                s.id, s.repo, s.time
            ),
        ));
        report.affected.push(Affected {
            repo: s.repo.clone(),
            snapshot: s.id.clone(),
            reason: format!("its file: {reason}"),
        });
    }
}
