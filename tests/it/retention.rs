//! Tests of retention (`forget`) and `prune`.
//!
//! 1. The policy engine (`repovault::retention::apply`) on synthetic times: a
//!    year of nightly snapshots (2025-01-01 .. 2025-12-31 at 02:00 UTC, plus a
//!    second one at 14:00 on a few days) against every rule alone and in
//!    combinations. Every expectation is written out by hand as explicit
//!    timestamps (or as plain date ranges), never re-derived with the
//!    algorithm under test, and every check runs on the input as given,
//!    reversed and shuffled.
//! 2. `plan_forget`: per-repository grouping and the "newest" guarantee.
//! 3. `forget` and `prune` through the real binary on real repositories (an
//!    upstream and its fork sharing objects, with force-pushed rewrites):
//!    dry runs change nothing, pruning one repository frees nothing the other
//!    needs, every remaining snapshot restores bit-exact.
//! 4. Merging of many small packs.
//! 5. SIGKILL at each of prune's crash points, then recovery.
//! 6. A 30-snapshot store with rewritten history: bytes before and after
//!    `forget --keep-last 3 --prune`, and how long that took (printed).

use crate::support;

use support::cp_a;

use jiff::Timestamp;
use repovault::prune::plan_forget;
use repovault::retention::{apply, Policy, Within};
use repovault::snapshot::Snapshot;
use rusqlite::Connection;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use support::{git, head_of, random_bytes, refs_of, text, Rng, TestRepo};
use tempfile::TempDir;

// ===========================================================================
// 1. Policy tests on synthetic times
// ===========================================================================

fn ts(s: &str) -> Timestamp {
    s.parse()
        .unwrap_or_else(|e| panic!("bad timestamp {s:?} in the test: {e}"))
}

/// 02:00 UTC of every day from `from` to `to` (inclusive), dates as `YYYY-MM-DD`.
fn nightly(from: &str, to: &str) -> Vec<Timestamp> {
    at_time_each_day(from, to, 1, "02:00")
}

/// `hh:mm` UTC of every `step`-th day from `from` up to `to` (inclusive).
fn at_time_each_day(from: &str, to: &str, step: i64, hhmm: &str) -> Vec<Timestamp> {
    let mut d: jiff::civil::Date = from.parse().unwrap();
    let end: jiff::civil::Date = to.parse().unwrap();
    let mut out = Vec::new();
    while d <= end {
        out.push(ts(&format!("{d}T{hhmm}:00Z")));
        d = d.checked_add(jiff::Span::new().days(step)).unwrap();
    }
    out
}

/// Days of 2025 that have a second snapshot, at 14:00 UTC.
const AFTERNOONS: [&str; 5] = [
    "2025-03-01", // a Saturday
    "2025-06-15", // a Sunday
    "2025-11-30", // a Sunday, the last day of November
    "2025-12-25", // a Thursday
    "2025-12-31", // the newest snapshot of all
];

/// 370 snapshots: 2025-01-01 .. 2025-12-31 at 02:00 UTC, plus 14:00 on [`AFTERNOONS`].
fn year() -> Vec<Timestamp> {
    let mut v = nightly("2025-01-01", "2025-12-31");
    v.extend(AFTERNOONS.iter().map(|d| ts(&format!("{d}T14:00:00Z"))));
    assert_eq!(v.len(), 370);
    v
}

/// [`year`] plus a few snapshots of earlier years.
fn year_with_history() -> Vec<Timestamp> {
    let mut v = year();
    v.extend(
        [
            "2022-05-05T10:00:00Z",
            "2023-01-15T02:00:00Z",
            "2023-06-01T02:00:00Z",
            "2024-03-15T02:00:00Z",
            "2024-11-02T02:00:00Z",
        ]
        .map(ts),
    );
    v
}

/// 2025-06-01 .. 06-09 at 02:00, then every full hour of 2025-06-10, plus
/// 20:30, 22:30 and 23:45 that day (36 snapshots).
fn hourly_day() -> Vec<Timestamp> {
    let mut v = nightly("2025-06-01", "2025-06-09");
    for h in 0..24 {
        v.push(ts(&format!("2025-06-10T{h:02}:00:00Z")));
    }
    v.extend(
        [
            "2025-06-10T20:30:00Z",
            "2025-06-10T22:30:00Z",
            "2025-06-10T23:45:00Z",
        ]
        .map(ts),
    );
    assert_eq!(v.len(), 36);
    v
}

/// Kept snapshot time -> the rules that keep it.
type Expected = BTreeMap<Timestamp, BTreeSet<String>>;

/// Adds `reasons` to every time of `times` in `e`.
fn add(e: &mut Expected, times: &[Timestamp], reasons: &[&str]) {
    for t in times {
        e.entry(*t)
            .or_default()
            .extend(reasons.iter().map(|r| r.to_string()));
    }
}

fn expect_times(times: &[Timestamp], reasons: &[&str]) -> Expected {
    let mut e = Expected::new();
    add(&mut e, times, reasons);
    e
}

/// The input as given, reversed, and two shuffles.
fn orders(times: &[Timestamp]) -> Vec<(String, Vec<Timestamp>)> {
    let mut out = vec![
        ("as given".to_string(), times.to_vec()),
        (
            "reversed".to_string(),
            times.iter().rev().copied().collect(),
        ),
    ];
    for seed in [7u64, 0xC0FFEE] {
        let mut v = times.to_vec();
        Rng(seed).shuffle(&mut v);
        out.push((format!("shuffled (seed {seed})"), v));
    }
    out
}

