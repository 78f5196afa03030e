//! Discovery: list the git repositories of a hosting organisation, group or
//! user through the provider's REST API, so every one of them can be backed up.
//!
//! Supported providers (wire details in `shared/providers/API.md`):
//!
//! * **Azure DevOps** Services (`https://dev.azure.com` + organisation) and
//!   Server (`https://host[/tfs]/Collection`): projects are listed with `$top`,
//!   following the `x-ms-continuationtoken` header; then each project's
//!   repositories with `includeHidden=true`, so project wikis come along.
//! * **GitLab** v4: a group's projects with `include_subgroups=true` and
//!   `with_shared=false`, or a user's projects; `Link: rel="next"` pagination.
//! * **GitHub** (and GitHub Enterprise Server, `https://host/api/v3`): an
//!   organisation's or a user's repositories; `Link` pagination.
//!
//! Every repository gets a stable [`DiscoveredRepo::key`] built from the
//! provider's immutable id, so a renamed repository keeps its identity.
//!
//! A [`Listing`] is [`complete`](Listing::complete) only when every page and
//! every project was listed: a caller must never treat a repository missing
//! from an incomplete listing as deleted. Total failures (a rejected token, an
//! unreachable host, an unknown organisation) are an [`Error`].
//!
//! Tokens travel only in request headers (marked sensitive), are never logged,
//! and are scrubbed from every message a server sends back.
//!
//! ```no_run
//! use repovault::discover::{discover_blocking, HttpOptions, Provider, ProviderSource, Scope, TokenKind};
//! use repovault::secret::Secret;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut src = ProviderSource::new(Provider::GitLab, "https://gitlab.example.com", Scope::Group("platform".into()));
//! src.token = Some(Secret::new(std::env::var("GITLAB_TOKEN")?));
//! src.token_kind = TokenKind::Pat;
//! src.token_hint = "token_env GITLAB_TOKEN".into();
//! src.exclude = vec!["sandbox/**".into()];
//! let listing = discover_blocking(&src, &HttpOptions::default())?;
//! for repo in &listing.repos {
//!     println!("{} {} {}", repo.key, repo.name, repo.clone_url);
//! }
//! # Ok(()) }
//! ```

mod azure;
mod filter;
mod github;
mod gitlab;
mod hosts;
mod http;
mod paging;
mod record;
mod urls;

pub use hosts::{host_of, BadGitHost, CredentialHosts};
pub use http::{HttpClient, HttpOptions};

use crate::secret::Secret;
use filter::{Collector, Filter};
use serde::{Deserialize, Serialize};
use urls::redact_url;

/// A git hosting provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Provider {
    /// Azure DevOps Services or Azure DevOps Server (TFS).
    #[serde(rename = "azure-devops")]
    AzureDevOps,
    /// GitLab (gitlab.com or self-managed), REST v4.
    #[serde(rename = "gitlab")]
    GitLab,
    /// GitHub (github.com or GitHub Enterprise Server), REST.
    #[serde(rename = "github")]
    GitHub,
}

impl Provider {
    /// The provider's name in messages and configuration: `azure-devops`,
    /// `gitlab` or `github`.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::AzureDevOps => "azure-devops",
            Provider::GitLab => "gitlab",
            Provider::GitHub => "github",
        }
    }

    /// The public service's API base URL: `https://dev.azure.com`,
    /// `https://gitlab.com`, `https://api.github.com`.
    pub fn default_base_url(self) -> &'static str {
        match self {
            Provider::AzureDevOps => "https://dev.azure.com",
            Provider::GitLab => "https://gitlab.com",
            Provider::GitHub => "https://api.github.com",
        }
    }
}

impl std::fmt::Display for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What to list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Scope {
    /// An Azure DevOps organisation (or Server collection), a GitHub
    /// organisation; for GitLab the same as [`Scope::Group`].
    Org(String),
    /// A GitLab group by full path (`acme` or `acme/platform`) or numeric id,
    /// subgroups included (with a numeric id, globs match the project's full
    /// path); for GitHub the same as [`Scope::Org`].
    Group(String),
    /// A user's own repositories: GitLab `GET /users/:user/projects`, GitHub
    /// `GET /users/:user/repos` (public repositories only). Not for Azure.
    User(String),
    /// GitHub only: the repositories the token's user owns, private ones
    /// included (`GET /user/repos?affiliation=owner`).
    AuthenticatedUser,
}

