//! Reading the providers' JSON records: field access, the selected fields
//! kept as a repository's record, and [`BadRecord`], why a record could not
//! become a [`DiscoveredRepo`](super::DiscoveredRepo).

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

/// The numeric `id`, the full name (field `name_field`) and the http(s)
/// clone URL (field `url_field`, credentials removed) of a GitLab or GitHub
/// record.
pub(super) fn id_name_url<'a>(
    v: &'a serde_json::Value,
    name_field: &'static str,
    url_field: &'static str,
) -> Result<(u64, &'a str, String), BadRecord> {
    let id = v
        .get("id")
        .and_then(|x| x.as_u64())
        .ok_or(BadRecord::NoId { what: "numeric id" })?;
    let name = str_field(v, name_field).ok_or_else(|| BadRecord::Missing {
        record: id.to_string(),
        field: name_field,
    })?;
    let url = str_field(v, url_field)
        .and_then(super::urls::clean_clone_url)
        .ok_or_else(|| BadRecord::CloneUrl {
            record: name.to_owned(),
            field: url_field,
        })?;
    Ok((id, name, url))
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
    fn ids_names_and_urls() {
        let v =
            serde_json::json!({"id": 7, "full_name": "a/b", "clone_url": "https://u:p@h/a/b.git"});
        assert_eq!(
            id_name_url(&v, "full_name", "clone_url"),
            Ok((7, "a/b", "https://h/a/b.git".to_owned()))
        );
        let v = serde_json::json!({"id": "7", "full_name": "a/b"});
        assert_eq!(
            id_name_url(&v, "full_name", "clone_url").map(|_| ()),
            Err(BadRecord::NoId { what: "numeric id" })
        );
        let v = serde_json::json!({"id": 7, "clone_url": "https://h/a/b.git"});
        let e = id_name_url(&v, "full_name", "clone_url").expect_err("no name");
        assert_eq!(e.to_string(), "7: no full_name");
        let v = serde_json::json!({"id": 7, "full_name": "a/b", "clone_url": "git@h:a/b.git"});
        let e = id_name_url(&v, "full_name", "clone_url").expect_err("ssh");
        assert_eq!(e.to_string(), "a/b: no http(s) clone_url");
    }

    #[test]
    fn branches() {
        assert_eq!(short_branch("refs/heads/main"), "main");
        assert_eq!(short_branch("main"), "main");
    }
}
