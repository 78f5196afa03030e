//! Results go to stdout through here. A closed stdout (`repovault snapshots |
//! head`) is not an error: output stops quietly and the command still ends
//! with its own exit code; any other write error is reported (exit 1) once
//! the command has run. `println!` in the CLI is [`line`], not std's (which
//! panics on a closed pipe). Also the helpers every rendering uses.
use anyhow::Result;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// Set once stdout's reader has gone (EPIPE): later output is dropped.
static CLOSED: AtomicBool = AtomicBool::new(false);
/// The first write error other than EPIPE.
static FAILED: Mutex<Option<String>> = Mutex::new(None);

/// Writes one line to stdout.
pub fn line(args: std::fmt::Arguments<'_>) {
    let mut out = stdout();
    let r = out.write_fmt(args).and_then(|()| out.write_all(b"\n"));
    if let Err(e) = r {
        let mut failed = FAILED.lock().unwrap_or_else(|p| p.into_inner());
        failed.get_or_insert_with(|| e.to_string());
        CLOSED.store(true, Ordering::SeqCst);
    }
}

/// Why writing to stdout failed (not counting a closed pipe), if it did.
pub fn failure() -> Option<String> {
    FAILED.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// Locked stdout whose writes treat a closed pipe as the quiet end of the
/// output (they succeed and write nothing); other errors are returned.
pub fn stdout() -> Stdout {
    Stdout(std::io::stdout().lock())
}

/// See [`stdout`].
pub struct Stdout(std::io::StdoutLock<'static>);

fn quiet_end<T>(r: std::io::Result<T>, ok: T) -> std::io::Result<T> {
    match r {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            CLOSED.store(true, Ordering::SeqCst);
            Ok(ok)
        }
        r => r,
    }
}

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if CLOSED.load(Ordering::SeqCst) {
            return Ok(buf.len());
        }
        quiet_end(self.0.write(buf), buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        if CLOSED.load(Ordering::SeqCst) {
            return Ok(());
        }
        quiet_end(self.0.flush(), ())
    }
}

/// Writes `doc` as pretty JSON and a newline to stdout (through this module:
/// a closed pipe ends the output quietly).
pub(crate) fn print_json(doc: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(doc)?);
    Ok(())
}

pub(crate) fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// What a ref points to, for listings: an id, `-> REF` for a symbolic ref,
/// `(unborn)` for a symbolic ref to a branch that does not exist yet.
pub(crate) fn ref_target(r: &repovault::snapshot::RefEntry) -> String {
    match (&r.symref, r.target) {
        (Some(t), _) => format!("-> {}", String::from_utf8_lossy(t)),
        (None, Some(t)) => t.to_string(),
        (None, None) => "(unborn)".into(),
    }
}

/// A time as `snapshots` prints it: UTC to the microsecond (the precision
/// snapshots are recorded with), in a form `restore --at` reads back exactly.
pub(crate) fn utc_micros(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%d %H:%M:%S%.6f").to_string()
}

/// A command's result, shown as text or (under `--json`) as one JSON
/// document: the JSON is the type's serde rendering, keys in field order.
pub(crate) trait Report: serde::Serialize {
    /// The text a person reads.
    fn human(&self, out: &mut dyn Write) -> std::io::Result<()>;
}

/// Shows `r` on stdout: as pretty JSON with `json`, else as text.
pub(crate) fn show(r: &impl Report, json: bool) -> Result<()> {
    if json {
        return print_json(r);
    }
    let mut out = stdout();
    r.human(&mut out)?;
    Ok(())
}
