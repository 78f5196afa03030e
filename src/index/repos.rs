//! Repositories: their rows, the outcome of their last sync, and the
//! registry of discovered repositories (provider keys, renames, states and
//! the provider's records).

use super::{Error, Index};
use rusqlite::params;
use std::collections::HashSet;

/// How a repository's sync ended (stored in `repos.last_status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncStatus {
    /// First snapshot of the repository.
    New,
    /// A new snapshot was recorded.
    Changed,
    /// The refs equal the last snapshot's; nothing was fetched.
    Unchanged,
    /// The sync failed.
    Failed,
    /// The sync was interrupted (Ctrl-C); what it stored stays stored.
    Interrupted,
}

/// A repository's state upstream (stored in `repos.state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RepoState {
    /// Listed by its source (or never discovered).
    Active,
    /// Listed, but disabled upstream.
    Disabled,
    /// Missing from a complete listing of its source (its snapshots stay).
    Deleted,
}

/// The text each variant is stored as, and its parse.
macro_rules! stored_names {
    ($t:ty { $($v:ident => $s:literal),* $(,)? }) => {
        impl $t {
            /// The lower-case name, as stored and printed.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$v => $s,)*
                }
            }

            /// The variant stored as `s`.
            pub fn parse(s: &str) -> Option<Self> {
                match s {
                    $($s => Some(Self::$v),)*
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
stored_names!(SyncStatus {
    New => "new",
    Changed => "changed",
    Unchanged => "unchanged",
    Failed => "failed",
    Interrupted => "interrupted",
});
stored_names!(RepoState {
    Active => "active",
    Disabled => "disabled",
    Deleted => "deleted",
});

/// A repository's row.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RepoRow {
    /// Row id.
    #[serde(skip)]
    pub id: i64,
    /// Name (`host/path`).
    pub name: String,
    /// URL without credentials.
    pub url: String,
    /// When first seen (unix seconds; RFC 3339 in JSON).
    #[serde(serialize_with = "crate::jsontime::seconds")]
    pub created: i64,
    /// Last sync attempt (unix seconds; RFC 3339 in JSON).
    #[serde(serialize_with = "crate::jsontime::opt_seconds")]
    pub last_checked: Option<i64>,
    /// Outcome of the last sync attempt.
    pub last_status: Option<SyncStatus>,
    /// Error of the last failed attempt.
    pub last_error: Option<String>,
    /// Number of snapshots.
    pub snapshots: u64,
    /// Time of the newest snapshot (unix microseconds; RFC 3339 in JSON).
    #[serde(serialize_with = "crate::jsontime::opt_micros")]
    pub last_snapshot: Option<i64>,
    /// The last successful backup: the newest `checked_at` of its snapshots
    /// (a new snapshot, or an unchanged one confirmed; unix microseconds;
    /// RFC 3339 in JSON).
    #[serde(serialize_with = "crate::jsontime::opt_micros")]
    pub last_success: Option<i64>,
    /// The provider's stable identity (`azure:<org>:<guid>`, ...), for discovered repositories.
    pub key: Option<String>,
    /// Its state upstream.
    pub state: RepoState,
    /// The configured source that discovered it.
    pub origin: Option<String>,
    /// Names it had before a rename.
    pub previous_names: Vec<String>,
    /// The provider's latest record of it.
    pub record: Option<serde_json::Value>,
}

/// A discovered repository to register.
#[derive(Debug, Clone)]
pub struct Registration {
    /// Stable provider identity.
    pub key: String,
    /// Current name.
    pub name: String,
    /// Clone URL.
    pub url: String,
    /// Disabled upstream.
    pub disabled: bool,
    /// The provider's record (JSON).
    pub record: serde_json::Value,
}

/// What registering a listing changed.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RegistryChanges {
    /// Repositories seen for the first time.
    pub new: Vec<String>,
    /// Renamed repositories: (old name, new name).
    pub renamed: Vec<(String, String)>,
    /// Repositories missing from a complete listing.
    pub deleted: Vec<String>,
    /// Repositories disabled upstream.
    pub disabled: Vec<String>,
}

impl Index {
    /// The repository named `name`, created with `url` if new; returns its row id.
    pub fn upsert_repo(&mut self, name: &str, url: &str, now: i64) -> Result<i64, Error> {
        let sql = self.sql();
        sql.exec(
            "INSERT INTO repos (name, url, created) VALUES (?1, ?2, ?3)
             ON CONFLICT(name) DO UPDATE SET url = excluded.url",
            params![name, url, now],
        )?;
        sql.value("SELECT id FROM repos WHERE name = ?1", [name])?
            .ok_or_else(|| sql.corrupt(format!("repository {name} vanished while recorded")))
    }

    /// Records the outcome of a sync attempt of a repository.
    pub fn set_repo_status(
        &mut self,
        repo: i64,
        checked: i64,
        status: SyncStatus,
        error: Option<&str>,
    ) -> Result<(), Error> {
        self.sql().exec(
            "UPDATE repos SET last_checked = ?2, last_status = ?3, last_error = ?4 WHERE id = ?1",
            params![repo, checked, status.as_str(), error],
        )?;
        Ok(())
    }

    /// Every repository.
    pub fn repos(&self) -> Result<Vec<RepoRow>, Error> {
        self.sql().rows(
            "repos",
            "SELECT r.id, r.name, r.url, r.created, r.last_checked, r.last_status, r.last_error,
                    (SELECT count(*) FROM snapshots s WHERE s.repo = r.id),
                    (SELECT max(time) FROM snapshots s WHERE s.repo = r.id),
                    r.key, r.state, r.origin, r.previous_names,
                    (SELECT record FROM repo_records x WHERE x.repo = r.id ORDER BY time DESC LIMIT 1),
                    (SELECT max(checked_at) FROM snapshots s WHERE s.repo = r.id)
             FROM repos r ORDER BY r.name",
            [],
            |r| {
                Ok(RepoRow {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    url: r.get(2)?,
                    created: r.get(3)?,
                    last_checked: r.get(4)?,
                    last_status: match r.get::<Option<String>>(5)? {
                        None => None,
                        Some(_) => Some(r.text(5, SyncStatus::parse)?),
                    },
                    last_error: r.get(6)?,
                    snapshots: r.num(7)?,
                    last_snapshot: r.get(8)?,
                    key: r.get(9)?,
                    state: r.text(10, RepoState::parse)?,
                    origin: r.get(11)?,
                    previous_names: r
                        .get::<String>(12)?
                        .split('\n')
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect(),
                    record: r
                        .get::<Option<String>>(13)?
                        .and_then(|t| serde_json::from_str(&t).ok()),
                    last_success: r.get(14)?,
                })
            },
        )
    }

    /// The row id of the repository named `name`, if the store has it.
    pub fn repo_id(&self, name: &str) -> Result<Option<i64>, Error> {
        self.sql()
            .value("SELECT id FROM repos WHERE name = ?1", [name])
    }

    /// Removes a repository that has no snapshot (its row and discovery
    /// records); returns false, removing nothing, when it has snapshots.
    pub fn remove_empty_repo(&mut self, repo: i64) -> Result<bool, Error> {
        self.transaction(|tx| {
            if tx.count(
                "snapshots",
                "SELECT count(*) FROM snapshots WHERE repo = ?1",
                [repo],
            )? > 0
            {
                return Ok(false);
            }
            tx.exec("DELETE FROM repo_records WHERE repo = ?1", [repo])?;
            tx.exec("DELETE FROM repos WHERE id = ?1", [repo])?;
            Ok(true)
        })
    }

    /// Registers the repositories a source listed: matched by key (a rename
    /// keeps the history under the new name), records kept when they change,
    /// states updated. When the listing is `complete`, repositories of this
    /// `origin` that it lacks are marked deleted (their snapshots stay).
    pub fn register(
        &mut self,
        origin: &str,
        repos: &[Registration],
        complete: bool,
        now: i64,
    ) -> Result<RegistryChanges, Error> {
        self.transaction(|tx| {
            let mut ch = RegistryChanges::default();
            for r in repos {
                let state = if r.disabled {
                    RepoState::Disabled
                } else {
                    RepoState::Active
                };
                let by_key = tx.row(
                    "repos",
                    "SELECT id, name, previous_names FROM repos WHERE key = ?1",
                    [&r.key],
                    |x| Ok((x.get::<i64>(0)?, x.get::<String>(1)?, x.get::<String>(2)?)),
                )?;
                let id = match by_key {
                    Some((id, name, prev)) => {
                        if name != r.name {
                            // Free the name if a deleted or key-less repository holds it.
                            tx.exec(
                                "UPDATE repos SET name = name || '~' || id WHERE name = ?1 AND id != ?2",
                                params![r.name, id],
                            )?;
                            let prev = if prev.is_empty() {
                                name.clone()
                            } else {
                                format!("{prev}\n{name}")
                            };
                            tx.exec(
                                "UPDATE repos SET name = ?2, previous_names = ?3 WHERE id = ?1",
                                params![id, r.name, prev],
                            )?;
                            ch.renamed.push((name, r.name.clone()));
                        }
                        id
                    }
                    None => {
                        let by_name: Option<i64> = tx.value(
                            "SELECT id FROM repos WHERE name = ?1 AND key IS NULL",
                            [&r.name],
                        )?;
                        match by_name {
                            Some(id) => {
                                tx.exec(
                                    "UPDATE repos SET key = ?2 WHERE id = ?1",
                                    params![id, r.key],
                                )?;
                                id
                            }
                            None => {
                                tx.exec(
                                    "UPDATE repos SET name = name || '~' || id WHERE name = ?1",
                                    params![r.name],
                                )?;
                                ch.new.push(r.name.clone());
                                tx.insert(
                                    "INSERT INTO repos (name, url, created, key, origin) VALUES (?1, ?2, ?3, ?4, ?5)",
                                    params![r.name, r.url, now, r.key, origin],
                                )?
                            }
                        }
                    }
                };
                let old_state = tx
                    .row("repos", "SELECT state FROM repos WHERE id = ?1", [id], |x| {
                        x.text(0, RepoState::parse)
                    })?;
                if r.disabled && old_state != Some(RepoState::Disabled) {
                    ch.disabled.push(r.name.clone());
                }
                tx.exec(
                    "UPDATE repos SET url = ?2, state = ?3, origin = ?4 WHERE id = ?1",
                    params![id, r.url, state.as_str(), origin],
                )?;
                let last: Option<String> = tx.value(
                    "SELECT record FROM repo_records WHERE repo = ?1 ORDER BY time DESC LIMIT 1",
                    [id],
                )?;
                // Compared as JSON values, not text: key order is not part of a
                // record (older stores wrote keys sorted, newer in the provider's order).
                let unchanged = last
                    .as_deref()
                    .and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                    .is_some_and(|l| l == r.record);
                if !unchanged {
                    let record = serde_json::to_string(&r.record).expect("JSON value serializes");
                    tx.exec(
                        "INSERT OR REPLACE INTO repo_records (repo, time, record) VALUES (?1, ?2, ?3)",
                        params![id, now, record],
                    )?;
                }
            }
            if complete {
                let keys: HashSet<&str> = repos.iter().map(|r| r.key.as_str()).collect();
                let deleted = RepoState::Deleted.as_str();
                let rows = tx.rows(
                    "repos",
                    "SELECT id, name, key FROM repos WHERE origin = ?1 AND key IS NOT NULL AND state != ?2",
                    params![origin, deleted],
                    |x| Ok((x.get::<i64>(0)?, x.get::<String>(1)?, x.get::<String>(2)?)),
                )?;
                for (id, name, key) in rows {
                    if !keys.contains(key.as_str()) {
                        tx.exec(
                            "UPDATE repos SET state = ?2 WHERE id = ?1",
                            params![id, deleted],
                        )?;
                        ch.deleted.push(name);
                    }
                }
            }
            Ok(ch)
        })
    }
}
