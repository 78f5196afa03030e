//! Real git servers on 127.0.0.1: [`GitDaemon`] (`git daemon`, `git://`) and
//! [`HttpGitServer`] (`git http-backend` as a CGI behind a tiny std-only
//! HTTP/1.1 server, smart HTTP, optionally behind Basic auth). Both are torn
//! down (processes killed and reaped, threads joined) when dropped.

use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::git::{git_command, quiet};
use super::http_fake::{base64_decode, percent_decode};

/// Returns a port that was free on 127.0.0.1 a moment ago.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().unwrap().port()
}

/// Sends SIGTERM (SIGKILL after 5 s) to the process group led by `child`, reaps
/// `child` and waits until no process of the group is left.
fn kill_group(child: &mut Child) {
    let pgid = format!("-{}", child.id());
    let signal_group = |sig: &str| {
        let status = quiet(Command::new("kill").args([sig, "--", &pgid])).status();
        status.is_ok_and(|s| s.success())
    };
    signal_group("-TERM");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let reaped = matches!(child.try_wait(), Ok(Some(_)));
        if reaped && !signal_group("-0") {
            return;
        }
        if Instant::now() > deadline {
            signal_group("-KILL");
            let _ = child.kill();
            let _ = child.wait();
            return;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// A `git daemon` serving every repository below `base` (read-only) at
/// `git://127.0.0.1:PORT/<path relative to base>`. Killed (with its per-connection
/// children) when dropped.
pub struct GitDaemon {
    /// TCP port the daemon listens on (127.0.0.1).
    pub port: u16,
    /// Canonical base path; URL paths are relative to it.
    pub base: PathBuf,
    child: Child,
}

impl GitDaemon {
    /// Starts the daemon on a free port and waits (up to 10 s per attempt,
    /// retrying on port clashes) until it accepts connections.
    pub fn start(base_path: &Path) -> GitDaemon {
        let base = base_path.canonicalize().expect("canonicalize daemon base");
        let base_str = base.to_str().expect("utf-8 base path");
        for _attempt in 0..5 {
            let port = free_port();
            let mut cmd = git_command(&base, &["daemon", "--reuseaddr", "--export-all"]);
            cmd.arg("--listen=127.0.0.1").arg(format!("--port={port}"));
            cmd.arg(format!("--base-path={base_str}")).arg(base_str);
            // Own process group: Drop kills the per-connection children too.
            let mut child = quiet(&mut cmd)
                .process_group(0)
                .spawn()
                .expect("spawn git daemon");
            if wait_for_listener(port, &mut child, Duration::from_secs(10)) {
                return GitDaemon { port, base, child };
            }
            kill_group(&mut child);
        }
        panic!("git daemon did not start for {}", base.display());
    }

    /// `git://127.0.0.1:PORT/<rel>`.
    pub fn url(&self, rel: &str) -> String {
        let rel = rel.trim_start_matches('/');
        format!("git://127.0.0.1:{}/{rel}", self.port)
    }
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        kill_group(&mut self.child);
    }
}

/// Waits until something accepts on `port` while `child` is still running.
fn wait_for_listener(port: u16, child: &mut Child, timeout: Duration) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if !matches!(child.try_wait(), Ok(None)) {
            return false;
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            // A clash with a foreign listener makes our daemon exit right away.
            thread::sleep(Duration::from_millis(50));
            return matches!(child.try_wait(), Ok(None));
        }
        thread::sleep(Duration::from_millis(25));
    }
    false
}

/// Who may talk to an [`HttpGitServer`].
enum Auth {
    Anyone,
    Basic(String, String),
    /// Any user name, password must equal the token.
    Token(String),
}

impl Auth {
    fn allows(&self, authorization: Option<&str>) -> bool {
        let (user, pass) = match self {
            Auth::Anyone => return true,
            Auth::Basic(u, p) => (Some(u.as_str()), p.as_str()),
            Auth::Token(t) => (None, t.as_str()),
        };
        let Some((scheme, cred)) = authorization.and_then(|h| h.trim().split_once(' ')) else {
            return false;
        };
        let decoded = base64_decode(cred).and_then(|b| String::from_utf8(b).ok());
        match decoded.as_deref().and_then(|d| d.split_once(':')) {
            Some((u, p)) if scheme.eq_ignore_ascii_case("basic") => {
                p == pass && user.is_none_or(|want| want == u)
            }
            _ => false,
        }
    }
}

struct Shared {
    base: PathBuf,
    port: u16,
    auth: Auth,
    stop: AtomicBool,
    log: Mutex<Vec<String>>,
    /// The packs received by `git-receive-pack` POSTs: (body bytes, pack bytes).
    pushes: Mutex<Vec<(usize, usize)>>,
    /// Open connections (to shut them down on drop) and their threads.
    conns: Mutex<Vec<(TcpStream, JoinHandle<()>)>>,
}

