//! # repovault
//!
//! Deduplicated, point-in-time backups of git repositories.
//!
//! A [`Store`](store::Store) is a directory that holds git objects
//! content-addressed: every object is split into chunks (large objects with
//! content-defined chunking), every chunk is named by the blake3 hash of its
//! plain bytes, compressed with zstd (optionally as a git delta against a base
//! chunk) and appended to an immutable pack file. A SQLite index maps git
//! object ids to their chunks and chunks to `(pack, offset, length)`.
//!
//! ```text
//! sync   : fetch (gix mirror) -> decode pack -> put objects -> chunk -> blake3
//!          -> known? skip : zstd (delta vs base) -> pack (fsync, rename)
//!          -> index transaction -> snapshot of the ref set (last)
//! restore: snapshot -> refs -> reachable objects -> chunks -> unzstd
//!          -> check blake3 + git oid -> new bare repository (pack + idx) -> refs, HEAD
//! ```
//!
//! ```no_run
//! use repovault::store::{Store, InitOptions, NewObject};
//! use repovault::ObjectKind;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = Store::init("/tmp/vault".as_ref(), InitOptions::default())?;
//! let data = b"hello\n".to_vec();
//! let oid = repovault::git_oid(ObjectKind::Blob, &data);
//! let mut writer = store.writer(std::time::Duration::from_secs(10))?;
//! writer.put(vec![NewObject { oid, kind: ObjectKind::Blob, data, base: None }])?;
//! writer.commit()?;
//! assert_eq!(store.get(&oid)?.data, b"hello\n");
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

pub mod chunk;
pub mod closure;
pub mod commits;
pub mod config;
pub mod delta;
pub mod diff;
pub mod discover;
pub mod durable;
pub mod error;
pub mod find;
pub mod gitpack;
pub mod index;
pub mod jsontime;
pub mod lock;
pub mod monitor;
pub mod pack;
pub mod progress;
pub mod prune;
pub mod repair;
pub mod restore;
pub mod retention;
pub mod secret;
pub mod snapshot;
pub mod store;
pub mod sync;
pub mod usage;
pub mod verify;

mod object;

pub use object::{git_oid, references, ObjectKind};

/// The store's chunk encoding (`compress`: zstd at a level; `decode`: zstd,
/// then a git delta against the plain base if there is one), public only for
/// the benchmarks in `benches/`: not a stable API.
#[doc(hidden)]
pub use store::codec::{compress as codec_compress, decode as codec_decode};

/// A git object id (SHA-1).
pub use gix::ObjectId;

/// Crash-testing hook: when the environment variable `REPOVAULT_CRASH_AT`
/// names this point, the process kills itself with SIGKILL here, exactly as
/// `kill -9` would, so tests can prove every write path is crash-safe at
/// deterministic points. Costs one environment lookup otherwise.
#[doc(hidden)]
pub fn crash_point(name: &str) {
    if std::env::var("REPOVAULT_CRASH_AT").is_ok_and(|v| v == name) {
        let _ = std::process::Command::new("kill")
            .arg("-9")
            .arg(std::process::id().to_string())
            .status();
        loop {
            std::thread::sleep(std::time::Duration::from_secs(1));
        }
    }
}

/// Interrupt-testing hook: when the environment variable
/// `REPOVAULT_INTERRUPT_AT` names this point, the process sends itself SIGINT
/// here (as Ctrl-C would) and waits until the handler has set `interrupt`, so
/// tests can interrupt at deterministic points. Costs one environment lookup
/// otherwise.
#[doc(hidden)]
pub fn interrupt_point(name: &str, interrupt: &std::sync::atomic::AtomicBool) {
    if std::env::var("REPOVAULT_INTERRUPT_AT").is_ok_and(|v| v == name) {
        let _ = std::process::Command::new("kill")
            .arg("-INT")
            .arg(std::process::id().to_string())
            .status();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !interrupt.load(std::sync::atomic::Ordering::SeqCst)
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
}

/// Testing hook beside [`crash_point`]: when `REPOVAULT_PAUSE_AT` names this
/// point, the process creates the file `$REPOVAULT_PAUSE_GATE.reached` and
/// waits (at most two minutes) until the file `$REPOVAULT_PAUSE_GATE` exists,
/// so a test can run another command at exactly this point (a prune while a
/// restore is between reading the index and reading the packs).
#[doc(hidden)]
pub fn pause_point(name: &str) {
    if !std::env::var("REPOVAULT_PAUSE_AT").is_ok_and(|v| v == name) {
        return;
    }
    let Some(gate) = std::env::var_os("REPOVAULT_PAUSE_GATE").map(std::path::PathBuf::from) else {
        return;
    };
    let mut reached = gate.clone().into_os_string();
    reached.push(".reached");
    let _ = std::fs::write(reached, b"");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !gate.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
