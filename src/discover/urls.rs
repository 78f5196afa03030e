//! URL handling of discovery: checking a configured base URL, building
//! request URLs, and removing credentials from every URL that is shown or
//! stored.

use super::{Ctx, Error};

/// Parses a base URL: http(s), no credentials, no query; trailing `/` dropped.
pub(super) fn parse_base(ctx: &Ctx, base: &str) -> Result<url::Url, Error> {
    let trimmed = base.trim().trim_end_matches('/');
    let u = url::Url::parse(trimmed).map_err(|e| {
        ctx.bad_source(format!(
            "base URL {:?} is not a URL: {e}",
            redact_str(trimmed)
        ))
    })?;
    if u.scheme() != "https" && u.scheme() != "http" {
        return Err(ctx.bad_source(format!("base URL {} must be http(s)", redact_url(&u))));
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err(ctx.bad_source(
            "the base URL contains a user name or password: remove it and configure the token separately",
        ));
    }
    if u.host_str().is_none() || u.cannot_be_a_base() {
        return Err(ctx.bad_source(format!("base URL {} has no host", redact_url(&u))));
    }
    if u.query().is_some() || u.fragment().is_some() {
        return Err(ctx.bad_source(format!(
            "base URL {} must not have a query or fragment",
            redact_url(&u)
        )));
    }
    Ok(u)
}

/// `host[:port]` and the path of a URL, without scheme or trailing `/`:
/// the prefix of repository names.
pub(super) fn host_and_path(u: &url::Url) -> String {
    let mut s = u.host_str().unwrap_or_default().to_ascii_lowercase();
    if let Some(p) = u.port() {
        s.push_str(&format!(":{p}"));
    }
    let path = u.path().trim_end_matches('/');
    if !path.is_empty() {
        s.push_str(path);
    }
    s
}

/// A URL appended with path segments (each percent-encoded, `/` included).
pub(super) fn join_segments(base: &url::Url, segments: &[&str]) -> url::Url {
    let mut u = base.clone();
    if let Ok(mut segs) = u.path_segments_mut() {
        segs.pop_if_empty();
        segs.extend(segments);
    }
    u
}

/// The URL as text without user name, password or fragment.
pub(super) fn redact_url(u: &url::Url) -> String {
    let mut u = u.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.set_fragment(None);
    u.to_string()
}

fn redact_str(s: &str) -> String {
    match (s.find("://"), s.rfind('@')) {
        (Some(a), Some(b)) if b > a => format!("{}***{}", &s[..a + 3], &s[b..]),
        _ => s.to_owned(),
    }
}

/// A clone URL from the API with any user info removed; `None` unless http(s).
pub(super) fn clean_clone_url(s: &str) -> Option<String> {
    let u = url::Url::parse(s).ok()?;
    if u.scheme() != "https" && u.scheme() != "http" {
        return None;
    }
    Some(redact_url(&u))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discover::tests::{src, url};

    #[test]
    fn urls() {
        assert_eq!(
            clean_clone_url("https://fabrikam@dev.azure.com/fabrikam/P%20Q/_git/R").as_deref(),
            Some("https://dev.azure.com/fabrikam/P%20Q/_git/R")
        );
        assert_eq!(
            clean_clone_url("https://u:p@gitlab.example.com/a/b.git").as_deref(),
            Some("https://gitlab.example.com/a/b.git")
        );
        assert_eq!(clean_clone_url("git@github.com:a/b.git"), None);
        let u = url("http://127.0.0.1:8080/tfs/Coll/");
        assert_eq!(host_and_path(&u), "127.0.0.1:8080/tfs/Coll");
        let u = url("https://gitlab.example.com/api/v4");
        let j = join_segments(&u, &["groups", "acme/platform", "projects"]);
        assert_eq!(
            j.as_str(),
            "https://gitlab.example.com/api/v4/groups/acme%2Fplatform/projects"
        );
    }

    #[test]
    fn base_url_checks() {
        let s = src(&[], &[]);
        let ctx = Ctx::new(&s);
        assert!(parse_base(&ctx, "https://dev.azure.com/").is_ok());
        let e = parse_base(&ctx, "https://user:hunter2secret@host/x").expect_err("password");
        assert!(!e.to_string().contains("hunter2secret"));
        assert!(parse_base(&ctx, "ftp://host").is_err());
        assert!(parse_base(&ctx, "not a url").is_err());
    }
}