/// Smart-HTTP git server for every repository below `base`, at
/// `http://127.0.0.1:PORT/<path relative to base>`, backed by `git http-backend`.
///
/// One request per connection (`Connection: close`); request bodies may use
/// `Content-Length` or chunked encoding (and `Content-Encoding: gzip`, handled
/// by http-backend); the `Git-Protocol` header is forwarded so protocol v2 works.
/// Dropping it stops accepting, shuts down open connections and joins all threads.
pub struct HttpGitServer {
    /// TCP port the server listens on (127.0.0.1).
    pub port: u16,
    /// Directory served as `GIT_PROJECT_ROOT`.
    pub base: PathBuf,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl HttpGitServer {
    /// Starts serving `base`; with `auth = Some((user, password))` every request
    /// needs that Basic authorization, otherwise it gets a `401`.
    pub fn start(base: &Path, auth: Option<(String, String)>) -> HttpGitServer {
        let auth = auth.map_or(Auth::Anyone, |(u, p)| Auth::Basic(u, p));
        Self::start_with(base, auth)
    }

    /// Starts serving `base`, accepting Basic auth with any user name and
    /// password == `token` (GitHub / Azure DevOps style).
    pub fn start_token(base: &Path, token: &str) -> HttpGitServer {
        Self::start_with(base, Auth::Token(token.to_string()))
    }

    fn start_with(base: &Path, auth: Auth) -> HttpGitServer {
        let base = base.canonicalize().expect("canonicalize http base");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind http server");
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared {
            base: base.clone(),
            port,
            auth,
            stop: AtomicBool::new(false),
            log: Mutex::new(Vec::new()),
            pushes: Mutex::new(Vec::new()),
            conns: Mutex::new(Vec::new()),
        });
        let sh = Arc::clone(&shared);
        let accept = thread::spawn(move || {
            for stream in listener.incoming() {
                if sh.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let Ok(stream_copy) = stream.try_clone() else {
                    continue;
                };
                let conn_shared = Arc::clone(&sh);
                let handle = thread::spawn(move || {
                    if let Err(e) = handle_connection(&conn_shared, stream) {
                        if e.kind() != io::ErrorKind::UnexpectedEof {
                            eprintln!("HttpGitServer: connection error: {e}");
                        }
                    }
                });
                let mut conns = sh.conns.lock().unwrap();
                conns.retain(|(_, h)| !h.is_finished());
                conns.push((stream_copy, handle));
            }
        });
        HttpGitServer {
            port,
            base,
            shared,
            accept: Some(accept),
        }
    }

    /// `http://127.0.0.1:PORT/<rel>`.
    pub fn url(&self, rel: &str) -> String {
        let rel = rel.trim_start_matches('/');
        format!("http://127.0.0.1:{}/{rel}", self.port)
    }

    /// `http://user:password@127.0.0.1:PORT/<rel>` (no percent-encoding applied).
    pub fn url_with_credentials(&self, rel: &str, user: &str, password: &str) -> String {
        let rel = rel.trim_start_matches('/');
        format!("http://{user}:{password}@127.0.0.1:{}/{rel}", self.port)
    }

    /// Number of requests received so far (including rejected ones).
    pub fn request_count(&self) -> usize {
        self.shared.log.lock().unwrap().len()
    }

    /// Each authorized `POST .../git-receive-pack` (a push) as (body bytes,
    /// bytes of its pack: from the `PACK` signature on, 0 without a pack).
    pub fn pushes(&self) -> Vec<(usize, usize)> {
        self.shared.pushes.lock().unwrap().clone()
    }

    /// Log of received requests as `"METHOD /path?query"` (no headers, no credentials).
    pub fn requests(&self) -> Vec<String> {
        self.shared.log.lock().unwrap().clone()
    }
}

impl Drop for HttpGitServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
        let conns = std::mem::take(&mut *self.shared.conns.lock().unwrap());
        for (stream, handle) in conns {
            let _ = stream.shutdown(Shutdown::Both);
            let _ = handle.join();
        }
    }
}

struct Request {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        let found = self.headers.iter().find(|(k, _)| *k == name);
        found.map(|(_, v)| v.as_str())
    }

    fn header_has(&self, name: &str, token: &str) -> bool {
        self.header(name)
            .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    }
}

fn read_line(r: &mut impl BufRead) -> io::Result<String> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

fn read_request_head(r: &mut impl BufRead) -> io::Result<Request> {
    let line = read_line(r)?;
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return Err(bad("malformed request line"));
    };
    let mut headers = Vec::new();
    loop {
        let line = read_line(r)?;
        let Some((k, v)) = line.split_once(':') else {
            break; // the empty line ending the head
        };
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    Ok(Request {
        method: method.to_string(),
        target: target.to_string(),
        headers,
    })
}

/// Reads the request body, de-chunking `Transfer-Encoding: chunked`.
fn read_body(r: &mut impl BufRead, req: &Request) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    if req.header_has("transfer-encoding", "chunked") {
        loop {
            let line = read_line(r)?;
            let size_hex = line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_hex, 16).map_err(|_| bad("bad chunk size"))?;
            if size == 0 {
                while !read_line(r)?.is_empty() {} // trailers
                return Ok(body);
            }
            let start = body.len();
            body.resize(start + size, 0);
            r.read_exact(&mut body[start..])?;
            if !read_line(r)?.is_empty() {
                return Err(bad("missing CRLF after chunk"));
            }
        }
    }
    if let Some(len) = req.header("content-length") {
        let len: usize = len.parse().map_err(|_| bad("bad content-length"))?;
        body.resize(len, 0);
        r.read_exact(&mut body)?;
    }
    Ok(body)
}

