//! The HTTP layer of discovery: one shared `reqwest` client (rustls) with
//! timeouts, retries with exponential backoff and jitter, and the providers'
//! rate-limit rules.
//!
//! * 5xx, connection errors and timeouts: retried with backoff (a
//!   `Retry-After` is obeyed).
//! * 429, and 403 that is a rate limit (`Retry-After`, `x-ratelimit-remaining:
//!   0`, or GitHub's rate-limit messages): wait `Retry-After`, else until
//!   `x-ratelimit-reset` / `RateLimit-Reset`, else back off (GitHub's secondary
//!   limit without headers: at least [`HttpOptions::secondary_rate_limit_wait`]).
//! * `Retry-After` on a successful response (Azure DevOps sends it when it
//!   delayed the request): the *next* request to that host waits.
//! * 401, a 403 that is not a rate limit, and any 2xx that is not JSON (Azure's
//!   203 sign-in page): an authentication error, never retried (GitLab blocks
//!   an IP after repeated failed logins).
//!
//! Redirects are followed only within the same origin, so a token header can
//! never be sent to another host.

use super::urls::redact_url;
use super::{Ctx, Error};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use url::Url;

/// Settings of the HTTP client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpOptions {
    /// Timeout of one whole request (connect, send, read the body).
    pub timeout: Duration,
    /// Timeout of establishing a connection.
    pub connect_timeout: Duration,
    /// How many times one request is retried (after 5xx, connection errors,
    /// rate limits) before giving up.
    pub max_retries: u32,
    /// The first backoff; doubled after each retry, with jitter (a random
    /// 50–100 % of the value).
    pub base_backoff: Duration,
    /// The longest single wait accepted: a server asking to wait longer (a
    /// `Retry-After` or rate-limit reset further away) fails the request
    /// with [`Error::RateLimited`] instead. Also caps the backoff.
    pub max_wait: Duration,
    /// The wait after a GitHub secondary rate limit that carries neither
    /// `Retry-After` nor an exhausted quota (GitHub: at least one minute),
    /// doubled on each repetition.
    pub secondary_rate_limit_wait: Duration,
}

impl Default for HttpOptions {
    /// 60 s per request, 15 s to connect, 5 retries from 1 s, waits of at most
    /// 15 minutes, 60 s after a header-less secondary rate limit.
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(15),
            max_retries: 5,
            base_backoff: Duration::from_secs(1),
            max_wait: Duration::from_secs(15 * 60),
            secondary_rate_limit_wait: Duration::from_secs(60),
        }
    }
}

/// An HTTP client shared by every discovery: one connection pool, user agent
/// `repovault/<version>`, the timeouts of [`HttpOptions`], and per-host
/// pacing state (a `Retry-After` received on one request delays the next one
/// to the same host).
pub struct HttpClient {
    client: reqwest::Client,
    opts: HttpOptions,
    /// Per origin: no request before this instant.
    not_before: Mutex<HashMap<String, Instant>>,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

/// The user agent sent with every request.
pub(crate) const USER_AGENT: &str = concat!("repovault/", env!("CARGO_PKG_VERSION"));

/// A successful JSON response.
pub(crate) struct JsonResponse {
    /// The response headers.
    pub(crate) headers: HeaderMap,
    /// The parsed body.
    pub(crate) body: serde_json::Value,
}

impl JsonResponse {
    /// A header's value, when it is valid text.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        header_str(&self.headers, name)
    }

    /// The `rel="next"` URL of the `Link` header(s).
    pub(crate) fn next_link(&self) -> Option<String> {
        self.headers
            .get_all("link")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|v| link_rel(v, "next"))
    }
}

impl HttpClient {
    /// Builds the client.
    ///
    /// # Errors
    /// [`Error::Client`] when the TLS backend cannot be initialised.
    pub fn new(opts: HttpOptions) -> Result<Self, Error> {
        let policy = reqwest::redirect::Policy::custom(|attempt| {
            if attempt.previous().len() >= 5 {
                return attempt.error("more than 5 redirects");
            }
            let same = attempt
                .previous()
                .first()
                .is_some_and(|first| first.origin() == attempt.url().origin());
            if same {
                attempt.follow()
            } else {
                // Never carry a token header to another host: hand the 3xx back.
                attempt.stop()
            }
        });
        let client = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .timeout(opts.timeout)
            .connect_timeout(opts.connect_timeout)
            .redirect(policy)
            .build()
            .map_err(|e| Error::Client {
                reason: describe_reqwest(&e),
            })?;
        Ok(Self {
            client,
            opts,
            not_before: Mutex::new(HashMap::new()),
        })
    }

