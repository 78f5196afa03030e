//! Shared helpers for repovault's integration tests.
//!
//! * [`git`], [`git_ok`], [`git_bytes`] and [`git_command`] run the `git` CLI in a
//!   hermetic environment (no system/global config, fixed identity, no prompts).
//! * [`TestRepo`] builds a non-bare working repository with deterministic commits,
//!   branches and tags, and can mirror it into bare repositories.
//! * [`refs_of`], [`head_of`] and [`object_count`] inspect any repository.
//! * [`GitDaemon`] serves a directory over `git://127.0.0.1:PORT/`.
//! * [`HttpGitServer`] serves a directory over smart HTTP (`git http-backend` as a
//!   CGI behind a tiny std-only HTTP/1.1 server), optionally behind Basic auth.
//!
//! Servers listen on 127.0.0.1 only and are torn down (processes killed and
//! reaped, threads joined) when dropped.
#![allow(dead_code)]

use std::ffi::OsString;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// Author and committer name used for every commit and tag.
pub const GIT_NAME: &str = "RepoVault Test";
/// Author and committer e-mail used for every commit and tag.
pub const GIT_EMAIL: &str = "test@repovault.invalid";
/// Commit time (unix seconds) of the first commit of a fresh [`TestRepo`].
pub const DEFAULT_TIME: i64 = 1_700_000_000;

/// `-c` settings passed to every git invocation.
const GIT_CONFIG: &[&str] = &[
    "init.defaultBranch=main",
    "protocol.file.allow=always",
    "commit.gpgSign=false",
    "tag.gpgSign=false",
    "gc.auto=0",
    "maintenance.auto=false",
    "credential.helper=",
    "advice.detachedHead=false",
];

/// An empty directory used as `HOME` and `XDG_CONFIG_HOME` for git.
fn fake_home() -> &'static Path {
    static HOME: OnceLock<PathBuf> = OnceLock::new();
    HOME.get_or_init(|| {
        let p = std::env::temp_dir().join("repovault-test-home");
        std::fs::create_dir_all(&p).expect("create fake HOME for git");
        p
    })
}

/// Applies the hermetic git environment to any command (git or not): removes
/// every inherited `GIT_*` and `*_proxy` variable and sets a fixed identity, an
/// empty `HOME`, no system/global config, `LC_ALL=C` and no interactive prompts.
pub fn hermetic(cmd: &mut Command) -> &mut Command {
    for (key, _) in std::env::vars_os() {
        let k = key.to_string_lossy().to_ascii_uppercase();
        if k.starts_with("GIT_") || k.ends_with("_PROXY") {
            cmd.env_remove(&key);
        }
    }
    let home: OsString = fake_home().into();
    cmd.env_remove("SSH_ASKPASS")
        .env_remove("EMAIL")
        .env_remove("LANGUAGE")
        .env("HOME", &home)
        .env("XDG_CONFIG_HOME", &home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", GIT_NAME)
        .env("GIT_AUTHOR_EMAIL", GIT_EMAIL)
        .env("GIT_COMMITTER_NAME", GIT_NAME)
        .env("GIT_COMMITTER_EMAIL", GIT_EMAIL)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("LC_ALL", "C")
}

/// A hermetic `git -c ... <args>` command running in `dir`, ready to be
/// customised (extra env, stdin, ...) before spawning.
pub fn git_command(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new("git");
    hermetic(&mut cmd).current_dir(dir);
    for kv in GIT_CONFIG {
        cmd.arg("-c").arg(kv);
    }
    cmd.args(args);
    cmd
}

fn git_output(dir: &Path, args: &[&str], env: &[(&str, String)]) -> Output {
    let mut cmd = git_command(dir, args);
    cmd.stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("cannot run git");
    let err = String::from_utf8_lossy(&out.stderr);
    let (dir, status) = (dir.display(), out.status);
    assert!(
        status.success(),
        "git {args:?} in {dir} failed ({status}):\n{err}"
    );
    out
}

/// Detaches stdin, stdout and stderr of `cmd`.
fn quiet(cmd: &mut Command) -> &mut Command {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
}

/// Runs git in `dir`; panics (showing stderr) on failure, returns trimmed stdout.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = git_output(dir, args, &[]);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Runs git in `dir` and reports whether it exited successfully (output discarded).
pub fn git_ok(dir: &Path, args: &[&str]) -> bool {
    let status = quiet(&mut git_command(dir, args)).status();
    status.expect("cannot run git").success()
}

/// Runs git in `dir`; panics (showing stderr) on failure, returns raw stdout.
pub fn git_bytes(dir: &Path, args: &[&str]) -> Vec<u8> {
    git_output(dir, args, &[]).stdout
}

/// All refs of `repo` as sorted `(refname, objectname)` pairs (annotated tags
/// map to the tag object, not the commit). `HEAD` is not included.
pub fn refs_of(repo: &Path) -> Vec<(String, String)> {
    let out = git(repo, &["for-each-ref", "--format=%(refname) %(objectname)"]);
    let mut refs: Vec<(String, String)> = out
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(r, o)| (r.to_string(), o.to_string()))
        .collect();
    refs.sort();
    refs
}