fn show(times: &BTreeSet<&Timestamp>) -> String {
    times
        .iter()
        .map(|t| t.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Applies `policy` to `times` (distinct) in several orders and compares the
/// kept set and every kept snapshot's reasons with `want`.
fn check(what: &str, policy: &Policy, times: &[Timestamp], want: &Expected) {
    let distinct: BTreeSet<&Timestamp> = times.iter().collect();
    assert_eq!(
        distinct.len(),
        times.len(),
        "{what}: times must be distinct"
    );
    for t in want.keys() {
        assert!(
            distinct.contains(t),
            "{what}: the expectation names {t}, which is not an input (typo in the test)"
        );
    }
    for (order, input) in orders(times) {
        let d = apply(policy, &input);
        assert_eq!(
            d.len(),
            input.len(),
            "{what} ({order}): one decision per input"
        );
        let mut got = Expected::new();
        for (i, dec) in d.iter().enumerate() {
            assert_eq!(dec.index, i, "{what} ({order}): decisions in input order");
            let set: BTreeSet<String> = dec.reasons.iter().cloned().collect();
            assert_eq!(
                set.len(),
                dec.reasons.len(),
                "{what} ({order}): {} lists a reason twice: {:?}",
                input[i],
                dec.reasons
            );
            if dec.keep {
                assert!(
                    !set.is_empty(),
                    "{what} ({order}): {} kept without a reason",
                    input[i]
                );
                got.insert(input[i], set);
            } else {
                assert!(
                    dec.reasons.is_empty(),
                    "{what} ({order}): {} removed but has reasons {:?}",
                    input[i],
                    dec.reasons
                );
            }
        }
        if &got != want {
            let g: BTreeSet<&Timestamp> = got.keys().collect();
            let w: BTreeSet<&Timestamp> = want.keys().collect();
            let wrong_reasons: Vec<String> = got
                .iter()
                .filter(|(t, r)| want.get(*t).is_some_and(|wr| wr != *r))
                .map(|(t, r)| format!("{t}: got {r:?}, want {:?}", want[t]))
                .collect();
            panic!(
                "{what} ({order}): kept {} (want {})\n  kept but should not be: {}\n  \
                 removed but should be kept: {}\n  wrong reasons: {wrong_reasons:?}",
                got.len(),
                want.len(),
                show(&g.difference(&w).copied().collect()),
                show(&w.difference(&g).copied().collect()),
            );
        }
    }
}

fn within(s: &str) -> Option<Within> {
    Some(s.parse().unwrap_or_else(|e| panic!("{e}")))
}

/// A policy from a spec such as `"daily=7 weekly=4 within=2m"`.
fn policy(spec: &str) -> Policy {
    let mut p = Policy::default();
    for rule in spec.split_whitespace() {
        let (k, v) = rule.split_once('=').expect("rule=value in the test");
        if k == "within" {
            p.keep_within = within(v);
            continue;
        }
        let n: i32 = v.parse().expect("a count in the test");
        match k {
            "last" => p.keep_last = n,
            "hourly" => p.keep_hourly = n,
            "daily" => p.keep_daily = n,
            "weekly" => p.keep_weekly = n,
            "monthly" => p.keep_monthly = n,
            "yearly" => p.keep_yearly = n,
            _ => panic!("unknown rule {k} in the test"),
        }
    }
    p
}

/// Four times around a UTC day (and month) boundary, given in other offsets:
/// 2025-07-01T00:30+02:00 is 2025-06-30T22:30Z, a June snapshot and the
/// newest of June 30 (UTC); 2025-06-30T23:30-02:00 is 2025-07-01T01:30Z.
fn utc_boundary() -> Vec<Timestamp> {
    [
        "2025-06-30T10:00:00Z",
        "2025-07-01T00:30:00+02:00",
        "2025-06-30T23:30:00-02:00",
        "2025-07-01T12:00:00Z",
    ]
    .map(ts)
    .to_vec()
}

/// One row of the policy table: in test `test`, `policy` applied to `times`
/// keeps exactly the times of `keep`, each for the union of the rules its
/// rows name.
struct Case {
    test: &'static str,
    policy: &'static str,
    times: fn() -> Vec<Timestamp>,
    keep: &'static [(&'static [&'static str], &'static [&'static str])],
}

/// The policy cases whose expectation is a list of times.
const CASES: &[Case] = &[
    Case {
        test: "keep_last_5_keeps_the_five_newest",
        policy: "last=5",
        times: year,
        keep: &[(
            &["last"],
            &[
                "2025-12-31T14:00:00Z",
                "2025-12-31T02:00:00Z",
                "2025-12-30T02:00:00Z",
                "2025-12-29T02:00:00Z",
                "2025-12-28T02:00:00Z",
            ],
        )],
    },
    // 12-31 and 12-25 have two snapshots: the 14:00 one is that day's newest.
    Case {
        test: "keep_daily_7_keeps_the_newest_of_each_of_the_last_seven_days",
        policy: "daily=7",
        times: year,
        keep: &[(&["daily"], DAILY_7)],
    },
    // 2025-12-29 (Monday) .. 12-31 are ISO week 2026-W01; 2025-W52 is
    // 12-22 .. 12-28 (Sunday), W51 ends on Sunday 12-21, W50 on 12-14.
    Case {
        test: "keep_weekly_4_uses_iso_weeks",
        policy: "weekly=4",
        times: year,
        keep: &[(&["weekly"], WEEKLY_4)],
    },
    Case {
        test: "keep_monthly_keeps_the_newest_of_each_month",
        policy: "monthly=12",
        times: year,
        keep: &[(&["monthly"], MONTHLY_12)],
    },
    // The count stops the rule.
    Case {
        test: "keep_monthly_keeps_the_newest_of_each_month",
        policy: "monthly=3",
        times: year,
        keep: &[(
            &["monthly"],
            &[
                "2025-12-31T14:00:00Z",
                "2025-11-30T14:00:00Z",
                "2025-10-31T02:00:00Z",
            ],
        )],
    },
    // One year only: one snapshot (repovault's documented rule: no extra
    // "oldest" snapshot when the count is not reached).
    Case {
        test: "keep_yearly_3_keeps_the_newest_of_each_year",
        policy: "yearly=3",
        times: year,
        keep: &[(&["yearly"], &["2025-12-31T14:00:00Z"])],
    },
    Case {
        test: "keep_yearly_3_keeps_the_newest_of_each_year",
        policy: "yearly=3",
        times: year_with_history,
        keep: &[(&["yearly"], YEARS)],
    },
    Case {
        test: "keep_hourly_10_on_a_day_with_hourly_snapshots",
        policy: "hourly=10",
        times: hourly_day,
        keep: &[(&["hourly"], HOURLY_10)],
    },
    // With keep_daily 3: the day's newest has both reasons, then two nights.
    Case {
        test: "keep_hourly_10_on_a_day_with_hourly_snapshots",
        policy: "hourly=10 daily=3",
        times: hourly_day,
        keep: &[
            (&["hourly"], HOURLY_10),
            (
                &["daily"],
                &[
                    "2025-06-10T23:45:00Z",
                    "2025-06-09T02:00:00Z",
                    "2025-06-08T02:00:00Z",
                ],
            ),
        ],
    },
    // 36 hours: the cutoff is exactly 2025-12-30T02:00, which is not "less
    // than 36h before the newest", so it goes.
    Case {
        test: "keep_within_is_relative_to_the_newest_snapshot",
        policy: "within=36h",
        times: year,
        keep: &[(&["within"], LAST_2)],
    },
    Case {
        test: "keep_within_is_relative_to_the_newest_snapshot",
        policy: "within=1d12h",
        times: year,
        keep: &[(&["within"], LAST_2)],
    },
    // The newest of a different data set moves the window with it.
    Case {
        test: "keep_within_is_relative_to_the_newest_snapshot",
        policy: "within=3h",
        times: hourly_day,
        keep: &[(
            &["within"],
            &[
                "2025-06-10T23:45:00Z",
                "2025-06-10T23:00:00Z",
                "2025-06-10T22:30:00Z",
                "2025-06-10T22:00:00Z",
                "2025-06-10T21:00:00Z",
            ],
        )],
    },
    Case {
        test: "gfs_daily_7_weekly_4_monthly_12",
        policy: "daily=7 weekly=4 monthly=12",
        times: year,
        keep: &[
            (&["daily"], DAILY_7),
            (&["weekly"], WEEKLY_4),
            (&["monthly"], MONTHLY_12),
        ],
    },
    Case {
        test: "a_snapshot_kept_by_several_rules_lists_every_rule",
        policy: "last=2 daily=3",
        times: year,
        keep: &[
            (&["last"], LAST_2),
            (
                &["daily"],
                &[
                    "2025-12-31T14:00:00Z",
                    "2025-12-30T02:00:00Z",
                    "2025-12-29T02:00:00Z",
                ],
            ),
        ],
    },
    Case {
        test: "a_snapshot_kept_by_several_rules_lists_every_rule",
        policy: "last=3 within=36h",
        times: year,
        keep: &[
            (&["last"], &["2025-12-30T02:00:00Z"]),
            (&["last", "within"], LAST_2),
        ],
    },
    // Every rule at once, each with a count of one: only the newest, seven reasons.
    Case {
        test: "a_snapshot_kept_by_several_rules_lists_every_rule",
        policy: "last=1 hourly=1 daily=1 weekly=1 monthly=1 yearly=1 within=1h",
        times: year,
        keep: &[(
            &[
                "last", "hourly", "daily", "weekly", "monthly", "yearly", "within",
            ],
            &["2025-12-31T14:00:00Z"],
        )],
    },
    // Monthly and yearly over several years.
    Case {
        test: "minus_one_means_unlimited",
        policy: "monthly=-1 yearly=-1",
        times: year_with_history,
        keep: &[
            (&["monthly"], MONTHLY_12),
            (&["monthly", "yearly"], YEARS),
            (
                &["monthly"],
                &["2024-03-15T02:00:00Z", "2023-01-15T02:00:00Z"],
            ),
            (&["monthly", "yearly"], &["2022-05-05T10:00:00Z"]),
        ],
    },
    Case {
        test: "periods_are_computed_in_utc",
        policy: "daily=-1 monthly=-1",
        times: utc_boundary,
        keep: &[(
            &["daily", "monthly"],
            &["2025-07-01T12:00:00Z", "2025-06-30T22:30:00Z"],
        )],
    },
];

/// The two newest of [`year`].
const LAST_2: &[&str] = &["2025-12-31T14:00:00Z", "2025-12-31T02:00:00Z"];
/// What keep_daily 7 keeps of [`year`].
const DAILY_7: &[&str] = &[
    "2025-12-31T14:00:00Z",
    "2025-12-30T02:00:00Z",
    "2025-12-29T02:00:00Z",
    "2025-12-28T02:00:00Z",
    "2025-12-27T02:00:00Z",
    "2025-12-26T02:00:00Z",
    "2025-12-25T14:00:00Z",
];
/// What keep_weekly 4 keeps of [`year`].
const WEEKLY_4: &[&str] = &[
    "2025-12-31T14:00:00Z",
    "2025-12-28T02:00:00Z",
    "2025-12-21T02:00:00Z",
    "2025-12-14T02:00:00Z",
];
/// The newest of each month of [`year`], newest first.
const MONTHLY_12: &[&str] = &[
    "2025-12-31T14:00:00Z",
    "2025-11-30T14:00:00Z",
    "2025-10-31T02:00:00Z",
    "2025-09-30T02:00:00Z",
    "2025-08-31T02:00:00Z",
    "2025-07-31T02:00:00Z",
    "2025-06-30T02:00:00Z",
    "2025-05-31T02:00:00Z",
    "2025-04-30T02:00:00Z",
    "2025-03-31T02:00:00Z",
    "2025-02-28T02:00:00Z",
    "2025-01-31T02:00:00Z",
];
/// The newest of each of the three newest years of [`year_with_history`].
const YEARS: &[&str] = &[
    "2025-12-31T14:00:00Z",
    "2024-11-02T02:00:00Z",
    "2023-06-01T02:00:00Z",
];
/// What keep_hourly 10 keeps of [`hourly_day`].
const HOURLY_10: &[&str] = &[
    "2025-06-10T23:45:00Z",
    "2025-06-10T22:30:00Z",
    "2025-06-10T21:00:00Z",
    "2025-06-10T20:30:00Z",
    "2025-06-10T19:00:00Z",
    "2025-06-10T18:00:00Z",
    "2025-06-10T17:00:00Z",
    "2025-06-10T16:00:00Z",
    "2025-06-10T15:00:00Z",
    "2025-06-10T14:00:00Z",
];

/// Checks every row of [`CASES`] of test `test` (there is at least one).
fn check_table(test: &str) {
    let rows: Vec<&Case> = CASES.iter().filter(|c| c.test == test).collect();
    assert!(!rows.is_empty(), "no policy case for {test}");
    for c in rows {
        let mut want = Expected::new();
        for (reasons, times) in c.keep {
            add(
                &mut want,
                &times.iter().map(|t| ts(t)).collect::<Vec<_>>(),
                reasons,
            );
        }
        check(c.policy, &policy(c.policy), &(c.times)(), &want);
    }
}

/// The tests whose cases are all rows of [`CASES`].
macro_rules! table_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                check_table(stringify!($name));
            }
        )*
    };
}

