//! The hosts a source's token may be sent to for git.
//!
//! A listing names each repository's clone URL, and a hostile or confused
//! server could name any host there. The token goes only to the hosts the
//! source is configured for: the API host, the provider's git host for it
//! (`github.com` for `api.github.com`; `<org>.visualstudio.com`, Azure
//! DevOps's legacy host, for an organisation on `dev.azure.com`), and the
//! `git_hosts` the configuration adds. A host is compared with its port:
//! `127.0.0.1:8080` and `127.0.0.1:9090` are different hosts, and a host
//! given without a port means the scheme's default port.

use super::{Provider, ProviderSource, Scope};
use url::Url;

/// A `git_hosts` entry that is not `host` or `host:port`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("git_hosts entry {entry:?} is not `host` or `host:port`")]
pub struct BadGitHost {
    /// The entry as configured.
    pub entry: String,
}

/// The hosts a source's credentials may go to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialHosts {
    /// Lower-case host and explicit port (`None`: the scheme's default port).
    hosts: Vec<(String, Option<u16>)>,
}

impl CredentialHosts {
    /// The hosts of `src`: derived from its API base URL, plus
    /// [`ProviderSource::git_hosts`].
    ///
    /// # Errors
    /// [`BadGitHost`]: a `git_hosts` entry that is not `host` or
    /// `host:port` (the message names it).
    pub fn for_source(src: &ProviderSource) -> Result<Self, BadGitHost> {
        let mut hosts = Vec::new();
        if let Ok(base) = Url::parse(src.base_url.trim()) {
            if let Some(h) = base.host_str() {
                let h = h.to_ascii_lowercase();
                hosts.push((h.clone(), base.port()));
                match (src.provider, &src.scope) {
                    (Provider::AzureDevOps, Scope::Org(o) | Scope::Group(o))
                        if h == "dev.azure.com" && !o.trim().is_empty() =>
                    {
                        let org = o.trim().trim_matches('/').to_ascii_lowercase();
                        hosts.push((format!("{org}.visualstudio.com"), None));
                    }
                    (Provider::GitHub, _) if h == "api.github.com" => {
                        hosts.push(("github.com".to_owned(), None));
                    }
                    _ => {}
                }
            }
        }
        for entry in &src.git_hosts {
            hosts.push(parse_host(entry)?);
        }
        hosts.dedup();
        Ok(Self { hosts })
    }

    /// Whether credentials may be sent to `url` (http or https only).
    pub fn allows(&self, url: &str) -> bool {
        let Ok(u) = Url::parse(url) else {
            return false;
        };
        if u.scheme() != "https" && u.scheme() != "http" {
            return false;
        }
        let Some(host) = u.host_str().map(str::to_ascii_lowercase) else {
            return false;
        };
        self.hosts.iter().any(|(h, port)| {
            *h == host
                && match port {
                    // `url` drops a port equal to the scheme's default.
                    None => u.port().is_none(),
                    Some(p) => u.port_or_known_default() == Some(*p),
                }
        })
    }

    /// The hosts as `host[:port]`, comma-separated, for messages.
    pub fn describe(&self) -> String {
        self.hosts
            .iter()
            .map(|(h, p)| match p {
                Some(p) => format!("{h}:{p}"),
                None => h.clone(),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// `host[:port]` of `url` as a message shows it (`?` when there is none).
pub fn host_of(url: &str) -> String {
    match Url::parse(url) {
        Ok(u) => {
            let h = u.host_str().unwrap_or("?").to_ascii_lowercase();
            match u.port() {
                Some(p) => format!("{h}:{p}"),
                None => h,
            }
        }
        Err(_) => "?".to_owned(),
    }
}

/// Parses a `git_hosts` entry: `host` or `host:port` (`[v6]:port`).
fn parse_host(entry: &str) -> Result<(String, Option<u16>), BadGitHost> {
    let e = entry.trim();
    let bad = || BadGitHost {
        entry: entry.to_owned(),
    };
    if e.is_empty() || e.contains("://") || e.contains('/') || e.contains('@') {
        return Err(bad());
    }
    // A scheme without a default port keeps every port as given.
    let u = Url::parse(&format!("repovault-host://{e}")).map_err(|_| bad())?;
    let host = u.host_str().filter(|h| !h.is_empty()).ok_or_else(bad)?;
    Ok((host.to_ascii_lowercase(), u.port()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(p: Provider, base: &str, org: &str, extra: &[&str]) -> CredentialHosts {
        let mut s = ProviderSource::new(p, base, Scope::Org(org.into()));
        s.git_hosts = extra.iter().map(|s| s.to_string()).collect();
        CredentialHosts::for_source(&s).expect("hosts")
    }

    #[test]
    fn derived_and_configured_hosts() {
        let h = src(
            Provider::AzureDevOps,
            "https://dev.azure.com",
            "Fabrikam",
            &[],
        );
        assert!(h.allows("https://dev.azure.com/fabrikam/P/_git/R"));
        assert!(h.allows("https://fabrikam.visualstudio.com/P/_git/R"));
        assert!(!h.allows("https://other.visualstudio.com/P/_git/R"));
        assert!(!h.allows("https://dev.azure.com:8443/fabrikam/P/_git/R"));
        assert!(!h.allows("ssh://dev.azure.com/x"));

        let h = src(Provider::GitHub, "https://api.github.com", "acme", &[]);
        assert!(h.allows("https://github.com/acme/x.git"));
        assert!(!h.allows("https://gitlab.com/acme/x.git"));

        let h = src(
            Provider::GitLab,
            "http://127.0.0.1:4000",
            "g",
            &["127.0.0.1:5000", "Git.Example.com"],
        );
        assert!(h.allows("http://127.0.0.1:4000/g/x.git"));
        assert!(h.allows("http://127.0.0.1:5000/g/x.git"));
        assert!(
            !h.allows("http://127.0.0.1:6000/g/x.git"),
            "the port counts"
        );
        assert!(!h.allows("http://127.0.0.2:5000/g/x.git"));
        assert!(h.allows("https://git.example.com/g/x.git"));
        assert!(!h.allows("https://git.example.com:8443/g/x.git"));
        assert_eq!(
            h.describe(),
            "127.0.0.1:4000, 127.0.0.1:5000, git.example.com"
        );
        assert_eq!(host_of("http://127.0.0.2:5000/x"), "127.0.0.2:5000");
    }

    #[test]
    fn bad_entries_are_named() {
        let mut s = ProviderSource::new(Provider::GitLab, "https://h", Scope::Group("g".into()));
        for bad in ["https://h", "h/x", "", "u@h", "h:notaport"] {
            s.git_hosts = vec![bad.into()];
            let e = CredentialHosts::for_source(&s).expect_err(bad);
            assert!(e.to_string().contains("git_hosts"), "{e}");
            assert_eq!(e.entry, bad);
        }
    }
}