fn handle_connection(shared: &Shared, stream: TcpStream) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    stream.set_write_timeout(Some(Duration::from_secs(60)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut out = stream;
    let req = read_request_head(&mut reader)?;
    let line = format!("{} {}", req.method, req.target);
    shared.log.lock().unwrap().push(line);

    let expects_continue = req.header_has("expect", "100-continue");
    let response = if !shared.auth.allows(req.header("authorization")) {
        if !expects_continue {
            read_body(&mut reader, &req)?; // keep the socket clean for the client
        }
        let body = b"authentication required\n";
        let head = "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"test\"\r\n\
                    Content-Type: text/plain\r\n";
        (head.to_string(), body.to_vec())
    } else {
        if expects_continue {
            out.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        }
        let body = read_body(&mut reader, &req)?;
        if req.method == "POST" && req.target.ends_with("/git-receive-pack") {
            let pack = find(&body, b"PACK").map_or(0, |i| body.len() - i);
            shared.pushes.lock().unwrap().push((body.len(), pack));
        }
        run_backend(shared, &req, body)?
    };
    let (head, body) = response;
    let mut msg = head.into_bytes();
    let len = body.len();
    msg.extend_from_slice(format!("Content-Length: {len}\r\nConnection: close\r\n\r\n").as_bytes());
    if req.method != "HEAD" {
        msg.extend_from_slice(&body);
    }
    out.write_all(&msg)?;
    out.flush()?;
    // Half-close, then drain whatever the client still sends so that closing
    // does not turn into a TCP reset that could destroy the response.
    let _ = out.shutdown(Shutdown::Write);
    let _ = out.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = io::copy(&mut reader, &mut io::sink());
    Ok(())
}

/// Runs `git http-backend` as a CGI for `req`; returns the response head (status
/// line and CGI headers, each ending in CRLF, without the blank line) and body.
fn run_backend(shared: &Shared, req: &Request, body: Vec<u8>) -> io::Result<(String, Vec<u8>)> {
    let (path, query) = req.target.split_once('?').unwrap_or((&req.target, ""));
    let mut cmd = git_command(&shared.base, &["http-backend"]);
    cmd.env("GIT_PROJECT_ROOT", &shared.base)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .env("SERVER_PROTOCOL", "HTTP/1.1")
        .env("SERVER_NAME", "127.0.0.1")
        .env("SERVER_PORT", shared.port.to_string())
        .env("REMOTE_ADDR", "127.0.0.1")
        .env("REQUEST_METHOD", &req.method)
        .env("PATH_INFO", percent_decode(path))
        .env("QUERY_STRING", query)
        .env("CONTENT_LENGTH", body.len().to_string());
    let forwarded = [
        ("content-type", "CONTENT_TYPE"),
        ("git-protocol", "GIT_PROTOCOL"),
        ("content-encoding", "HTTP_CONTENT_ENCODING"),
    ];
    for (header, var) in forwarded {
        if let Some(v) = req.header(header) {
            cmd.env(var, v);
        }
    }
    let mut err_file = tempfile::tempfile()?;
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped());
    let mut child = cmd.stderr(err_file.try_clone()?).spawn()?;
    // Feed stdin from another thread so a large body cannot deadlock with stdout.
    let mut stdin = child.stdin.take().unwrap();
    let writer = thread::spawn(move || stdin.write_all(&body));
    let mut output = Vec::new();
    child.stdout.take().unwrap().read_to_end(&mut output)?;
    let status = child.wait()?;
    let _ = writer.join();
    let mut stderr = String::new();
    err_file.seek(SeekFrom::Start(0))?;
    err_file.read_to_string(&mut stderr)?;

    let split = find(&output, b"\r\n\r\n")
        .map(|i| (i, i + 4))
        .or_else(|| find(&output, b"\n\n").map(|i| (i, i + 2)));
    let Some((head_end, body_start)) = split else {
        eprintln!("HttpGitServer: http-backend {status} gave no headers: {stderr}");
        let head = "HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\n";
        return Ok((head.to_string(), stderr.into_bytes()));
    };
    let mut status_line = "200 OK".to_string();
    let mut headers = String::new();
    for line in String::from_utf8_lossy(&output[..head_end]).lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        match k.trim().to_ascii_lowercase().as_str() {
            "status" => status_line = v.trim().to_string(),
            "content-length" | "connection" | "transfer-encoding" => {}
            _ => headers.push_str(&format!("{}: {}\r\n", k.trim(), v.trim())),
        }
    }
    if !status_line.starts_with('2') && !stderr.is_empty() {
        eprintln!("HttpGitServer: {} -> {status_line}: {stderr}", req.target);
    }
    if !status_line.contains(' ') {
        status_line.push_str(" Status"); // a reason phrase is required
    }
    let head = format!("HTTP/1.1 {status_line}\r\n{headers}");
    Ok((head, output[body_start..].to_vec()))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