table_tests!(
    keep_last_5_keeps_the_five_newest,
    keep_daily_7_keeps_the_newest_of_each_of_the_last_seven_days,
    keep_weekly_4_uses_iso_weeks,
    keep_monthly_keeps_the_newest_of_each_month,
    keep_yearly_3_keeps_the_newest_of_each_year,
    keep_hourly_10_on_a_day_with_hourly_snapshots,
    gfs_daily_7_weekly_4_monthly_12,
    a_snapshot_kept_by_several_rules_lists_every_rule,
    periods_are_computed_in_utc,
);

#[test]
fn keep_within_is_relative_to_the_newest_snapshot() {
    let afternoons_from = |from: &str| -> Vec<Timestamp> {
        AFTERNOONS
            .iter()
            .filter(|d| **d >= from)
            .map(|d| ts(&format!("{d}T14:00:00Z")))
            .collect()
    };
    // The newest is 2025-12-31T14:00. 2 months (not minutes) before it:
    // 2025-10-31T14:00; only snapshots strictly after that are kept.
    let mut want = expect_times(&nightly("2025-11-01", "2025-12-31"), &["within"]);
    add(&mut want, &afternoons_from("2025-11-01"), &["within"]);
    assert_eq!(want.len(), 64);
    check("keep_within 2m", &policy("within=2m"), &year(), &want);

    // 10 days: after 2025-12-21T14:00.
    let mut want = expect_times(&nightly("2025-12-22", "2025-12-31"), &["within"]);
    add(&mut want, &afternoons_from("2025-12-22"), &["within"]);
    assert_eq!(want.len(), 12);
    check("keep_within 10d", &policy("within=10d"), &year(), &want);

    // A year: everything.
    let want = expect_times(&year(), &["within"]);
    check("keep_within 1y", &policy("within=1y"), &year(), &want);

    // 36 hours, 1d12h and 3 hours.
    check_table("keep_within_is_relative_to_the_newest_snapshot");
}

#[test]
fn minus_one_means_unlimited() {
    let all = year();
    check(
        "keep_last -1",
        &Policy {
            keep_last: -1,
            ..Default::default()
        },
        &all,
        &expect_times(&all, &["last"]),
    );

    // Daily: every day's 02:00 snapshot, except the 14:00 one on AFTERNOONS.
    let mut want = Expected::new();
    for t in nightly("2025-01-01", "2025-12-31") {
        let day = t.to_string()[..10].to_string();
        let kept = if AFTERNOONS.contains(&day.as_str()) {
            ts(&format!("{day}T14:00:00Z"))
        } else {
            t
        };
        add(&mut want, &[kept], &["daily"]);
    }
    assert_eq!(want.len(), 365);
    check(
        "keep_daily -1",
        &Policy {
            keep_daily: -1,
            ..Default::default()
        },
        &all,
        &want,
    );

    // Weekly: every Sunday (ISO weeks end on Sunday; 2025-01-05 is the first),
    // at 14:00 on the Sundays 06-15 and 11-30, plus 2026-W01 (12-29 .. 12-31).
    let mut want = Expected::new();
    for t in at_time_each_day("2025-01-05", "2025-12-28", 7, "02:00") {
        let day = t.to_string()[..10].to_string();
        let kept = if day == "2025-06-15" || day == "2025-11-30" {
            ts(&format!("{day}T14:00:00Z"))
        } else {
            t
        };
        add(&mut want, &[kept], &["weekly"]);
    }
    add(&mut want, &[ts("2025-12-31T14:00:00Z")], &["weekly"]);
    assert_eq!(want.len(), 53);
    check(
        "keep_weekly -1",
        &Policy {
            keep_weekly: -1,
            ..Default::default()
        },
        &all,
        &want,
    );

    // Monthly and yearly over several years.
    check_table("minus_one_means_unlimited");

    // Hourly: the newest of each of the 24 hours of 06-10, and the 9 nights.
    let mut want = expect_times(&nightly("2025-06-01", "2025-06-09"), &["hourly"]);
    for h in 0..24 {
        let t = match h {
            20 => "2025-06-10T20:30:00Z".to_string(),
            22 => "2025-06-10T22:30:00Z".to_string(),
            23 => "2025-06-10T23:45:00Z".to_string(),
            _ => format!("2025-06-10T{h:02}:00:00Z"),
        };
        add(&mut want, &[ts(&t)], &["hourly"]);
    }
    assert_eq!(want.len(), 33);
    check(
        "keep_hourly -1",
        &Policy {
            keep_hourly: -1,
            ..Default::default()
        },
        &hourly_day(),
        &want,
    );
}

#[test]
fn input_order_does_not_matter() {
    let policy = Policy {
        keep_last: 3,
        keep_daily: 10,
        keep_weekly: 6,
        keep_monthly: 5,
        keep_yearly: 2,
        keep_within: within("5d"),
        ..Default::default()
    };
    let base = year_with_history();
    let reference: BTreeMap<Timestamp, Vec<String>> = apply(&policy, &base)
        .into_iter()
        .map(|d| (base[d.index], d.reasons))
        .collect();
    for seed in 1..=20u64 {
        let mut v = base.clone();
        Rng(seed).shuffle(&mut v);
        let got: BTreeMap<Timestamp, Vec<String>> = apply(&policy, &v)
            .into_iter()
            .map(|d| {
                assert_eq!(d.keep, !d.reasons.is_empty());
                (v[d.index], d.reasons)
            })
            .collect();
        assert_eq!(got, reference, "shuffle seed {seed}");
    }
}

#[test]
fn ties_keep_exactly_as_many_as_the_counts_say() {
    let t = ts("2025-05-05T12:00:00Z");
    let earlier = ts("2025-05-05T11:00:00Z");
    let times = [t, earlier, t];
    let kept = |p: &Policy| -> Vec<bool> { apply(p, &times).iter().map(|d| d.keep).collect() };
    for p in [
        Policy {
            keep_last: 1,
            ..Default::default()
        },
        Policy {
            keep_hourly: 1,
            ..Default::default()
        },
        Policy {
            keep_daily: 1,
            ..Default::default()
        },
        Policy {
            keep_yearly: 5,
            ..Default::default()
        },
    ] {
        let k = kept(&p);
        assert_eq!(
            k.iter().filter(|k| **k).count(),
            1,
            "{p:?}: one of the tied newest, nothing else: {k:?}"
        );
        assert!(!k[1], "{p:?}: the older one is not kept");
        assert_eq!(k, kept(&p), "{p:?}: deterministic");
    }
    let p = Policy {
        keep_last: 2,
        ..Default::default()
    };
    assert_eq!(kept(&p), [true, false, true], "keep_last 2: both tied");
    let p = Policy {
        keep_hourly: 2,
        ..Default::default()
    };
    let k = kept(&p);
    assert!(k[1], "keep_hourly 2: the 11:00 one is the second hour");
    assert_eq!(k.iter().filter(|k| **k).count(), 2, "{k:?}");
    // Within 1h of the newest: both tied ones; 11:00 is exactly at the cutoff.
    let p = Policy {
        keep_within: within("1h"),
        ..Default::default()
    };
    assert_eq!(kept(&p), [true, false, true]);
}

