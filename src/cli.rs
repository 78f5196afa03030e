//! Command-line interface: argument parsing, human and JSON output, exit codes.

use anyhow::{bail, Context, Result};
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use repovault::store::{self, InitOptions, Store};
use repovault::sync::{self, Auth, RepoReport, Secret, Source, Status, SyncOptions};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Exit codes (also documented in README.md).
pub mod exit {
    /// Everything succeeded.
    pub const OK: u8 = 0;
    /// An error: nothing (or not everything) could run.
    pub const ERROR: u8 = 1;
    /// Some repositories failed, the others were backed up.
    pub const PARTIAL: u8 = 3;
    /// The store does not exist or is not a store.
    pub const NO_STORE: u8 = 10;
    /// The store is locked by another writer.
    pub const LOCKED: u8 = 11;
    /// Verification found damage.
    pub const DAMAGED: u8 = 12;
    /// Interrupted (Ctrl-C).
    pub const INTERRUPTED: u8 = 130;
    /// A bad command line: an unknown option, a missing or malformed value.
    pub const USAGE: u8 = 2;
}

/// Results go to stdout through here. A closed stdout (`repovault snapshots |
/// head`) is not an error: output stops quietly and the command still ends
/// with its own exit code; any other write error is reported (exit 1) once
/// the command has run. `println!` in this file is [`output::line`], not std's
/// (which panics on a closed pipe).
mod output {
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
}

/// `println!` that never panics: see [`output`].
macro_rules! println {
    ($($arg:tt)*) => {
        crate::cli::output::line(format_args!($($arg)*))
    };
}

/// An error whose exit code is decided where it happens (a bad value on the
/// command line: [`exit::USAGE`]), not by the type of its cause.
#[derive(Debug)]
struct ExitWith {
    code: u8,
    error: anyhow::Error,
}

impl std::fmt::Display for ExitWith {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.error)
    }
}

impl std::error::Error for ExitWith {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.error.source()
    }
}

/// A bad command line (exit code 2), with its message.
fn usage(error: impl Into<anyhow::Error>) -> anyhow::Error {
    with_code(exit::USAGE, error)
}

fn with_code(code: u8, error: impl Into<anyhow::Error>) -> anyhow::Error {
    anyhow::Error::new(ExitWith {
        code,
        error: error.into(),
    })
}

/// A clap value parser from a `FromStr` whose error is a message: the value
/// is checked while parsing, so a bad one exits 2 with clap's usage error,
/// and the argument keeps the text.
fn checked<T>(s: &str) -> Result<String, String>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    s.parse::<T>()
        .map(|_| s.to_owned())
        .map_err(|e| e.to_string())
}

/// A percentage, 0 to 100.
fn percent(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..=100.0).contains(&v) => Ok(v),
        _ => Err(format!("{s:?} is not a percentage from 0 to 100")),
    }
}

/// Makes everything this process creates private to its user (directories
/// 0700, files 0600) whatever the umask, as restic does: the store, the
/// mirror cache (written by gix), the index (SQLite) and every temporary file.
/// Returns the user's umask, which restore puts back for the repository it
/// creates.
fn private_umask() -> nix::sys::stat::Mode {
    use nix::sys::stat::{umask, Mode};
    umask(Mode::from_bits_truncate(0o077))
}

/// The umask the user ran repovault with.
static USER_UMASK: std::sync::OnceLock<nix::sys::stat::Mode> = std::sync::OnceLock::new();

/// Creates `dir` (and its parents) private to the user, and makes an existing
/// one private (a cache made by an older repovault was world-readable).
fn create_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create the mirror cache {}", dir.display()))?;
    let private = std::fs::Permissions::from_mode(0o700);
    if let Err(e) = std::fs::set_permissions(dir, private) {
        tracing::warn!(dir = %dir.display(), "cannot make the mirror cache private (mode 0700): {e}");
    }
    Ok(())
}

/// The help heading of the options every verb takes (listed after the verb's own).
const GLOBAL_OPTIONS: &str = "Global options";

#[derive(Parser)]
#[command(
    name = "repovault",
    version,
    about = "Deduplicated, point-in-time backups of git repositories",
    max_term_width = 100
)]
struct Cli {
    /// The store directory [default: $XDG_DATA_HOME/repovault/store]
    #[arg(
        long,
        global = true,
        env = "REPOVAULT_STORE",
        value_name = "DIR",
        help_heading = GLOBAL_OPTIONS,
        display_order = 1000
    )]
    store: Option<PathBuf>,
    /// More log output (-v info, -vv debug); RUST_LOG overrides
    #[arg(short, long, global = true, action = clap::ArgAction::Count, help_heading = GLOBAL_OPTIONS, display_order = 1001)]
    verbose: u8,
    /// Print nothing on success (no progress, no summary); errors and warnings still go to
    /// stderr, --json and --report are still written
    #[arg(short, long, global = true, help_heading = GLOBAL_OPTIONS, display_order = 1002)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a new, empty store
    Init(InitArgs),
    /// Back up git repositories (URLs or local paths) into the store
    Sync(SyncArgs),
    /// Rebuild a bare repository from a snapshot (or list its refs with --list)
    Restore(RestoreArgs),
    /// List snapshots
    Snapshots(SnapshotsArgs),
    /// Compare two snapshots: refs added, removed and moved; commits gained and lost
    Diff(DiffArgs),
    /// Which snapshots hold a ref (by name) or a commit (reachable from one of their refs)
    Find(FindArgs),
    /// List backed-up repositories with their last sync (or remove one without snapshots)
    Repos(ReposArgs),
    /// Show what the store holds (--repo: what one repository holds alone and shares)
    Stats(StatsArgs),
    /// Remove snapshots by keep rules (the newest of each repository stays), or those named by id
    Forget(ForgetArgs),
    /// Delete data no remaining snapshot needs, and repack sparse or small packs
    Prune(PruneArgs),
    /// Configuration file tools
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Check the store's integrity (quick by default; --read-data reads and checks everything)
    Verify(VerifyArgs),
    /// Rebuild index.sqlite from the packs and snapshot files (when it is lost or corrupt)
    RepairIndex(JsonArg),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    Completions(CompletionsArgs),
    /// Print the manual page (roff), e.g. `repovault man > repovault.1`
    Man(ManArgs),
}

#[derive(Args)]
struct ManArgs {
    /// Instead, write repovault.1 and one page per verb (repovault-sync.1, ...) into DIR
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

#[derive(Args)]
struct CompletionsArgs {
    /// The shell, e.g. `repovault completions bash > /etc/bash_completion.d/repovault`
    #[arg(value_enum)]
    shell: clap_complete::Shell,
}

#[derive(Args)]
struct StatsArgs {
    /// Only this repository: what its snapshots need, what it alone holds, what it shares
    #[arg(long)]
    repo: Option<String>,
    /// Print one JSON document
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct InitArgs {
    /// zstd compression level (1-22)
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=22))]
    compression_level: i32,
    /// Pack files are closed at this size (MiB)
    #[arg(long, default_value_t = 32)]
    pack_size_mib: u64,
}

