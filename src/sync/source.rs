//! A repository to back up, and its name in the store: parsing what the user
//! gave (`--repo`, a config source), deriving `host[:port]/path` names, and
//! matching a source with the repositories the store already has (names
//! given before ports were part of names, `--repo` lookups by URL or name).
//! Credentials never reach a name or an error message ([`redact`]).

use super::Error;
use crate::index;
use crate::secret::Auth;
use std::path::{Path, PathBuf};

/// A repository to back up.
#[derive(Debug, Clone)]
pub struct Source {
    /// The URL or absolute path, without credentials.
    pub url: String,
    /// Its name in the store (`host/path`).
    pub name: String,
    /// Credentials for https.
    pub auth: Option<Auth>,
}

impl Source {
    /// Parses a source given on the command line: a URL (https, http, ssh,
    /// git, file, scp-like) or a local path. `name` overrides the derived name.
    ///
    /// # Errors
    /// [`Error::BadSource`] for a URL with an embedded password, an unparsable URL, or
    /// a local path that does not exist.
    pub fn parse(spec: &str, name: Option<&str>, auth: Option<Auth>) -> Result<Self, Error> {
        let bad = |reason: &str| Error::BadSource {
            spec: redact(spec),
            reason: reason.to_owned(),
        };
        let looks_local = !spec.contains("://") && !is_scp_like(spec);
        let (url, derived) = if looks_local {
            let p = Path::new(spec);
            let abs = std::fs::canonicalize(p)
                .map_err(|_| bad("no such local repository: give an existing path or a URL"))?;
            let s = abs
                .to_str()
                .ok_or_else(|| bad("the path is not valid UTF-8"))?
                .to_owned();
            let derived = clean_name(s.trim_start_matches('/'));
            (s, derived)
        } else {
            let u = gix::url::parse(gix::bstr::BStr::new(spec.as_bytes()))
                .map_err(|e| bad(&format!("not a git URL: {e}")))?;
            if u.password().is_some() {
                return Err(bad("the URL contains a password or token: remove it and pass the token with --token-env VAR"));
            }
            (spec.to_owned(), url_name(&u, true))
        };
        let name = match name {
            Some(n) if n.trim().is_empty() => return Err(bad("--name is empty")),
            Some(n) => n.trim_matches('/').to_owned(),
            None => derived,
        };
        if name.is_empty() {
            return Err(bad("cannot derive a name: pass --name NAME"));
        }
        Ok(Self { url, name, auth })
    }

    /// The mirror's directory in the cache.
    pub fn mirror_dir(&self, cache: &Path) -> PathBuf {
        let safe: String = self
            .name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '/') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let safe = safe
            .split('/')
            .filter(|s| !s.is_empty() && *s != "." && *s != "..")
            .collect::<Vec<_>>()
            .join("/");
        cache.join(format!("{safe}.git"))
    }
}

/// The name a URL gets: host, the port when it is not the scheme's default
/// (`git://h:9418/x` and `git://h/x` are one repository, `git://h:40471/x` is
/// another), and the path without a trailing `/` or `.git`. The scheme and the
/// user are not part of it: `https://h/x` and `git@h:x` are one repository.
/// Without `with_port`: the name repovault gave before ports were part of it.
fn url_name(u: &gix::Url, with_port: bool) -> String {
    let path = u.path.to_string();
    let path = path.trim_start_matches('/');
    match u.host() {
        Some(h) => {
            let host = if h.contains(':') && !h.starts_with('[') {
                format!("[{h}]")
            } else {
                h.to_owned()
            };
            match u
                .port
                .filter(|p| with_port && Some(*p) != u.scheme.default_port())
            {
                Some(port) => clean_name(&format!("{host}:{port}/{path}")),
                None => clean_name(&format!("{host}/{path}")),
            }
        }
        None => clean_name(path),
    }
}

/// The identity of a recorded source (a URL, or the canonical path of a local
/// repository, as the `repos` table keeps it): the name it gets, and the name
/// older repovault versions gave it (without the port).
fn names_of(url: &str) -> Option<(String, String)> {
    if !url.contains("://") && !is_scp_like(url) {
        let n = clean_name(url.trim_start_matches('/'));
        return Some((n.clone(), n));
    }
    let u = gix::url::parse(gix::bstr::BStr::new(url.as_bytes())).ok()?;
    Some((url_name(&u, true), url_name(&u, false)))
}

