//! GitLab REST v4.
//!
//! * Group: `GET /api/v4/groups/<url-encoded path>/projects?include_subgroups=true&with_shared=false&order_by=id&sort=asc&per_page=100`
//!   (projects of the whole group tree, not those shared into it; ordered by
//!   id so offset pages stay stable while projects are created).
//! * User: `GET /api/v4/users/<user>/projects?order_by=id&sort=asc&per_page=100`.
//!
//! Pages are followed through `Link: rel="next"` until it is absent (GitLab
//! omits the totals above 10,000 records). The token goes in `PRIVATE-TOKEN`
//! (an OAuth token as `Authorization: Bearer`); git over https uses the user
//! name `oauth2`. Archived projects are listed and flagged (they stay
//! cloneable).

use super::http::secret_header;
use super::paging::{follow_pages, PAGE_SIZE};
use super::record::{bool_field, BadRecord, HostedRecord};
use super::urls::{host_and_path, join_segments, parse_base};
use super::Job;
use super::{Ctx, DiscoveredRepo, Error, Provider, ProviderSource, Scope, TokenKind};
use reqwest::header::HeaderMap;
use url::Url;

/// Fields of a project kept in [`DiscoveredRepo::record`].
const RECORD_FIELDS: &[&str] = &[
    "id",
    "name",
    "path",
    "path_with_namespace",
    "name_with_namespace",
    "namespace.id",
    "namespace.name",
    "namespace.path",
    "namespace.kind",
    "namespace.full_path",
    "default_branch",
    "http_url_to_repo",
    "ssh_url_to_repo",
    "web_url",
    "archived",
    "empty_repo",
    "visibility",
    "forked_from_project.id",
    "forked_from_project.path_with_namespace",
    "forked_from_project.http_url_to_repo",
    "wiki_enabled",
    "wiki_access_level",
    "marked_for_deletion_at",
    "marked_for_deletion_on",
    "created_at",
    "last_activity_at",
];

pub(super) async fn list(job: Job<'_>) -> Result<(), Error> {
    let (src, http, ctx, out) = (job.src, job.http, job.ctx, job.out);
    let base = parse_base(ctx, &src.base_url)?;
    let (api, web) = api_and_web(&base);
    let (mut url, owner) = match &src.scope {
        Scope::Group(g) | Scope::Org(g) if !g.trim().trim_matches('/').is_empty() => {
            let g = g.trim().trim_matches('/');
            let mut u = join_segments(&api, &["groups", g, "projects"]);
            u.query_pairs_mut()
                .append_pair("include_subgroups", "true")
                .append_pair("with_shared", "false");
            (u, g)
        }
        Scope::User(user) if !user.trim().is_empty() => {
            let user = user.trim();
            (join_segments(&api, &["users", user, "projects"]), user)
        }
        _ => {
            return Err(
                ctx.bad_source("GitLab needs a group (full path or id) or a user name as scope")
            )
        }
    };
    url.query_pairs_mut()
        .append_pair("order_by", "id")
        .append_pair("sort", "asc")
        .append_pair("per_page", &PAGE_SIZE.to_string());
    let headers = request_headers(src, ctx)?;
    follow_pages(http, ctx, out, url, &headers, "project", |item| {
        repo(item, &web, owner)
    })
    .await
}

/// The API root (`…/api/v4`) and the web root (`host[:port][/relative]`).
fn api_and_web(base: &Url) -> (Url, String) {
    let path = base.path().trim_end_matches('/');
    if let Some(web_path) = path.strip_suffix("/api/v4") {
        let mut web = base.clone();
        web.set_path(web_path);
        (base.clone(), host_and_path(&web))
    } else {
        (join_segments(base, &["api", "v4"]), host_and_path(base))
    }
}

fn request_headers(src: &ProviderSource, ctx: &Ctx) -> Result<HeaderMap, Error> {
    let mut h = HeaderMap::new();
    if let Some(token) = &src.token {
        let (k, v) = match src.token_kind {
            TokenKind::Pat => secret_header(ctx, "private-token", token.expose())?,
            TokenKind::Bearer => {
                secret_header(ctx, "authorization", &format!("Bearer {}", token.expose()))?
            }
        };
        h.insert(k, v);
    }
    Ok(h)
}

/// A project record as a [`DiscoveredRepo`].
fn repo(v: &serde_json::Value, web: &str, owner: &str) -> Result<DiscoveredRepo, BadRecord> {
    let r = HostedRecord::parse(v, "path_with_namespace", "http_url_to_repo")?;
    let full = r.full;
    let prefix = format!("{}/", owner.to_ascii_lowercase());
    let path = if full.to_ascii_lowercase().starts_with(&prefix) {
        full[prefix.len()..].to_owned()
    } else {
        full.to_owned()
    };
    Ok(DiscoveredRepo {
        empty: bool_field(v, "empty_repo"),
        is_fork: v.get("forked_from_project").is_some_and(|f| !f.is_null()),
        ..r.repo(Provider::GitLab, web, path, RECORD_FIELDS)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discover::tests::url;

    #[test]
    fn api_roots() {
        let (api, web) = api_and_web(&url("https://gitlab.example.com"));
        assert_eq!(api.as_str(), "https://gitlab.example.com/api/v4");
        assert_eq!(web, "gitlab.example.com");
        let (api, web) = api_and_web(&url("https://host:8443/gitlab/api/v4"));
        assert_eq!(api.as_str(), "https://host:8443/gitlab/api/v4");
        assert_eq!(web, "host:8443/gitlab");
    }

    #[test]
    fn project_record() {
        let v = serde_json::json!({
            "id": 103, "path_with_namespace": "acme/sandbox/backend-fork",
            "http_url_to_repo": "https://gitlab.example.com/acme/sandbox/backend-fork.git",
            "default_branch": null, "archived": false, "empty_repo": true,
            "forked_from_project": {"id": 101, "path_with_namespace": "acme/backend", "name": "x"},
            "namespace": {"id": 58, "full_path": "acme/sandbox", "avatar_url": null}
        });
        let r = repo(&v, "gitlab.example.com", "ACME").expect("repo");
        assert_eq!(r.key, "gitlab:gitlab.example.com:103");
        assert_eq!(r.name, "gitlab.example.com/acme/sandbox/backend-fork");
        assert_eq!(r.path, "sandbox/backend-fork");
        assert!(r.is_fork && r.empty && !r.archived && !r.disabled);
        assert_eq!(r.default_branch, None);
        assert_eq!(
            r.record["forked_from_project"],
            serde_json::json!({"id": 101, "path_with_namespace": "acme/backend"})
        );
        assert_eq!(
            r.record["namespace"],
            serde_json::json!({"id": 58, "full_path": "acme/sandbox"})
        );
    }
}
