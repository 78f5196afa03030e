//! The TOML configuration of a nightly run (`repovault sync --config FILE`).
//!
//! ```toml
//! store = "/var/backups/repovault"   # --store and REPOVAULT_STORE override it
//! cache = "/var/cache/repovault"     # optional: the mirror cache
//! jobs = 4                           # optional
//! discovery_timeout = 1800           # optional: seconds per source's listing
//! metrics_textfile = "/var/lib/node_exporter/textfile/repovault.prom"  # optional
//! ping_url = "https://hc-ping.com/<uuid>"                             # optional
//! stale_after = "2d"                 # optional: "36h", "90s", or seconds
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

use crate::discover::{BadGitHost, CredentialHosts, Provider, ProviderSource, Scope, TokenKind};
use crate::retention::Policy;
use crate::secret::{Auth, Secret};
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
    /// A source's `git_hosts` has an entry that is not a host.
    #[error("config {path}: source {source_label}: {source}")]
    GitHost {
        /// The file.
        path: PathBuf,
        /// The source.
        source_label: String,
        /// The entry.
        source: BadGitHost,
    },
    /// A source's token cannot be had.
    #[error("config {path}, source {source_label}: {source}")]
    Token {
        /// The file.
        path: PathBuf,
        /// The source.
        source_label: String,
        /// What is wrong and how to fix it.
        source: TokenError,
    },
}

/// Why a source's token cannot be had (each message says what to fix).
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// `token_env` names a variable that is not set.
    #[error("the environment variable {var} (token_env) is not set")]
    EnvUnset {
        /// The variable.
        var: String,
    },
    /// `token_env` names a variable that is empty.
    #[error("the environment variable {var} (token_env) is empty")]
    EnvEmpty {
        /// The variable.
        var: String,
    },
    /// `token_file` cannot be read.
    #[error("token_file {}: {source}", file.display())]
    File {
        /// The file.
        file: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// `token_file` may be read by other users.
    #[error("token_file {} is readable by group or others (mode {mode:o}): run `chmod 600 {}`", file.display(), file.display())]
    FileOpen {
        /// The file.
        file: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// `token_file` holds nothing.
    #[error("token_file {} is empty", file.display())]
    FileEmpty {
        /// The file.
        file: PathBuf,
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
    /// The Prometheus text file each run writes (`sync --metrics-textfile`).
    pub metrics_textfile: Option<PathBuf>,
    /// The health-check URL each run pings (`sync --ping-url`).
    pub ping_url: Option<String>,
    /// How old a repository's last successful backup may be before it is
    /// stale: `"2d"`, `"36h"`, `"90s"` or seconds (default
    /// [`crate::monitor::DEFAULT_STALE_AFTER`]).
    pub stale_after: Option<crate::monitor::DurationText>,
}

/// The default of `discovery_timeout`: 30 minutes per source.
pub const DEFAULT_DISCOVERY_TIMEOUT: u64 = 30 * 60;

/// Where a source's token comes from: `token_env` or `token_file`, at most
/// one. Flattened into every kind of source.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TokenRef {
    /// An environment variable holding the token.
    pub token_env: Option<String>,
    /// A file holding the token (mode 0600 or stricter).
    pub token_file: Option<PathBuf>,
}

/// The settings every hosting-provider source has (flattened into it).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ProviderSettings {
    /// The API base URL; `None` = the provider's public service
    /// ([`Provider::default_base_url`]). Azure DevOps Server:
    /// `https://host/tfs/Collection`; GitHub Enterprise: `https://host/api/v3`.
    pub url: Option<String>,
    /// Globs a repository's path must match (any of them; empty = all): on
    /// `<project>/<repo>` (Azure DevOps), the project path within the group or
    /// user (GitLab), the repository name (GitHub).
    #[serde(default)]
    pub include: Vec<String>,
    /// Globs on the same path to leave out.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// More hosts (`host` or `host:port`) the token may be sent to for git.
    #[serde(default)]
    pub git_hosts: Vec<String>,
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
        /// `pat` (default) or `bearer` (Entra ID service principal access token).
        #[serde(default)]
        token_kind: TokenKind,
        /// Where the token comes from.
        #[serde(flatten)]
        token: TokenRef,
        /// URL, globs and git hosts.
        #[serde(flatten)]
        settings: ProviderSettings,
    },
    /// A GitLab group (with subgroups) or user: exactly one of `group` or
    /// `user`.
    #[serde(rename = "gitlab")]
    GitLab {
        /// The group ([`Scope::Group`]) or user ([`Scope::User`]).
        #[serde(flatten, deserialize_with = "gitlab_scope")]
        scope: Scope,
        /// Where the token comes from.
        #[serde(flatten)]
        token: TokenRef,
        /// URL, globs and git hosts.
        #[serde(flatten)]
        settings: ProviderSettings,
    },
    /// A GitHub organisation or user (GitHub Enterprise with `url`): exactly
    /// one of `org` or `user`.
    #[serde(rename = "github")]
    GitHub {
        /// The organisation ([`Scope::Org`]) or user ([`Scope::User`]).
        #[serde(flatten, deserialize_with = "github_scope")]
        scope: Scope,
        /// Where the token comes from.
        #[serde(flatten)]
        token: TokenRef,
        /// URL, globs and git hosts.
        #[serde(flatten)]
        settings: ProviderSettings,
    },
    /// A plain list of git URLs or local paths.
    #[serde(rename = "git")]
    Git {
        /// URLs or paths.
        urls: Vec<String>,
        /// Where the token for https URLs comes from.
        #[serde(flatten)]
        token: TokenRef,
    },
}