#[derive(Args)]
struct ForgetArgs {
    /// Remove exactly these snapshots (ids or unique prefixes), instead of applying keep rules
    #[arg(
        value_name = "SNAPSHOT-ID",
        conflicts_with_all = ["keep_last", "keep_hourly", "keep_daily", "keep_weekly",
            "keep_monthly", "keep_yearly", "keep_within", "config", "allow_empty"]
    )]
    snapshots: Vec<String>,
    /// Only this repository (a name or any unique suffix of one)
    #[arg(long)]
    repo: Option<String>,
    /// Keep the newest N snapshots
    #[arg(
        long,
        value_name = "N",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    keep_last: i32,
    /// Keep the newest snapshot of each of the last N hours (-1: all)
    #[arg(
        long,
        value_name = "N",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    keep_hourly: i32,
    /// Keep the newest snapshot of each of the last N days (-1: all)
    #[arg(
        long,
        value_name = "N",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    keep_daily: i32,
    /// Keep the newest snapshot of each of the last N ISO weeks (-1: all)
    #[arg(
        long,
        value_name = "N",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    keep_weekly: i32,
    /// Keep the newest snapshot of each of the last N months (-1: all)
    #[arg(
        long,
        value_name = "N",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    keep_monthly: i32,
    /// Keep the newest snapshot of each of the last N years (-1: all)
    #[arg(
        long,
        value_name = "N",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    keep_yearly: i32,
    /// Keep every snapshot within this duration of the newest (e.g. 1y6m, 14d, 36h)
    #[arg(long, value_name = "DURATION", value_parser = checked::<repovault::retention::Within>)]
    keep_within: Option<String>,
    /// Take the policy from this config file's [retention] (when no --keep-* option is given)
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Allow removing the newest snapshot of a repository too
    #[arg(long)]
    allow_empty: bool,
    /// Print what would be kept and removed, and why, without changing anything
    #[arg(long)]
    dry_run: bool,
    /// Prune afterwards
    #[arg(long)]
    prune: bool,
    /// Print the result as one JSON document
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct PruneArgs {
    /// Repack packs whose live data is below this percentage of their bytes
    #[arg(long, default_value_t = 80.0, value_name = "PERCENT", value_parser = percent)]
    repack_below: f64,
    /// Report what would be freed without changing anything
    #[arg(long)]
    dry_run: bool,
    /// Print the result as one JSON document
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate a config file and print what it would back up (discovery only, nothing is fetched)
    Check {
        /// The config file [default: $XDG_CONFIG_HOME/repovault/config.toml or /etc/repovault/config.toml]
        file: Option<PathBuf>,
        /// Print one JSON document
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
struct VerifyArgs {
    /// Read every pack: check checksums, every chunk's blake3, every object's git id, every snapshot's closure
    #[arg(long)]
    read_data: bool,
    /// Read only part of the packs: N/M (part N of M) or P% (a random P percent); implies --read-data
    #[arg(long, value_name = "N/M|P%", value_parser = checked::<repovault::verify::Subset>)]
    read_data_subset: Option<String>,
    /// Only this repository: its snapshots and the packs and objects they need
    #[arg(long)]
    repo: Option<String>,
    /// Print the report as one JSON document
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct JsonArg {
    /// Print one JSON document
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct ReposArgs {
    /// Remove these repositories, which must have no snapshot (a failed sync of a
    /// mistyped URL, or one whose snapshots were all forgotten)
    #[arg(long, value_name = "REPO")]
    remove: Vec<String>,
    /// Print one JSON document
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct SnapshotsArgs {
    /// Only this repository (a name or any unique suffix of one)
    #[arg(long)]
    repo: Option<String>,
    /// Only the newest snapshot of each repository
    #[arg(long)]
    latest: bool,
    /// Also list each snapshot's refs
    #[arg(long)]
    refs: bool,
    /// Print one JSON document
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct DiffArgs {
    /// The older snapshot: its id or any unique prefix of it
    #[arg(value_name = "SNAP1")]
    from: String,
    /// The newer snapshot: its id or any unique prefix of it
    #[arg(value_name = "SNAP2")]
    to: String,
    /// Read at most N commits from the store to count commits gained and lost
    #[arg(long, value_name = "N", default_value_t = repovault::commits::DEFAULT_MAX_COMMITS)]
    max_commits: u64,
    /// Print one JSON document
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct FindArgs {
    /// A ref name (v0.1.0, main, refs/heads/main) or a commit id (4 to 40 hex digits):
    /// a commit is held by the snapshots in which it is reachable from a ref
    #[arg(value_name = "REF-OR-COMMIT")]
    query: String,
    /// Only this repository's snapshots (a name or any unique suffix of one)
    #[arg(long)]
    repo: Option<String>,
    /// Read at most N commits from the store when looking for a commit
    #[arg(long, value_name = "N", default_value_t = repovault::commits::DEFAULT_MAX_COMMITS)]
    max_commits: u64,
    /// Print one JSON document
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
#[command(group(clap::ArgGroup::new("which").required(true).args(["snapshot", "at", "latest"])))]
struct RestoreArgs {
    /// The repository (its name or any unique suffix of it)
    #[arg(long)]
    repo: String,
    /// The snapshot id, or any unique prefix of it
    #[arg(long)]
    snapshot: Option<String>,
    /// The newest snapshot taken at or before TIME: 2026-12-02T21:09:21Z, with an offset
    /// (+01:00), without a zone (2026-12-02 21:09:21.123456, as `snapshots` prints it: UTC),
    /// or a date (2026-12-02: the end of that day, UTC)
    #[arg(long, value_name = "TIME", value_parser = repovault::restore::parse_time)]
    at: Option<jiff::Timestamp>,
    /// The newest snapshot
    #[arg(long)]
    latest: bool,
    /// Print the snapshot's refs instead of restoring
    #[arg(long)]
    list: bool,
    /// Allow DEST to be an existing empty directory
    #[arg(long)]
    force: bool,
    /// Restore what is intact when objects are missing or damaged, and list them
    #[arg(long)]
    partial: bool,
    /// Print the result as one JSON document
    #[arg(long)]
    json: bool,
    /// Where to create the bare repository (must not exist, or be empty with --force)
    #[arg(value_name = "DEST", required_unless_present = "list")]
    dest: Option<PathBuf>,
}

#[derive(Args)]
struct SyncArgs {
    /// Git URLs (https, ssh, git, file) or local paths
    #[arg(
        value_name = "SOURCE",
        required_unless_present = "config",
        conflicts_with = "config"
    )]
    sources: Vec<String>,
    /// Back up everything a config file names (discovering organisations' repositories)
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Also write the JSON summary to FILE
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// Name of the repository in the store (only with one SOURCE) [default: host/path]
    #[arg(long)]
    name: Option<String>,
    /// Mirror cache directory [default: $XDG_CACHE_HOME/repovault/<store id>]
    #[arg(long, value_name = "DIR")]
    cache: Option<PathBuf>,
    /// Environment variable holding an https token (sent as HTTP basic auth, never stored)
    #[arg(long, value_name = "VAR")]
    token_env: Option<String>,
    /// User name sent with the token
    #[arg(long, default_value = "git", value_name = "USER")]
    token_user: String,
    /// Repositories synced at once [default: min(4, number of sources)]
    #[arg(long, short)]
    jobs: Option<usize>,
    /// Record a snapshot even when the source lacks objects (marked incomplete)
    #[arg(long)]
    allow_incomplete: bool,
    /// Seconds to wait for another writer to release the store
    #[arg(long, default_value_t = 60)]
    lock_wait: u64,
    /// List what would change (refs added, removed, moved since the last snapshot);
    /// fetch nothing, write nothing, take no lock
    #[arg(long)]
    dry_run: bool,
    /// Print the summary as one JSON document
    #[arg(long)]
    json: bool,
}

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    let _ = USER_UMASK.set(private_umask());
    let matches = match Cli::command().try_get_matches() {
        Ok(m) => m,
        Err(e) => return usage_error(e),
    };
    let json = json_requested(&matches);
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => return usage_error(e),
    };
    crate::ui::set_quiet(cli.quiet);
    init_logging(cli.verbose, cli.quiet);
    let interrupt = Arc::new(AtomicBool::new(false));
    {
        let flag = interrupt.clone();
        let _ = ctrlc::set_handler(move || {
            if flag.swap(true, Ordering::SeqCst) {
                std::process::exit(i32::from(exit::INTERRUPTED));
            }
            eprintln!("repovault: interrupted; finishing the current step (press Ctrl-C again to stop at once)");
        });
    }
    let result = run(cli, &interrupt);
    if let Some(e) = output::failure() {
        eprintln!("repovault: error: cannot write the output: {e}");
        return ExitCode::from(exit::ERROR);
    }
    match result {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            if interrupt.load(Ordering::SeqCst) {
                eprintln!("repovault: interrupted");
                if json {
                    print_json_error("interrupted", exit::INTERRUPTED);
                }
                return ExitCode::from(exit::INTERRUPTED);
            }
            for cause in err.chain() {
                if let Some(e) = cause.downcast_ref::<std::io::Error>() {
                    if e.kind() == std::io::ErrorKind::BrokenPipe {
                        return ExitCode::from(exit::OK);
                    }
                }
            }
            let line = error_line(&err);
            let code = exit_code_of(&err);
            eprintln!("repovault: error: {line}");
            if json {
                print_json_error(&line, code);
            }
            ExitCode::from(code)
        }
    }
}

/// True when the verb (or a nested one) was given `--json`.
fn json_requested(matches: &clap::ArgMatches) -> bool {
    let mut m = matches;
    loop {
        if let Ok(Some(true)) = m.try_get_one::<bool>("json") {
            return true;
        }
        match m.subcommand() {
            Some((_, sub)) => m = sub,
            None => return false,
        }
    }
}

/// Under `--json`, an error is also printed on stdout as one JSON object:
/// `{"error": {"message": "...", "exit_code": N}}`.
fn print_json_error(message: &str, code: u8) {
    #[derive(serde::Serialize)]
    struct Inner<'a> {
        message: &'a str,
        exit_code: u8,
    }
    #[derive(serde::Serialize)]
    struct Doc<'a> {
        error: Inner<'a>,
    }
    let doc = Doc {
        error: Inner {
            message,
            exit_code: code,
        },
    };
    let mut out = output::stdout();
    let _ = writeln!(
        out,
        "{}",
        serde_json::to_string_pretty(&doc).unwrap_or_default()
    );
}

/// A command line clap rejects (or `--help` / `--version`): clap's text on
/// stderr (help on stdout), and a JSON error on stdout when `--json` was given.
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    let code = u8::try_from(e.exit_code()).unwrap_or(exit::ERROR);
    let shown = matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    );
    if !shown && std::env::args_os().any(|a| a == "--json") {
        let text = e.render().to_string();
        let first = text.lines().next().unwrap_or_default();
        print_json_error(first.strip_prefix("error: ").unwrap_or(first), code);
    }
    let _ = e.print();
    ExitCode::from(code)
}

/// The error and its causes on one line, without repeating a cause that a
/// message already includes (library errors embed their source's text).
fn error_line(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = one_line(&cause.to_string());
        if !line.contains(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
    }
    line
}

fn one_line(s: &str) -> String {
    s.split('\n')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

fn exit_code_of(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<ExitWith>() {
            return e.code;
        }
        if let Some(e) = cause.downcast_ref::<store::Error>() {
            return match e {
                store::Error::NotFound { .. }
                | store::Error::NotAStore { .. }
                | store::Error::NotADirectory { .. }
                | store::Error::BadConfig { .. }
                | store::Error::NewerFormat { .. } => exit::NO_STORE,
                store::Error::Lock(repovault::lock::Error::Locked { .. }) => exit::LOCKED,
                _ => exit::ERROR,
            };
        }
        if let Some(repovault::lock::Error::Locked { .. }) =
            cause.downcast_ref::<repovault::lock::Error>()
        {
            return exit::LOCKED;
        }
    }
    exit::ERROR
}

fn init_logging(verbose: u8, quiet: bool) {
    // -q silences results and progress, not problems: warnings stay.
    let level = match (quiet, verbose) {
        (true, _) => "warn",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, _) => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("repovault={level},warn")));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}

/// The default store: `$XDG_DATA_HOME/repovault/store` or `~/.local/share/repovault/store`.
fn default_store() -> Result<PathBuf> {
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .context(
            "neither --store, REPOVAULT_STORE, XDG_DATA_HOME nor HOME is set: pass --store DIR",
        )?;
    Ok(base.join("repovault").join("store"))
}

fn open_store(cli_store: &Option<PathBuf>) -> Result<Store> {
    let path = match cli_store {
        Some(p) => p.clone(),
        None => default_store()?,
    };
    Ok(Store::open(&path)?)
}