    /// The options the client was built with.
    pub fn options(&self) -> &HttpOptions {
        &self.opts
    }

    /// GETs `url` and parses the JSON body, with the retry and rate-limit
    /// rules of this module.
    pub(crate) async fn get_json(
        &self,
        ctx: &Ctx,
        url: &Url,
        headers: &HeaderMap,
    ) -> Result<JsonResponse, Error> {
        let shown = redact_url(url);
        let mut retries = 0u32;
        loop {
            self.wait_turn(ctx, url).await?;
            tracing::debug!(source = %ctx.label, url = %shown, attempt = retries + 1, "GET");
            let sent = self
                .client
                .get(url.clone())
                .headers(headers.clone())
                .send()
                .await;
            let (status, resp_headers, body) = match sent {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let h = resp.headers().clone();
                    match resp.bytes().await {
                        Ok(b) => (status, h, b),
                        Err(e) => {
                            self.transport_retry(ctx, &shown, &e, &mut retries).await?;
                            continue;
                        }
                    }
                }
                Err(e) => {
                    self.transport_retry(ctx, &shown, &e, &mut retries).await?;
                    continue;
                }
            };
            tracing::debug!(source = %ctx.label, url = %shown, status, bytes = body.len(), "response");
            let now = server_now(&resp_headers);
            let retry_after = parse_retry_after(&resp_headers, now);

            if (200..300).contains(&status) {
                self.note_pacing(ctx, url, &resp_headers, retry_after, now);
                return parse_json_body(ctx, url, status, resp_headers, &body);
            }

            let message = ctx.scrub(&error_message(&resp_headers, &body));
            let attempts = retries + 1;
            let wait = match status {
                401 => return Err(auth_error(ctx, status, &message)),
                403 | 429 => {
                    let wait = if let Some(d) = retry_after {
                        Some(d)
                    } else if remaining_is_zero(&resp_headers) || status == 429 {
                        Some(
                            reset_wait(&resp_headers, now)
                                .unwrap_or_default()
                                .max(self.backoff(retries)),
                        )
                    } else if is_rate_limit_message(&message) {
                        let d = self
                            .opts
                            .secondary_rate_limit_wait
                            .saturating_mul(1u32 << retries.min(16));
                        Some(d.max(self.backoff(retries)))
                    } else {
                        None
                    };
                    let Some(wait) = wait else {
                        return Err(auth_error(ctx, status, &message));
                    };
                    if retries >= self.opts.max_retries {
                        return Err(Error::RateLimited {
                            label: ctx.label.clone(),
                            url: shown,
                            reason: format!(
                                "still limited (HTTP {status}) after {attempts} attempts: {message}"
                            ),
                        });
                    }
                    if wait > self.opts.max_wait {
                        return Err(Error::RateLimited {
                            label: ctx.label.clone(),
                            url: shown,
                            reason: format!(
                                "the server asks to wait {}s (HTTP {status}), longer than max_wait {}s: try again later",
                                wait.as_secs(),
                                self.opts.max_wait.as_secs()
                            ),
                        });
                    }
                    tracing::warn!(source = %ctx.label, url = %shown, status, wait_ms = wait.as_millis() as u64, "rate limited; waiting");
                    wait
                }
                404 => {
                    return Err(Error::NotFound {
                        label: ctx.label.clone(),
                        url: shown,
                        message,
                    })
                }
                500..=599 => {
                    let wait = retry_after.unwrap_or_else(|| self.backoff(retries));
                    if retries >= self.opts.max_retries || wait > self.opts.max_wait {
                        return Err(Error::Http {
                            label: ctx.label.clone(),
                            url: shown,
                            status,
                            message: format!("{message} (after {attempts} attempts)"),
                        });
                    }
                    tracing::warn!(source = %ctx.label, url = %shown, status, wait_ms = wait.as_millis() as u64, "server error; retrying");
                    wait
                }
                _ => {
                    return Err(Error::Http {
                        label: ctx.label.clone(),
                        url: shown,
                        status,
                        message,
                    })
                }
            };
            tokio::time::sleep(wait).await;
            retries += 1;
        }
    }

    /// After a connection error: sleeps before the next attempt, or returns
    /// the final error.
    async fn transport_retry(
        &self,
        ctx: &Ctx,
        shown: &str,
        e: &reqwest::Error,
        retries: &mut u32,
    ) -> Result<(), Error> {
        let mut reason = ctx.scrub(&describe_reqwest(e));
        if e.is_timeout() {
            reason = format!("timed out ({reason})");
        }
        let retryable = !e.is_builder() && !e.is_redirect();
        if !retryable || *retries >= self.opts.max_retries {
            if *retries > 0 {
                reason = format!("{reason} (after {} attempts)", *retries + 1);
            }
            return Err(Error::Unreachable {
                label: ctx.label.clone(),
                url: shown.to_owned(),
                reason,
            });
        }
        let wait = self.backoff(*retries);
        tracing::warn!(source = %ctx.label, url = %shown, wait_ms = wait.as_millis() as u64, "{reason}; retrying");
        tokio::time::sleep(wait).await;
        *retries += 1;
        Ok(())
    }

    /// Exponential backoff with jitter: a random 50–100 % of
    /// `base_backoff * 2^retries`, capped at `max_wait`.
    fn backoff(&self, retries: u32) -> Duration {
        use rand::Rng;
        let full = self
            .opts
            .base_backoff
            .saturating_mul(1u32 << retries.min(20))
            .min(self.opts.max_wait);
        let factor: f64 = rand::rng().random_range(0.5..=1.0);
        full.mul_f64(factor)
    }

    /// Waits until the host's pacing allows the next request.
    async fn wait_turn(&self, ctx: &Ctx, url: &Url) -> Result<(), Error> {
        let origin = url.origin().ascii_serialization();
        let until = self
            .not_before
            .lock()
            .ok()
            .and_then(|m| m.get(&origin).copied());
        if let Some(until) = until {
            let wait = until.saturating_duration_since(Instant::now());
            if wait > self.opts.max_wait {
                return Err(Error::RateLimited {
                    label: ctx.label.clone(),
                    url: redact_url(url),
                    reason: format!(
                        "the server asked to wait {}s before the next request, longer than max_wait {}s: try again later",
                        wait.as_secs(),
                        self.opts.max_wait.as_secs()
                    ),
                });
            }
            if !wait.is_zero() {
                tracing::info!(source = %ctx.label, wait_ms = wait.as_millis() as u64, "pacing: waiting as the server asked");
                tokio::time::sleep(wait).await;
            }
        }
        Ok(())
    }

    /// After a success: remembers a `Retry-After` (or an exhausted quota with
    /// a reset time) so the next request to the host waits.
    fn note_pacing(
        &self,
        ctx: &Ctx,
        url: &Url,
        headers: &HeaderMap,
        retry_after: Option<Duration>,
        now: f64,
    ) {
        let wait = match retry_after {
            Some(d) => Some(d),
            None if remaining_is_zero(headers) => {
                reset_wait(headers, now).filter(|d| *d <= self.opts.max_wait)
            }
            None => None,
        };
        let Some(wait) = wait.filter(|d| !d.is_zero()) else {
            return;
        };
        tracing::info!(source = %ctx.label, wait_ms = wait.as_millis() as u64, "the server asks to slow down; delaying the next request");
        let until = Instant::now() + wait;
        if let Ok(mut m) = self.not_before.lock() {
            let e = m.entry(url.origin().ascii_serialization()).or_insert(until);
            if *e < until {
                *e = until;
            }
        }
    }
}