impl Scope {
    /// The organisation, group or user named, as messages and labels show
    /// it (`(token's user)` for [`Scope::AuthenticatedUser`]).
    pub fn name(&self) -> &str {
        match self {
            Scope::Org(s) | Scope::Group(s) | Scope::User(s) => s,
            Scope::AuthenticatedUser => "(token's user)",
        }
    }
}

/// How the token is sent to the API; in configuration `pat` or `bearer`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenKind {
    /// A personal access token: Azure DevOps `Authorization: Basic
    /// base64(":" + PAT)`, GitLab `PRIVATE-TOKEN`, GitHub `Authorization: Bearer`.
    #[default]
    Pat,
    /// An OAuth / Entra ID (service principal) access token:
    /// `Authorization: Bearer` everywhere.
    Bearer,
}

/// A hosting organisation, group or user to discover repositories in.
#[derive(Debug, Clone)]
pub struct ProviderSource {
    /// The provider.
    pub provider: Provider,
    /// The API base URL: `https://dev.azure.com` (Azure DevOps Services, the
    /// organisation comes from the scope), `https://host/tfs` or
    /// `https://host/tfs/Collection` (Azure DevOps Server: when the last path
    /// segment already equals the scope's collection it is not appended
    /// again), `https://gitlab.example.com` (`/api/v4` is appended unless
    /// present), `https://api.github.com` or `https://host/api/v3` (GitHub
    /// Enterprise Server).
    pub base_url: String,
    /// What to list.
    pub scope: Scope,
    /// The API token; `None` lists anonymously (public repositories only).
    pub token: Option<Secret>,
    /// How the token is sent.
    pub token_kind: TokenKind,
    /// Globs a repository's [`path`](DiscoveredRepo::path) must match (any of
    /// them; empty = all). `*` does not cross `/`, `**` does; case-insensitive.
    pub include: Vec<String>,
    /// Globs that drop a repository even when included.
    pub exclude: Vec<String>,
    /// A human label for messages, e.g. `azure-devops fabrikam`; empty =
    /// `<provider> <scope>`.
    pub label: String,
    /// Where the token comes from, quoted in authentication errors, e.g.
    /// `token_env AZDO_PAT`; empty = "the token".
    pub token_hint: String,
    /// The longest the whole discovery of this source may take (every page,
    /// retry and rate-limit wait included); `None` = no limit. Past it,
    /// [`discover`] fails with [`Error::Deadline`].
    pub deadline: Option<std::time::Duration>,
    /// More hosts (`host` or `host:port`) the token may be sent to for git,
    /// besides the ones [`CredentialHosts::for_source`] derives from the API
    /// base URL.
    pub git_hosts: Vec<String>,
}

impl ProviderSource {
    /// A source without token or filters.
    pub fn new(provider: Provider, base_url: impl Into<String>, scope: Scope) -> Self {
        Self {
            provider,
            base_url: base_url.into(),
            scope,
            token: None,
            token_kind: TokenKind::Pat,
            include: Vec::new(),
            exclude: Vec::new(),
            label: String::new(),
            token_hint: String::new(),
            deadline: None,
            git_hosts: Vec::new(),
        }
    }

    /// The label used in messages: [`label`](Self::label), or
    /// `<provider> <scope name>`.
    pub fn display_label(&self) -> String {
        if self.label.trim().is_empty() {
            format!("{} {}", self.provider, self.scope.name())
        } else {
            self.label.clone()
        }
    }
}