fn run(cli: Cli, interrupt: &AtomicBool) -> Result<u8> {
    match cli.command {
        Command::Init(a) => {
            let path = match &cli.store {
                Some(p) => p.clone(),
                None => default_store()?,
            };
            let opts = InitOptions {
                compression: store::Compression {
                    level: a.compression_level,
                    ..Default::default()
                },
                pack_target_size: a.pack_size_mib.max(1) << 20,
                ..Default::default()
            };
            // Whatever is in the way (a store, a file, a non-empty directory), init fails with 1.
            let s = Store::init(&path, opts).map_err(|e| with_code(exit::ERROR, e))?;
            if crate::ui::quiet() {
                return Ok(exit::OK);
            }
            println!(
                "created store {} (id {})",
                path.display(),
                s.config().store_id
            );
            Ok(exit::OK)
        }
        Command::Sync(a) => cmd_sync(&cli.store, a, interrupt),
        Command::Restore(a) => cmd_restore(&cli.store, a, interrupt),
        Command::Snapshots(a) => cmd_snapshots(&cli.store, a),
        Command::Diff(a) => cmd_diff(&cli.store, a),
        Command::Find(a) => cmd_find(&cli.store, a),
        Command::Repos(a) => cmd_repos(&cli.store, a),
        Command::Stats(a) => cmd_stats(&cli.store, a),
        Command::Verify(a) => cmd_verify(&cli.store, a, interrupt),
        Command::Config(ConfigCommand::Check { file, json }) => {
            cmd_config_check(&file.unwrap_or_else(repovault::config::default_path), json)
        }
        Command::Forget(a) => cmd_forget(&cli.store, a, interrupt),
        Command::Prune(a) => {
            if !a.dry_run {
                catch_up_index(&store_path(&cli.store)?)?;
            }
            let s = open_store(&cli.store)?;
            let mut w = s.writer_for(Duration::from_secs(60), "prune")?;
            let opts = repovault::prune::PruneOptions {
                repack_below: a.repack_below / 100.0,
                dry_run: a.dry_run,
            };
            let progress = crate::ui::Task::single("prune".into(), a.json);
            let r = repovault::prune::prune(&mut w, opts, interrupt, &progress);
            progress.finish();
            let r = r?;
            if a.json || !crate::ui::quiet() {
                print_prune(&r, a.json)?;
            }
            Ok(exit::OK)
        }
        Command::RepairIndex(a) => cmd_repair(&cli.store, a),
        Command::Completions(a) => {
            let mut out = output::stdout();
            clap_complete::generate(a.shell, &mut Cli::command(), "repovault", &mut out);
            out.flush()?;
            Ok(exit::OK)
        }
        Command::Man(a) => cmd_man(a),
    }
}

fn cmd_man(a: ManArgs) -> Result<u8> {
    let cmd = Cli::command();
    match a.dir {
        Some(dir) => {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            clap_mangen::generate_to(cmd, &dir)
                .with_context(|| format!("cannot write the manual pages into {}", dir.display()))?;
            println!("wrote the manual pages into {}", dir.display());
        }
        None => {
            let mut out = output::stdout();
            clap_mangen::Man::new(cmd).render(&mut out)?;
            out.flush()?;
        }
    }
    Ok(exit::OK)
}