#[test]
fn empty_input_and_empty_policy() {
    for p in [
        Policy::default(),
        Policy {
            keep_last: 3,
            keep_daily: -1,
            ..Default::default()
        },
        Policy {
            keep_within: within("1y"),
            ..Default::default()
        },
    ] {
        assert!(apply(&p, &[]).is_empty(), "{p:?}");
    }
    assert!(Policy::default().is_empty());
    assert!(!Policy {
        keep_within: within("0h"),
        ..Default::default()
    }
    .is_empty());
    let d = apply(&Policy::default(), &year());
    assert!(
        d.iter().all(|d| !d.keep && d.reasons.is_empty()),
        "no rule keeps nothing"
    );
}

// ===========================================================================
// 2. plan_forget
// ===========================================================================

fn snap(repo: &str, id: &str, time: &str) -> Snapshot {
    Snapshot {
        id: id.to_owned(),
        repo: repo.to_owned(),
        url: format!("https://example.invalid/{repo}.git"),
        time: ts(time),
        checked_at: ts(time),
        refs: Vec::new(),
        complete: true,
        missing: Vec::new(),
        skipped: Vec::new(),
    }
}

/// snapshot id -> (kept, reasons) of a plan, checking its shape: every input
/// once, sorted by repo then newest first, repo and time copied correctly.
fn plan(
    snaps: &[Snapshot],
    policy: &Policy,
    allow_empty: bool,
) -> BTreeMap<String, (bool, Vec<String>)> {
    let d = plan_forget(snaps, policy, allow_empty);
    assert_eq!(d.len(), snaps.len(), "one decision per snapshot");
    for w in d.windows(2) {
        assert!(
            (w[0].repo.as_str(), std::cmp::Reverse(w[0].time))
                <= (w[1].repo.as_str(), std::cmp::Reverse(w[1].time)),
            "sorted by repo, newest first: {} {} before {} {}",
            w[0].repo,
            w[0].time,
            w[1].repo,
            w[1].time
        );
    }
    let mut out = BTreeMap::new();
    for x in d {
        let s = snaps
            .iter()
            .find(|s| s.id == x.snapshot)
            .unwrap_or_else(|| panic!("unknown snapshot {}", x.snapshot));
        assert_eq!((&x.repo, x.time), (&s.repo, s.time), "{}", s.id);
        assert_eq!(x.keep, !x.reasons.is_empty(), "{}: {:?}", s.id, x.reasons);
        assert!(
            out.insert(x.snapshot.clone(), (x.keep, x.reasons))
                .is_none(),
            "{} twice",
            x.snapshot
        );
    }
    out
}

fn kept_ids(p: &BTreeMap<String, (bool, Vec<String>)>) -> Vec<&str> {
    p.iter()
        .filter(|(_, (k, _))| *k)
        .map(|(id, _)| id.as_str())
        .collect()
}

/// Three repositories with interleaved times, in no particular order.
fn three_repos() -> Vec<Snapshot> {
    vec![
        snap("acme/b", "b2", "2025-01-03T00:00:00Z"),
        snap("acme/a", "a3", "2025-01-03T00:00:00Z"),
        snap("acme/a", "a1", "2025-01-01T00:00:00Z"),
        snap("acme/c", "c1", "2024-06-01T00:00:00Z"),
        snap("acme/b", "b4", "2025-01-04T12:00:00Z"),
        snap("acme/a", "a5", "2025-01-05T00:00:00Z"),
        snap("acme/b", "b1", "2025-01-02T00:00:00Z"),
        snap("acme/a", "a2", "2025-01-02T00:00:00Z"),
        snap("acme/b", "b3", "2025-01-04T00:00:00Z"),
        snap("acme/a", "a4", "2025-01-04T00:00:00Z"),
    ]
}

#[test]
fn plan_forget_always_keeps_each_repos_newest_unless_allow_empty() {
    let snaps = three_repos();
    // No rule at all: only each repository's newest, for reason "newest".
    let p = plan(&snaps, &Policy::default(), false);
    assert_eq!(kept_ids(&p), ["a5", "b4", "c1"]);
    for id in ["a5", "b4", "c1"] {
        assert_eq!(p[id].1, ["newest"], "{id}");
    }
    // allow_empty: nothing is kept.
    let p = plan(&snaps, &Policy::default(), true);
    assert!(kept_ids(&p).is_empty(), "{p:?}");

    // A rule that keeps the newest anyway: no extra "newest" reason.
    let keep1 = Policy {
        keep_last: 1,
        ..Default::default()
    };
    for allow_empty in [false, true] {
        let p = plan(&snaps, &keep1, allow_empty);
        assert_eq!(kept_ids(&p), ["a5", "b4", "c1"]);
        assert_eq!(p["a5"].1, ["last"]);
    }

    // keep_within 0h keeps nothing by itself: the newest is added back.
    let zero = Policy {
        keep_within: within("0h"),
        ..Default::default()
    };
    let p = plan(&snaps, &zero, false);
    assert_eq!(kept_ids(&p), ["a5", "b4", "c1"]);
    assert_eq!(p["b4"].1, ["newest"]);
    assert!(kept_ids(&plan(&snaps, &zero, true)).is_empty());

    // Ties for the newest: exactly one of them is kept.
    let tied = [
        snap("r", "t1", "2025-01-01T00:00:00Z"),
        snap("r", "t2", "2025-01-01T00:00:00Z"),
        snap("r", "t0", "2024-12-31T00:00:00Z"),
    ];
    let p = plan(&tied, &Policy::default(), false);
    let k = kept_ids(&p);
    assert_eq!(k.len(), 1, "{p:?}");
    assert_ne!(k[0], "t0");
}

#[test]
fn plan_forget_applies_the_policy_per_repository() {
    let snaps = three_repos();
    let p = plan(
        &snaps,
        &Policy {
            keep_last: 2,
            ..Default::default()
        },
        false,
    );
    assert_eq!(kept_ids(&p), ["a4", "a5", "b3", "b4", "c1"]);
    assert!(p.values().all(|(k, r)| !k || r == &["last"]));

    // Daily, per repository: b's two snapshots of 01-04 count once.
    let p = plan(
        &snaps,
        &Policy {
            keep_daily: 2,
            ..Default::default()
        },
        false,
    );
    assert_eq!(kept_ids(&p), ["a4", "a5", "b2", "b4", "c1"]);

    // Within 1 day of each repository's own newest: a (01-05) keeps only a5
    // (a4 is exactly 1 day older); b (newest 01-04T12) keeps b4 and b3, which
    // a window relative to a's newest would not; c keeps its only snapshot.
    let p = plan(
        &snaps,
        &Policy {
            keep_within: within("1d"),
            ..Default::default()
        },
        false,
    );
    assert_eq!(kept_ids(&p), ["a5", "b3", "b4", "c1"]);
    assert_eq!(p["c1"].1, ["within"]);

    // Only one repository given (as `forget --repo` does): the others are untouched.
    let only_b: Vec<Snapshot> = snaps
        .iter()
        .filter(|s| s.repo == "acme/b")
        .cloned()
        .collect();
    let p = plan(
        &only_b,
        &Policy {
            keep_last: 1,
            ..Default::default()
        },
        false,
    );
    assert_eq!(kept_ids(&p), ["b4"]);
    assert_eq!(p.len(), 4);
}

// ===========================================================================
// Running the binary
// ===========================================================================

/// No single repovault or git run of these tests should take longer.
const RUN_TIMEOUT: Duration = Duration::from_secs(240);

/// Runs `cmd` with this file's time limit (see `support::run_with_timeout`).
fn run(cmd: &mut Command) -> Output {
    support::run_with_timeout(cmd, RUN_TIMEOUT)
}

use support::{describe, parse_json};

use support::{path_str, rv, rv_json, rv_ok, rv_store_cmd};

fn num(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} is not a number in {v:#}"))
}

fn stats(store: &Path) -> Value {
    rv_json(store, &["stats", "--json"])
}

/// Snapshot ids in the store (`snapshots --json`), in its order.
fn snapshot_ids(store: &Path) -> Vec<String> {
    rv_json(store, &["snapshots", "--json"])
        .as_array()
        .expect("snapshots --json is an array")
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Names (without `.pack`) of the pack files in `packs/`, temporary ones included.
fn pack_files(store: &Path) -> BTreeSet<String> {
    std::fs::read_dir(store.join("packs"))
        .expect("read packs dir")
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.strip_suffix(".pack").map(str::to_owned)
        })
        .collect()
}