/// One repository found by discovery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiscoveredRepo {
    /// The provider.
    pub provider: Provider,
    /// Stable identity that survives renames and transfers:
    /// `azure:<org>:<repo guid>` (Azure DevOps Services; for Server
    /// `azure:<host>/<collection path>:<repo guid>`),
    /// `gitlab:<host>:<project id>`, `github:<host>:<repo id>`.
    /// Host and organisation are lower-cased.
    pub key: String,
    /// The repository as people write it (`host/path`):
    /// `dev.azure.com/fabrikam/<project>/<repo>`,
    /// `gitlab.example.com/platform/sub/repo`, `github.com/acme/repo`.
    pub name: String,
    /// The path the include/exclude globs match: `<project>/<repo>` (Azure),
    /// the path within the group or user namespace (GitLab), the repository
    /// name (GitHub).
    pub path: String,
    /// The https clone URL, without any user name or credentials.
    pub clone_url: String,
    /// The default branch, short form (`main`), when the API names one.
    pub default_branch: Option<String>,
    /// The provider says the contents cannot be read now: Azure
    /// `isDisabled` or `isInMaintenance`, GitHub `disabled`. Skip it, keep
    /// the last backup, and do not treat it as deleted.
    pub disabled: bool,
    /// Archived (read-only, still cloneable): GitLab and GitHub `archived`.
    pub archived: bool,
    /// Known to be empty, as far as the API says (Azure: no `defaultBranch`,
    /// GitLab `empty_repo`, GitHub `size` 0). Informational only.
    pub empty: bool,
    /// A fork of another repository.
    pub is_fork: bool,
    /// The provider's own record of the repository (selected fields, never a
    /// token).
    pub record: serde_json::Value,
    /// The user name to send with the token for git over https: `pat`
    /// (Azure: any name works), `oauth2` (GitLab), `x-access-token` (GitHub).
    pub git_user: String,
}

/// The result of discovering one source.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Listing {
    /// The repositories, sorted by name, each key once.
    pub repos: Vec<DiscoveredRepo>,
    /// Every page of every listing succeeded. When false, some repositories
    /// may be missing: mark nothing as deleted.
    pub complete: bool,
    /// What went wrong in the parts that failed (one line each).
    pub warnings: Vec<String>,
}

/// Errors of discovery: the listing failed as a whole.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The source is misconfigured (bad URL, bad glob, unsupported scope).
    #[error("{label}: {reason}")]
    BadSource {
        /// The source's label.
        label: String,
        /// What is wrong.
        reason: String,
    },
    /// The server rejected the credentials, or answered a sign-in page
    /// instead of JSON. Never retried.
    #[error("{label}: {reason}")]
    Auth {
        /// The source's label.
        label: String,
        /// The HTTP status.
        status: u16,
        /// What happened and what to check.
        reason: String,
    },
    /// The organisation, group, user or project does not exist or is not
    /// visible to the token.
    #[error("{label}: not found (HTTP 404) at {url}: {message}: check the name and that the token can see it")]
    NotFound {
        /// The source's label.
        label: String,
        /// The request (no credentials).
        url: String,
        /// The server's message.
        message: String,
    },
    /// Any other unsuccessful HTTP status (after retries for 5xx).
    #[error("{label}: HTTP {status} from {url}: {message}")]
    Http {
        /// The source's label.
        label: String,
        /// The request (no credentials).
        url: String,
        /// The HTTP status.
        status: u16,
        /// The server's message.
        message: String,
    },
    /// The server could not be reached (after retries).
    #[error("{label}: cannot reach {url}: {reason}")]
    Unreachable {
        /// The source's label.
        label: String,
        /// The request.
        url: String,
        /// The connection error.
        reason: String,
    },
    /// Rate limited for longer than allowed ([`HttpOptions::max_wait`]) or
    /// more often than [`HttpOptions::max_retries`].
    #[error("{label}: rate limited at {url}: {reason}")]
    RateLimited {
        /// The source's label.
        label: String,
        /// The request.
        url: String,
        /// Why the client gave up.
        reason: String,
    },
    /// A response was not what the API documents.
    #[error("{label}: unexpected response from {url}: {reason}")]
    BadResponse {
        /// The source's label.
        label: String,
        /// The request.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {reason}")]
    Client {
        /// The cause.
        reason: String,
    },
    /// The async runtime could not be started.
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// The discovery took longer than [`ProviderSource::deadline`].
    #[error("{label}: discovery did not finish within its deadline of {secs}s (the API is stalled or too slow; raise discovery_timeout if the organisation is just large)")]
    Deadline {
        /// The source's label.
        label: String,
        /// The deadline in seconds.
        secs: u64,
    },
}

