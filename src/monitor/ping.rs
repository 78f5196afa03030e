//! Health-check pings (healthchecks.io's protocol, which most dead-man's
//! switches speak): `GET URL/start` when a run begins, then `POST URL` when
//! it succeeded or `POST URL/<exit code>` when it did not, with the run's
//! summary (at most [`MAX_BODY`] bytes) as the body.
//!
//! A ping that fails or takes longer than [`PING_TIMEOUT`] is logged (the
//! host only: the path of a ping URL is its secret) and never fails or holds
//! up the backup by more than the timeout.

use std::time::Duration;

/// How long one ping may take, connecting included.
pub const PING_TIMEOUT: Duration = Duration::from_secs(5);

/// The most of a summary a ping carries (healthchecks keeps 10 KB).
pub const MAX_BODY: usize = 10 * 1024;

/// Pings one URL.
#[derive(Debug)]
pub struct Pinger {
    base: url::Url,
    client: Option<reqwest::blocking::Client>,
}

impl Pinger {
    /// A pinger of `url` (an http or https URL).
    ///
    /// # Errors
    /// `url` is not an http(s) URL: the message says so.
    pub fn new(url: &str) -> Result<Pinger, String> {
        let base = url::Url::parse(url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
            .ok_or_else(|| "the ping URL must be an http or https URL".to_owned())?;
        let client = reqwest::blocking::Client::builder()
            .timeout(PING_TIMEOUT)
            .connect_timeout(PING_TIMEOUT)
            .user_agent(concat!("repovault/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| tracing::warn!("pings disabled: {}", e.without_url()))
            .ok();
        Ok(Pinger { base, client })
    }

    /// Where the pings go, for messages: scheme, host and port, not the path.
    pub fn host(&self) -> String {
        let mut s = format!(
            "{}://{}",
            self.base.scheme(),
            self.base.host_str().unwrap_or("")
        );
        if let Some(p) = self.base.port() {
            s.push_str(&format!(":{p}"));
        }
        s
    }

    /// The URL with `suffix` as one more path segment (`None`: the URL itself).
    fn url(&self, suffix: Option<&str>) -> url::Url {
        let mut u = self.base.clone();
        if let Some(s) = suffix {
            if let Ok(mut segs) = u.path_segments_mut() {
                segs.pop_if_empty().push(s);
            }
        }
        u
    }

    /// `GET URL/start`: the run began.
    pub fn start(&self) {
        self.send(self.url(Some("start")), None);
    }

    /// `POST URL` (exit code 0) or `POST URL/<exit code>`, with `summary`
    /// cut to [`MAX_BODY`] bytes.
    pub fn finish(&self, exit_code: u8, summary: &str) {
        let code = exit_code.to_string();
        let url = self.url((exit_code != 0).then_some(code.as_str()));
        self.send(url, Some(truncate(summary, MAX_BODY).to_owned()));
    }

    fn send(&self, url: url::Url, body: Option<String>) {
        let Some(client) = &self.client else { return };
        let req = match body {
            Some(b) => client
                .post(url)
                .header("content-type", "text/plain; charset=utf-8")
                .body(b),
            None => client.get(url),
        };
        match req.send() {
            Ok(r) if r.status().is_success() => tracing::debug!("pinged {}", self.host()),
            Ok(r) => tracing::warn!("ping to {} answered {}", self.host(), r.status()),
            Err(e) => tracing::warn!("ping to {} failed: {}", self.host(), e.without_url()),
        }
    }
}

/// `s` cut to at most `max` bytes at a character boundary.
pub fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_bodies() {
        let p = Pinger::new("https://hc.example.com/ping/abc-123").unwrap();
        assert_eq!(
            p.url(Some("start")).as_str(),
            "https://hc.example.com/ping/abc-123/start"
        );
        assert_eq!(
            p.url(Some("3")).as_str(),
            "https://hc.example.com/ping/abc-123/3"
        );
        let q = Pinger::new("http://127.0.0.1:8000/x/?rid=1").unwrap();
        assert_eq!(
            q.url(Some("start")).as_str(),
            "http://127.0.0.1:8000/x/start?rid=1"
        );
        assert_eq!(q.host(), "http://127.0.0.1:8000");
        assert!(Pinger::new("ftp://x/y").is_err());
        assert!(Pinger::new("not a url").is_err());
        assert_eq!(truncate("aé", 2), "a");
        assert_eq!(truncate("abc", 10), "abc");
    }
}
