//! The TOML configuration of a nightly run (`repovault sync --config FILE`).
//!
//! ```toml
//! store = "/var/backups/repovault"   # --store and REPOVAULT_STORE override it
//! cache = "/var/cache/repovault"     # optional: the mirror cache
//! jobs = 4                           # optional
//! discovery_timeout = 1800           # optional: seconds per source's listing
//!
//! [[sources]]
//! kind = "azure-devops"
//! organization = "fabrikam"
//! url = "https://dev.azure.com"      # optional; Azure DevOps Server: https://host/tfs/Collection
//! token_env = "AZDO_PAT"             # or token_file = "/etc/repovault/azdo.pat"
//! include = ["*"]                    # optional globs on "<project>/<repo>"; exclude = [...]
//! git_hosts = ["git.example.com"]    # optional: more hosts the token may go to for git
//!
//! [retention]
//! keep_daily = 7
//! ```
//!
//! Tokens are never in the file: a source names an environment variable
//! (`token_env`) or a file (`token_file`, which must not be readable by group
//! or others). Unknown keys are errors that name the key and its line.

use crate::discover::{Provider, ProviderSource, Scope, TokenKind};
use crate::retention::Policy;
use crate::sync::{Auth, Secret};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Errors loading a configuration.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file cannot be read.
    #[error("config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not valid.
    #[error("config {path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the line when known.
        message: String,
    },
    /// A source's token cannot be had.
    #[error("config {path}, source {source_label}: {message}")]
    Token {
        /// The file.
        path: PathBuf,
        /// The source.
        source_label: String,
        /// What is wrong and how to fix it.
        message: String,
    },
}

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The store directory.
    pub store: Option<PathBuf>,
    /// The mirror cache directory.
    pub cache: Option<PathBuf>,
    /// Repositories synced at once.
    pub jobs: Option<usize>,
    /// Seconds the discovery of one source may take in all (pages, retries
    /// and rate-limit waits included; default [`DEFAULT_DISCOVERY_TIMEOUT`]).
    pub discovery_timeout: Option<u64>,
    /// What to back up.
    #[serde(default)]
    pub sources: Vec<SourceConfig>,
    /// Used by `forget --config`.
    pub retention: Option<Policy>,
}

/// The default of `discovery_timeout`: 30 minutes per source.
pub const DEFAULT_DISCOVERY_TIMEOUT: u64 = 30 * 60;

/// Where a token comes from.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRef {
    /// An environment variable holding the token.
    pub token_env: Option<String>,
    /// A file holding the token (mode 0600 or stricter).
    pub token_file: Option<PathBuf>,
}

/// One `[[sources]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", deny_unknown_fields)]
pub enum SourceConfig {
    /// An Azure DevOps organisation (or Server collection).
    #[serde(rename = "azure-devops")]
    AzureDevOps {
        /// Organisation (or collection) name.
        organization: String,
        /// Base URL (default `https://dev.azure.com`; Server: `https://host/tfs/Collection`).
        url: Option<String>,
        /// Token environment variable.
        token_env: Option<String>,
        /// Token file.
        token_file: Option<PathBuf>,
        /// `pat` (default) or `bearer` (Entra ID service principal access token).
        token_kind: Option<String>,
        /// Globs on `<project>/<repo>`.
        #[serde(default)]
        include: Vec<String>,
        /// Globs on `<project>/<repo>` to leave out.
        #[serde(default)]
        exclude: Vec<String>,
        /// More hosts (`host` or `host:port`) the token may be sent to for git.
        #[serde(default)]
        git_hosts: Vec<String>,
    },
    /// A GitLab group (with subgroups) or user.
    #[serde(rename = "gitlab")]
    GitLab {
        /// Base URL (default `https://gitlab.com`).
        url: Option<String>,
        /// Group path.
        group: Option<String>,
        /// User name.
        user: Option<String>,
        /// Token environment variable.
        token_env: Option<String>,
        /// Token file.
        token_file: Option<PathBuf>,
        /// Globs on the project path within the group.
        #[serde(default)]
        include: Vec<String>,
        /// Globs to leave out.
        #[serde(default)]
        exclude: Vec<String>,
        /// More hosts (`host` or `host:port`) the token may be sent to for git.
        #[serde(default)]
        git_hosts: Vec<String>,
    },
    /// A GitHub organisation or user (GitHub Enterprise with `url`).
    #[serde(rename = "github")]
    GitHub {
        /// API base URL (default `https://api.github.com`; GHE: `https://host/api/v3`).
        url: Option<String>,
        /// Organisation.
        org: Option<String>,
        /// User.
        user: Option<String>,
        /// Token environment variable.
        token_env: Option<String>,
        /// Token file.
        token_file: Option<PathBuf>,
        /// Globs on the repository name.
        #[serde(default)]
        include: Vec<String>,
        /// Globs to leave out.
        #[serde(default)]
        exclude: Vec<String>,
        /// More hosts (`host` or `host:port`) the token may be sent to for git.
        #[serde(default)]
        git_hosts: Vec<String>,
    },
    /// A plain list of git URLs or local paths.
    #[serde(rename = "git")]
    Git {
        /// URLs or paths.
        urls: Vec<String>,
        /// Token environment variable (for https URLs).
        token_env: Option<String>,
        /// Token file.
        token_file: Option<PathBuf>,
    },
}