fn human_bytes(n: u64) -> String {
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

fn cmd_stats(store: &Option<PathBuf>, a: StatsArgs) -> Result<u8> {
    let s = open_store(store)?;
    if let Some(name) = &a.repo {
        let repo = resolve_repo(&s, name)?;
        let u = repovault::usage::repo_usage(&s, &repo)?;
        return print_repo_usage(&u, a.json);
    }
    let t = s.totals()?;
    let ratio = if t.stored_bytes > 0 {
        t.raw_bytes as f64 / t.stored_bytes as f64
    } else {
        0.0
    };
    if a.json {
        let mut v = serde_json::to_value(&t)?;
        v["dedup_ratio"] = serde_json::json!(ratio);
        v["store"] = serde_json::json!(s.root());
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("store        {}", s.root().display());
        println!("repos        {}", t.repos);
        println!("snapshots    {}", t.snapshots);
        println!("objects      {}", t.objects);
        println!("chunks       {} ({} deltas)", t.chunks, t.delta_chunks);
        println!("packs        {}", t.packs);
        println!(
            "raw bytes    {} ({})",
            t.raw_bytes,
            human_bytes(t.raw_bytes)
        );
        println!(
            "stored bytes {} ({})",
            t.stored_bytes,
            human_bytes(t.stored_bytes)
        );
        println!("ratio        {ratio:.2}x (raw / stored)");
    }
    Ok(exit::OK)
}

fn print_repo_usage(u: &repovault::usage::RepoUsage, json: bool) -> Result<u8> {
    if json {
        println!("{}", serde_json::to_string_pretty(u)?);
        return Ok(exit::OK);
    }
    let mut out = output::stdout();
    writeln!(out, "repository   {} ({} snapshots)", u.repo, u.snapshots)?;
    writeln!(
        out,
        "{:<12} {:>10} {:>14} {:>10} {:>14}",
        "", "objects", "raw bytes", "chunks", "stored bytes"
    )?;
    for (label, x) in [
        ("total", &u.total),
        ("only here", &u.only),
        ("shared", &u.shared),
    ] {
        writeln!(
            out,
            "{:<12} {:>10} {:>14} {:>10} {:>14}",
            label,
            x.objects,
            human_bytes(x.raw_bytes),
            x.chunks,
            human_bytes(x.stored_bytes)
        )?;
    }
    writeln!(
        out,
        "(only here: what no other repository's snapshot needs; shared: also needed by others)"
    )?;
    Ok(exit::OK)
}

/// Resolves a repository name or a unique suffix of one.
fn resolve_repo(s: &Store, name: &str) -> Result<repovault::index::RepoRow> {
    let repos = s.with_index(|i| i.repos())?;
    if let Some(r) = repos.iter().find(|r| r.name == name) {
        return Ok(r.clone());
    }
    // The path or URL that was synced.
    match sync::repos_synced_from(&repos, name).as_slice() {
        [one] => return Ok((*one).clone()),
        [] => {}
        many => bail!(
            "{name:?} was synced as several repositories ({}): give the name",
            many.iter()
                .map(|r| r.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
    let suffix = format!("/{}", name.trim_matches('/'));
    let mut hits: Vec<_> = repos.iter().filter(|r| r.name.ends_with(&suffix)).collect();
    if hits.is_empty() {
        // A renamed repository stays findable under its old names.
        hits = repos
            .iter()
            .filter(|r| {
                r.previous_names
                    .iter()
                    .any(|p| p == name || p.ends_with(&suffix))
            })
            .collect();
    }
    match hits.len() {
        1 => Ok(hits[0].clone()),
        0 => bail!("no repository named {name:?} in the store: see `repovault repos`"),
        _ => bail!(
            "{name:?} matches several repositories ({}): give more of the name",
            hits.iter()
                .map(|r| r.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn cmd_restore(store: &Option<PathBuf>, a: RestoreArgs, interrupt: &AtomicBool) -> Result<u8> {
    use repovault::restore::{self, Selector};
    let s = open_store(store)?;
    let repo = resolve_repo(&s, &a.repo)?;
    let sel = match (&a.snapshot, &a.at) {
        (Some(id), _) => Selector::Id(id.clone()),
        (None, Some(t)) => Selector::At(*t),
        (None, None) => Selector::Latest,
    };
    let snaps = s.with_index(|i| i.snapshots(Some(repo.id)))?;
    let snap = restore::select(&snaps, &repo.name, &sel)?;
    if a.list {
        if a.json {
            print_json(&snap)?;
            return Ok(exit::OK);
        }
        let mut out = output::stdout();
        writeln!(
            out,
            "# snapshot {} of {} taken {}",
            snap.short_id(),
            snap.repo,
            snap.time
        )?;
        for r in &snap.refs {
            match (&r.symref, r.target) {
                (Some(t), _) => writeln!(
                    out,
                    "{:<40} {} -> {}",
                    "",
                    r.name_lossy(),
                    String::from_utf8_lossy(t)
                )?,
                (None, Some(t)) => writeln!(out, "{t} {}", r.name_lossy())?,
                (None, None) => writeln!(out, "{:<40} {}", "(unborn)", r.name_lossy())?,
            }
        }
        return Ok(exit::OK);
    }
    let dest = a.dest.expect("clap requires DEST without --list");
    let start = Instant::now();
    let opts = restore::RestoreOptions {
        force: a.force,
        partial: a.partial,
    };
    // The restored repository is the user's: it follows their umask (store
    // files the reader may create, the index's -wal/-shm and the readers lock,
    // get their modes from the store's own files or explicitly).
    if let Some(m) = USER_UMASK.get() {
        nix::sys::stat::umask(*m);
    }
    let progress = crate::ui::Task::single(
        format!("restore {} of {}", snap.short_id(), snap.repo),
        a.json,
    );
    let report = restore::restore_with_progress(&s, &snap, &dest, opts, interrupt, &progress);
    drop(progress);
    let report = report?;
    for sk in &snap.skipped {
        tracing::warn!(
            "snapshot {} is incomplete: ref {} of the source was not backed up ({})",
            snap.short_id(),
            sk.display_name(),
            sk.reason
        );
    }
    if a.json {
        let mut v = serde_json::to_value(&report)?;
        v["millis"] = serde_json::json!(start.elapsed().as_millis() as u64);
        v["refs_not_backed_up"] = serde_json::to_value(&snap.skipped)?;
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else if !crate::ui::quiet() || !report.problems.is_empty() {
        println!(
            "restored {} ({} refs, {} objects, {} as deltas, pack {}) to {} in {:.1}s",
            snap.short_id(),
            report.refs,
            report.objects,
            report.deltas,
            human_bytes(report.pack_bytes),
            report.destination.display(),
            start.elapsed().as_secs_f64()
        );
        for p in &report.problems {
            println!("missing or damaged: {p}");
        }
        for r in &report.skipped_refs {
            println!("ref not restored (its target is missing): {r}");
        }
    }
    Ok(if report.problems.is_empty() {
        exit::OK
    } else {
        exit::PARTIAL
    })
}

fn store_path(cli_store: &Option<PathBuf>) -> Result<PathBuf> {
    match cli_store {
        Some(p) => Ok(p.clone()),
        None => default_store(),
    }
}

fn cmd_verify(store: &Option<PathBuf>, a: VerifyArgs, interrupt: &AtomicBool) -> Result<u8> {
    use repovault::verify::{self, Subset, VerifyOptions};
    let subset = a
        .read_data_subset
        .as_deref()
        .map(str::parse::<Subset>)
        .transpose()?;
    let opts = VerifyOptions {
        read_data: a.read_data || subset.is_some(),
        subset,
    };
    let path = store_path(store)?;
    let s = match Store::open(&path) {
        Ok(s) => s,
        Err(store::Error::Index(e)) => {
            // A lost or unreadable index is damage to report, not a usage error.
            let report = index_damage(opts, format!("{e}; every snapshot is unrestorable until `repovault repair-index` rebuilds it"));
            print_verify(&report, a.json)?;
            return Ok(exit::DAMAGED);
        }
        Err(e) => return Err(e.into()),
    };
    // Quick mode takes moments: only reading data draws a bar.
    let progress = crate::ui::Task::single("verify".into(), a.json || !opts.read_data);
    let scope = match &a.repo {
        Some(name) => {
            let repo = resolve_repo(&s, name)?;
            Some(verify::Scope::of_repo(&s, &repo.name)?)
        }
        None => None,
    };
    let report = match verify::verify_scoped(&s, opts, scope.as_ref(), &progress, interrupt) {
        Ok(r) => r,
        Err(verify::Error::Index(e)) => {
            // SQLite failing while reading the index is damage to report as well.
            let report = index_damage(
                opts,
                format!("{e}; run `repovault repair-index` to rebuild it from the packs"),
            );
            progress.finish();
            print_verify(&report, a.json)?;
            return Ok(exit::DAMAGED);
        }
        Err(e) => return Err(e.into()),
    };
    progress.finish();
    print_verify(&report, a.json)?;
    Ok(if report.is_clean() {
        exit::OK
    } else {
        exit::DAMAGED
    })
}

/// A verify report holding one problem: the index itself.
fn index_damage(
    opts: repovault::verify::VerifyOptions,
    detail: String,
) -> repovault::verify::VerifyReport {
    repovault::verify::VerifyReport {
        mode: if opts.read_data { "read-data" } else { "quick" }.into(),
        problems: vec![repovault::verify::Problem {
            kind: "index".into(),
            pack: None,
            offset: None,
            chunk: None,
            object: None,
            detail,
        }],
        ..Default::default()
    }
}

fn print_verify(r: &repovault::verify::VerifyReport, json: bool) -> Result<()> {
    if json {
        let mut v = serde_json::to_value(r)?;
        v["clean"] = serde_json::json!(r.is_clean());
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    if crate::ui::quiet() && r.is_clean() {
        return Ok(());
    }
    let mut out = output::stdout();
    writeln!(
        out,
        "verify ({}): {} packs, {} chunks, {} objects, {} snapshots checked; {} read in {:.1}s ({:.1} MB/s, {:.0} objects/s)",
        r.mode,
        r.packs_checked,
        r.chunks_checked,
        r.objects_checked,
        r.snapshots_checked,
        human_bytes(r.bytes_read),
        r.seconds,
        r.mb_per_second,
        r.objects_per_second
    )?;
    for p in &r.problems {
        writeln!(out, "DAMAGE: {p}")?;
    }
    for a in &r.affected {
        writeln!(
            out,
            "UNRESTORABLE: snapshot {} of {}: {}",
            &a.snapshot[..8.min(a.snapshot.len())],
            a.repo,
            a.reason
        )?;
    }
    for n in &r.notes {
        writeln!(out, "note: {n}")?;
    }
    if r.is_clean() {
        writeln!(out, "no damage found")?;
    } else {
        writeln!(
            out,
            "{} problem(s); {} snapshot(s) affected",
            r.problems.len(),
            r.affected.len()
        )?;
    }
    Ok(())
}

fn cmd_repair(store: &Option<PathBuf>, a: JsonArg) -> Result<u8> {
    let path = store_path(store)?;
    let r = repovault::repair::repair_index(&path, Duration::from_secs(60))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else if !crate::ui::quiet() {
        if let Some(old) = &r.old_index {
            println!("the old index was kept as {}", old.display());
        }
        println!(
            "rebuilt the index: {} packs, {} chunks, {} objects, {} snapshots",
            r.packs, r.chunks, r.objects, r.snapshots
        );
        for line in repair_losses(&r) {
            println!("{line}");
        }
    }
    Ok(if r.lost_something() {
        exit::PARTIAL
    } else {
        exit::OK
    })
}

fn cmd_forget(store: &Option<PathBuf>, a: ForgetArgs, interrupt: &AtomicBool) -> Result<u8> {
    use repovault::prune;
    use repovault::retention::Policy;
    let mut policy = Policy {
        keep_last: a.keep_last,
        keep_hourly: a.keep_hourly,
        keep_daily: a.keep_daily,
        keep_weekly: a.keep_weekly,
        keep_monthly: a.keep_monthly,
        keep_yearly: a.keep_yearly,
        keep_within: a
            .keep_within
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(anyhow::Error::msg)?,
    };
    if policy.is_empty() {
        if let Some(path) = &a.config {
            let c = repovault::config::Config::load(path)?;
            policy = c.retention.unwrap_or_default();
        }
    }
    // Without a rule nothing is removed, whatever --allow-empty says: removing
    // snapshots on purpose is `forget SNAPSHOT-ID...`.
    if policy.is_empty() && a.snapshots.is_empty() {
        return Err(usage(prune::Error::EmptyPolicy));
    }
    if !a.dry_run {
        catch_up_index(&store_path(store)?)?;
    }
    let s = open_store(store)?;
    let repo = a.repo.as_deref().map(|n| resolve_repo(&s, n)).transpose()?;
    let snaps = s.with_index(|i| i.snapshots(repo.as_ref().map(|r| r.id)))?;
    let decisions = if a.snapshots.is_empty() {
        prune::plan_forget(&snaps, &policy, a.allow_empty)
    } else {
        prune::plan_forget_ids(&snaps, &a.snapshots)?
    };
    let removed = decisions.iter().filter(|d| !d.keep).count();
    let mut prune_report = None;
    if !a.dry_run {
        let mut w = s.writer_for(Duration::from_secs(60), "forget")?;
        prune::apply_forget(&mut w, &decisions)?;
        if a.prune {
            let progress = crate::ui::Task::single("prune".into(), a.json);
            let r = prune::prune(&mut w, prune::PruneOptions::default(), interrupt, &progress);
            progress.finish();
            prune_report = Some(r?);
        }
    }
    if a.json {
        let doc = serde_json::json!({ "dry_run": a.dry_run, "removed": removed, "snapshots": decisions, "prune": prune_report });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(exit::OK);
    }
    if crate::ui::quiet() {
        return Ok(exit::OK);
    }
    let mut out = output::stdout();
    let mut last_repo = "";
    for d in &decisions {
        if d.repo != last_repo {
            writeln!(out, "{}:", d.repo)?;
            last_repo = &d.repo;
        }
        writeln!(
            out,
            "  {:<6} {}  {}  {}",
            if d.keep { "keep" } else { "remove" },
            &d.snapshot[..8],
            d.time.strftime("%Y-%m-%d %H:%M:%S"),
            d.reasons.join(", ")
        )?;
    }
    write!(
        out,
        "{} snapshots {}",
        removed,
        if a.dry_run {
            "would be removed"
        } else {
            "removed"
        }
    )?;
    if a.snapshots.is_empty() {
        write!(out, ", {} kept", decisions.len() - removed)?;
    }
    writeln!(out)?;
    drop(out);
    if let Some(r) = prune_report {
        print_prune(&r, false)?;
    }
    Ok(exit::OK)
}

fn print_prune(r: &repovault::prune::PruneReport, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(r)?);
        return Ok(());
    }
    println!(
        "prune{}: {} snapshots, {} live objects, {} unneeded objects; packs: {} before, {} deleted, {} repacked into {}, {} leftovers removed; {} copied; {} -> {}",
        if r.dry_run { " (dry run)" } else { "" },
        r.snapshots,
        r.live_objects,
        r.dead_objects,
        r.packs_before,
        r.packs_deleted,
        r.packs_repacked,
        r.packs_written,
        r.unindexed_packs_deleted,
        human_bytes(r.bytes_copied),
        human_bytes(r.bytes_before),
        human_bytes(r.bytes_after)
    );
    Ok(())
}

/// One snapshot as `snapshots --json` lists it (its refs only with `--refs`).
#[derive(serde::Serialize)]
struct SnapshotListing<'a> {
    id: &'a str,
    repo: &'a str,
    url: &'a str,
    time: jiff::Timestamp,
    checked_at: jiff::Timestamp,
    ref_count: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    refs: Option<&'a [repovault::snapshot::RefEntry]>,
    complete: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    missing: Vec<String>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    skipped: &'a [repovault::snapshot::SkippedRef],
}

fn cmd_snapshots(store: &Option<PathBuf>, a: SnapshotsArgs) -> Result<u8> {
    let s = open_store(store)?;
    let repo = a.repo.as_deref().map(|n| resolve_repo(&s, n)).transpose()?;
    let mut snaps = s.with_index(|i| i.snapshots(repo.as_ref().map(|r| r.id)))?;
    if a.latest {
        // Oldest first: the last of each repository is its newest.
        let mut seen = std::collections::HashSet::new();
        snaps.reverse();
        snaps.retain(|sn| seen.insert(sn.repo.clone()));
        snaps.reverse();
    }
    if a.json {
        let doc: Vec<SnapshotListing> = snaps
            .iter()
            .map(|sn| SnapshotListing {
                id: &sn.id,
                repo: &sn.repo,
                url: &sn.url,
                time: sn.time,
                checked_at: sn.checked_at,
                ref_count: sn.refs.len(),
                refs: a.refs.then_some(&sn.refs[..]),
                complete: sn.complete,
                missing: sn.missing.iter().map(|o| o.to_string()).collect(),
                skipped: &sn.skipped,
            })
            .collect();
        return print_json(&doc).map(|()| exit::OK);
    }
    let mut out = output::stdout();
    writeln!(
        out,
        "{:<8}  {:<26}  {:<26}  {:>5}  repository",
        "id", "time (UTC)", "checked at (UTC)", "refs"
    )?;
    for sn in &snaps {
        writeln!(
            out,
            "{:<8}  {:<26}  {:<26}  {:>5}  {}{}",
            sn.short_id(),
            utc_micros(sn.time),
            utc_micros(sn.checked_at),
            sn.refs.len(),
            sn.repo,
            match (sn.complete, sn.skipped.len()) {
                (true, _) => String::new(),
                (false, 0) => "  (incomplete)".into(),
                (false, n) => format!("  (incomplete: {n} ref(s) not backed up)"),
            }
        )?;
        if a.refs {
            for r in &sn.refs {
                writeln!(out, "          {}  {}", ref_target(r), r.name_lossy())?;
            }
        }
    }
    Ok(exit::OK)
}

/// Writes `doc` as pretty JSON and a newline to stdout (through [`output`]:
/// a closed pipe ends the output quietly).
fn print_json(doc: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(doc)?);
    Ok(())
}

/// What a ref points to, for listings: an id, `-> REF` for a symbolic ref,
/// `(unborn)` for a symbolic ref to a branch that does not exist yet.
fn ref_target(r: &repovault::snapshot::RefEntry) -> String {
    match (&r.symref, r.target) {
        (Some(t), _) => format!("-> {}", String::from_utf8_lossy(t)),
        (None, Some(t)) => t.to_string(),
        (None, None) => "(unborn)".into(),
    }
}

fn cmd_diff(store: &Option<PathBuf>, a: DiffArgs) -> Result<u8> {
    use repovault::diff;
    let s = open_store(store)?;
    let snaps = s.with_index(|i| i.snapshots(None))?;
    let pick = |id: &str| {
        diff::select_by_id(&snaps, id).map_err(|e| match e {
            diff::Error::BadId(_) => usage(e),
            e => e.into(),
        })
    };
    let (from, to) = (pick(&a.from)?, pick(&a.to)?);
    let d = diff::diff(&s, from, to, a.max_commits)?;
    if a.json {
        return print_json(&d).map(|()| exit::OK);
    }
    let mut out = output::stdout();
    for (label, sn) in [("from", &d.from), ("to", &d.to)] {
        writeln!(
            out,
            "{label:<4} {}  {}  {}",
            &sn.id[..8.min(sn.id.len())],
            utc_micros(sn.time),
            sn.repo
        )?;
    }
    let width = d
        .added
        .iter()
        .chain(&d.removed)
        .map(|r| r.name_lossy().len())
        .chain(d.moved.iter().map(|m| m.name_lossy().len()))
        .max()
        .unwrap_or(0);
    for r in &d.added {
        writeln!(
            out,
            "added    {:<width$}  {}",
            r.name_lossy(),
            ref_target(r)
        )?;
    }
    for r in &d.removed {
        writeln!(
            out,
            "removed  {:<width$}  {}",
            r.name_lossy(),
            ref_target(r)
        )?;
    }
    for m in &d.moved {
        writeln!(
            out,
            "moved    {:<width$}  {} => {}",
            m.name_lossy(),
            ref_target(&m.old),
            ref_target(&m.new)
        )?;
    }
    writeln!(
        out,
        "refs: {} added, {} removed, {} moved; commits: {} gained, {} lost",
        d.added.len(),
        d.removed.len(),
        d.moved.len(),
        d.commits.gained,
        d.commits.lost
    )?;
    if !d.missing.is_empty() {
        writeln!(
            out,
            "note: {} object(s) the walk met are not in the store (incomplete snapshots): the commit counts stop there",
            d.missing.len()
        )?;
    }
    Ok(exit::OK)
}

fn cmd_find(store: &Option<PathBuf>, a: FindArgs) -> Result<u8> {
    let s = open_store(store)?;
    let repo = a.repo.as_deref().map(|n| resolve_repo(&s, n)).transpose()?;
    let snaps = s.with_index(|i| i.snapshots(repo.as_ref().map(|r| r.id)))?;
    let r = repovault::find::find(&s, &snaps, &a.query, a.max_commits).map_err(|e| match e {
        repovault::find::Error::Empty => usage(e),
        e => e.into(),
    })?;
    if a.json {
        return print_json(&r).map(|()| exit::OK);
    }
    let mut out = output::stdout();
    let short = |id: &str| id[..8.min(id.len())].to_owned();
    if !r.refs.is_empty() {
        writeln!(out, "ref {}:", r.query)?;
        for h in &r.refs {
            writeln!(
                out,
                "  {}  {}  {}  {}  {}",
                short(&h.snapshot.id),
                utc_micros(h.snapshot.time),
                h.snapshot.repo,
                h.entry.name_lossy(),
                ref_target(&h.entry)
            )?;
        }
    }
    if let Some(c) = r.commit {
        writeln!(out, "commit {c}:")?;
        for h in &r.commit_snapshots {
            let more = h.refs.len().saturating_sub(3);
            writeln!(
                out,
                "  {}  {}  {}  reachable from {}{}",
                short(&h.snapshot.id),
                utc_micros(h.snapshot.time),
                h.snapshot.repo,
                h.refs
                    .iter()
                    .take(3)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", "),
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                }
            )?;
        }
    }
    let held = r.refs.len() + r.commit_snapshots.len();
    if held == 0 {
        writeln!(
            out,
            "no ref named {q:?}{} in any of {} snapshot(s)",
            if r.commit.is_some() {
                " and no ref reaching that commit"
            } else {
                ""
            },
            r.snapshots_searched,
            q = r.query
        )?;
    } else {
        writeln!(out, "searched {} snapshot(s)", r.snapshots_searched)?;
    }
    if !r.missing.is_empty() {
        writeln!(
            out,
            "note: {} object(s) the walk met are not in the store (incomplete snapshots): history behind them was not searched",
            r.missing.len()
        )?;
    }
    Ok(exit::OK)
}

/// A time as `snapshots` prints it: UTC to the microsecond (the precision
/// snapshots are recorded with), in a form `restore --at` reads back exactly.
fn utc_micros(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%d %H:%M:%S%.6f").to_string()
}

/// `repos --remove`: drops repositories that have no snapshot, under the write lock.
fn remove_repos(s: &Store, names: &[String], json: bool) -> Result<u8> {
    let targets = names
        .iter()
        .map(|n| resolve_repo(s, n))
        .collect::<Result<Vec<_>>>()?;
    if let Some(r) = targets.iter().find(|r| r.snapshots > 0) {
        bail!(
            "repository {} has {} snapshot(s); `repos --remove` only removes a repository without snapshots: forget them first (repovault forget --repo {} SNAPSHOT-ID...)",
            r.name,
            r.snapshots,
            r.name
        );
    }
    let mut w = s.writer_for(Duration::from_secs(60), "repos --remove")?;
    let mut removed = Vec::new();
    for r in &targets {
        if !w.index().remove_empty_repo(r.id)? {
            bail!(
                "repository {} got a snapshot meanwhile: not removed",
                r.name
            );
        }
        removed.push(r.name.clone());
    }
    drop(w);
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "removed": removed }))?
        );
    } else {
        for n in &removed {
            println!("removed repository {n} (it had no snapshot)");
        }
    }
    Ok(exit::OK)
}

