//! `sync --dry-run`: what a sync would record, found by listing the remote's
//! refs only. No mirror is created or touched (the listing runs from an empty
//! repository in a temporary directory), nothing is fetched, the store is only
//! read and no lock is taken.

use super::{fetch, Error, Source};
use crate::snapshot::{RefEntry, Snapshot};
use crate::store::Store;
use std::collections::BTreeMap;

/// One ref that would be added, removed or moved.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RefChange {
    /// The ref's name.
    pub name: String,
    /// Its target in the last snapshot (`-> refs/...` for a symbolic ref).
    pub old: Option<String>,
    /// Its target at the remote now.
    pub new: Option<String>,
}

/// What a sync of one repository would do.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Plan {
    /// Repository name.
    pub name: String,
    /// URL.
    pub url: String,
    /// `new` (no snapshot yet), `changed`, `unchanged` or `failed` (the listing failed).
    pub status: String,
    /// The last snapshot, the refs are compared with.
    pub last_snapshot: Option<String>,
    /// Refs the remote has now.
    pub refs: usize,
    /// Refs the last snapshot lacks.
    pub added: Vec<RefChange>,
    /// Refs the remote no longer has (the store keeps them in earlier snapshots).
    pub removed: Vec<RefChange>,
    /// Refs whose target changed.
    pub moved: Vec<RefChange>,
    /// Why the listing failed.
    pub error: Option<String>,
}

fn target(r: &RefEntry) -> Option<String> {
    match (&r.symref, r.target) {
        (Some(s), _) => Some(format!("-> {}", String::from_utf8_lossy(s))),
        (None, Some(t)) => Some(t.to_string()),
        (None, None) => None,
    }
}

/// Compares the remote's refs with the last snapshot's.
pub fn compare(name: &str, url: &str, last: Option<&Snapshot>, remote: &[RefEntry]) -> Plan {
    let old: BTreeMap<&[u8], &RefEntry> = last
        .map(|l| l.refs.iter().map(|r| (&r.name[..], r)).collect())
        .unwrap_or_default();
    let new: BTreeMap<&[u8], &RefEntry> = remote.iter().map(|r| (&r.name[..], r)).collect();
    let mut p = Plan {
        name: name.to_owned(),
        url: url.to_owned(),
        status: String::new(),
        last_snapshot: last.map(|l| l.id.clone()),
        refs: remote.len(),
        added: Vec::new(),
        removed: Vec::new(),
        moved: Vec::new(),
        error: None,
    };
    for (n, r) in &new {
        match old.get(n) {
            None => p.added.push(RefChange {
                name: r.name_lossy(),
                old: None,
                new: target(r),
            }),
            Some(o) if o != r => p.moved.push(RefChange {
                name: r.name_lossy(),
                old: target(o),
                new: target(r),
            }),
            Some(_) => {}
        }
    }
    for (n, o) in &old {
        if !new.contains_key(n) {
            p.removed.push(RefChange {
                name: o.name_lossy(),
                old: target(o),
                new: None,
            });
        }
    }
    p.status = if last.is_none() {
        "new"
    } else if p.added.is_empty() && p.removed.is_empty() && p.moved.is_empty() {
        "unchanged"
    } else {
        "changed"
    }
    .into();
    p
}

/// Lists `source`'s refs and compares them with its last snapshot in `store`.
/// A failed listing is reported in the plan (status `failed`), not as an error.
pub fn plan(store: &Store, source: &Source) -> Result<Plan, Error> {
    let last = store.with_index(|i| -> Result<Option<Snapshot>, crate::index::Error> {
        let repo = i.repos()?.into_iter().find(|r| r.name == source.name);
        match repo {
            Some(r) => Ok(i.snapshots(Some(r.id))?.pop()),
            None => Ok(None),
        }
    })?;
    let listed = (|| {
        let tmp = tempfile::Builder::new()
            .prefix("repovault-dry-run-")
            .tempdir()
            .map_err(|e| Error::Mirror {
                path: std::env::temp_dir(),
                reason: format!("cannot create a temporary directory: {e}"),
            })?;
        let scratch = gix::init_bare(tmp.path()).map_err(|e| Error::Mirror {
            path: tmp.path().to_owned(),
            reason: format!("{e:#}"),
        })?;
        fetch::list_remote(scratch, &source.url, source.auth.as_ref())
    })();
    Ok(match listed {
        Ok(remote) => compare(&source.name, &source.url, last.as_ref(), &remote),
        Err(e) => {
            let mut p = compare(&source.name, &source.url, last.as_ref(), &[]);
            p.status = "failed".into();
            p.removed.clear();
            p.error = Some(e.to_string());
            p
        }
    })
}
