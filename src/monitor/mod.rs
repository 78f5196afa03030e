//! What monitoring watches: stale repositories ([`stale`]), the Prometheus
//! text files of sync, verify and prune ([`metrics`]) and the health-check
//! pings of a run ([`ping`]).
//!
//! A repository is *stale* when its last successful backup (the newest
//! `checked_at` of its snapshots: a new snapshot, or an unchanged one
//! confirmed) is older than `stale_after` ([`DEFAULT_STALE_AFTER`]: 2 days),
//! or when it was never backed up and an attempt failed. A repository deleted
//! upstream is never stale (its snapshots stay, nothing is expected of it);
//! one disabled upstream is, once its last backup is old enough: nobody backs
//! it up any more.
//!
//! Nothing here decides an exit code or prints: the CLI does, with these
//! values.

pub mod metrics;
pub mod ping;

use crate::index::{RepoRow, RepoState, SyncStatus};
use std::path::PathBuf;
use std::time::Duration;

/// Errors of monitoring.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A duration (`stale_after`) that cannot be read.
    #[error("{text:?} is not a duration: give a number with a unit, s, m, h, d or w (e.g. \"2d\", \"36h\", \"90s\"), or a number of seconds")]
    BadDuration {
        /// The text.
        text: String,
    },
    /// The metrics file cannot be written.
    #[error("cannot write the metrics file {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// The default `stale_after`: two days (a nightly backup missed twice).
pub const DEFAULT_STALE_AFTER: Duration = Duration::from_secs(2 * 86_400);

/// Reads a duration: a number of seconds, or a number with a unit (`s`,
/// `m`, `h`, `d`, `w`): `"90s"`, `"36h"`, `"2d"`.
///
/// # Errors
/// [`Error::BadDuration`] for anything else (a zero duration included).
pub fn parse_duration(text: &str) -> Result<Duration, Error> {
    let bad = || Error::BadDuration {
        text: text.to_owned(),
    };
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| bad())?;
    let scale = match unit.trim() {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(bad()),
    };
    match n.checked_mul(scale) {
        Some(0) | None => Err(bad()),
        Some(secs) => Ok(Duration::from_secs(secs)),
    }
}

/// A duration as the config gives it: a number of seconds or a text with a
/// unit (see [`parse_duration`]).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(untagged)]
pub enum DurationText {
    /// Seconds.
    Seconds(u64),
    /// `"2d"`, `"36h"`, ...
    Text(String),
}

impl DurationText {
    /// The duration.
    ///
    /// # Errors
    /// A text that is no duration, or zero.
    pub fn duration(&self) -> Result<Duration, Error> {
        match self {
            DurationText::Seconds(n) => parse_duration(&n.to_string()),
            DurationText::Text(t) => parse_duration(t),
        }
    }
}

/// Checks a config's `stale_after` and `ping_url`.
///
/// # Errors
/// What is wrong, naming the key.
pub fn check_settings(
    stale_after: Option<&DurationText>,
    ping_url: Option<&str>,
) -> Result<(), String> {
    if let Some(d) = stale_after {
        d.duration().map_err(|e| format!("stale_after: {e}"))?;
    }
    if let Some(u) = ping_url {
        ping::Pinger::new(u).map_err(|e| format!("ping_url: {e}"))?;
    }
    Ok(())
}

/// A stale repository, as the summary and `repos --stale` name it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Stale {
    /// Its name in the store.
    pub name: String,
    /// The configured source that discovered it.
    pub origin: Option<String>,
    /// Its last successful backup (unix microseconds; RFC 3339 in JSON),
    /// `None`: never.
    #[serde(serialize_with = "crate::jsontime::opt_micros")]
    pub last_success: Option<i64>,
    /// The outcome of its last attempt.
    pub last_status: Option<SyncStatus>,
    /// Its state upstream (active or disabled).
    pub state: RepoState,
}

/// Whether `row` is stale at `now_micros` (see the module doc).
pub fn is_stale(row: &RepoRow, now_micros: i64, stale_after: Duration) -> bool {
    if row.state == RepoState::Deleted {
        return false;
    }
    match row.last_success {
        Some(t) => {
            let after = i64::try_from(stale_after.as_micros()).unwrap_or(i64::MAX);
            now_micros.saturating_sub(t) > after
        }
        None => row.last_status == Some(SyncStatus::Failed),
    }
}

/// The stale repositories of `rows` at `now_micros`, in the order of `rows`.
pub fn stale(rows: &[RepoRow], now_micros: i64, stale_after: Duration) -> Vec<Stale> {
    rows.iter()
        .filter(|r| is_stale(r, now_micros, stale_after))
        .map(|r| Stale {
            name: r.name.clone(),
            origin: r.origin.clone(),
            last_success: r.last_success,
            last_status: r.last_status,
            state: r.state,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(state: RepoState, last_success: Option<i64>, status: Option<SyncStatus>) -> RepoRow {
        RepoRow {
            id: 1,
            name: "h/r".into(),
            url: "u".into(),
            created: 0,
            last_checked: Some(0),
            last_status: status,
            last_error: None,
            snapshots: u64::from(last_success.is_some()),
            last_snapshot: last_success,
            last_success,
            key: None,
            state,
            origin: None,
            previous_names: Vec::new(),
            record: None,
        }
    }

    #[test]
    fn durations_read_with_units() {
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(
            parse_duration("36h").unwrap(),
            Duration::from_secs(36 * 3600)
        );
        assert_eq!(parse_duration("2d").unwrap(), DEFAULT_STALE_AFTER);
        assert_eq!(parse_duration("1w").unwrap(), Duration::from_secs(604_800));
        for bad in ["", "d", "2x", "-1d", "0s", "1.5h", "99999999999999999999w"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn stale_by_age_never_when_deleted_and_from_the_first_failure() {
        let day = 86_400_000_000;
        let now = 10 * day;
        let after = DEFAULT_STALE_AFTER;
        let ok = Some(SyncStatus::Unchanged);
        let failed = Some(SyncStatus::Failed);
        assert!(!is_stale(
            &row(RepoState::Active, Some(now - day), failed),
            now,
            after
        ));
        assert!(is_stale(
            &row(RepoState::Active, Some(now - 3 * day), failed),
            now,
            after
        ));
        assert!(is_stale(
            &row(RepoState::Disabled, Some(now - 3 * day), ok),
            now,
            after
        ));
        assert!(!is_stale(
            &row(RepoState::Deleted, Some(now - 9 * day), failed),
            now,
            after
        ));
        assert!(is_stale(&row(RepoState::Active, None, failed), now, after));
        assert!(!is_stale(&row(RepoState::Active, None, None), now, after));
        assert!(!is_stale(
            &row(RepoState::Deleted, None, failed),
            now,
            after
        ));
    }
}