fn cmd_repos(store: &Option<PathBuf>, a: ReposArgs) -> Result<u8> {
    let s = open_store(store)?;
    if !a.remove.is_empty() {
        return remove_repos(&s, &a.remove, a.json);
    }
    let repos = s.with_index(|i| i.repos())?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&repos)?);
        return Ok(exit::OK);
    }
    let mut out = output::stdout();
    writeln!(
        out,
        "{:<10}  {:<20}  {:>9}  repository",
        "status", "last checked (UTC)", "snapshots"
    )?;
    for r in &repos {
        let when = r
            .last_checked
            .and_then(|t| jiff::Timestamp::from_second(t).ok())
            .map(|t| t.strftime("%Y-%m-%d %H:%M:%S").to_string())
            .unwrap_or_else(|| "-".into());
        writeln!(
            out,
            "{:<10}  {:<20}  {:>9}  {}",
            r.last_status.as_deref().unwrap_or("-"),
            when,
            r.snapshots,
            r.name
        )?;
        if let Some(e) = &r.last_error {
            writeln!(out, "            last error: {e}")?;
        }
    }
    Ok(exit::OK)
}

fn open_for_sync(store_arg: &Option<PathBuf>, config_store: Option<&Path>) -> Result<Store> {
    Ok(match (store_arg, config_store) {
        (Some(p), _) => open_caught_up(p)?,
        (None, Some(p)) => open_caught_up(p)?,
        (None, None) => {
            let p = default_store()?;
            if p.exists() {
                open_caught_up(&p)?
            } else {
                if !crate::ui::quiet() {
                    eprintln!("repovault: creating the default store at {}", p.display());
                }
                Store::init(&p, InitOptions::default())?
            }
        }
    })
}

/// Opens the store for a writer, first rebuilding an index that lags the
/// store's files (saying so): writing with it could lose data.
fn open_caught_up(path: &Path) -> Result<Store> {
    catch_up_index(path)?;
    Ok(Store::open(path)?)
}

/// Rebuilds the index when it lags the store's files (`repair::catch_up`), saying so.
fn catch_up_index(path: &Path) -> Result<()> {
    let Some((reason, r)) = repovault::repair::catch_up(path, Duration::from_secs(60))? else {
        return Ok(());
    };
    eprintln!(
        "repovault: the index lagged the store's files ({reason}): rebuilt it from the packs and snapshot files first ({} packs, {} objects, {} snapshots{})",
        r.packs,
        r.objects,
        r.snapshots,
        r.old_index
            .as_ref()
            .map(|o| format!("; the old index was kept as {}", o.display()))
            .unwrap_or_default()
    );
    for line in repair_losses(&r) {
        eprintln!("repovault: {line}");
    }
    Ok(())
}

/// What a repair could not recover, one line each.
fn repair_losses(r: &repovault::repair::RepairReport) -> Vec<String> {
    let mut out: Vec<String> = r
        .skipped_packs
        .iter()
        .chain(&r.skipped_snapshots)
        .map(|s| format!("left out (damaged): {s}"))
        .collect();
    for s in &r.salvaged_packs {
        out.push(format!("salvaged (damaged): {s}"));
    }
    if !r.damaged_objects.is_empty() {
        out.push(format!(
            "{} object(s) lost with damaged chunks ({}{}): `repovault verify --read-data` names the snapshots that need them",
            r.damaged_objects.len(),
            r.damaged_objects.iter().take(3).cloned().collect::<Vec<_>>().join(", "),
            if r.damaged_objects.len() > 3 { ", ..." } else { "" }
        ));
    }
    for s in &r.lost_snapshots {
        out.push(format!("not recovered: {s}"));
    }
    if r.dropped_chunks > 0 {
        out.push(format!(
            "{} chunks dropped: their delta base is in no intact pack",
            r.dropped_chunks
        ));
    }
    out
}

fn failed_report(src: &Source, millis: u64, msg: String) -> RepoReport {
    RepoReport {
        millis,
        error: Some(msg),
        ..RepoReport::new(src, Status::Failed)
    }
}