impl Error {
    /// Whether the credentials were rejected (then nothing else of the
    /// source should be tried with them).
    pub fn is_auth(&self) -> bool {
        matches!(self, Error::Auth { .. })
    }
}

/// The user name to send with the token for git over https: `pat` (Azure:
/// any name works), `oauth2` (GitLab), `x-access-token` (GitHub).
pub fn git_user(provider: Provider) -> &'static str {
    match provider {
        Provider::AzureDevOps => "pat",
        Provider::GitLab => "oauth2",
        Provider::GitHub => "x-access-token",
    }
}

/// Lists the repositories of `src`.
///
/// # Errors
/// [`Error`] when nothing useful could be listed: bad configuration, a
/// rejected token (401, a non-rate-limit 403, a 2xx that is not JSON such as
/// Azure's 203 sign-in page), an unknown scope (404), an unreachable host, or
/// a failure of the first page, or [`Error::Deadline`]. Failures of later
/// pages or of single Azure projects only make the listing incomplete, with a
/// warning.
pub async fn discover(src: &ProviderSource, http: &HttpClient) -> Result<Listing, Error> {
    let Some(deadline) = src.deadline else {
        return discover_inner(src, http).await;
    };
    match tokio::time::timeout(deadline, discover_inner(src, http)).await {
        Ok(r) => r,
        Err(_) => {
            let e = Error::Deadline {
                label: src.display_label(),
                secs: deadline.as_secs(),
            };
            tracing::error!("{e}");
            Err(e)
        }
    }
}

/// What a provider's `list` works with: the source, the HTTP client, the
/// source's context and the collector of what it finds.
struct Job<'a> {
    src: &'a ProviderSource,
    http: &'a HttpClient,
    ctx: &'a Ctx,
    out: &'a mut Collector,
}

async fn discover_inner(src: &ProviderSource, http: &HttpClient) -> Result<Listing, Error> {
    let ctx = Ctx::new(src);
    let filter = Filter::new(src, &ctx)?;
    let mut out = Collector::new(filter);
    let job = Job {
        src,
        http,
        ctx: &ctx,
        out: &mut out,
    };
    match src.provider {
        Provider::AzureDevOps => azure::list(job).await?,
        Provider::GitLab => gitlab::list(job).await?,
        Provider::GitHub => github::list(job).await?,
    }
    let listing = out.finish();
    tracing::info!(
        source = %ctx.label,
        repos = listing.repos.len(),
        complete = listing.complete,
        warnings = listing.warnings.len(),
        "discovered repositories"
    );
    Ok(listing)
}

/// [`discover`] for synchronous callers: runs it on a new current-thread
/// tokio runtime with a new [`HttpClient`]. Inside an async runtime it fails
/// with [`Error::Runtime`]: call [`discover`] there.
///
/// # Errors
/// As [`discover`], plus [`Error::Runtime`] and [`Error::Client`].
pub fn discover_blocking(src: &ProviderSource, opts: &HttpOptions) -> Result<Listing, Error> {
    discover_many_blocking(std::slice::from_ref(src), opts)
        .pop()
        .unwrap_or_else(|| {
            Err(Error::Client {
                reason: "no result for the source".to_owned(),
            })
        })
}