/// Where `HEAD` of `repo` points: the ref name (e.g. `refs/heads/main`) or, when
/// detached, the commit id.
pub fn head_of(repo: &Path) -> String {
    let mut cmd = git_command(repo, &["symbolic-ref", "-q", "HEAD"]);
    let out = cmd.stdin(Stdio::null()).output().expect("run git");
    if out.status.success() {
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    } else {
        git(repo, &["rev-parse", "HEAD"])
    }
}

/// Number of objects reachable from any ref (`git rev-list --all --objects | wc -l`).
pub fn object_count(repo: &Path) -> usize {
    git_bytes(repo, &["rev-list", "--all", "--objects"])
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .count()
}

/// A non-bare working repository (`<tempdir>/work`) with helpers to build a
/// deterministic history. Commit and tag dates start at [`DEFAULT_TIME`] and
/// advance by 60 s per commit unless set with [`TestRepo::set_time`].
pub struct TestRepo {
    /// Temporary directory holding the work tree and any bare clones; removed on drop.
    pub dir: TempDir,
    /// Path of the working repository (`dir/work`).
    pub path: PathBuf,
    time: AtomicI64,
    clones: AtomicU32,
}

impl Default for TestRepo {
    fn default() -> Self {
        Self::new()
    }
}

impl TestRepo {
    /// Creates an empty repository (`git init`, branch `main`).
    pub fn new() -> TestRepo {
        let dir = tempfile::Builder::new().prefix("repovault-repo-").tempdir();
        let dir = dir.expect("create temp dir");
        git(dir.path(), &["init", "-q", "work"]);
        let path = dir.path().join("work");
        TestRepo {
            dir,
            path,
            time: AtomicI64::new(DEFAULT_TIME),
            clones: AtomicU32::new(0),
        }
    }

    /// Runs git inside the work tree with the repository's current commit date.
    pub fn git(&self, args: &[&str]) -> String {
        let date = format!("@{} +0000", self.time.load(Ordering::SeqCst));
        let env = [
            ("GIT_AUTHOR_DATE", date.clone()),
            ("GIT_COMMITTER_DATE", date),
        ];
        let out = git_output(&self.path, args, &env);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Sets the author/committer/tagger date (unix seconds) of subsequent commits and tags.
    pub fn set_time(&self, unix_secs: i64) {
        self.time.store(unix_secs, Ordering::SeqCst);
    }

    /// Writes `bytes` to `rel_path` in the work tree, creating parent directories.
    pub fn write(&self, rel_path: &str, bytes: impl AsRef<[u8]>) {
        let p = self.path.join(rel_path);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("create parent dirs");
        }
        std::fs::write(&p, bytes).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
    }

    /// Stages everything (`add -A`) and commits (empty commits allowed); returns the commit id.
    pub fn commit(&self, msg: &str) -> String {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "--allow-empty", "-m", msg]);
        self.time.fetch_add(60, Ordering::SeqCst);
        self.rev_parse("HEAD")
    }

    /// Writes one file and commits it; returns the commit id.
    pub fn commit_file(&self, rel_path: &str, contents: impl AsRef<[u8]>, msg: &str) -> String {
        self.write(rel_path, contents);
        self.commit(msg)
    }

    /// Creates branch `name` at `HEAD` (without switching to it).
    pub fn branch(&self, name: &str) {
        self.git(&["branch", name]);
    }

    /// Checks out a branch, tag or commit.
    pub fn checkout(&self, name: &str) {
        self.git(&["checkout", "-q", name]);
    }

    /// Creates lightweight tag `name` pointing at `target` (any revision).
    pub fn tag_lightweight(&self, name: &str, target: &str) {
        self.git(&["tag", name, target]);
    }

    /// Creates annotated tag `name` on `target` with message `msg`; returns the tag object id.
    pub fn tag_annotated(&self, name: &str, target: &str, msg: &str) -> String {
        self.git(&["tag", "-a", "-m", msg, name, target]);
        self.rev_parse(&format!("refs/tags/{name}"))
    }

    /// Resolves a revision to a full object id.
    pub fn rev_parse(&self, rev: &str) -> String {
        git(&self.path, &["rev-parse", "--verify", rev])
    }

    /// Mirrors the repository (`git clone --mirror`) into a new bare repository
    /// `mirror-N.git` next to the work tree inside [`TestRepo::dir`]; returns its path.
    pub fn bare_clone(&self) -> PathBuf {
        let n = self.clones.fetch_add(1, Ordering::SeqCst);
        let dest = self.dir.path().join(format!("mirror-{n}.git"));
        self.bare_clone_to(&dest);
        dest
    }

    /// Mirrors the repository into the bare repository `dest` (which must not
    /// exist), e.g. `<server base>/org/name.git`.
    pub fn bare_clone_to(&self, dest: &Path) {
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).expect("create parent dirs");
        }
        let (src, dst) = (self.path.to_str().unwrap(), dest.to_str().unwrap());
        git(self.dir.path(), &["clone", "-q", "--mirror", src, dst]);
    }
}

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

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 (RFC 4648, with `=` padding).
pub fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let n =
            (chunk.iter().enumerate()).fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            let c = B64[(n >> (18 - 6 * i)) as usize & 63] as char;
            out.push(if i <= chunk.len() { c } else { '=' });
        }
    }
    out
}

