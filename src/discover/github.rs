//! GitHub REST (github.com and GitHub Enterprise Server, `https://host/api/v3`).
//!
//! * Organisation: `GET /orgs/<org>/repos?type=all&sort=created&direction=asc&per_page=100`
//!   (oldest first, so repositories created while paging land on the last
//!   page instead of shifting the others).
//! * User: `GET /users/<user>/repos?per_page=100` (public repositories only).
//! * The token's user: `GET /user/repos?affiliation=owner&per_page=100`.
//!
//! Pages are followed through the `link` header's `rel="next"` verbatim.
//! Headers: `Accept: application/vnd.github+json`, `X-GitHub-Api-Version:
//! 2022-11-28`, `Authorization: Bearer <token>`. Git over https uses the user
//! name `x-access-token`.

use super::http::{plain_header, secret_header};
use super::paging::{follow_pages, PAGE_SIZE};
use super::record::{bool_field, str_field, BadRecord, HostedRecord};
use super::urls::{host_and_path, join_segments, parse_base};
use super::Job;
use super::{Ctx, DiscoveredRepo, Error, Provider, ProviderSource, Scope};
use reqwest::header::HeaderMap;
use url::Url;

/// The REST API version pinned by every request.
const API_VERSION: &str = "2022-11-28";

/// Fields of a repository kept in [`DiscoveredRepo::record`].
const RECORD_FIELDS: &[&str] = &[
    "id",
    "node_id",
    "name",
    "full_name",
    "owner.login",
    "owner.id",
    "owner.type",
    "private",
    "visibility",
    "fork",
    "archived",
    "disabled",
    "size",
    "default_branch",
    "clone_url",
    "ssh_url",
    "html_url",
    "url",
    "pushed_at",
    "updated_at",
    "has_wiki",
    "topics",
];

pub(super) async fn list(job: Job<'_>) -> Result<(), Error> {
    let (src, http, ctx, out) = (job.src, job.http, job.ctx, job.out);
    let base = parse_base(ctx, &src.base_url)?;
    let web = web_root(&base);
    let mut url = match &src.scope {
        Scope::Org(o) | Scope::Group(o) if !o.trim().is_empty() => {
            let mut u = join_segments(&base, &["orgs", o.trim(), "repos"]);
            u.query_pairs_mut()
                .append_pair("type", "all")
                .append_pair("sort", "created")
                .append_pair("direction", "asc");
            u
        }
        Scope::User(user) if !user.trim().is_empty() => {
            join_segments(&base, &["users", user.trim(), "repos"])
        }
        Scope::AuthenticatedUser => {
            if src.token.is_none() {
                return Err(ctx.bad_source("listing the token's user's repositories needs a token"));
            }
            let mut u = join_segments(&base, &["user", "repos"]);
            u.query_pairs_mut().append_pair("affiliation", "owner");
            u
        }
        _ => {
            return Err(ctx.bad_source(
                "GitHub needs an organisation, a user name, or the token's user as scope",
            ))
        }
    };
    url.query_pairs_mut()
        .append_pair("per_page", &PAGE_SIZE.to_string());
    let headers = request_headers(src, ctx)?;
    follow_pages(http, ctx, out, url, &headers, "repository", |item| {
        repo(item, &web)
    })
    .await
}

/// The web host of an API base: `api.github.com` → `github.com`;
/// `host/api/v3` → `host`; anything else as is (`host[:port][/path]`).
fn web_root(base: &Url) -> String {
    if base
        .host_str()
        .is_some_and(|h| h.eq_ignore_ascii_case("api.github.com"))
    {
        return "github.com".to_owned();
    }
    let path = base.path().trim_end_matches('/');
    match path.strip_suffix("/api/v3") {
        Some(web_path) => {
            let mut web = base.clone();
            web.set_path(web_path);
            host_and_path(&web)
        }
        None => host_and_path(base),
    }
}

fn request_headers(src: &ProviderSource, ctx: &Ctx) -> Result<HeaderMap, Error> {
    let mut h = HeaderMap::new();
    let (k, v) = plain_header("accept", "application/vnd.github+json");
    h.insert(k, v);
    let (k, v) = plain_header("x-github-api-version", API_VERSION);
    h.insert(k, v);
    if let Some(token) = &src.token {
        let (k, v) = secret_header(ctx, "authorization", &format!("Bearer {}", token.expose()))?;
        h.insert(k, v);
    }
    Ok(h)
}

/// A repository record as a [`DiscoveredRepo`].
fn repo(v: &serde_json::Value, web: &str) -> Result<DiscoveredRepo, BadRecord> {
    let r = HostedRecord::parse(v, "full_name", "clone_url")?;
    let path = match (str_field(v, "name"), r.full.split_once('/')) {
        (Some(name), _) => name.to_owned(),
        (None, Some((_, rest))) => rest.to_owned(),
        (None, None) => r.full.to_owned(),
    };
    Ok(DiscoveredRepo {
        disabled: bool_field(v, "disabled"),
        empty: v.get("size").and_then(|s| s.as_u64()) == Some(0),
        is_fork: bool_field(v, "fork"),
        ..r.repo(Provider::GitHub, web, path, RECORD_FIELDS)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discover::tests::url;

    #[test]
    fn web_roots() {
        assert_eq!(web_root(&url("https://api.github.com")), "github.com");
        assert_eq!(
            web_root(&url("https://ghe.example.com/api/v3")),
            "ghe.example.com"
        );
        assert_eq!(web_root(&url("http://127.0.0.1:9000")), "127.0.0.1:9000");
    }

    #[test]
    fn repo_record() {
        let v = serde_json::json!({
            "id": 1003, "name": "empty-repo", "full_name": "octo-org/empty-repo",
            "owner": {"login": "octo-org", "id": 1, "type": "Organization", "avatar_url": "x"},
            "fork": false, "archived": false, "disabled": false, "size": 0,
            "default_branch": "main", "clone_url": "https://github.com/octo-org/empty-repo.git",
            "forks_url": "https://api.github.com/repos/octo-org/empty-repo/forks"
        });
        let r = repo(&v, "github.com").expect("repo");
        assert_eq!(r.key, "github:github.com:1003");
        assert_eq!(r.name, "github.com/octo-org/empty-repo");
        assert_eq!(r.path, "empty-repo");
        assert!(r.empty && !r.is_fork && !r.disabled);
        assert_eq!(r.default_branch.as_deref(), Some("main"));
        assert!(r.record.get("forks_url").is_none());
        assert_eq!(
            r.record["owner"],
            serde_json::json!({"login": "octo-org", "id": 1, "type": "Organization"})
        );
    }
}
