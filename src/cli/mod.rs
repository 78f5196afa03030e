//! The command line: `main` (arguments, logging, Ctrl-C, the exit code of
//! an error), the dispatch of each verb to its module, and where the store
//! is. One module per group of verbs renders its reports as text or JSON:
//! [`sync`] (sync, its dry run, the nightly run), [`config`] (config check),
//! [`snapshots`] (snapshots, diff, find, restore), [`repos`] (repos, stats),
//! [`check`] (verify, repair-index), [`retention`] (forget, prune); the
//! clap definitions are in [`args`], stdout in [`output`].

use anyhow::{Context, Result};
use clap::{CommandFactory, FromArgMatches};
use repovault::store::{self, InitOptions, Store};
use repovault::sync::run::one_line;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Exit codes: the README's table, as [`repovault::error::Failure::exit_code`] has it.
pub mod exit {
    use repovault::error::Failure;
    /// Everything succeeded.
    pub const OK: u8 = repovault::error::EXIT_OK;
    /// An error: nothing (or not everything) could run.
    pub const ERROR: u8 = Failure::Failed.exit_code();
    /// Some repositories failed, the others were backed up.
    pub const PARTIAL: u8 = Failure::Partial.exit_code();
    /// Verification found damage.
    pub const DAMAGED: u8 = Failure::Damaged.exit_code();
    /// Interrupted (Ctrl-C).
    pub const INTERRUPTED: u8 = Failure::Interrupted.exit_code();
    /// A bad command line: an unknown option, a missing or malformed value.
    pub const USAGE: u8 = Failure::Usage.exit_code();
}

/// `println!` that never panics: see [`output`].
macro_rules! println {
    ($($arg:tt)*) => {
        crate::cli::output::line(format_args!($($arg)*))
    };
}

mod args;
mod check;
mod config;
mod monitoring;
mod output;
mod push;
mod repos;
mod retention;
mod snapshots;
mod sync;

use args::{Cli, Command, ConfigCommand, ManArgs};

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
pub(crate) fn usage(error: impl Into<anyhow::Error>) -> anyhow::Error {
    with_code(exit::USAGE, error)
}

pub(crate) fn with_code(code: u8, error: impl Into<anyhow::Error>) -> anyhow::Error {
    anyhow::Error::new(ExitWith {
        code,
        error: error.into(),
    })
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
pub(crate) static USER_UMASK: std::sync::OnceLock<nix::sys::stat::Mode> =
    std::sync::OnceLock::new();

/// Creates `dir` (and its parents) private to the user, and makes an existing
/// one private (a cache made by an older repovault was world-readable).
pub(crate) fn create_private_dir(dir: &Path) -> Result<()> {
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
            let code = exit_code_of(&err, interrupt.load(Ordering::SeqCst));
            if code == exit::OK {
                return ExitCode::from(code);
            }
            let line = if code == exit::INTERRUPTED {
                eprintln!("repovault: interrupted");
                "interrupted".to_owned()
            } else {
                let line = error_line(&err);
                eprintln!("repovault: error: {line}");
                line
            };
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

/// The one place an error becomes an exit code: a run Ctrl-C stopped is
/// interrupted whatever failed on the way out; a closed stdout is no error
/// (the output stopped quietly); a code decided where the error happened (a
/// bad value on the command line) stands; otherwise the first of the
/// library's errors in the chain says what it means
/// ([`repovault::error::Classify`]), and anything else is an error (1).
pub(crate) fn exit_code_of(err: &anyhow::Error, interrupted: bool) -> u8 {
    use repovault::error::Failure;
    if interrupted {
        return Failure::Interrupted.exit_code();
    }
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<std::io::Error>() {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                return exit::OK;
            }
        }
    }
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<ExitWith>() {
            return e.code;
        }
        if let Some(e) = repovault::error::classified(cause) {
            return e.failure().exit_code();
        }
    }
    Failure::Failed.exit_code()
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
pub(crate) fn default_store() -> Result<PathBuf> {
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .context(
            "neither --store, REPOVAULT_STORE, XDG_DATA_HOME nor HOME is set: pass --store DIR",
        )?;
    Ok(base.join("repovault").join("store"))
}

pub(crate) fn open_store(cli_store: &Option<PathBuf>) -> Result<Store> {
    let path = match cli_store {
        Some(p) => p.clone(),
        None => default_store()?,
    };
    Ok(Store::open(&path)?)
}

pub(crate) fn store_path(cli_store: &Option<PathBuf>) -> Result<PathBuf> {
    match cli_store {
        Some(p) => Ok(p.clone()),
        None => default_store(),
    }
}

pub(crate) fn open_for_sync(
    store_arg: &Option<PathBuf>,
    config_store: Option<&Path>,
) -> Result<Store> {
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
pub(crate) fn open_caught_up(path: &Path) -> Result<Store> {
    catch_up_index(path)?;
    Ok(Store::open(path)?)
}

/// Rebuilds the index when it lags the store's files (`repair::catch_up`), saying so.
pub(crate) fn catch_up_index(path: &Path) -> Result<()> {
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
pub(crate) fn repair_losses(r: &repovault::repair::RepairReport) -> Vec<String> {
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
        Command::Sync(a) => sync::cmd_sync(&cli.store, a, interrupt),
        Command::Restore(a) => snapshots::cmd_restore(&cli.store, a, interrupt),
        Command::Snapshots(a) => snapshots::cmd_snapshots(&cli.store, a),
        Command::Diff(a) => snapshots::cmd_diff(&cli.store, a),
        Command::Find(a) => snapshots::cmd_find(&cli.store, a),
        Command::Repos(a) => repos::cmd_repos(&cli.store, a),
        Command::Stats(a) => repos::cmd_stats(&cli.store, a),
        Command::Verify(a) => check::cmd_verify(&cli.store, a, interrupt),
        Command::Config(ConfigCommand::Check { file, json }) => {
            config::cmd_config_check(&file.unwrap_or_else(repovault::config::default_path), json)
        }
        Command::Forget(a) => retention::cmd_forget(&cli.store, a, interrupt),
        Command::Prune(a) => retention::cmd_prune(&cli.store, a, interrupt),
        Command::RepairIndex(a) => check::cmd_repair(&cli.store, a),
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