/// Decodes standard base64 (padding optional); `None` on invalid input.
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim().trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = B64.iter().position(|&b| b == c)? as u32;
        acc = ((acc << 6) | v) & 0xFFFF;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    (bits < 6).then_some(out)
}

/// `Basic <base64(user:password)>`, the value of an `Authorization` header.
pub fn basic_auth_header(user: &str, password: &str) -> String {
    let raw = format!("{user}:{password}");
    format!("Basic {}", base64_encode(raw.as_bytes()))
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

/// Decodes `%XX` escapes (as needed for the CGI `PATH_INFO`).
fn percent_decode(s: &str) -> String {
    let (b, mut out, mut i) = (s.as_bytes(), Vec::new(), 0);
    while i < b.len() {
        let hex = (b[i] == b'%').then(|| s.get(i + 1..i + 3)).flatten();
        match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
            Some(v) => (out.push(v), i += 3),
            None => (out.push(b[i]), i += 1),
        };
    }
    String::from_utf8_lossy(&out).into_owned()
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

/// Exit status, stdout and stderr of a finished process, for assertion messages.
pub fn describe(out: &std::process::Output) -> String {
    format!(
        "status: {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `cmd` to completion, capturing stdout and stderr (read on their own
/// threads so a full pipe never blocks the child), killing it and failing the
/// test when it runs longer than `timeout`.
pub fn run_with_timeout(cmd: &mut Command, timeout: std::time::Duration) -> std::process::Output {
    use std::io::Read;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let out_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = stdout.read_to_end(&mut v);
        v
    });
    let err_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = stderr.read_to_end(&mut v);
        v
    });
    let deadline = std::time::Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for child") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} ran longer than {timeout:?}: killed");
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    let stdout = out_reader.join().expect("stdout reader");
    let stderr = err_reader.join().expect("stderr reader");
    std::process::Output {
        status,
        stdout,
        stderr,
    }
}

/// stdout parsed as one JSON document (the test fails with the whole output otherwise).
pub fn parse_json(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}):\n{}", describe(out)))
}

/// splitmix64: deterministic pseudo-random numbers for test data.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Fisher-Yates.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = (self.next() % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
    }
}

/// `len` pseudo-random (incompressible) bytes from `seed`.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut r = Rng(seed);
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        v.extend_from_slice(&r.next().to_le_bytes());
    }
    v.truncate(len);
    v
}

// ---------------------------------------------------------------------------
// A store under test, driven through the binary
// ---------------------------------------------------------------------------

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_repovault");

/// A temporary directory named `<prefix>XXXXXX`.
pub fn tempdir(prefix: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("create temp dir")
}

/// An initialised store and a mirror cache path in one temporary directory;
/// test files add their own verbs in `impl Vault` blocks.
pub struct Vault {
    _dir: TempDir,
    pub store: PathBuf,
    pub cache: PathBuf,
}

impl Vault {
    /// A new store (`repovault init`), the cache not created yet.
    pub fn new() -> Vault {
        let dir = tempdir("repovault-vault-");
        let v = Vault {
            store: dir.path().join("store"),
            cache: dir.path().join("cache"),
            _dir: dir,
        };
        v.ok(&["init"]);
        v
    }

    /// `repovault --store STORE ARGS...` in the hermetic environment.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        hermetic(&mut cmd);
        cmd.env_remove("REPOVAULT_STORE")
            .arg("--store")
            .arg(&self.store)
            .args(args);
        cmd
    }

    /// Runs `cmd(args)` with a 10-minute limit.
    pub fn run(&self, args: &[&str]) -> Output {
        run_with_timeout(&mut self.cmd(args), Duration::from_secs(600))
    }

    /// Runs `cmd(args)` and asserts it succeeded.
    pub fn ok(&self, args: &[&str]) -> Output {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "repovault {args:?} failed:\n{}",
            describe(&out)
        );
        out
    }

    /// Runs `cmd(args)`, asserts it succeeded and parses its stdout as JSON.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        parse_json(&self.ok(args))
    }
}

/// `cp -a FROM TO` (a repository or a store copied with its modes), asserted.
pub fn cp_a(from: &Path, to: &Path) {
    let out = run_with_timeout(
        Command::new("cp").arg("-a").arg(from).arg(to),
        Duration::from_secs(600),
    );
    assert!(out.status.success(), "cp -a failed:\n{}", describe(&out));
}