/// [`discover`] for several sources in turn, on one runtime and one
/// [`HttpClient`] (shared connections and rate-limit state). One result per
/// source, in order; a failing source does not stop the others.
pub fn discover_many_blocking(
    srcs: &[ProviderSource],
    opts: &HttpOptions,
) -> Vec<Result<Listing, Error>> {
    if tokio::runtime::Handle::try_current().is_ok() {
        return srcs
            .iter()
            .map(|_| {
                Err(Error::Runtime(std::io::Error::other(
                    "called from inside an async runtime: use discover() there",
                )))
            })
            .collect();
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let reason = e.to_string();
            return srcs
                .iter()
                .map(|_| Err(Error::Runtime(std::io::Error::other(reason.clone()))))
                .collect();
        }
    };
    rt.block_on(async {
        let http = match HttpClient::new(opts.clone()) {
            Ok(h) => h,
            Err(e) => {
                let reason = e.to_string();
                return srcs
                    .iter()
                    .map(|_| {
                        Err(Error::Client {
                            reason: reason.clone(),
                        })
                    })
                    .collect();
            }
        };
        let mut out = Vec::with_capacity(srcs.len());
        for src in srcs {
            out.push(discover(src, &http).await);
        }
        out
    })
}

/// Per-source context for requests and messages.
pub(crate) struct Ctx {
    /// The label for messages.
    pub(crate) label: String,
    /// What to check when the token is rejected.
    pub(crate) hint: String,
    /// Whether a token is configured.
    pub(crate) has_token: bool,
    /// Strings that must never appear in a message (the token and its
    /// encodings).
    secrets: Vec<String>,
}

impl Ctx {
    pub(crate) fn new(src: &ProviderSource) -> Self {
        use base64::Engine;
        let mut secrets = Vec::new();
        if let Some(t) = &src.token {
            let t = t.expose();
            // Very short strings would mangle every message; real tokens are long.
            if t.len() >= 6 {
                secrets.push(t.to_owned());
                let b64 = &base64::engine::general_purpose::STANDARD;
                secrets.push(b64.encode(format!(":{t}")));
                secrets.push(b64.encode(format!("pat:{t}")));
            }
        }
        let hint = if src.token_hint.trim().is_empty() {
            "the token".to_owned()
        } else {
            src.token_hint.trim().to_owned()
        };
        Self {
            label: src.display_label(),
            hint,
            has_token: src.token.is_some(),
            secrets,
        }
    }

    /// `s` with every occurrence of the token replaced by `***`.
    pub(crate) fn scrub(&self, s: &str) -> String {
        let mut s = s.to_owned();
        for secret in &self.secrets {
            if s.contains(secret.as_str()) {
                s = s.replace(secret.as_str(), "***");
            }
        }
        s
    }

    pub(crate) fn bad_source(&self, reason: impl Into<String>) -> Error {
        Error::BadSource {
            label: self.label.clone(),
            reason: reason.into(),
        }
    }

    pub(crate) fn bad_response(&self, url: &url::Url, reason: impl Into<String>) -> Error {
        Error::BadResponse {
            label: self.label.clone(),
            url: redact_url(url),
            reason: self.scrub(&reason.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn src(include: &[&str], exclude: &[&str]) -> ProviderSource {
        let mut s = ProviderSource::new(
            Provider::GitLab,
            "https://gitlab.example.com",
            Scope::Group("acme".into()),
        );
        s.include = include.iter().map(|s| s.to_string()).collect();
        s.exclude = exclude.iter().map(|s| s.to_string()).collect();
        s
    }

    /// `s` parsed as a URL.
    pub(super) fn url(s: &str) -> url::Url {
        url::Url::parse(s).expect("url")
    }

    #[test]
    fn scrub_hides_token_and_basic_encoding() {
        use base64::Engine;
        let mut s = src(&[], &[]);
        s.token = Some(Secret::new("glpat-verysecret".into()));
        let ctx = Ctx::new(&s);
        let b64 = base64::engine::general_purpose::STANDARD.encode(":glpat-verysecret");
        let out = ctx.scrub(&format!("echo glpat-verysecret and Basic {b64}"));
        assert!(!out.contains("glpat-verysecret"));
        assert!(!out.contains(&b64));
        assert_eq!(out, "echo *** and Basic ***");
    }

    #[test]
    fn labels() {
        let mut s = src(&[], &[]);
        assert_eq!(s.display_label(), "gitlab acme");
        s.label = "gitlab prod".into();
        assert_eq!(s.display_label(), "gitlab prod");
    }
}