/// Sum of the sizes of the files in `packs/`.
fn pack_bytes_on_disk(store: &Path) -> u64 {
    std::fs::read_dir(store.join("packs"))
        .expect("read packs dir")
        .flatten()
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

use support::listing;

/// The pack names the index knows.
fn index_packs(store: &Path) -> BTreeSet<String> {
    let c = Connection::open(store.join("index.sqlite")).expect("open the index");
    let mut st = c.prepare("SELECT name FROM packs").unwrap();
    let names = st
        .query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    names
}

/// Whether the index has a row for object `oid` (hex).
fn index_has_object(store: &Path, oid: &str) -> bool {
    let c = Connection::open(store.join("index.sqlite")).expect("open the index");
    let n: i64 = c
        .query_row(
            "SELECT count(*) FROM objects WHERE lower(hex(oid)) = ?1",
            [oid],
            |r| r.get(0),
        )
        .unwrap();
    n == 1
}

/// `verify --read-data --json`: must exit 0 and be clean; returns its notes.
fn verify_clean(store: &Path) -> Vec<String> {
    let out = rv(store, &["verify", "--read-data", "--json"]);
    let doc = parse_json(&out);
    assert!(
        out.status.success() && doc["clean"] == true,
        "verify --read-data is not clean:\n{}",
        describe(&out)
    );
    assert_eq!(doc["problems"], serde_json::json!([]), "{doc:#}");
    assert_eq!(doc["affected"], serde_json::json!([]), "{doc:#}");
    doc["notes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_owned())
        .collect()
}

// ===========================================================================
// Source repositories and expectations
// ===========================================================================

/// A work repository and the bare repository repovault backs up.
struct Source {
    work: TestRepo,
    bare: PathBuf,
    name: String,
}

impl Source {
    /// Mirrors the work repository into `bare` (which must not exist yet).
    fn new(work: TestRepo, bare: PathBuf, name: &str) -> Source {
        work.bare_clone_to(&bare);
        Source {
            work,
            bare,
            name: name.to_owned(),
        }
    }

    /// Makes `bare` equal to the work repository (deleting and rewriting refs).
    fn publish(&self) {
        self.work.publish(&self.bare);
    }
}

/// What a snapshot must restore to: the source's state when it was taken.
#[derive(Debug, Clone)]
struct SnapExp {
    id: String,
    repo: String,
    /// `refs_of` of the source (HEAD excluded).
    refs: Vec<(String, String)>,
    /// `git rev-list --all --objects` of the source.
    objects: BTreeSet<String>,
}

fn reachable(repo: &Path) -> BTreeSet<String> {
    git(repo, &["rev-list", "--all", "--objects"])
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// Syncs `src` and returns what its new snapshot must restore to.
fn sync(store: &Path, cache: &Path, src: &Source) -> SnapExp {
    let doc = parse_json(&support::rv_sync(store, cache, &src.bare, &src.name));
    let r = &doc["repos"][0];
    assert!(
        r["status"] == "new" || r["status"] == "changed",
        "sync of {} did not record a snapshot: {doc:#}",
        src.name
    );
    SnapExp {
        id: r["snapshot"].as_str().unwrap().to_owned(),
        repo: src.name.clone(),
        refs: refs_of(&src.bare),
        objects: reachable(&src.bare),
    }
}

/// Restores `exp` and checks it bit-exact: refs, HEAD, `fsck --full
/// --strict`, and the exact set of reachable objects.
fn assert_restores(store: &Path, exp: &SnapExp, scratch: &Path) {
    let dest = scratch.join(format!("{}-{}", exp.repo, &exp.id[..12]));
    let _ = std::fs::remove_dir_all(&dest);
    rv_ok(
        store,
        &[
            "restore",
            "--repo",
            &exp.repo,
            "--snapshot",
            &exp.id,
            path_str(&dest),
        ],
    );
    let label = format!("snapshot {} of {}", &exp.id[..8], exp.repo);
    assert_eq!(refs_of(&dest), exp.refs, "{label}: refs");
    assert_eq!(head_of(&dest), "refs/heads/main", "{label}: HEAD");
    git(&dest, &["fsck", "--full", "--strict", "--no-progress"]);
    let got = reachable(&dest);
    assert_eq!(
        got.len(),
        exp.objects.len(),
        "{label}: rev-list --all --objects count"
    );
    assert_eq!(got, exp.objects, "{label}: reachable objects");
    std::fs::remove_dir_all(&dest).unwrap();
}

fn assert_all_restore(store: &Path, exps: &[&SnapExp]) {
    let scratch = TempDir::new().unwrap();
    let mut ids = snapshot_ids(store);
    ids.sort();
    let mut want: Vec<String> = exps.iter().map(|e| e.id.clone()).collect();
    want.sort();
    assert_eq!(ids, want, "the store's snapshots");
    for e in exps {
        assert_restores(store, e, scratch.path());
    }
}

fn union<'a>(exps: impl IntoIterator<Item = &'a SnapExp>) -> BTreeSet<String> {
    exps.into_iter()
        .flat_map(|e| e.objects.iter().cloned())
        .collect()
}

// ===========================================================================
// The shared fixture: an upstream and its fork, four snapshots each
// ===========================================================================

/// Built once per test process; tests copy `store` with `cp -a`.
///
/// * `upstream`: U1 (6 commits, tag v0.1); U2 (+3 commits, one adding the
///   48 KiB random `data/rewritten.bin`, annotated tag v0.2); U3 (force-push:
///   main reset to U1's tip, v0.2 deleted, 2 different commits); U4 (+1).
/// * `fork`: a clone of upstream at U1 plus 2 commits and a branch `feature`
///   whose commit adds a 24 KiB random `feature.bin` (F1); F2 (+1 on main);
///   F3 (`feature` amended with a different `feature.bin`); F4 (+1 on main).
///
/// Snapshot order: U1 F1 U2 F2 U3 F3 U4 F4.
struct Fixture {
    root: PathBuf,
    snaps: Vec<SnapExp>,
    /// Only in upstream's rewritten-away round-2 history (U2).
    up_rewritten_blob: String,
    /// Only in the fork's amended-away feature commit (F1, F2).
    fork_old_feature_blob: String,
}

impl Fixture {
    fn store(&self) -> PathBuf {
        self.root.join("store")
    }

    fn get(&self, repo: &str, n: usize) -> &SnapExp {
        self.snaps
            .iter()
            .filter(|s| s.repo == repo)
            .nth(n - 1)
            .expect("four snapshots per repository")
    }

    fn by_id(&self, id: &str) -> &SnapExp {
        self.snaps.iter().find(|s| s.id == id).expect("known id")
    }
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(build_fixture)
}

fn build_fixture() -> Fixture {
    let start = Instant::now();
    let root = support::fixture_dir("retention-fixture").join("two-repos");
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(root.join("src")).unwrap();
    let store = root.join("store");
    let cache = root.join("cache");
    rv_ok(&store, &["init"]);
    let mut snaps = Vec::new();

    // Round 1.
    let up = TestRepo::new();
    for i in 0..6u64 {
        up.write("README.md", text(1, 30, i / 2));
        up.write("src/lib.txt", text(2, 120, i));
        up.commit(&format!("upstream {i}"));
    }
    up.tag_lightweight("v0.1", "HEAD");
    let up = Source::new(up, root.join("src/upstream.git"), "upstream");
    snaps.push(sync(&store, &cache, &up));

    let fork = TestRepo::new();
    std::fs::remove_dir_all(&fork.path).unwrap();
    git(
        fork.dir.path(),
        &["clone", "-q", "--no-local", path_str(&up.work.path), "work"],
    );
    git(&fork.path, &["remote", "remove", "origin"]);
    fork.set_time(support::DEFAULT_TIME + 86_400);
    for i in 0..2u64 {
        fork.write("FORK.md", text(21, 30, i));
        fork.write("src/lib.txt", text(2, 120, 100 + i));
        fork.commit(&format!("fork {i}"));
    }
    fork.git(&["checkout", "-q", "-b", "feature"]);
    fork.write("feature.bin", random_bytes(0xFEA7, 24 << 10));
    fork.commit("feature");
    let fork_old_feature_blob = fork.rev_parse("feature:feature.bin");
    fork.checkout("main");
    let fork = Source::new(fork, root.join("src/fork.git"), "fork");
    snaps.push(sync(&store, &cache, &fork));

    // Round 2.
    up.work.set_time(support::DEFAULT_TIME + 2 * 86_400);
    for i in 0..3u64 {
        up.work.write("src/lib.txt", text(2, 120, 50 + i));
        if i == 1 {
            up.work
                .write("data/rewritten.bin", random_bytes(0xDEAD, 48 << 10));
        }
        up.work.commit(&format!("upstream round 2, {i}"));
    }
    let up_rewritten_blob = up.work.rev_parse("HEAD:data/rewritten.bin");
    up.work.tag_annotated("v0.2", "HEAD", "release 0.2");
    up.publish();
    snaps.push(sync(&store, &cache, &up));

    fork.work.set_time(support::DEFAULT_TIME + 2 * 86_400);
    fork.work.write("FORK.md", text(21, 30, 10));
    fork.work.commit("fork round 2");
    fork.publish();
    snaps.push(sync(&store, &cache, &fork));

    // Round 3: rewrites.
    up.work.git(&["reset", "-q", "--hard", "HEAD~3"]);
    up.work.git(&["tag", "-d", "v0.2"]);
    for i in 0..2u64 {
        up.work.write("src/lib.txt", text(2, 120, 70 + i));
        up.work.write("NEWS.md", text(6, 20, i));
        up.work.commit(&format!("upstream rewritten {i}"));
    }
    up.publish();
    snaps.push(sync(&store, &cache, &up));

    fork.work.checkout("feature");
    fork.work
        .write("feature.bin", random_bytes(0xFEA8, 24 << 10));
    fork.work.git(&["add", "-A"]);
    fork.work
        .git(&["commit", "-q", "--amend", "-m", "feature, amended"]);
    fork.work.checkout("main");
    fork.publish();
    snaps.push(sync(&store, &cache, &fork));

    // Round 4.
    up.work.write("NEWS.md", text(6, 20, 9));
    up.work.commit("upstream round 4");
    up.publish();
    snaps.push(sync(&store, &cache, &up));
    fork.work.write("FORK.md", text(21, 30, 20));
    fork.work.commit("fork round 4");
    fork.publish();
    snaps.push(sync(&store, &cache, &fork));

    let fix = Fixture {
        root,
        snaps,
        up_rewritten_blob,
        fork_old_feature_blob,
    };
    // Sanity of the scenario itself.
    let has = |repo: &str, n: usize, oid: &str| fix.get(repo, n).objects.contains(oid);
    let rb = &fix.up_rewritten_blob;
    assert!(has("upstream", 2, rb) && !has("upstream", 3, rb) && !has("upstream", 4, rb));
    assert!((1..=4).all(|n| !has("fork", n, rb)));
    let fb = &fix.fork_old_feature_blob;
    assert!(has("fork", 1, fb) && has("fork", 2, fb) && !has("fork", 3, fb));
    assert!((1..=4).all(|n| !has("upstream", n, fb)));
    let shared = fix
        .get("upstream", 1)
        .objects
        .intersection(&fix.get("fork", 4).objects)
        .count();
    assert!(
        shared == fix.get("upstream", 1).objects.len(),
        "the fork contains all of U1"
    );
    let st = stats(&store);
    assert_eq!(num(&st, "snapshots"), 8);
    assert_eq!(
        num(&st, "objects") as usize,
        union(&fix.snaps).len(),
        "the store holds exactly the objects of its snapshots"
    );
    eprintln!(
        "two-repo fixture built in {:.1}s: {st}",
        start.elapsed().as_secs_f64()
    );
    fix
}

/// A private copy of the fixture's store.
fn copy_store(fix: &Fixture) -> (TempDir, PathBuf) {
    let dir = TempDir::new().unwrap();
    let store = dir.path().join("store");
    cp_a(&fix.store(), &store);
    (dir, store)
}

// ===========================================================================
// 3. forget and prune end to end
// ===========================================================================

#[test]
fn forget_dry_run_changes_nothing_and_explains_itself() {
    let fix = fixture();
    let (_dir, store) = copy_store(fix);
    let snaps_before = rv_ok(&store, &["snapshots", "--json"]).stdout;
    let stats_before = stats(&store);
    let packs_before = listing(&store.join("packs"));
    let files_before = listing(&store.join("snapshots"));

    let doc = rv_json(
        &store,
        &[
            "forget",
            "--keep-last",
            "2",
            "--keep-yearly",
            "1",
            "--dry-run",
            "--json",
        ],
    );
    assert_eq!(doc["dry_run"], true, "{doc:#}");
    assert_eq!(doc["removed"], 4, "{doc:#}");
    assert!(doc["prune"].is_null(), "{doc:#}");
    let decisions = doc["snapshots"].as_array().unwrap();
    assert_eq!(decisions.len(), 8);
    let mut seen = BTreeSet::new();
    for d in decisions {
        let id = d["snapshot"].as_str().unwrap();
        let exp = fix.by_id(id);
        assert_eq!(d["repo"], exp.repo.as_str());
        assert!(seen.insert(id.to_owned()));
        let n = fix
            .snaps
            .iter()
            .filter(|s| s.repo == exp.repo)
            .position(|s| s.id == id)
            .unwrap()
            + 1;
        let mut reasons: Vec<String> = d["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap().to_owned())
            .collect();
        reasons.sort();
        // All snapshots were taken this year: yearly 1 keeps only the newest.
        let (keep, want): (bool, &[&str]) = match n {
            4 => (true, &["last", "yearly"]),
            3 => (true, &["last"]),
            _ => (false, &[]),
        };
        assert_eq!(d["keep"], keep, "{}#{n}: {d}", exp.repo);
        assert_eq!(reasons, want, "{}#{n}: {d}", exp.repo);
    }
    // Sorted by repo, newest first.
    let order: Vec<&str> = decisions
        .iter()
        .map(|d| d["snapshot"].as_str().unwrap())
        .collect();
    let want: Vec<&str> = [("fork", 4), ("fork", 3), ("fork", 2), ("fork", 1)]
        .into_iter()
        .chain([
            ("upstream", 4),
            ("upstream", 3),
            ("upstream", 2),
            ("upstream", 1),
        ])
        .map(|(r, n)| fix.get(r, n).id.as_str())
        .collect();
    assert_eq!(order, want);

    // The human output says the same and changes nothing either.
    let out = rv_ok(&store, &["forget", "--keep-last", "2", "--dry-run"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("4 snapshots would be removed, 4 kept"),
        "{text}"
    );

    assert_eq!(rv_ok(&store, &["snapshots", "--json"]).stdout, snaps_before);
    assert_eq!(stats(&store), stats_before);
    assert_eq!(listing(&store.join("packs")), packs_before);
    assert_eq!(listing(&store.join("snapshots")), files_before);
}

#[test]
fn forget_and_prune_one_repo_then_all() {
    let fix = fixture();
    let (_dir, store) = copy_store(fix);
    let s0 = stats(&store);

    // --- The fork only: keep its newest. ---
    let doc = rv_json(
        &store,
        &["forget", "--repo", "fork", "--keep-last", "1", "--json"],
    );
    assert_eq!(doc["removed"], 3, "{doc:#}");
    let decisions = doc["snapshots"].as_array().unwrap();
    assert_eq!(decisions.len(), 4, "only the fork is considered: {doc:#}");
    assert!(decisions.iter().all(|d| d["repo"] == "fork"));
    let kept: Vec<&Value> = decisions.iter().filter(|d| d["keep"] == true).collect();
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0]["snapshot"], fix.get("fork", 4).id.as_str());
    assert_eq!(kept[0]["reasons"], serde_json::json!(["last"]));
    // Forget alone deletes no data.
    let s1 = stats(&store);
    assert_eq!(num(&s1, "snapshots"), 5);
    assert_eq!(num(&s1, "objects"), num(&s0, "objects"));
    assert_eq!(num(&s1, "stored_bytes"), num(&s0, "stored_bytes"));
    for n in 1..=3 {
        let f = store
            .join("snapshots")
            .join(format!("{}.json", fix.get("fork", n).id));
        assert!(!f.exists(), "{} still exists", f.display());
    }

    let report = rv_json(&store, &["prune", "--json"]);
    let s2 = stats(&store);
    eprintln!(
        "prune after forgetting 3 fork snapshots: {report}\nstored bytes {} -> {}",
        num(&s1, "stored_bytes"),
        num(&s2, "stored_bytes")
    );
    assert_eq!(report["dry_run"], false);
    assert_eq!(num(&report, "snapshots"), 5);
    let remaining: Vec<&SnapExp> = [
        fix.get("upstream", 1),
        fix.get("upstream", 2),
        fix.get("upstream", 3),
        fix.get("upstream", 4),
        fix.get("fork", 4),
    ]
    .into();
    let live = union(remaining.iter().copied());
    assert_eq!(
        num(&report, "live_objects") as usize,
        live.len(),
        "{report}"
    );
    assert_eq!(
        num(&s2, "objects") as usize,
        live.len(),
        "exactly the objects of the remaining snapshots stay"
    );
    assert_eq!(
        num(&report, "dead_objects"),
        num(&s1, "objects") - num(&s2, "objects")
    );
    assert!(
        num(&report, "dead_objects") > 0,
        "the old feature commit is gone"
    );
    assert!(!index_has_object(&store, &fix.fork_old_feature_blob));
    assert!(
        index_has_object(&store, &fix.up_rewritten_blob),
        "U2 needs it"
    );
    assert!(num(&s2, "stored_bytes") < num(&s1, "stored_bytes"));
    assert_eq!(pack_files(&store), index_packs(&store));
    assert_eq!(pack_bytes_on_disk(&store), num(&s2, "stored_bytes"));
    assert_all_restore(&store, &remaining);
    assert_eq!(verify_clean(&store), Vec::<String>::new());

    // --- Everything: keep the newest of each, prune in the same run. ---
    let doc = rv_json(&store, &["forget", "--keep-last", "1", "--prune", "--json"]);
    let s3 = stats(&store);
    eprintln!(
        "forget --keep-last 1 --prune on both repos: stored_bytes {} -> {} (objects {} -> {}, packs {} -> {})",
        num(&s2, "stored_bytes"),
        num(&s3, "stored_bytes"),
        num(&s2, "objects"),
        num(&s3, "objects"),
        num(&s2, "packs"),
        num(&s3, "packs"),
    );
    assert_eq!(doc["removed"], 3, "{doc:#}");
    let report = &doc["prune"];
    assert_eq!(num(report, "snapshots"), 2, "{doc:#}");
    let remaining = [fix.get("upstream", 4), fix.get("fork", 4)];
    let live = union(remaining);
    assert_eq!(num(&s3, "objects") as usize, live.len());
    assert!(num(&s3, "objects") < num(&s2, "objects"));
    assert_eq!(
        num(report, "dead_objects"),
        num(&s2, "objects") - num(&s3, "objects")
    );
    assert!(
        !index_has_object(&store, &fix.up_rewritten_blob),
        "the blob of the rewritten history is gone"
    );
    assert!(num(&s3, "stored_bytes") < num(&s2, "stored_bytes"));
    assert_eq!(num(report, "bytes_after"), num(&s3, "stored_bytes"));
    assert_eq!(pack_files(&store), index_packs(&store));
    assert_eq!(pack_bytes_on_disk(&store), num(&s3, "stored_bytes"));
    assert_all_restore(&store, &remaining);
    assert_eq!(verify_clean(&store), Vec::<String>::new());
}

#[test]
fn forget_needs_a_rule_and_ids_drop_a_whole_repo() {
    let fix = fixture();
    let (_dir, store) = copy_store(fix);
    let before = rv_ok(&store, &["snapshots", "--json"]).stdout;
    // No rule, with or without --allow-empty: refused (a bad command line), nothing removed.
    for extra in [&[][..], &["--allow-empty"][..]] {
        let mut args = vec!["forget", "--repo", "fork"];
        args.extend_from_slice(extra);
        let out = rv(&store, &args);
        assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("no keep rule"),
            "{}",
            describe(&out)
        );
        assert_eq!(rv_ok(&store, &["snapshots", "--json"]).stdout, before);
    }

    // Every fork snapshot named by id: all go, even the newest.
    let fork = rv_json(&store, &["snapshots", "--repo", "fork", "--json"]);
    let mut args = vec!["forget".to_owned(), "--json".to_owned()];
    args.extend(
        fork.as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_owned()),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let doc = rv_json(&store, &args);
    assert_eq!(doc["removed"], 4, "{doc:#}");
    let report = rv_json(&store, &["prune", "--json"]);
    let ups: Vec<&SnapExp> = (1..=4).map(|n| fix.get("upstream", n)).collect();
    let st = stats(&store);
    assert_eq!(
        num(&st, "objects") as usize,
        union(ups.iter().copied()).len()
    );
    assert_eq!(num(&report, "snapshots"), 4);
    assert!(!index_has_object(&store, &fix.fork_old_feature_blob));
    assert_all_restore(&store, &ups);
    assert_eq!(verify_clean(&store), Vec::<String>::new());
}

// ===========================================================================
// 4. Merging small packs
// ===========================================================================

#[test]
fn prune_merges_many_small_packs() {
    let dir = TempDir::new().unwrap();
    let store = dir.path().join("store");
    let cache = dir.path().join("cache");
    rv_ok(&store, &["init"]);
    let w = TestRepo::new();
    w.write("src/main.txt", text(31, 80, 0));
    w.commit("initial");
    let src = Source::new(w, dir.path().join("small.git"), "small");
    let mut exps = vec![sync(&store, &cache, &src)];
    for i in 1..12u64 {
        src.work.write("src/main.txt", text(31, 80, i));
        src.work
            .write(&format!("notes/{i}.txt"), format!("note {i}\n"));
        src.work.commit(&format!("commit {i}"));
        src.publish();
        exps.push(sync(&store, &cache, &src));
    }
    let before = stats(&store);
    let packs_listing = listing(&store.join("packs"));
    assert!(num(&before, "packs") >= 12, "{before}");

    // Dry run: a report, and no pack file touched.
    let dry = rv_json(&store, &["prune", "--dry-run", "--json"]);
    assert_eq!(dry["dry_run"], true);
    assert!(num(&dry, "packs_repacked") > 0, "{dry}");
    assert_eq!(num(&dry, "packs_deleted"), 0, "{dry}");
    assert_eq!(num(&dry, "dead_objects"), 0, "{dry}");
    assert_eq!(num(&dry, "packs_before"), num(&before, "packs"));
    assert_eq!(listing(&store.join("packs")), packs_listing);
    assert_eq!(stats(&store), before);

    let report = rv_json(&store, &["prune", "--json"]);
    let after = stats(&store);
    eprintln!(
        "merge: {report}\npacks {} -> {}",
        num(&before, "packs"),
        num(&after, "packs")
    );
    assert!(num(&report, "packs_repacked") > 0, "{report}");
    assert!(num(&report, "packs_written") > 0, "{report}");
    assert_eq!(num(&report, "packs_deleted"), 0, "{report}");
    assert_eq!(num(&report, "dead_objects"), 0, "{report}");
    assert!(num(&after, "packs") < num(&before, "packs"), "{after}");
    assert_eq!(
        num(&after, "packs"),
        num(&before, "packs") - num(&report, "packs_repacked") + num(&report, "packs_written")
    );
    assert_eq!(num(&after, "objects"), num(&before, "objects"));
    assert_eq!(num(&after, "chunks"), num(&before, "chunks"));
    assert_eq!(num(&after, "raw_bytes"), num(&before, "raw_bytes"));
    assert_eq!(pack_files(&store), index_packs(&store));
    assert_eq!(num(&after, "packs") as usize, pack_files(&store).len());
    assert_all_restore(&store, &exps.iter().collect::<Vec<_>>());
    assert_eq!(verify_clean(&store), Vec::<String>::new());

    // A second prune has nothing left to merge.
    let listing_after = listing(&store.join("packs"));
    let again = rv_json(&store, &["prune", "--json"]);
    assert_eq!(num(&again, "packs_repacked"), 0, "{again}");
    assert_eq!(num(&again, "packs_deleted"), 0, "{again}");
    assert_eq!(listing(&store.join("packs")), listing_after);
}

// ===========================================================================
// 5. SIGKILL during prune
// ===========================================================================

/// The two-repo fixture after `forget --keep-last 2` (no prune): U3 U4 F3 F4
/// remain; prune has packs to delete (U2's) and to repack (F1's, partly live).
struct Forgotten {
    store: PathBuf,
    remaining: Vec<SnapExp>,
}

fn forgotten() -> &'static Forgotten {
    static F: OnceLock<Forgotten> = OnceLock::new();
    F.get_or_init(|| {
        let fix = fixture();
        let store = fix.root.join("forgotten-store");
        let _ = std::fs::remove_dir_all(&store);
        cp_a(&fix.store(), &store);
        let doc = rv_json(&store, &["forget", "--keep-last", "2", "--json"]);
        assert_eq!(doc["removed"], 4, "{doc:#}");
        let remaining: Vec<SnapExp> = [("upstream", 3), ("upstream", 4), ("fork", 3), ("fork", 4)]
            .into_iter()
            .map(|(r, n)| fix.get(r, n).clone())
            .collect();
        let dry = rv_json(
            &store,
            &["prune", "--dry-run", "--repack-below", "100", "--json"],
        );
        assert!(num(&dry, "packs_deleted") > 0, "nothing to delete: {dry}");
        assert!(num(&dry, "packs_repacked") > 0, "nothing to repack: {dry}");
        assert!(num(&dry, "dead_objects") > 0, "{dry}");
        Forgotten { store, remaining }
    })
}

