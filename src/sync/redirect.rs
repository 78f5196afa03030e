//! Same-host redirects of an http(s) remote that gix refused.
//!
//! gix follows no redirect once a request header is configured, and the
//! token is one. When it refuses one, repovault asks
//! `GET <url>/info/refs?service=git-upload-pack` itself, with the token and
//! without following redirects: a redirect to the same host (scheme, host
//! and port; or http to https on the default ports) is followed, up to 5
//! times, and gix then connects to where it leads. A redirect to another host
//! is refused: the token is only sent to the host the source names. Any other
//! answer (or no answer) ends the probe, and gix reports what is wrong.

use super::fetch::FetchError;
use super::Error;
use reqwest::header::{HeaderValue, AUTHORIZATION, LOCATION};
use std::time::Duration;
use url::Url;

/// The request git makes first; a redirect must keep it as its tail.
const SUFFIX: &str = "info/refs?service=git-upload-pack";

/// How many redirects are followed.
const MAX_REDIRECTS: usize = 5;

/// The URL to fetch `url` from: `url` itself, or where its same-host
/// redirects lead. `authorization` is the header value gix will send.
///
/// # Errors
/// [`Error::Fetch`] when the remote redirects to another host, to a URL that
/// is not the same request, or more than 5 times.
pub(super) fn resolve(url: &str, authorization: &str) -> Result<String, Error> {
    let Ok(start) = Url::parse(url) else {
        return Ok(url.to_owned());
    };
    if !matches!(start.scheme(), "http" | "https") || tokio::runtime::Handle::try_current().is_ok()
    {
        return Ok(url.to_owned());
    }
    let Ok(mut value) = HeaderValue::from_str(authorization) else {
        return Ok(url.to_owned());
    };
    value.set_sensitive(true);
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("repovault/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(15))
        .timeout(Duration::from_secs(60))
        .build();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let (Ok(client), Ok(rt)) = (client, rt) else {
        return Ok(url.to_owned());
    };
    rt.block_on(async {
        let mut base = url.trim_end_matches('/').to_owned();
        for _ in 0..=MAX_REDIRECTS {
            let probe = format!("{base}/{SUFFIX}");
            let Ok(probe_url) = Url::parse(&probe) else {
                break;
            };
            let sent = client
                .get(probe_url.clone())
                .header(AUTHORIZATION, value.clone())
                .header("git-protocol", "version=2")
                .send()
                .await;
            let Ok(resp) = sent else { break };
            if !resp.status().is_redirection() {
                break;
            }
            let Some(location) = resp.headers().get(LOCATION).and_then(|v| v.to_str().ok())
            else {
                break;
            };
            let redirect = |to: String, why: String| {
                Error::Fetch(FetchError::Redirect {
                    url: url.to_owned(),
                    to,
                    why,
                })
            };
            let next = probe_url
                .join(location)
                .map_err(|e| redirect("an unusable location".into(), format!(": {e}")))?;
            if !same_host(&probe_url, &next) {
                return Err(redirect(
                    shown(&next),
                    format!(
                        ", another host: not followed, the token is only sent to {}; if the repository moved, update its URL",
                        authority(&probe_url)
                    ),
                ));
            }
            let Some(new_base) = next.as_str().strip_suffix(SUFFIX) else {
                return Err(redirect(
                    shown(&next),
                    ", which is not the same git request: not followed".into(),
                ));
            };
            tracing::info!(from = %base, to = %new_base, "following a same-host redirect");
            base = new_base.trim_end_matches('/').to_owned();
            if base == url.trim_end_matches('/') {
                return Ok(url.to_owned());
            }
        }
        if base == url.trim_end_matches('/') {
            return Ok(url.to_owned());
        }
        Ok(base)
    })
}

/// Same scheme, host and port; or an upgrade from http to https on the
/// default ports of the same host.
fn same_host(from: &Url, to: &Url) -> bool {
    if from.host_str().map(str::to_ascii_lowercase) != to.host_str().map(str::to_ascii_lowercase) {
        return false;
    }
    if from.scheme() == to.scheme() {
        return from.port_or_known_default() == to.port_or_known_default();
    }
    from.scheme() == "http"
        && to.scheme() == "https"
        && from.port().is_none()
        && to.port().is_none()
}

/// `host[:port]`.
fn authority(u: &Url) -> String {
    let h = u.host_str().unwrap_or("?");
    match u.port() {
        Some(p) => format!("{h}:{p}"),
        None => h.to_owned(),
    }
}

/// The URL without user info, query or fragment.
fn shown(u: &Url) -> String {
    let mut u = u.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.set_query(None);
    u.set_fragment(None);
    u.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        let u = |s: &str| Url::parse(s).expect("url");
        assert!(same_host(
            &u("http://127.0.0.1:5000/a"),
            &u("http://127.0.0.1:5000/b")
        ));
        assert!(!same_host(
            &u("http://127.0.0.1:5000/a"),
            &u("http://127.0.0.1:5001/a")
        ));
        assert!(!same_host(
            &u("http://127.0.0.1:5000/a"),
            &u("http://127.0.0.2:5000/a")
        ));
        assert!(same_host(&u("http://h/a"), &u("https://h/a")));
        assert!(!same_host(&u("https://h/a"), &u("http://h/a")));
        assert!(same_host(&u("https://H/a"), &u("https://h:443/b")));
    }
}