/// Syncs `sources` on `jobs` threads; a failed repository is retried once when `retry`.
fn run_jobs(
    store: &Store,
    writer: &Mutex<repovault::store::Writer<'_>>,
    sources: &[Source],
    opts: &SyncOptions,
    jobs: usize,
    retry: bool,
    interrupt: &AtomicBool,
) -> Vec<RepoReport> {
    let bars = crate::ui::Bars::new(sources.len());
    let queue = Mutex::new(sources.iter().enumerate().collect::<Vec<_>>().into_iter());
    let reports: Mutex<Vec<(usize, RepoReport)>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..jobs.clamp(1, 64).min(sources.len().max(1)) {
            scope.spawn(|| loop {
                let next = queue.lock().unwrap_or_else(|p| p.into_inner()).next();
                let Some((i, src)) = next else { break };
                if interrupt.load(Ordering::SeqCst) {
                    break;
                }
                let progress = crate::ui::Task::new(
                    bars.as_ref(),
                    format!("[{}/{}] {}", i + 1, sources.len(), src.name),
                );
                let t = Instant::now();
                let mut attempt = 0;
                let report = loop {
                    attempt += 1;
                    match sync::sync_repo(store, writer, src, opts, interrupt, &progress) {
                        Ok(r) => break r,
                        Err(e) => {
                            let millis = t.elapsed().as_millis() as u64;
                            if matches!(e, sync::Error::Interrupted)
                                || interrupt.load(Ordering::SeqCst)
                            {
                                break with_written(
                                    RepoReport {
                                        millis,
                                        error: Some("interrupted".into()),
                                        ..RepoReport::new(src, Status::Interrupted)
                                    },
                                    &progress.written(),
                                );
                            }
                            let msg = one_line(&format!("{e}"));
                            let again = retry && attempt == 1;
                            if again {
                                tracing::warn!(repo = %src.name, "{msg}; retrying once");
                                continue;
                            }
                            if !crate::ui::summary_shown() {
                                tracing::error!(repo = %src.name, "{msg}");
                            }
                            sync::record_failure(writer, src, &msg);
                            let mut r = failed_report(src, millis, msg);
                            if let sync::Error::MissingObjects { objects, refs } = &e {
                                r.missing_objects = objects.iter().map(|o| o.to_string()).collect();
                                r.missing_needed_by = refs.clone();
                            }
                            break with_written(r, &progress.written());
                        }
                    }
                };
                progress.finish();
                if let Some(b) = &bars {
                    b.item_done();
                }
                reports
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((i, report));
            });
        }
    });
    let mut reports = reports.into_inner().unwrap_or_else(|p| p.into_inner());
    reports.sort_by_key(|(i, _)| *i);
    reports.into_iter().map(|(_, r)| r).collect()
}

/// A failed or interrupted repository's report, counting what it wrote to the store.
fn with_written(mut r: RepoReport, w: &store::WriteStats) -> RepoReport {
    r.new_objects = w.objects;
    r.new_chunks = w.chunks;
    r.new_bytes_stored = w.stored_bytes;
    r.new_pack_bytes = w.pack_bytes;
    r
}

/// Repositories that failed, were interrupted, or were never started (interrupted).
fn failed_or_skipped(reports: &[RepoReport], planned: usize) -> usize {
    reports
        .iter()
        .filter(|r| matches!(r.status, Status::Failed | Status::Interrupted))
        .count()
        + planned.saturating_sub(reports.len())
}

fn exit_for(total: usize, failed: usize, interrupted: bool) -> u8 {
    if interrupted {
        exit::INTERRUPTED
    } else if failed == 0 {
        exit::OK
    } else if failed >= total {
        exit::ERROR
    } else {
        exit::PARTIAL
    }
}

fn cmd_sync(store_arg: &Option<PathBuf>, a: SyncArgs, interrupt: &AtomicBool) -> Result<u8> {
    if a.dry_run {
        return cmd_sync_dry_run(store_arg, &a, interrupt);
    }
    if let Some(config) = &a.config {
        return cmd_sync_config(store_arg, config, &a, interrupt);
    }
    if a.sources.is_empty() {
        bail!("nothing to sync: give SOURCE URLs or paths, or --config FILE");
    }
    if a.name.is_some() && a.sources.len() > 1 {
        return Err(usage(anyhow::anyhow!(
            "--name names one repository, but {} sources were given: sync them one by one",
            a.sources.len()
        )));
    }
    let store = open_for_sync(store_arg, None)?;
    let auth = match &a.token_env {
        Some(var) => {
            let token = std::env::var(var).map_err(|_| {
                anyhow::anyhow!("--token-env {var}: the environment variable {var} is not set")
            })?;
            if token.trim().is_empty() {
                bail!("--token-env {var}: the environment variable {var} is empty");
            }
            Some(Auth {
                user: a.token_user.clone(),
                token: Secret::new(token.trim().to_owned()),
                bearer: false,
            })
        }
        None => None,
    };
    let mut sources: Vec<Source> = a
        .sources
        .iter()
        .map(|s| Source::parse(s, a.name.as_deref(), auth.clone()))
        .collect::<Result<_, _>>()
        .map_err(usage)?;
    if a.name.is_none() {
        keep_existing_names(&store, &mut sources)?;
    }
    let cache = a
        .cache
        .clone()
        .unwrap_or_else(|| sync::default_cache(&store));
    create_private_dir(&cache)?;
    let opts = SyncOptions {
        cache,
        allow_incomplete: a.allow_incomplete,
    };
    let writer = Mutex::new(store.writer_for(Duration::from_secs(a.lock_wait), "sync")?);
    let start = Instant::now();
    crate::ui::set_summary_shown(!a.json && !crate::ui::quiet());
    let reports = run_jobs(
        &store,
        &writer,
        &sources,
        &opts,
        a.jobs.unwrap_or(4),
        false,
        interrupt,
    );
    let mut w = writer.into_inner().unwrap_or_else(|p| p.into_inner());
    w.commit()?;
    drop(w);
    let failed = failed_or_skipped(&reports, sources.len());
    let doc = sync_summary(&reports, None, start.elapsed());
    emit_summary(&doc, &reports, a.json, a.report.as_deref())?;
    Ok(partial_if_refs_skipped(
        exit_for(sources.len(), failed, interrupt.load(Ordering::SeqCst)),
        &reports,
    ))
}

/// A run whose repositories all synced but left refs out is partial (exit 3).
fn partial_if_refs_skipped(code: u8, reports: &[RepoReport]) -> u8 {
    if code == exit::OK && reports.iter().any(|r| !r.skipped_refs.is_empty()) {
        exit::PARTIAL
    } else {
        code
    }
}