fn crash_then_recover(point: &str) {
    let f = forgotten();
    let dir = TempDir::new().unwrap();
    let store = dir.path().join("store");
    cp_a(&f.store, &store);
    let remaining: Vec<&SnapExp> = f.remaining.iter().collect();
    let idx0 = index_packs(&store);
    let disk0 = pack_files(&store);
    assert_eq!(idx0, disk0);

    let mut cmd = rv_store_cmd(&store, &["prune", "--repack-below", "100", "--json"]);
    cmd.env("REPOVAULT_CRASH_AT", point);
    let out = run(&mut cmd);
    assert_eq!(
        out.status.signal(),
        Some(9),
        "prune should have been killed at {point}:\n{}",
        describe(&out)
    );

    let idx1 = index_packs(&store);
    let disk1 = pack_files(&store);
    assert!(
        idx1.is_subset(&disk1),
        "{point}: the index names pack files that do not exist: {:?}",
        idx1.difference(&disk1).collect::<Vec<_>>()
    );
    assert!(
        disk1.iter().all(|n| !n.starts_with(".tmp-")),
        "{point}: temporary packs left: {disk1:?}"
    );
    match point {
        "prune-packs-written" => {
            assert_eq!(idx1, idx0, "{point}: the index is not committed yet");
            assert!(disk1.is_superset(&disk0) && disk1.len() > disk0.len());
        }
        "prune-index-committed" => {
            assert_ne!(idx1, idx0, "{point}: the index moved");
            assert!(disk1.is_superset(&disk0), "{point}: nothing deleted yet");
        }
        "prune-deleting" => {
            assert_ne!(idx1, idx0);
            assert_eq!(
                disk0.difference(&disk1).count(),
                1,
                "{point}: exactly one old pack deleted"
            );
        }
        _ => unreachable!(),
    }
    let unindexed: BTreeSet<&String> = disk1.difference(&idx1).collect();
    assert!(!unindexed.is_empty(), "{point}: leftovers expected");

    // The killed prune left a consistent store.
    let notes = verify_clean(&store);
    assert_eq!(notes.len(), unindexed.len(), "{point}: {notes:?}");
    for n in &notes {
        assert!(n.contains("is not in the index"), "{point}: {n}");
        assert!(unindexed.iter().any(|u| n.contains(u.as_str())), "{n}");
    }
    assert_all_restore(&store, &remaining);

    // The next prune finishes the job and removes the leftovers.
    let report = rv_json(&store, &["prune", "--json"]);
    eprintln!("{point}: second prune: {report}");
    assert_eq!(
        num(&report, "unindexed_packs_deleted") as usize,
        unindexed.len(),
        "{report}"
    );
    let idx2 = index_packs(&store);
    let disk2 = pack_files(&store);
    assert_eq!(disk2, idx2, "{point}: only indexed packs remain");
    let st = stats(&store);
    assert_eq!(num(&st, "packs") as usize, disk2.len());
    assert_eq!(pack_bytes_on_disk(&store), num(&st, "stored_bytes"));
    assert_eq!(
        num(&st, "objects") as usize,
        union(remaining.iter().copied()).len()
    );
    assert_eq!(verify_clean(&store), Vec::<String>::new(), "{point}");
    assert_all_restore(&store, &remaining);
}

