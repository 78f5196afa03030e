//! Reading the providers' JSON records: field access, the selected fields
//! kept as a repository's record, and [`BadRecord`], why a record could not
//! become a [`DiscoveredRepo`](super::DiscoveredRepo).

use super::{git_user, DiscoveredRepo, Provider};

/// Why one record of a listing was skipped (the listing is then incomplete).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(super) enum BadRecord {
    /// The record has no usable id.
    #[error("no {what}")]
    NoId {
        /// The id field as the message names it (`id`, `numeric id`).
        what: &'static str,
    },
    /// A field the repository needs is missing.
    #[error("{record}: no {field}")]
    Missing {
        /// The record (its id or name).
        record: String,
        /// The missing field.
        field: &'static str,
    },
    /// The clone URL is not an http(s) URL.
    #[error("{record}: no http(s) {field}")]
    CloneUrl {
        /// The record (its name).
        record: String,
        /// The clone URL's field.
        field: &'static str,
    },
}

/// `refs/heads/main` → `main`; other values unchanged.
pub(super) fn short_branch(s: &str) -> String {
    s.strip_prefix("refs/heads/").unwrap_or(s).to_owned()
}

/// Copies the listed fields of `v` (those present) into a new object.
/// A field `a.b` copies only `b` of the object `a`.
pub(super) fn pick(v: &serde_json::Value, fields: &[&str]) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for f in fields {
        match f.split_once('.') {
            None => {
                if let Some(x) = v.get(*f) {
                    out.insert((*f).to_owned(), x.clone());
                }
            }
            Some((outer, inner)) => {
                let Some(src) = v.get(outer) else { continue };
                if src.is_null() {
                    out.insert(outer.to_owned(), serde_json::Value::Null);
                    continue;
                }
                let Some(x) = src.get(inner) else { continue };
                let entry = out
                    .entry(outer.to_owned())
                    .or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()));
                if let Some(obj) = entry.as_object_mut() {
                    obj.insert(inner.to_owned(), x.clone());
                }
            }
        }
    }
    serde_json::Value::Object(out)
}

/// What identifies a GitLab project or GitHub repository record: its
/// numeric `id`, its full name and its http(s) clone URL.
pub(super) struct HostedRecord<'a> {
    /// The record.
    pub(super) v: &'a serde_json::Value,
    /// The numeric id.
    pub(super) id: u64,
    /// The full name (`acme/platform/api`).
    pub(super) full: &'a str,
    /// The clone URL, credentials removed.
    pub(super) clone_url: String,
}

impl<'a> HostedRecord<'a> {
    /// Reads the `id`, the full name (field `name_field`) and the clone URL
    /// (field `url_field`).
    pub(super) fn parse(
        v: &'a serde_json::Value,
        name_field: &'static str,
        url_field: &'static str,
    ) -> Result<Self, BadRecord> {
        let id = v
            .get("id")
            .and_then(|x| x.as_u64())
            .ok_or(BadRecord::NoId { what: "numeric id" })?;
        let full = str_field(v, name_field).ok_or_else(|| BadRecord::Missing {
            record: id.to_string(),
            field: name_field,
        })?;
        let clone_url = str_field(v, url_field)
            .and_then(super::urls::clean_clone_url)
            .ok_or_else(|| BadRecord::CloneUrl {
                record: full.to_owned(),
                field: url_field,
            })?;
        Ok(Self {
            v,
            id,
            full,
            clone_url,
        })
    }

    /// The repository at `web` (`host[:port][/path]`) with the fields GitLab
    /// and GitHub records share: key `<provider>:<host>:<id>`, name
    /// `<web>/<full name>`, `default_branch`, `archived`, the `fields` kept as
    /// its record. Not disabled, empty or a fork: the caller sets those.
    pub(super) fn repo(
        self,
        provider: Provider,
        web: &str,
        path: String,
        fields: &[&str],
    ) -> DiscoveredRepo {
        let host = web.split('/').next().unwrap_or(web).to_ascii_lowercase();
        DiscoveredRepo {
            provider,
            key: format!("{provider}:{host}:{}", self.id),
            name: format!("{web}/{}", self.full),
            path,
            clone_url: self.clone_url,
            default_branch: str_field(self.v, "default_branch").map(str::to_owned),
            disabled: false,
            archived: bool_field(self.v, "archived"),
            empty: false,
            is_fork: false,
            record: pick(self.v, fields),
            git_user: git_user(provider).to_owned(),
        }
    }
}

/// A string field.
pub(super) fn str_field<'a>(v: &'a serde_json::Value, f: &str) -> Option<&'a str> {
    v.get(f).and_then(|x| x.as_str())
}

/// A boolean field; absent or null is false.
pub(super) fn bool_field(v: &serde_json::Value, f: &str) -> bool {
    v.get(f).and_then(|x| x.as_bool()).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pick_fields() {
        let v = serde_json::json!({"id": 1, "x": 2, "project": {"id": "p", "name": "n", "url": "u"}, "parent": null});
        let p = pick(
            &v,
            &["id", "project.id", "project.name", "parent.id", "missing"],
        );
        assert_eq!(
            p,
            serde_json::json!({"id": 1, "project": {"id": "p", "name": "n"}, "parent": null})
        );
    }

    #[test]
    fn hosted_records() {
        let parse = |v| HostedRecord::parse(v, "full_name", "clone_url").map(|r| r.full);
        let v = serde_json::json!({"id": "7", "full_name": "a/b"});
        assert_eq!(
            parse(&v).err(),
            Some(BadRecord::NoId { what: "numeric id" })
        );
        let v = serde_json::json!({"id": 7, "clone_url": "https://h/a/b.git"});
        let e = parse(&v).expect_err("no name");
        assert_eq!(e.to_string(), "7: no full_name");
        let v = serde_json::json!({"id": 7, "full_name": "a/b", "clone_url": "git@h:a/b.git"});
        let e = parse(&v).expect_err("ssh");
        assert_eq!(e.to_string(), "a/b: no http(s) clone_url");

        let v = serde_json::json!({"id": 7, "full_name": "a/b", "clone_url": "https://u:p@H/a/b.git",
            "default_branch": "trunk", "archived": true, "secret": "x"});
        let r = HostedRecord::parse(&v, "full_name", "clone_url").expect("record");
        let r = r.repo(
            Provider::GitHub,
            "H:8080/ghe",
            "b".into(),
            &["id", "archived"],
        );
        assert_eq!(r.key, "github:h:8080:7");
        assert_eq!(r.name, "H:8080/ghe/a/b");
        assert_eq!(r.clone_url, "https://h/a/b.git");
        assert_eq!(r.default_branch.as_deref(), Some("trunk"));
        assert!(r.archived && !r.disabled && !r.empty && !r.is_fork);
        assert_eq!(r.record, serde_json::json!({"id": 7, "archived": true}));
        assert_eq!(r.git_user, "x-access-token");
    }

    #[test]
    fn branches() {
        assert_eq!(short_branch("refs/heads/main"), "main");
        assert_eq!(short_branch("main"), "main");
    }
}