/// Builds a header whose value is secret: marked sensitive, so it is never
/// printed by the HTTP stack.
pub(crate) fn secret_header(
    ctx: &Ctx,
    name: &'static str,
    value: &str,
) -> Result<(HeaderName, HeaderValue), Error> {
    let mut v = HeaderValue::from_str(value).map_err(|_| {
        ctx.bad_source("the token contains characters not allowed in an HTTP header (a newline?)")
    })?;
    v.set_sensitive(true);
    Ok((HeaderName::from_static(name), v))
}

/// A plain header.
pub(crate) fn plain_header(name: &'static str, value: &'static str) -> (HeaderName, HeaderValue) {
    (
        HeaderName::from_static(name),
        HeaderValue::from_static(value),
    )
}

fn parse_json_body(
    ctx: &Ctx,
    url: &Url,
    status: u16,
    headers: HeaderMap,
    body: &[u8],
) -> Result<JsonResponse, Error> {
    let ctype = header_str(&headers, "content-type")
        .unwrap_or("")
        .to_ascii_lowercase();
    let starts_html = body
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'<');
    if !ctype.contains("json") || starts_html {
        let what = if starts_html || ctype.contains("html") {
            "an HTML page".to_owned()
        } else if ctype.is_empty() {
            "a body without content type".to_owned()
        } else {
            format!("{ctype:?}")
        };
        let reason = format!(
            "the server answered HTTP {status} with {what} instead of JSON (a sign-in page): the token was probably rejected or has expired; check {}",
            ctx.hint
        );
        return Err(Error::Auth {
            label: ctx.label.clone(),
            status,
            reason,
        });
    }
    let value = serde_json::from_slice(body)
        .map_err(|e| ctx.bad_response(url, format!("invalid JSON: {e}")))?;
    Ok(JsonResponse {
        headers,
        body: value,
    })
}