/// A source ready to run.
#[derive(Debug, Clone)]
pub enum Resolved {
    /// A hosting provider to discover.
    Provider {
        /// What to discover.
        source: ProviderSource,
        /// How git authenticates (token and scheme).
        token: Option<Secret>,
        /// Bearer instead of basic for git.
        bearer: bool,
    },
    /// Plain git URLs.
    Git {
        /// A label (`git`).
        label: String,
        /// The URLs.
        urls: Vec<String>,
        /// Credentials for https.
        auth: Option<Auth>,
    },
}

impl Resolved {
    /// A human label (`azure-devops fabrikam`).
    pub fn label(&self) -> String {
        match self {
            Resolved::Provider { source, .. } => source.display_label(),
            Resolved::Git { label, .. } => label.clone(),
        }
    }
}

/// The default config file: `$XDG_CONFIG_HOME/repovault/config.toml`, else
/// `~/.config/repovault/config.toml`, else `/etc/repovault/config.toml`.
pub fn default_path() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_CONFIG_HOME") {
        return PathBuf::from(x).join("repovault/config.toml");
    }
    if let Some(h) = std::env::var_os("HOME") {
        let p = PathBuf::from(h).join(".config/repovault/config.toml");
        if p.exists() {
            return p;
        }
    }
    PathBuf::from("/etc/repovault/config.toml")
}

impl Config {
    /// Reads and validates `path` (tokens are not read yet).
    pub fn load(path: &Path) -> Result<Config, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Parses the text of a config file.
    pub fn parse(path: &Path, text: &str) -> Result<Config, Error> {
        let invalid = |message: String| Error::Invalid {
            path: path.to_owned(),
            message,
        };
        let config: Config =
            toml::from_str(text).map_err(|e| invalid(one_line_toml_error(&e, text)))?;
        for (i, s) in config.sources.iter().enumerate() {
            let n = i + 1;
            match s {
                SourceConfig::GitLab { group, user, .. } if group.is_some() == user.is_some() => {
                    return Err(invalid(format!(
                        "source {n} (gitlab): give exactly one of `group` or `user`"
                    )));
                }
                SourceConfig::GitHub { org, user, .. } if org.is_some() == user.is_some() => {
                    return Err(invalid(format!(
                        "source {n} (github): give exactly one of `org` or `user`"
                    )));
                }
                SourceConfig::Git { urls, .. } if urls.is_empty() => {
                    return Err(invalid(format!("source {n} (git): `urls` is empty")));
                }
                SourceConfig::AzureDevOps {
                    token_kind: Some(k),
                    ..
                } if k != "pat" && k != "bearer" => {
                    return Err(invalid(format!("source {n} (azure-devops): token_kind {k:?} is neither \"pat\" nor \"bearer\"")));
                }
                _ => {}
            }
            let (env, file) = s.token_ref();
            if env.is_some() && file.is_some() {
                return Err(invalid(format!(
                    "source {n}: give `token_env` or `token_file`, not both"
                )));
            }
        }
        if config.jobs == Some(0) {
            return Err(invalid("jobs must be at least 1".into()));
        }
        if config.discovery_timeout == Some(0) {
            return Err(invalid(
                "discovery_timeout must be at least 1 (seconds)".into(),
            ));
        }
        Ok(config)
    }

    /// Resolves every source, reading tokens from the environment or files.
    pub fn resolve(&self, path: &Path) -> Result<Vec<Resolved>, Error> {
        let deadline = std::time::Duration::from_secs(
            self.discovery_timeout.unwrap_or(DEFAULT_DISCOVERY_TIMEOUT),
        );
        self.sources
            .iter()
            .map(|s| {
                let mut r = s.resolve(path)?;
                if let Resolved::Provider { source, .. } = &mut r {
                    source.deadline = Some(deadline);
                    crate::discover::CredentialHosts::for_source(source).map_err(|e| {
                        Error::Invalid {
                            path: path.to_owned(),
                            message: format!("source {}: {e}", source.display_label()),
                        }
                    })?;
                }
                Ok(r)
            })
            .collect()
    }
}