/// The name under which `source` (named from its URL, not by `--name`) is
/// already in the store, when it differs from its derived name: a repository
/// backed up before ports were part of names keeps its old name
/// (`127.0.0.1/rg` for `git://127.0.0.1:40471/rg.git`) when its recorded URL
/// is the same repository.
///
/// # Errors
/// [`Error::BadSource`] when the store's repository of that name was synced
/// from a different repository (another port of the same host, say): syncing
/// into it would look like every ref being deleted and replaced.
pub fn existing_name(repos: &[index::RepoRow], source: &Source) -> Result<Option<String>, Error> {
    let Some((name, legacy)) = names_of(&source.url) else {
        return Ok(None);
    };
    if source.name != name {
        return Ok(None);
    }
    if let Some(row) = repos.iter().find(|r| r.name == name) {
        // Discovered repositories are matched by their provider's key, not by URL.
        let provider = row.key.as_deref().is_some_and(|k| !k.starts_with("git:"));
        return match names_of(&row.url) {
            Some((id, _)) if id != name && !provider => Err(Error::BadSource {
                spec: redact(&source.url),
                reason: format!(
                    "the store's repository {name} was synced from {}, a different repository: pass --name NAME to back this one up under another name",
                    redact(&row.url)
                ),
            }),
            _ => Ok(None),
        };
    }
    if legacy == name {
        return Ok(None);
    }
    Ok(repos
        .iter()
        .find(|r| r.name == legacy && names_of(&r.url).is_some_and(|(id, _)| id == name))
        .map(|r| r.name.clone()))
}

/// The repositories a path or URL given to `--repo` was synced as: the one
/// whose recorded URL is exactly it, else those whose URL is the same
/// repository (same name under the naming rule), else the one named after it.
pub fn repos_synced_from<'a>(repos: &'a [index::RepoRow], spec: &str) -> Vec<&'a index::RepoRow> {
    let Ok(src) = Source::parse(spec, None, None) else {
        return Vec::new();
    };
    let exact: Vec<_> = repos.iter().filter(|r| r.url == src.url).collect();
    if !exact.is_empty() {
        return exact;
    }
    let same: Vec<_> = repos
        .iter()
        .filter(|r| names_of(&r.url).is_some_and(|(id, _)| id == src.name))
        .collect();
    if !same.is_empty() {
        return same;
    }
    repos.iter().filter(|r| r.name == src.name).collect()
}

fn is_scp_like(s: &str) -> bool {
    // user@host:path (but not a Windows drive or a plain path with a colon after a slash)
    match s.find(':') {
        Some(i) => !s[..i].contains('/') && s[..i].contains('@'),
        None => false,
    }
}

fn clean_name(s: &str) -> String {
    let s = s.trim_end_matches('/');
    s.strip_suffix(".git")
        .unwrap_or(s)
        .trim_end_matches('/')
        .to_owned()
}

fn redact(spec: &str) -> String {
    // Drop anything between "://" and "@" so a credential never reaches an error message.
    match (spec.find("://"), spec.find('@')) {
        (Some(a), Some(b)) if b > a => format!("{}***{}", &spec[..a + 3], &spec[b..]),
        _ => spec.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_host_and_path() {
        let s = Source::parse("https://dev.azure.com/org/proj/_git/repo", None, None).unwrap();
        assert_eq!(s.name, "dev.azure.com/org/proj/_git/repo");
        let s = Source::parse("git@github.com:acme/widget.git", None, None).unwrap();
        assert_eq!(s.name, "github.com/acme/widget");
        let s = Source::parse("git://127.0.0.1:9418/x.git", None, None).unwrap();
        assert_eq!(s.name, "127.0.0.1/x");
        let s = Source::parse("git://127.0.0.1:40471/x.git", None, None).unwrap();
        assert_eq!(s.name, "127.0.0.1:40471/x");
        let s = Source::parse("ssh://git@h:2222/a/x.git", None, None).unwrap();
        assert_eq!(s.name, "h:2222/a/x");
        let s = Source::parse("https://h:443/a/x", None, None).unwrap();
        assert_eq!(s.name, "h/a/x");
        let s = Source::parse("file:///srv/git/x.git", None, None).unwrap();
        assert_eq!(s.name, "srv/git/x");
        let s = Source::parse("https://h/x.git", Some("mine"), None).unwrap();
        assert_eq!(s.name, "mine");
    }

    #[test]
    fn passwords_in_urls_are_refused_and_never_echoed() {
        let e = Source::parse("https://user:s3cret@host/x.git", None, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("--token-env"), "{e}");
        assert!(!e.contains("s3cret"), "{e}");
    }

    #[test]
    fn mirror_dirs_stay_inside_the_cache() {
        let s = Source::parse("https://h/x.git", Some("../../etc/passwd"), None).unwrap();
        let d = s.mirror_dir(Path::new("/cache"));
        assert!(d.starts_with("/cache"), "{}", d.display());
        assert!(!d.to_string_lossy().contains(".."));
    }
}