fn auth_error(ctx: &Ctx, status: u16, message: &str) -> Error {
    let said = if message.is_empty() {
        String::new()
    } else {
        format!(" (server said: {message})")
    };
    let reason = match (status, ctx.has_token) {
        (401, true) => format!(
            "the token was rejected (HTTP 401): check {} — it may be expired, revoked, or lack the read scope{said}",
            ctx.hint
        ),
        (401, false) => format!(
            "authentication required (HTTP 401) and no token is configured: set {}{said}",
            ctx.hint
        ),
        (_, true) => format!(
            "access denied (HTTP {status}): the token lacks permission, or the server blocks this client; check {} (not retried){said}",
            ctx.hint
        ),
        (_, false) => format!(
            "access denied (HTTP {status}) and no token is configured: set {} (not retried){said}",
            ctx.hint
        ),
    };
    Error::Auth {
        label: ctx.label.clone(),
        status,
        reason,
    }
}

/// A header's value as text.
pub(crate) fn header_str<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok()).map(str::trim)
}

/// The server's clock (its `Date` header) as unix seconds, else ours.
fn server_now(h: &HeaderMap) -> f64 {
    header_str(h, "date")
        .and_then(parse_http_date)
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0)
        })
}

fn parse_http_date(s: &str) -> Option<f64> {
    jiff::fmt::rfc2822::DateTimeParser::new()
        .parse_timestamp(s)
        .ok()
        .map(|t| t.as_second() as f64)
}

/// `Retry-After`: seconds (decimals accepted) or an HTTP date.
pub(crate) fn parse_retry_after(h: &HeaderMap, now: f64) -> Option<Duration> {
    let v = header_str(h, "retry-after")?;
    if let Ok(secs) = v.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let at = parse_http_date(v)?;
    Some(Duration::from_secs_f64((at - now).max(0.0)))
}

/// `x-ratelimit-remaining` (GitHub, Azure) or `RateLimit-Remaining` (GitLab) is 0.
fn remaining_is_zero(h: &HeaderMap) -> bool {
    ["x-ratelimit-remaining", "ratelimit-remaining"]
        .iter()
        .filter_map(|n| header_str(h, n))
        .any(|v| v.parse::<f64>().is_ok_and(|x| x <= 0.0))
}

/// Time until `x-ratelimit-reset` / `RateLimit-Reset` (unix seconds).
fn reset_wait(h: &HeaderMap, now: f64) -> Option<Duration> {
    let reset = ["x-ratelimit-reset", "ratelimit-reset"]
        .iter()
        .filter_map(|n| header_str(h, n))
        .find_map(|v| v.parse::<f64>().ok())?;
    let d = reset - now;
    (d.is_finite()).then(|| Duration::from_secs_f64(d.max(0.0)))
}

/// GitHub's rate-limit messages (primary and secondary).
fn is_rate_limit_message(m: &str) -> bool {
    let m = m.to_ascii_lowercase();
    m.contains("rate limit")
        || m.contains("retry your request again later")
        || m.contains("wait a few minutes before you try again")
}

/// A short message from an error body: JSON `message` / `error` /
/// `error_description`, else the first line of text (at most 300 chars).
fn error_message(h: &HeaderMap, body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let trimmed = text.trim();
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(trimmed) {
        for k in ["message", "error_description", "error"] {
            match v.get(k) {
                Some(serde_json::Value::String(s)) => return clip(s),
                Some(serde_json::Value::Null) | None => {}
                Some(other) => return clip(&other.to_string()),
            }
        }
    }
    let ctype = header_str(h, "content-type").unwrap_or("");
    if trimmed.starts_with('<') || ctype.contains("html") {
        return "(an HTML page)".to_owned();
    }
    clip(trimmed.lines().next().unwrap_or(""))
}