fn one_line_toml_error(e: &toml::de::Error, text: &str) -> String {
    let msg = e.message().trim().replace('\n', " ");
    let Some(span) = e.span() else { return msg };
    let mut line = text[..span.start.min(text.len())].matches('\n').count() + 1;
    // Inside a [[sources]] table serde reports the table's span: find the key's own line.
    if let Some(key) = msg
        .strip_prefix("unknown field `")
        .and_then(|r| r.split('`').next())
    {
        let found = text.lines().enumerate().skip(line - 1).find(|(_, l)| {
            l.trim_start()
                .strip_prefix(key)
                .is_some_and(|r| r.trim_start().starts_with('='))
        });
        if let Some((i, _)) = found {
            line = i + 1;
        }
    }
    let snippet = text.lines().nth(line - 1).unwrap_or("").trim();
    format!("line {line} ({snippet}): {msg}")
}

impl SourceConfig {
    fn token_ref(&self) -> (Option<&String>, Option<&PathBuf>) {
        match self {
            SourceConfig::AzureDevOps {
                token_env,
                token_file,
                ..
            }
            | SourceConfig::GitLab {
                token_env,
                token_file,
                ..
            }
            | SourceConfig::GitHub {
                token_env,
                token_file,
                ..
            }
            | SourceConfig::Git {
                token_env,
                token_file,
                ..
            } => (token_env.as_ref(), token_file.as_ref()),
        }
    }

    fn label(&self) -> String {
        match self {
            SourceConfig::AzureDevOps { organization, .. } => {
                format!("azure-devops {organization}")
            }
            SourceConfig::GitLab { group, user, .. } => format!(
                "gitlab {}",
                group.as_ref().or(user.as_ref()).map_or("", |s| s)
            ),
            SourceConfig::GitHub { org, user, .. } => format!(
                "github {}",
                org.as_ref().or(user.as_ref()).map_or("", |s| s)
            ),
            SourceConfig::Git { .. } => "git".into(),
        }
    }

    fn token(&self, path: &Path) -> Result<(Option<Secret>, String), Error> {
        let err = |message: String| Error::Token {
            path: path.to_owned(),
            source_label: self.label(),
            message,
        };
        match self.token_ref() {
            (Some(var), _) => {
                let v = std::env::var(var).map_err(|_| {
                    err(format!(
                        "the environment variable {var} (token_env) is not set"
                    ))
                })?;
                if v.trim().is_empty() {
                    return Err(err(format!(
                        "the environment variable {var} (token_env) is empty"
                    )));
                }
                Ok((
                    Some(Secret::new(v.trim().to_owned())),
                    format!("token_env {var}"),
                ))
            }
            (None, Some(file)) => {
                use std::os::unix::fs::PermissionsExt;
                let meta = std::fs::metadata(file)
                    .map_err(|e| err(format!("token_file {}: {e}", file.display())))?;
                let mode = meta.permissions().mode();
                if mode & 0o077 != 0 {
                    return Err(err(format!(
                        "token_file {} is readable by group or others (mode {:o}): run `chmod 600 {}`",
                        file.display(),
                        mode & 0o777,
                        file.display()
                    )));
                }
                let v = std::fs::read_to_string(file)
                    .map_err(|e| err(format!("token_file {}: {e}", file.display())))?;
                if v.trim().is_empty() {
                    return Err(err(format!("token_file {} is empty", file.display())));
                }
                Ok((
                    Some(Secret::new(v.trim().to_owned())),
                    format!("token_file {}", file.display()),
                ))
            }
            (None, None) => Ok((None, String::new())),
        }
    }