/// The keys that name what a GitLab source lists.
#[derive(Deserialize)]
struct GitLabScopeKeys {
    group: Option<String>,
    user: Option<String>,
}

/// The keys that name what a GitHub source lists.
#[derive(Deserialize)]
struct GitHubScopeKeys {
    org: Option<String>,
    user: Option<String>,
}

fn gitlab_scope<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Scope, D::Error> {
    let k = GitLabScopeKeys::deserialize(d)?;
    exactly_one("gitlab", ("group", k.group.map(Scope::Group)), k.user)
}

fn github_scope<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Scope, D::Error> {
    let k = GitHubScopeKeys::deserialize(d)?;
    exactly_one("github", ("org", k.org.map(Scope::Org)), k.user)
}

/// The scope named by exactly one of `key` or `user`.
fn exactly_one<E: serde::de::Error>(
    kind: &str,
    (key, named): (&str, Option<Scope>),
    user: Option<String>,
) -> Result<Scope, E> {
    match (named, user) {
        (Some(scope), None) => Ok(scope),
        (None, Some(u)) => Ok(Scope::User(u)),
        _ => Err(E::custom(format!(
            "{kind} source: give exactly one of `{key}` or `user`"
        ))),
    }
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
            if let SourceConfig::Git { urls, .. } = s {
                if urls.is_empty() {
                    return Err(invalid(format!("source {n} (git): `urls` is empty")));
                }
            }
            let t = s.token_ref();
            if t.token_env.is_some() && t.token_file.is_some() {
                return Err(invalid(format!(
                    "source {n}: give `token_env` or `token_file`, not both"
                )));
            }
        }
        if config.jobs == Some(0) {
            return Err(invalid("jobs must be at least 1".into()));
        }
        crate::monitor::check_settings(config.stale_after.as_ref(), config.ping_url.as_deref())
            .map_err(invalid)?;
        if config.discovery_timeout == Some(0) {
            return Err(invalid(
                "discovery_timeout must be at least 1 (seconds)".into(),
            ));
        }
        Ok(config)
    }

    /// `stale_after`, or its default.
    pub fn stale_after(&self) -> std::time::Duration {
        self.stale_after
            .as_ref()
            .and_then(|d| d.duration().ok())
            .unwrap_or(crate::monitor::DEFAULT_STALE_AFTER)
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
                    CredentialHosts::for_source(source).map_err(|e| Error::GitHost {
                        path: path.to_owned(),
                        source_label: source.display_label(),
                        source: e,
                    })?;
                }
                Ok(r)
            })
            .collect()
    }
}

fn one_line_toml_error(e: &toml::de::Error, text: &str) -> String {
    let mut msg = e.message().trim().replace('\n', " ");
    let Some(span) = e.span() else { return msg };
    let mut line = text[..span.start.min(text.len())].matches('\n').count() + 1;
    // Inside a [[sources]] table serde reports the table's span: find the line
    // of the key (an unknown field) or of the value (an unknown variant).
    let mut below = text.lines().enumerate().skip(line - 1);
    if let Some(key) = backquoted_after(&msg, "unknown field `") {
        if let Some((i, _)) = below.find(|(_, l)| key_value(l).is_some_and(|(k, _)| k == key)) {
            line = i + 1;
        }
    } else if let Some(value) = backquoted_after(&msg, "unknown variant `") {
        let found = below.find_map(|(i, l)| {
            key_value(l)
                .filter(|(_, v)| v.trim_matches(['"', '\'']) == value)
                .map(|(k, _)| (i, k))
        });
        if let Some((i, key)) = found {
            line = i + 1;
            // `token_kind "oauth" is unknown, expected `pat` or `bearer``.
            let expected = msg.split_once(", expected ").map_or("", |(_, x)| x);
            msg = format!("{key} {value:?} is unknown, expected {expected}");
        }
    }
    let snippet = text.lines().nth(line - 1).unwrap_or("").trim();
    format!("line {line} ({snippet}): {msg}")
}

