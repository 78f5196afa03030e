//! Times in JSON output: one format everywhere, RFC 3339 in UTC
//! (`2026-12-02T21:09:21.123456Z`), the format `jiff::Timestamp` prints.
//!
//! The index keeps some times as Unix seconds or microseconds; these
//! serializers turn them into RFC 3339 strings at the edge (`serialize_with`).

use serde::Serializer;

/// RFC 3339 text (UTC, `Z`) of a timestamp.
pub fn rfc3339(t: jiff::Timestamp) -> String {
    t.to_string()
}

fn from_seconds(secs: i64) -> Option<String> {
    jiff::Timestamp::from_second(secs).ok().map(rfc3339)
}

fn from_micros(micros: i64) -> Option<String> {
    jiff::Timestamp::from_microsecond(micros).ok().map(rfc3339)
}

/// Serializes Unix seconds as RFC 3339 (`null` when out of range).
pub fn seconds<S: Serializer>(secs: &i64, s: S) -> Result<S::Ok, S::Error> {
    match from_seconds(*secs) {
        Some(t) => s.serialize_str(&t),
        None => s.serialize_none(),
    }
}

/// Serializes optional Unix seconds as RFC 3339 or `null`.
pub fn opt_seconds<S: Serializer>(secs: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
    match secs.and_then(from_seconds) {
        Some(t) => s.serialize_str(&t),
        None => s.serialize_none(),
    }
}

/// Serializes optional Unix microseconds as RFC 3339 or `null`.
pub fn opt_micros<S: Serializer>(micros: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
    match micros.and_then(from_micros) {
        Some(t) => s.serialize_str(&t),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn unix_times_print_as_rfc3339_utc() {
        assert_eq!(
            super::from_seconds(1_700_000_000).as_deref(),
            Some("2023-11-14T22:13:20Z")
        );
        assert_eq!(
            super::from_micros(1_700_000_000_000_001).as_deref(),
            Some("2023-11-14T22:13:20.000001Z")
        );
    }
}