#[test]
fn sigkill_at_prune_packs_written() {
    crash_then_recover("prune-packs-written");
}

#[test]
fn sigkill_at_prune_index_committed() {
    crash_then_recover("prune-index-committed");
}

#[test]
fn sigkill_at_prune_deleting() {
    crash_then_recover("prune-deleting");
}

// ===========================================================================
// 6. Thirty snapshots with rewritten history (a report)
// ===========================================================================

#[test]
fn thirty_snapshots_with_rewrites_forget_keep_last_3_prune() {
    let dir = TempDir::new().unwrap();
    let store = dir.path().join("store");
    let cache = dir.path().join("cache");
    rv_ok(&store, &["init"]);
    let w = TestRepo::new();
    w.write("src/main.txt", text(41, 150, 0));
    w.write("data/blob.bin", random_bytes(1000, 16 << 10));
    w.commit("initial");
    let src = Source::new(w, dir.path().join("thirty.git"), "thirty");
    let start = Instant::now();
    let mut exps = vec![sync(&store, &cache, &src)];
    let mut commit_no = 1u64;
    let mut rewrites = 0;
    for i in 1..30u64 {
        if i.is_multiple_of(5) {
            // Force-push: drop the last two commits, write two different ones.
            src.work.git(&["reset", "-q", "--hard", "HEAD~2"]);
            rewrites += 1;
        }
        let n = if i.is_multiple_of(5) { 2 } else { 1 };
        for _ in 0..n {
            src.work.write("src/main.txt", text(41, 150, commit_no));
            src.work
                .write("data/blob.bin", random_bytes(1000 + commit_no, 16 << 10));
            src.work.commit(&format!("commit {commit_no}"));
            commit_no += 1;
        }
        src.publish();
        exps.push(sync(&store, &cache, &src));
    }
    let sync_secs = start.elapsed().as_secs_f64();
    assert_eq!(exps.len(), 30);
    let before = stats(&store);
    assert_eq!(num(&before, "snapshots"), 30);

    let t = Instant::now();
    let doc = rv_json(&store, &["forget", "--keep-last", "3", "--prune", "--json"]);
    let prune_secs = t.elapsed().as_secs_f64();
    let after = stats(&store);
    let report = &doc["prune"];
    eprintln!(
        "30 snapshots ({rewrites} force-push rewrites, {commit_no} commits; 30 syncs took {sync_secs:.1}s):\n  \
         stored_bytes before {} after {} ({:.1}% freed)\n  objects {} -> {}, packs {} -> {}\n  \
         `forget --keep-last 3 --prune` took {prune_secs:.3}s\n  prune report: {report}",
        num(&before, "stored_bytes"),
        num(&after, "stored_bytes"),
        100.0 * (1.0 - num(&after, "stored_bytes") as f64 / num(&before, "stored_bytes") as f64),
        num(&before, "objects"),
        num(&after, "objects"),
        num(&before, "packs"),
        num(&after, "packs"),
    );
    assert_eq!(doc["removed"], 27);
    assert!(num(&after, "stored_bytes") < num(&before, "stored_bytes"));
    let last3: Vec<&SnapExp> = exps[27..].iter().collect();
    assert_eq!(
        num(&after, "objects") as usize,
        union(last3.iter().copied()).len()
    );
    assert_eq!(pack_files(&store), index_packs(&store));
    assert_all_restore(&store, &last3);
    assert_eq!(verify_clean(&store), Vec::<String>::new());
}

