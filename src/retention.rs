//! Retention policies: which snapshots `forget` keeps, with restic's semantics.
//!
//! Snapshots are considered newest first. Each rule (`last`, `hourly`,
//! `daily`, `weekly`, `monthly`, `yearly`) keeps a snapshot when it is the
//! newest one of a period (an hour, a day, an ISO week, ...) that the rule has
//! not kept yet, until the rule has kept its count (-1: no limit). `within`
//! keeps every snapshot taken less than a duration before the newest one. A
//! snapshot kept by several rules is kept once, with every reason. Periods
//! are computed in UTC.

use jiff::civil::DateTime;
use jiff::Timestamp;

/// A retention policy. Counts of 0 disable a rule; -1 means unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Policy {
    /// Keep the newest N snapshots.
    pub keep_last: i32,
    /// Keep the newest snapshot of each of the last N hours that have one.
    pub keep_hourly: i32,
    /// ... days.
    pub keep_daily: i32,
    /// ... ISO weeks.
    pub keep_weekly: i32,
    /// ... months.
    pub keep_monthly: i32,
    /// ... years.
    pub keep_yearly: i32,
    /// Keep every snapshot taken within this duration of the newest one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_within: Option<Within>,
}

/// A calendar duration for `keep_within`: years, months, days, hours (`1y2m3d4h`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Within {
    /// Years.
    pub years: i32,
    /// Months.
    pub months: i32,
    /// Days.
    pub days: i32,
    /// Hours.
    pub hours: i32,
}

impl std::str::FromStr for Within {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!("duration {s:?}: write it as numbers with units y, m, d, h (for example 1y6m, 14d, 36h)")
        };
        let mut w = Within::default();
        let mut num = String::new();
        let mut any = false;
        for c in s.trim().chars() {
            if c.is_ascii_digit() {
                num.push(c);
                continue;
            }
            let n: i32 = num.parse().map_err(|_| bad())?;
            num.clear();
            match c {
                'y' => w.years += n,
                'm' => w.months += n,
                'd' => w.days += n,
                'h' => w.hours += n,
                _ => return Err(bad()),
            }
            any = true;
        }
        if !num.is_empty() || !any {
            return Err(bad());
        }
        Ok(w)
    }
}

impl TryFrom<String> for Within {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<Within> for String {
    fn from(w: Within) -> String {
        w.to_string()
    }
}

impl std::fmt::Display for Within {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (n, u) in [
            (self.years, 'y'),
            (self.months, 'm'),
            (self.days, 'd'),
            (self.hours, 'h'),
        ] {
            if n != 0 {
                write!(f, "{n}{u}")?;
            }
        }
        Ok(())
    }
}

impl Policy {
    /// True when no rule is set (forget would remove everything but the newest).
    pub fn is_empty(&self) -> bool {
        self.keep_last == 0
            && self.keep_hourly == 0
            && self.keep_daily == 0
            && self.keep_weekly == 0
            && self.keep_monthly == 0
            && self.keep_yearly == 0
            && self.keep_within.is_none()
    }
}

/// What the policy decided for one snapshot.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Decision {
    /// Index into the input slice.
    #[serde(skip)]
    pub index: usize,
    /// Kept or not.
    pub keep: bool,
    /// The rules that keep it (`last`, `hourly`, `daily`, `weekly`, `monthly`, `yearly`, `within`, `newest`).
    pub reasons: Vec<String>,
}

fn bucket(rule: usize, t: &DateTime) -> i64 {
    let (y, m, d, h) = (
        i64::from(t.year()),
        i64::from(t.month()),
        i64::from(t.day()),
        i64::from(t.hour()),
    );
    match rule {
        1 => ((y * 100 + m) * 100 + d) * 100 + h,
        2 => (y * 100 + m) * 100 + d,
        3 => {
            let w = t.date().iso_week_date();
            i64::from(w.year()) * 100 + i64::from(w.week())
        }
        4 => y * 100 + m,
        5 => y,
        _ => unreachable!("rule index"),
    }
}

/// Applies `policy` to the snapshot times of one repository (any order).
/// Returns one decision per input, in input order.
pub fn apply(policy: &Policy, times: &[Timestamp]) -> Vec<Decision> {
    let mut order: Vec<usize> = (0..times.len()).collect();
    order.sort_by(|a, b| times[*b].cmp(&times[*a]).then(b.cmp(a)));
    let mut out: Vec<Decision> = (0..times.len())
        .map(|i| Decision {
            index: i,
            keep: false,
            reasons: Vec::new(),
        })
        .collect();
    let names = ["last", "hourly", "daily", "weekly", "monthly", "yearly"];
    let mut counts = [
        policy.keep_last,
        policy.keep_hourly,
        policy.keep_daily,
        policy.keep_weekly,
        policy.keep_monthly,
        policy.keep_yearly,
    ];
    let mut last_bucket: [Option<i64>; 6] = [None; 6];
    let cutoff = policy.keep_within.and_then(|w| {
        let newest = order.first().map(|i| times[*i])?;
        let span = jiff::Span::new()
            .years(w.years)
            .months(w.months)
            .days(w.days)
            .hours(w.hours);
        newest
            .to_zoned(jiff::tz::TimeZone::UTC)
            .checked_sub(span)
            .ok()
            .map(|z| z.timestamp())
    });
    for (pos, &i) in order.iter().enumerate() {
        let dt = times[i].to_zoned(jiff::tz::TimeZone::UTC).datetime();
        for r in 0..6 {
            if counts[r] == 0 {
                continue;
            }
            let b = if r == 0 { pos as i64 } else { bucket(r, &dt) };
            if last_bucket[r] != Some(b) {
                last_bucket[r] = Some(b);
                out[i].keep = true;
                out[i].reasons.push(names[r].into());
                if counts[r] > 0 {
                    counts[r] -= 1;
                }
            }
        }
        if let Some(c) = cutoff {
            if times[i] > c {
                out[i].keep = true;
                out[i].reasons.push("within".into());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn within_parses_and_prints() {
        let w: Within = "1y2m3d4h".parse().unwrap();
        assert_eq!((w.years, w.months, w.days, w.hours), (1, 2, 3, 4));
        assert_eq!(w.to_string(), "1y2m3d4h");
        assert!("3x".parse::<Within>().is_err());
        assert!("12".parse::<Within>().is_err());
        assert!("".parse::<Within>().is_err());
    }

    #[test]
    fn keep_last_keeps_the_newest() {
        let times = [
            ts("2026-01-01T00:00:00Z"),
            ts("2026-01-03T00:00:00Z"),
            ts("2026-01-02T00:00:00Z"),
        ];
        let d = apply(
            &Policy {
                keep_last: 2,
                ..Default::default()
            },
            &times,
        );
        assert_eq!(
            d.iter().map(|d| d.keep).collect::<Vec<_>>(),
            [false, true, true]
        );
    }

    #[test]
    fn daily_keeps_the_newest_of_each_day() {
        let times = [
            ts("2026-01-01T08:00:00Z"),
            ts("2026-01-01T20:00:00Z"),
            ts("2026-01-02T08:00:00Z"),
            ts("2026-01-02T09:00:00Z"),
        ];
        let d = apply(
            &Policy {
                keep_daily: 5,
                ..Default::default()
            },
            &times,
        );
        assert_eq!(
            d.iter().map(|d| d.keep).collect::<Vec<_>>(),
            [false, true, false, true]
        );
        assert_eq!(d[3].reasons, ["daily"]);
    }
}