/// `sync --dry-run`: lists each source's refs and compares them with its last
/// snapshot. Opens the store read-only (never creates it), takes no lock,
/// creates no mirror, fetches and writes nothing.
fn cmd_sync_dry_run(
    store_arg: &Option<PathBuf>,
    a: &SyncArgs,
    interrupt: &AtomicBool,
) -> Result<u8> {
    let mut sources_failed = Vec::new();
    let mut warnings: Vec<String> = Vec::new();
    let (store, mut sources) = match &a.config {
        Some(path) => {
            let config = repovault::config::Config::load(path)?;
            let resolved = config.resolve(path)?;
            let store = match (store_arg, config.store.as_deref()) {
                (Some(p), _) => Store::open(p)?,
                (None, Some(p)) => Store::open(p)?,
                (None, None) => Store::open(&default_store()?)?,
            };
            let mut sources = Vec::new();
            for SourceListing { label, result, .. } in discover_all(&resolved) {
                match result {
                    Ok(found) => {
                        let refused: std::collections::HashSet<String> =
                            found.refused.iter().map(|(s, _)| s.name.clone()).collect();
                        warnings.extend(found.refused.into_iter().map(|(_, why)| why));
                        sources.extend(
                            found
                                .repos
                                .into_iter()
                                .filter(|(s, r)| !r.disabled && !refused.contains(&s.name))
                                .map(|(s, _)| s),
                        );
                    }
                    Err(e) if e.starts_with(&label) => sources_failed.push(e),
                    Err(e) => sources_failed.push(format!("{label}: {e}")),
                }
            }
            (store, sources)
        }
        None => {
            if a.name.is_some() && a.sources.len() > 1 {
                return Err(usage(anyhow::anyhow!(
                    "--name names one repository, but {} sources were given: sync them one by one",
                    a.sources.len()
                )));
            }
            let auth = match &a.token_env {
                Some(var) => {
                    let token = std::env::var(var).map_err(|_| {
                        anyhow::anyhow!(
                            "--token-env {var}: the environment variable {var} is not set"
                        )
                    })?;
                    Some(Auth {
                        user: a.token_user.clone(),
                        token: Secret::new(token.trim().to_owned()),
                        bearer: false,
                    })
                }
                None => None,
            };
            let sources: Vec<Source> = a
                .sources
                .iter()
                .map(|s| Source::parse(s, a.name.as_deref(), auth.clone()))
                .collect::<Result<_, _>>()
                .map_err(usage)?;
            (open_store(store_arg)?, sources)
        }
    };
    // Names from before ports were part of them, as a sync would use them.
    if a.config.is_none() {
        keep_existing_names(&store, &mut sources)?;
    } else {
        let known = store.with_index(|i| i.repos())?;
        for src in &mut sources {
            if let Ok(Some(n)) = sync::existing_name(&known, src) {
                src.name = n;
            }
        }
    }
    let mut plans = Vec::new();
    for src in &sources {
        if interrupt.load(Ordering::SeqCst) {
            break;
        }
        plans.push(sync::plan::plan(&store, src)?);
    }
    let count = |st: &str| plans.iter().filter(|p| p.status == st).count();
    let failed = count("failed") + sources_failed.len() + sources.len().saturating_sub(plans.len());
    if a.json {
        let doc = serde_json::json!({
            "dry_run": true,
            "repos": plans,
            "sources_failed": sources_failed,
            "warnings": warnings,
            "totals": {
                "repos": plans.len(),
                "new": count("new"),
                "changed": count("changed"),
                "unchanged": count("unchanged"),
                "failed": count("failed"),
            }
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        let mut out = output::stdout();
        for p in &plans {
            let last = p
                .last_snapshot
                .as_deref()
                .map(|s| &s[..8.min(s.len())])
                .unwrap_or("-");
            write!(
                out,
                "{:<9} {}  last snapshot {}  refs {}",
                p.status, p.name, last, p.refs
            )?;
            if p.status == "changed" {
                write!(
                    out,
                    "  ({} added, {} removed, {} moved)",
                    p.added.len(),
                    p.removed.len(),
                    p.moved.len()
                )?;
            }
            if let Some(e) = &p.error {
                write!(out, "  error: {e}")?;
            }
            writeln!(out)?;
            let show = |o: &Option<String>| o.clone().unwrap_or_else(|| "-".into());
            for c in &p.added {
                writeln!(out, "  + {}  {}", c.name, show(&c.new))?;
            }
            for c in &p.removed {
                writeln!(out, "  - {}  {}", c.name, show(&c.old))?;
            }
            for c in &p.moved {
                writeln!(out, "  ~ {}  {} -> {}", c.name, show(&c.old), show(&c.new))?;
            }
        }
        for f in &sources_failed {
            writeln!(out, "error: source {f}")?;
        }
        for w in &warnings {
            writeln!(out, "warning: {w}")?;
        }
        writeln!(
            out,
            "dry run: {} repositories: {} new, {} changed, {} unchanged, {} failed; nothing was fetched or written",
            plans.len(),
            count("new"),
            count("changed"),
            count("unchanged"),
            count("failed")
        )?;
    }
    Ok(exit_for(
        (sources.len() + sources_failed.len()).max(1),
        failed,
        interrupt.load(Ordering::SeqCst),
    ))
}

/// Sources already in the store under a name from before ports were part of
/// names keep that name (see [`sync::existing_name`]).
fn keep_existing_names(store: &Store, sources: &mut [Source]) -> Result<()> {
    let known = store.with_index(|i| i.repos())?;
    for src in sources {
        if let Some(n) = sync::existing_name(&known, src)? {
            src.name = n;
        }
    }
    Ok(())
}

/// Discovery results of a config run, for the summary.
#[derive(Default, serde::Serialize)]
struct DiscoverySummary {
    sources: usize,
    sources_failed: Vec<String>,
    /// Sources whose listing was incomplete (`label: first problem`).
    sources_incomplete: Vec<String>,
    /// Repositories synced although this run's listing missed them: known
    /// from earlier runs of a source whose listing failed or was incomplete.
    from_earlier_runs: Vec<String>,
    discovered: usize,
    new: Vec<String>,
    renamed: Vec<(String, String)>,
    deleted: Vec<String>,
    disabled: Vec<String>,
    warnings: Vec<String>,
}

/// What one source of a config listed.
struct SourceListing {
    label: String,
    result: Result<Found, String>,
    /// How to sync the source's repositories known from earlier runs when
    /// its listing failed or was incomplete; `None` after a rejected token
    /// (they would only fail the same way) and for `git` sources.
    known: Option<KnownAccess>,
}

/// A listing that worked (maybe only in part).
struct Found {
    /// Every listed repository, refused ones included (all are registered).
    repos: Vec<(Source, repovault::index::Registration)>,
    complete: bool,
    warnings: Vec<String>,
    /// Listed repositories not synced because their clone URL leaves the
    /// source's hosts, with the message saying so.
    refused: Vec<(Source, String)>,
}

/// Credentials and hosts of a provider source.
struct KnownAccess {
    token: Option<Secret>,
    bearer: bool,
    git_user: &'static str,
    hosts: repovault::discover::CredentialHosts,
}

impl KnownAccess {
    /// The source for `name` at `url` with the token, or the refusal
    /// message when `url` leaves the source's hosts.
    fn source(&self, label: &str, name: &str, url: &str) -> Result<Source, String> {
        if self.token.is_some() && !self.hosts.allows(url) {
            let host = repovault::discover::host_of(url);
            return Err(format!(
                "not synced: its clone URL {url} is on {host}, not a host of source {label} ({}), and the token is only sent there; if {host} is yours, add \"{host}\" to git_hosts of the source",
                self.hosts.describe()
            ));
        }
        Ok(Source {
            url: url.to_owned(),
            name: name.to_owned(),
            auth: self.token.clone().map(|t| Auth {
                user: self.git_user.to_owned(),
                token: t,
                bearer: self.bearer,
            }),
        })
    }
}

/// Lists every source of a config (no store involved).
fn discover_all(resolved: &[repovault::config::Resolved]) -> Vec<SourceListing> {
    use repovault::config::Resolved;
    use repovault::discover::{discover_blocking, git_user, CredentialHosts, HttpOptions};
    let mut out = Vec::new();
    for r in resolved {
        let label = r.label();
        let listing = match r {
            Resolved::Provider {
                source,
                token,
                bearer,
            } => {
                let access = match CredentialHosts::for_source(source) {
                    Ok(hosts) => KnownAccess {
                        token: token.clone(),
                        bearer: *bearer,
                        git_user: git_user(source.provider),
                        hosts,
                    },
                    Err(e) => {
                        out.push(SourceListing {
                            label,
                            result: Err(e),
                            known: None,
                        });
                        continue;
                    }
                };
                match discover_blocking(source, &HttpOptions::default()) {
                    Ok(listing) => {
                        let mut repos = Vec::new();
                        let mut refused = Vec::new();
                        for d in listing.repos {
                            let reg = repovault::index::Registration {
                                key: d.key.clone(),
                                name: d.name.clone(),
                                url: d.clone_url.clone(),
                                disabled: d.disabled,
                                record: d.record.clone(),
                            };
                            let src = match access.source(&label, &d.name, &d.clone_url) {
                                Ok(s) => s,
                                Err(why) => {
                                    let bare = Source {
                                        url: d.clone_url.clone(),
                                        name: d.name.clone(),
                                        auth: None,
                                    };
                                    if !d.disabled {
                                        refused.push((bare.clone(), why));
                                    }
                                    bare
                                }
                            };
                            repos.push((src, reg));
                        }
                        SourceListing {
                            label,
                            result: Ok(Found {
                                repos,
                                complete: listing.complete,
                                warnings: listing.warnings,
                                refused,
                            }),
                            known: Some(access),
                        }
                    }
                    Err(e) => SourceListing {
                        label,
                        known: (!e.is_auth()).then_some(access),
                        result: Err(e.to_string()),
                    },
                }
            }
            Resolved::Git { urls, auth, .. } => {
                let mut repos = Vec::new();
                let mut err = None;
                for u in urls {
                    match Source::parse(u, None, auth.clone()) {
                        Ok(s) => {
                            let reg = repovault::index::Registration {
                                key: format!("git:{}", s.name),
                                name: s.name.clone(),
                                url: s.url.clone(),
                                disabled: false,
                                record: serde_json::json!({ "url": s.url }),
                            };
                            repos.push((s, reg));
                        }
                        Err(e) => err = Some(e.to_string()),
                    }
                }
                SourceListing {
                    label,
                    result: match err {
                        Some(e) => Err(e),
                        None => Ok(Found {
                            repos,
                            complete: true,
                            warnings: Vec::new(),
                            refused: Vec::new(),
                        }),
                    },
                    known: None,
                }
            }
        };
        out.push(listing);
    }
    out
}

/// [`keep_existing_names`] for the `git` sources of a config (whose key is
/// their name); a source whose name a different repository holds is left out
/// and reported as failed.
fn keep_existing_git_names(
    writer: &Mutex<repovault::store::Writer<'_>>,
    label: &str,
    repos: Vec<(Source, repovault::index::Registration)>,
    summary: &mut DiscoverySummary,
) -> Result<Vec<(Source, repovault::index::Registration)>> {
    let known = writer
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .index()
        .repos()?;
    let mut out = Vec::with_capacity(repos.len());
    for (mut src, mut reg) in repos {
        if reg.key != format!("git:{}", src.name) {
            out.push((src, reg));
            continue;
        }
        match sync::existing_name(&known, &src) {
            Ok(Some(n)) => {
                reg.key = format!("git:{n}");
                reg.name = n.clone();
                src.name = n;
                out.push((src, reg));
            }
            Ok(None) => out.push((src, reg)),
            Err(e) => summary.sources_failed.push(format!("{label}: {e}")),
        }
    }
    Ok(out)
}

/// The repositories of `label` known from earlier runs (active, not disabled
/// or deleted upstream) that this run's listing lacks, as sources; those
/// whose URL leaves the source's hosts come back refused.
fn known_from_earlier_runs(
    index: &repovault::index::Index,
    label: &str,
    listed: &std::collections::HashSet<String>,
    access: &KnownAccess,
) -> Result<(Vec<Source>, Vec<(Source, String)>)> {
    let mut sources = Vec::new();
    let mut refused = Vec::new();
    for row in index.repos()? {
        let key = match &row.key {
            Some(k) if row.origin.as_deref() == Some(label) && row.state == "active" => k,
            _ => continue,
        };
        if listed.contains(key) {
            continue;
        }
        match access.source(label, &row.name, &row.url) {
            Ok(s) => sources.push(s),
            Err(why) => refused.push((
                Source {
                    url: row.url.clone(),
                    name: row.name.clone(),
                    auth: None,
                },
                why,
            )),
        }
    }
    Ok((sources, refused))
}

/// `first` and how many more there are, for a one-line message.
fn first_and_more(items: &[String]) -> String {
    match items {
        [] => "no details".to_owned(),
        [one] => one.clone(),
        [first, rest @ ..] => format!("{first}; and {} more", rest.len()),
    }
}

fn cmd_sync_config(
    store_arg: &Option<PathBuf>,
    path: &Path,
    a: &SyncArgs,
    interrupt: &AtomicBool,
) -> Result<u8> {
    let config = repovault::config::Config::load(path)?;
    let resolved = config.resolve(path)?;
    let store = open_for_sync(store_arg, config.store.as_deref())?;
    let cache = a
        .cache
        .clone()
        .or(config.cache.clone())
        .unwrap_or_else(|| sync::default_cache(&store));
    create_private_dir(&cache)?;
    let opts = SyncOptions {
        cache,
        allow_incomplete: a.allow_incomplete,
    };
    let start = Instant::now();
    // Discovery first, without the store lock: a slow or stalled API must not
    // keep other writers out (each source has its own deadline).
    let listed = discover_all(&resolved);
    let writer = Mutex::new(store.writer_for(Duration::from_secs(a.lock_wait), "sync")?);
    let mut summary = DiscoverySummary {
        sources: resolved.len(),
        ..Default::default()
    };
    let mut sources = Vec::new();
    let mut refused: Vec<(Source, String)> = Vec::new();
    let now = jiff::Timestamp::now().as_second();
    for SourceListing {
        label,
        result,
        known,
    } in listed
    {
        let mut listed_keys = std::collections::HashSet::new();
        let mut problem = None;
        let mut incomplete = false;
        match result {
            Ok(mut found) => {
                found.repos = keep_existing_git_names(&writer, &label, found.repos, &mut summary)?;
                summary.discovered += found.repos.len();
                summary
                    .warnings
                    .extend(found.warnings.iter().map(|w| format!("{label}: {w}")));
                if !found.complete {
                    incomplete = true;
                    summary.warnings.push(format!(
                        "{label}: the listing was incomplete; no repository was marked deleted"
                    ));
                    problem = Some(format!(
                        "{label}: the listing is incomplete ({})",
                        first_and_more(&found.warnings)
                    ));
                }
                let regs: Vec<_> = found.repos.iter().map(|(_, r)| r.clone()).collect();
                let ch = writer
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .index()
                    .register(&label, &regs, found.complete, now)?;
                summary.new.extend(ch.new);
                summary.renamed.extend(ch.renamed);
                summary.deleted.extend(ch.deleted);
                summary.disabled.extend(ch.disabled);
                let refused_names: std::collections::HashSet<String> =
                    found.refused.iter().map(|(s, _)| s.name.clone()).collect();
                listed_keys.extend(found.repos.iter().map(|(_, r)| r.key.clone()));
                sources.extend(
                    found
                        .repos
                        .into_iter()
                        .filter(|(s, r)| !r.disabled && !refused_names.contains(&s.name))
                        .map(|(s, _)| s),
                );
                refused.extend(found.refused);
                if found.complete {
                    continue;
                }
            }
            Err(e) => {
                tracing::error!(source = %label, "{e}");
                let named = if e.starts_with(&label) {
                    e
                } else {
                    format!("{label}: {e}")
                };
                problem = Some(named);
            }
        }
        // The listing failed or is incomplete: what earlier runs knew of this
        // source is still backed up tonight.
        let mut earlier = 0;
        if let Some(access) = &known {
            let mut w = writer.lock().unwrap_or_else(|p| p.into_inner());
            let (more, more_refused) =
                known_from_earlier_runs(w.index(), &label, &listed_keys, access)?;
            drop(w);
            earlier = more.len();
            summary
                .from_earlier_runs
                .extend(more.iter().map(|s| s.name.clone()));
            sources.extend(more);
            refused.extend(more_refused);
        }
        let mut line = problem.unwrap_or_default();
        if earlier > 0 {
            line.push_str(&format!(
                "; {earlier} repositories known from earlier runs are synced anyway"
            ));
        }
        if incomplete {
            summary.sources_incomplete.push(line);
        } else {
            summary.sources_failed.push(line);
        }
    }
    let jobs = a.jobs.or(config.jobs).unwrap_or(4);
    crate::ui::set_summary_shown(!a.json && !crate::ui::quiet());
    let mut reports = run_jobs(&store, &writer, &sources, &opts, jobs, true, interrupt);
    for (src, why) in &refused {
        tracing::error!(repo = %src.name, "{why}");
        sync::record_failure(&writer, src, why);
        reports.push(failed_report(src, 0, why.clone()));
    }
    let mut w = writer.into_inner().unwrap_or_else(|p| p.into_inner());
    w.commit()?;
    drop(w);
    let failed_repos = failed_or_skipped(&reports, sources.len() + refused.len());
    let doc = sync_summary(&reports, Some(&summary), start.elapsed());
    emit_summary(&doc, &reports, a.json, a.report.as_deref())?;
    if !a.json {
        for f in &summary.sources_failed {
            eprintln!("repovault: error: source {f}");
        }
        for f in &summary.sources_incomplete {
            eprintln!("repovault: error: source {f}");
        }
    }
    let troubled = summary.sources_failed.len() + summary.sources_incomplete.len();
    let total = sources.len() + refused.len() + troubled;
    let failed = failed_repos + troubled;
    Ok(partial_if_refs_skipped(
        exit_for(total.max(1), failed, interrupt.load(Ordering::SeqCst)),
        &reports,
    ))
}

fn cmd_config_check(path: &Path, json: bool) -> Result<u8> {
    let config = repovault::config::Config::load(path)?;
    let resolved = config.resolve(path)?;
    let listed = discover_all(&resolved);
    let mut failed = 0;
    let mut doc = Vec::new();
    let mut out = output::stdout();
    if !json {
        writeln!(
            out,
            "{}: valid; {} source(s)",
            path.display(),
            resolved.len()
        )?;
        if let Some(s) = &config.store {
            writeln!(out, "store: {}", s.display())?;
        }
    }
    for SourceListing { label, result, .. } in listed {
        match result {
            Ok(Found {
                repos,
                complete,
                warnings,
                refused,
            }) => {
                if json {
                    doc.push(serde_json::json!({
                        "source": label,
                        "complete": complete,
                        "warnings": warnings,
                        "refused": refused.iter().map(|(s, why)| serde_json::json!({
                            "name": s.name, "url": s.url, "reason": why })).collect::<Vec<_>>(),
                        "repos": repos.iter().map(|(s, r)| serde_json::json!({
                            "name": s.name, "url": s.url, "key": r.key, "disabled": r.disabled })).collect::<Vec<_>>(),
                    }));
                    continue;
                }
                writeln!(
                    out,
                    "{label}: {} repositories{}",
                    repos.len(),
                    if complete {
                        ""
                    } else {
                        " (listing incomplete)"
                    }
                )?;
                for (s, r) in &repos {
                    writeln!(
                        out,
                        "  {}{}  {}",
                        s.name,
                        if r.disabled {
                            " (disabled: not fetched)"
                        } else {
                            ""
                        },
                        s.url
                    )?;
                }
                for w in warnings {
                    writeln!(out, "  warning: {w}")?;
                }
                for (s, why) in &refused {
                    writeln!(out, "  refused: {}: {why}", s.name)?;
                }
            }
            Err(e) => {
                failed += 1;
                if json {
                    doc.push(serde_json::json!({ "source": label, "error": e }));
                } else {
                    if e.starts_with(&label) {
                        writeln!(out, "error: {e}")?;
                    } else {
                        writeln!(out, "{label}: error: {e}")?;
                    }
                }
            }
        }
    }
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
    }
    Ok(if failed == 0 { exit::OK } else { exit::ERROR })
}

fn sync_summary(
    reports: &[RepoReport],
    discovery: Option<&DiscoverySummary>,
    elapsed: Duration,
) -> serde_json::Value {
    let count = |s: Status| reports.iter().filter(|r| r.status == s).count();
    serde_json::json!({
        "repos": reports,
        "discovery": discovery,
        "totals": {
            "repos": reports.len(),
            "synced": count(Status::New) + count(Status::Changed),
            "new": count(Status::New),
            "changed": count(Status::Changed),
            "unchanged": count(Status::Unchanged),
            "failed": count(Status::Failed),
            "interrupted": count(Status::Interrupted),
            "new_objects": reports.iter().map(|r| r.new_objects).sum::<u64>(),
            "new_bytes_stored": reports.iter().map(|r| r.new_bytes_stored).sum::<u64>(),
            "new_pack_bytes": reports.iter().map(|r| r.new_pack_bytes).sum::<u64>(),
            "millis": elapsed.as_millis() as u64,
        }
    })
}

fn emit_summary(
    doc: &serde_json::Value,
    reports: &[RepoReport],
    json: bool,
    report_file: Option<&Path>,
) -> Result<()> {
    if let Some(f) = report_file {
        std::fs::write(f, serde_json::to_string_pretty(doc)?)
            .with_context(|| format!("cannot write --report {}", f.display()))?;
    }
    if json {
        println!("{}", serde_json::to_string_pretty(doc)?);
        return Ok(());
    }
    if crate::ui::quiet() {
        // Failures were logged on stderr as they happened; success says nothing.
        return Ok(());
    }
    print_sync_summary(reports, doc)
}

fn print_sync_summary(reports: &[RepoReport], doc: &serde_json::Value) -> Result<()> {
    let mut out = output::stdout();
    for r in reports {
        let snap = r.snapshot.as_deref().map(|s| &s[..8]).unwrap_or("-");
        write!(
            out,
            "{:<11} {}  snapshot {}  refs {}  objects +{}  packs +{}  {:.1}s",
            r.status.as_str(),
            r.name,
            snap,
            r.refs,
            r.new_objects,
            human_bytes(r.new_pack_bytes),
            r.millis as f64 / 1000.0
        )?;
        if r.incomplete {
            write!(out, "  (incomplete)")?;
        }
        match &r.error {
            Some(e) if r.status == Status::Failed => write!(out, "  error: {e}")?,
            _ => {}
        }
        writeln!(out)?;
        for sk in &r.skipped_refs {
            writeln!(
                out,
                "  ref not backed up: {}: {}",
                sk.display_name(),
                sk.reason
            )?;
        }
    }
    let d = &doc["discovery"];
    if !d.is_null() {
        let n = |k: &str| d[k].as_array().map_or(0, Vec::len);
        writeln!(
            out,
            "discovery: {} sources ({} failed), {} repositories: {} new, {} renamed, {} deleted, {} disabled",
            d["sources"],
            n("sources_failed"),
            d["discovered"],
            n("new"),
            n("renamed"),
            n("deleted"),
            n("disabled")
        )?;
        for w in d["warnings"].as_array().into_iter().flatten() {
            writeln!(out, "warning: {}", w.as_str().unwrap_or_default())?;
        }
    }
    let t = &doc["totals"];
    writeln!(
        out,
        "{} repositories: {} synced ({} new, {} changed), {} unchanged, {} failed, {} interrupted; +{} objects, +{} in packs in {:.1}s",
        t["repos"],
        t["synced"],
        t["new"],
        t["changed"],
        t["unchanged"],
        t["failed"],
        t["interrupted"],
        t["new_objects"],
        human_bytes(t["new_pack_bytes"].as_u64().unwrap_or(0)),
        t["millis"].as_u64().unwrap_or(0) as f64 / 1000.0
    )?;
    Ok(())
}

#[allow(dead_code)]
fn is_store(p: &Path) -> bool {
    p.join(store::CONFIG_FILE).is_file()
}