// ===========================================================================
// Sync after prune
// ===========================================================================

#[test]
fn a_pruned_branch_can_come_back() {
    let dir = TempDir::new().unwrap();
    let store = dir.path().join("store");
    let cache = dir.path().join("cache");
    rv_ok(&store, &["init"]);
    let w = TestRepo::new();
    for i in 0..3u64 {
        w.write("src/main.txt", text(51, 60, i));
        w.commit(&format!("main {i}"));
    }
    w.git(&["checkout", "-q", "-b", "feature"]);
    w.write("feature.bin", random_bytes(0xFEED, 20 << 10));
    w.commit("feature");
    w.checkout("main");
    let src = Source::new(w, dir.path().join("back.git"), "back");
    sync(&store, &cache, &src);
    // The branch is deleted on the server, and the backup forgets it.
    git(&src.bare, &["update-ref", "-d", "refs/heads/feature"]);
    sync(&store, &cache, &src);
    rv_ok(&store, &["forget", "--keep-last", "1", "--prune"]);
    // Someone pushes the branch back.
    src.work
        .git(&["push", "-q", path_str(&src.bare), "feature"]);
    let exp = sync(&store, &cache, &src);
    let scratch = TempDir::new().unwrap();
    assert_restores(&store, &exp, scratch.path());
    assert_eq!(verify_clean(&store), Vec::<String>::new());
}