fn clip(s: &str) -> String {
    let s = s.trim();
    match s.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

/// The URL of the link with relation `rel` in a `Link` header value
/// (`<url>; rel="next", <url>; rel="last"`).
pub(crate) fn link_rel(header: &str, rel: &str) -> Option<String> {
    let mut rest = header;
    loop {
        let start = rest.find('<')?;
        let end = start + rest[start..].find('>')?;
        let target = &rest[start + 1..end];
        let after = &rest[end + 1..];
        // The parameters run to the next link, which starts with '<'.
        let params_end = after.find('<').unwrap_or(after.len());
        let params = after[..params_end].trim_end().trim_end_matches(',');
        let hit = params.split(';').any(|p| {
            let Some((k, v)) = p.split_once('=') else {
                return false;
            };
            k.trim().eq_ignore_ascii_case("rel")
                && v.trim()
                    .trim_matches('"')
                    .split_ascii_whitespace()
                    .any(|r| r.eq_ignore_ascii_case(rel))
        });
        if hit {
            return Some(target.trim().to_owned());
        }
        rest = &after[params_end..];
    }
}

fn describe_reqwest(e: &reqwest::Error) -> String {
    use std::error::Error as _;
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(cause) = src {
        let c = cause.to_string();
        if !s.contains(&c) {
            s.push_str(": ");
            s.push_str(&c);
        }
        src = cause.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                HeaderName::from_static(k),
                HeaderValue::from_str(v).expect("header"),
            );
        }
        h
    }

    #[test]
    fn link_header() {
        let v = r#"<https://gitlab.example.com/api/v4/groups/acme/projects?page=2&per_page=2>; rel="next", <https://x/?page=1>; rel="first", <https://x/?page=2>; rel="last""#;
        assert_eq!(
            link_rel(v, "next").as_deref(),
            Some("https://gitlab.example.com/api/v4/groups/acme/projects?page=2&per_page=2")
        );
        assert_eq!(link_rel(v, "first").as_deref(), Some("https://x/?page=1"));
        let last_only = r#"<https://x/?page=1>; rel="prev", <https://x/?page=1>; rel="first""#;
        assert_eq!(link_rel(last_only, "next"), None);
        assert_eq!(
            link_rel(r#"<https://x/a,b?p=2>; rel="next last""#, "next").as_deref(),
            Some("https://x/a,b?p=2")
        );
        assert_eq!(link_rel("", "next"), None);
    }

    #[test]
    fn retry_after_forms() {
        let h = headers(&[("retry-after", "1")]);
        assert_eq!(parse_retry_after(&h, 0.0), Some(Duration::from_secs(1)));
        let h = headers(&[("retry-after", "0.5")]);
        assert_eq!(parse_retry_after(&h, 0.0), Some(Duration::from_millis(500)));
        let h = headers(&[("retry-after", "Thu, 01 Jan 2026 00:01:00 GMT")]);
        let now = 1_767_225_600.0; // 2026-01-01T00:00:00Z
        assert_eq!(parse_retry_after(&h, now), Some(Duration::from_secs(60)));
        let h = headers(&[("retry-after", "garbage")]);
        assert_eq!(parse_retry_after(&h, now), None);
        assert_eq!(parse_retry_after(&HeaderMap::new(), now), None);
    }

    #[test]
    fn rate_limit_headers() {
        let h = headers(&[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "110")]);
        assert!(remaining_is_zero(&h));
        assert_eq!(reset_wait(&h, 100.0), Some(Duration::from_secs(10)));
        assert_eq!(reset_wait(&h, 200.0), Some(Duration::ZERO));
        let h = headers(&[("ratelimit-remaining", "1998"), ("ratelimit-reset", "1")]);
        assert!(!remaining_is_zero(&h));
        assert!(is_rate_limit_message(
            "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."
        ));
        assert!(is_rate_limit_message(
            "API rate limit exceeded for user ID 1."
        ));
        assert!(!is_rate_limit_message("Forbidden"));
    }

    #[test]
    fn error_messages() {
        let h = HeaderMap::new();
        assert_eq!(
            error_message(&h, br#"{"message":"401 Unauthorized"}"#),
            "401 Unauthorized"
        );
        assert_eq!(
            error_message(&h, br#"{"error":"404 Not Found"}"#),
            "404 Not Found"
        );
        assert_eq!(error_message(&h, b"Retry later\n"), "Retry later");
        assert_eq!(
            error_message(&h, b"<!DOCTYPE html><html>"),
            "(an HTML page)"
        );
        assert_eq!(error_message(&h, &[b'x'; 400]).chars().count(), 301);
    }

    #[test]
    fn backoff_is_bounded() {
        let opts = HttpOptions {
            base_backoff: Duration::from_millis(100),
            max_wait: Duration::from_secs(1),
            ..HttpOptions::default()
        };
        let c = HttpClient::new(opts).expect("client");
        for r in 0..30 {
            let d = c.backoff(r);
            let full = Duration::from_millis(100)
                .saturating_mul(1 << r.min(20))
                .min(Duration::from_secs(1));
            assert!(d >= full / 2 && d <= full, "{r}: {d:?}");
        }
    }
}