/// The text between `prefix` and the next backquote.
fn backquoted_after<'a>(msg: &'a str, prefix: &str) -> Option<&'a str> {
    msg.strip_prefix(prefix).and_then(|r| r.split('`').next())
}

/// `key = value` on one line, both trimmed.
fn key_value(line: &str) -> Option<(&str, &str)> {
    let (k, v) = line.split_once('=')?;
    Some((k.trim(), v.trim()))
}

/// A source as the code uses it: a hosting provider to discover, or git URLs.
enum Kind<'a> {
    Provider {
        provider: Provider,
        scope: Scope,
        token_kind: TokenKind,
        settings: &'a ProviderSettings,
    },
    Git(&'a [String]),
}

impl SourceConfig {
    fn kind(&self) -> Kind<'_> {
        let provider = |provider, scope: &Scope, token_kind, settings| Kind::Provider {
            provider,
            scope: scope.clone(),
            token_kind,
            settings,
        };
        match self {
            SourceConfig::AzureDevOps {
                organization,
                token_kind,
                settings,
                ..
            } => provider(
                Provider::AzureDevOps,
                &Scope::Org(organization.clone()),
                *token_kind,
                settings,
            ),
            SourceConfig::GitLab {
                scope, settings, ..
            } => provider(Provider::GitLab, scope, TokenKind::Pat, settings),
            SourceConfig::GitHub {
                scope, settings, ..
            } => provider(Provider::GitHub, scope, TokenKind::Pat, settings),
            SourceConfig::Git { urls, .. } => Kind::Git(urls),
        }
    }

    fn token_ref(&self) -> &TokenRef {
        match self {
            SourceConfig::AzureDevOps { token, .. }
            | SourceConfig::GitLab { token, .. }
            | SourceConfig::GitHub { token, .. }
            | SourceConfig::Git { token, .. } => token,
        }
    }

    /// `azure-devops fabrikam`, `gitlab platform`, `git`.
    fn label(&self) -> String {
        match self.kind() {
            Kind::Provider {
                provider, scope, ..
            } => format!("{provider} {}", scope.name()),
            Kind::Git(_) => "git".into(),
        }
    }

    fn resolve(&self, path: &Path) -> Result<Resolved, Error> {
        let label = self.label();
        let (token, hint) = self.token_ref().read().map_err(|source| Error::Token {
            path: path.to_owned(),
            source_label: label.clone(),
            source,
        })?;
        Ok(match self.kind() {
            Kind::Provider {
                provider,
                scope,
                token_kind,
                settings,
            } => {
                let base = settings
                    .url
                    .clone()
                    .unwrap_or_else(|| provider.default_base_url().to_owned());
                let mut s = ProviderSource::new(provider, base, scope);
                s.token = token.clone();
                s.token_kind = token_kind;
                s.include = settings.include.clone();
                s.exclude = settings.exclude.clone();
                s.git_hosts = settings.git_hosts.clone();
                s.label = label;
                s.token_hint = hint;
                Resolved::Provider {
                    source: s,
                    token,
                    bearer: token_kind == TokenKind::Bearer,
                }
            }
            Kind::Git(urls) => Resolved::Git {
                label,
                urls: urls.to_vec(),
                auth: token.map(|t| Auth {
                    user: "git".into(),
                    token: t,
                    bearer: false,
                }),
            },
        })
    }
}

impl TokenRef {
    /// The token (`None` when neither key is given) and where it came from,
    /// for messages (`token_env AZDO_PAT`).
    fn read(&self) -> Result<(Option<Secret>, String), TokenError> {
        if let Some(var) = &self.token_env {
            let v = std::env::var(var).map_err(|_| TokenError::EnvUnset { var: var.clone() })?;
            if v.trim().is_empty() {
                return Err(TokenError::EnvEmpty { var: var.clone() });
            }
            return Ok((
                Some(Secret::new(v.trim().to_owned())),
                format!("token_env {var}"),
            ));
        }
        let Some(file) = &self.token_file else {
            return Ok((None, String::new()));
        };
        use std::os::unix::fs::PermissionsExt;
        let unreadable = |source| TokenError::File {
            file: file.clone(),
            source,
        };
        let mode = std::fs::metadata(file)
            .map_err(unreadable)?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(TokenError::FileOpen {
                file: file.clone(),
                mode: mode & 0o777,
            });
        }
        let v = std::fs::read_to_string(file).map_err(unreadable)?;
        if v.trim().is_empty() {
            return Err(TokenError::FileEmpty { file: file.clone() });
        }
        Ok((
            Some(Secret::new(v.trim().to_owned())),
            format!("token_file {}", file.display()),
        ))
    }
}

#[cfg(test)]
mod tests;