    fn resolve(&self, path: &Path) -> Result<Resolved, Error> {
        let (token, hint) = self.token(path)?;
        let provider = |p: Provider,
                        url: &Option<String>,
                        scope: Scope,
                        include: &[String],
                        exclude: &[String],
                        git_hosts: &[String],
                        kind: TokenKind| {
            let mut s = ProviderSource::new(
                p,
                url.clone()
                    .unwrap_or_else(|| p.default_base_url().to_owned()),
                scope,
            );
            s.token = token.clone();
            s.token_kind = kind;
            s.include = include.to_vec();
            s.exclude = exclude.to_vec();
            s.git_hosts = git_hosts.to_vec();
            s.label = self.label();
            s.token_hint = hint.clone();
            s
        };
        Ok(match self {
            SourceConfig::AzureDevOps {
                organization,
                url,
                token_kind,
                include,
                exclude,
                git_hosts,
                ..
            } => {
                let bearer = token_kind.as_deref() == Some("bearer");
                let kind = if bearer {
                    TokenKind::Bearer
                } else {
                    TokenKind::Pat
                };
                Resolved::Provider {
                    source: provider(
                        Provider::AzureDevOps,
                        url,
                        Scope::Org(organization.clone()),
                        include,
                        exclude,
                        git_hosts,
                        kind,
                    ),
                    token,
                    bearer,
                }
            }
            SourceConfig::GitLab {
                url,
                group,
                user,
                include,
                exclude,
                git_hosts,
                ..
            } => {
                let scope = match (group, user) {
                    (Some(g), _) => Scope::Group(g.clone()),
                    (None, Some(u)) => Scope::User(u.clone()),
                    (None, None) => unreachable!("validated in parse"),
                };
                Resolved::Provider {
                    source: provider(
                        Provider::GitLab,
                        url,
                        scope,
                        include,
                        exclude,
                        git_hosts,
                        TokenKind::Pat,
                    ),
                    token,
                    bearer: false,
                }
            }
            SourceConfig::GitHub {
                url,
                org,
                user,
                include,
                exclude,
                git_hosts,
                ..
            } => {
                let scope = match (org, user) {
                    (Some(o), _) => Scope::Org(o.clone()),
                    (None, Some(u)) => Scope::User(u.clone()),
                    (None, None) => unreachable!("validated in parse"),
                };
                Resolved::Provider {
                    source: provider(
                        Provider::GitHub,
                        url,
                        scope,
                        include,
                        exclude,
                        git_hosts,
                        TokenKind::Pat,
                    ),
                    token,
                    bearer: false,
                }
            }
            SourceConfig::Git { urls, .. } => Resolved::Git {
                label: "git".into(),
                urls: urls.clone(),
                auth: token.map(|t| Auth {
                    user: "git".into(),
                    token: t,
                    bearer: false,
                }),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
store = "/var/backups/repovault"
cache = "/var/cache/repovault"
jobs = 4

[[sources]]
kind = "azure-devops"
organization = "fabrikam"
url = "https://dev.azure.com"
token_env = "AZDO_PAT"
include = ["*"]

[[sources]]
kind = "gitlab"
url = "https://gitlab.example.com"
group = "platform"
token_env = "GITLAB_TOKEN"

[[sources]]
kind = "github"
org = "acme"
token_env = "GITHUB_TOKEN"

[[sources]]
kind = "git"
urls = ["https://example.com/a.git", "/srv/git/b.git"]

[retention]
keep_daily = 7
keep_weekly = 4
keep_monthly = 12
"#;

    #[test]
    fn the_documented_example_parses() {
        let c = Config::parse(Path::new("c.toml"), EXAMPLE).unwrap();
        assert_eq!(c.sources.len(), 4);
        assert_eq!(c.jobs, Some(4));
        let r = c.retention.unwrap();
        assert_eq!((r.keep_daily, r.keep_weekly, r.keep_monthly), (7, 4, 12));
    }

    #[test]
    fn unknown_keys_name_the_key_and_line() {
        let text =
            "store = \"/x\"\n\n[[sources]]\nkind = \"git\"\nurls = [\"/a\"]\ntoken = \"oops\"\n";
        let e = Config::parse(Path::new("c.toml"), text)
            .unwrap_err()
            .to_string();
        assert!(e.contains("token"), "{e}");
        assert!(e.contains("line 3") || e.contains("line 6"), "{e}");
        let e = Config::parse(Path::new("c.toml"), "stor = \"/x\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("stor") && e.contains("line 1"), "{e}");
    }

    #[test]
    fn token_files_readable_by_others_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pat");
        std::fs::write(&f, "tok\n").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        let text = format!(
            "[[sources]]\nkind = \"github\"\norg = \"acme\"\ntoken_file = \"{}\"\n",
            f.display()
        );
        let c = Config::parse(Path::new("c.toml"), &text).unwrap();
        let e = c.resolve(Path::new("c.toml")).unwrap_err().to_string();
        assert!(e.contains("chmod 600"), "{e}");
        assert!(!e.contains("tok\n"));
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        let r = c.resolve(Path::new("c.toml")).unwrap();
        assert!(matches!(&r[0], Resolved::Provider { token: Some(_), .. }));
    }

    #[test]
    fn a_missing_token_env_is_named() {
        let text = "[[sources]]\nkind = \"gitlab\"\ngroup = \"g\"\ntoken_env = \"REPOVAULT_TEST_SURELY_UNSET\"\n";
        let c = Config::parse(Path::new("c.toml"), text).unwrap();
        let e = c.resolve(Path::new("c.toml")).unwrap_err().to_string();
        assert!(e.contains("REPOVAULT_TEST_SURELY_UNSET"), "{e}");
    }
}
