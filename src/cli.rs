//! Command-line interface: argument parsing, human and JSON output, exit codes.

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
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
}

#[derive(Parser)]
#[command(
    name = "repovault",
    version,
    about = "Deduplicated, point-in-time backups of git repositories",
    max_term_width = 100
)]
struct Cli {
    /// The store directory [default: $XDG_DATA_HOME/repovault/store]
    #[arg(long, global = true, env = "REPOVAULT_STORE", value_name = "DIR")]
    store: Option<PathBuf>,
    /// More log output (-v info, -vv debug); RUST_LOG overrides
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Print nothing on success (no progress, no summary); errors and warnings still go to
    /// stderr, --json and --report are still written
    #[arg(short, long, global = true)]
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
    /// List backed-up repositories with their last sync
    Repos(JsonArg),
    /// Show what the store holds
    Stats(JsonArg),
    /// Remove snapshots by a retention policy (keeps the newest of each repository)
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
}

#[derive(Args)]
struct InitArgs {
    /// zstd compression level (1-22)
    #[arg(long, default_value_t = 3)]
    compression_level: i32,
    /// Pack files are closed at this size (MiB)
    #[arg(long, default_value_t = 32)]
    pack_size_mib: u64,
}

#[derive(Args)]
struct ForgetArgs {
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
    #[arg(long, value_name = "DURATION")]
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
    #[arg(long, default_value_t = 80.0, value_name = "PERCENT")]
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
    #[arg(long, value_name = "N/M|P%")]
    read_data_subset: Option<String>,
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
struct SnapshotsArgs {
    /// Only this repository (a name or any unique suffix of one)
    #[arg(long)]
    repo: Option<String>,
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
    /// The newest snapshot taken at or before TIME (RFC 3339, or a date: the end of that day, UTC)
    #[arg(long, value_name = "TIME")]
    at: Option<String>,
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
    /// Print the summary as one JSON document
    #[arg(long)]
    json: bool,
}

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
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
    match run(cli, &interrupt) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            if interrupt.load(Ordering::SeqCst) {
                eprintln!("repovault: interrupted");
                return ExitCode::from(exit::INTERRUPTED);
            }
            for cause in err.chain() {
                if let Some(e) = cause.downcast_ref::<std::io::Error>() {
                    if e.kind() == std::io::ErrorKind::BrokenPipe {
                        return ExitCode::from(exit::OK);
                    }
                }
            }
            eprintln!("repovault: error: {}", error_line(&err));
            ExitCode::from(exit_code_of(&err))
        }
    }
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
        if let Some(e) = cause.downcast_ref::<store::Error>() {
            return match e {
                store::Error::NotFound { .. }
                | store::Error::NotAStore { .. }
                | store::Error::NotADirectory { .. } => exit::NO_STORE,
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
            let s = Store::init(&path, opts)?;
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
            let r = repovault::prune::prune(&mut w, opts, interrupt)?;
            if a.json || !crate::ui::quiet() {
                print_prune(&r, a.json)?;
            }
            Ok(exit::OK)
        }
        Command::RepairIndex(a) => cmd_repair(&cli.store, a),
    }
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

fn cmd_stats(store: &Option<PathBuf>, a: JsonArg) -> Result<u8> {
    let s = open_store(store)?;
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

/// Resolves a repository name or a unique suffix of one.
fn resolve_repo(s: &Store, name: &str) -> Result<repovault::index::RepoRow> {
    let repos = s.with_index(|i| i.repos())?;
    if let Some(r) = repos.iter().find(|r| r.name == name) {
        return Ok(r.clone());
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
        (None, Some(t)) => Selector::At(restore::parse_time(t).map_err(anyhow::Error::msg)?),
        (None, None) => Selector::Latest,
    };
    let snaps = s.with_index(|i| i.snapshots(Some(repo.id)))?;
    let snap = restore::select(&snaps, &repo.name, &sel)?;
    if a.list {
        if a.json {
            println!("{}", serde_json::to_string_pretty(&snap)?);
            return Ok(exit::OK);
        }
        let mut out = std::io::stdout().lock();
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
    let bars = crate::ui::Bars::new(1);
    let progress = crate::ui::Task::new(
        bars.as_ref(),
        format!("restore {} of {}", snap.short_id(), snap.repo),
    );
    let report = restore::restore_with_progress(&s, &snap, &dest, opts, interrupt, &progress);
    drop(progress);
    drop(bars);
    let report = report?;
    if a.json {
        let mut v = serde_json::to_value(&report)?;
        v["millis"] = serde_json::json!(start.elapsed().as_millis() as u64);
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
    let bar = (opts.read_data && crate::ui::draws()).then(|| {
        let total: u64 = s.totals().map(|t| t.stored_bytes).unwrap_or(0);
        let b = indicatif::ProgressBar::new(total);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} verify [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    });
    let progress = |n: u64| {
        if let Some(b) = &bar {
            b.inc(n);
        }
    };
    let report = match verify::verify(&s, opts, &progress, interrupt) {
        Ok(r) => r,
        Err(verify::Error::Index(e)) => {
            // SQLite failing while reading the index is damage to report as well.
            let report = index_damage(
                opts,
                format!("{e}; run `repovault repair-index` to rebuild it from the packs"),
            );
            if let Some(b) = &bar {
                b.finish_and_clear();
            }
            print_verify(&report, a.json)?;
            return Ok(exit::DAMAGED);
        }
        Err(e) => return Err(e.into()),
    };
    if let Some(b) = bar {
        b.finish_and_clear();
    }
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
    let mut out = std::io::stdout().lock();
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
    if policy.is_empty() && !a.allow_empty {
        return Err(prune::Error::EmptyPolicy.into());
    }
    if !a.dry_run {
        catch_up_index(&store_path(store)?)?;
    }
    let s = open_store(store)?;
    let repo = a.repo.as_deref().map(|n| resolve_repo(&s, n)).transpose()?;
    let snaps = s.with_index(|i| i.snapshots(repo.as_ref().map(|r| r.id)))?;
    let decisions = prune::plan_forget(&snaps, &policy, a.allow_empty);
    let removed = decisions.iter().filter(|d| !d.keep).count();
    let mut prune_report = None;
    if !a.dry_run {
        let mut w = s.writer_for(Duration::from_secs(60), "forget")?;
        prune::apply_forget(&mut w, &decisions)?;
        if a.prune {
            prune_report = Some(prune::prune(
                &mut w,
                prune::PruneOptions::default(),
                interrupt,
            )?);
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
    let mut out = std::io::stdout().lock();
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
    writeln!(
        out,
        "{} snapshots {}, {} kept",
        removed,
        if a.dry_run {
            "would be removed"
        } else {
            "removed"
        },
        decisions.len() - removed
    )?;
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

fn cmd_snapshots(store: &Option<PathBuf>, a: SnapshotsArgs) -> Result<u8> {
    let s = open_store(store)?;
    let repo = a.repo.as_deref().map(|n| resolve_repo(&s, n)).transpose()?;
    let snaps = s.with_index(|i| i.snapshots(repo.as_ref().map(|r| r.id)))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&snaps)?);
        return Ok(exit::OK);
    }
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{:<8}  {:<20}  {:<20}  {:>5}  repository",
        "id", "time (UTC)", "checked at", "refs"
    )?;
    for sn in &snaps {
        writeln!(
            out,
            "{:<8}  {:<20}  {:<20}  {:>5}  {}{}",
            sn.short_id(),
            sn.time.strftime("%Y-%m-%d %H:%M:%S").to_string(),
            sn.checked_at.strftime("%Y-%m-%d %H:%M:%S").to_string(),
            sn.refs.len(),
            sn.repo,
            if sn.complete { "" } else { "  (incomplete)" }
        )?;
    }
    Ok(exit::OK)
}

fn cmd_repos(store: &Option<PathBuf>, a: JsonArg) -> Result<u8> {
    let s = open_store(store)?;
    let repos = s.with_index(|i| i.repos())?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&repos)?);
        return Ok(exit::OK);
    }
    let mut out = std::io::stdout().lock();
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
    if let Some(config) = &a.config {
        return cmd_sync_config(store_arg, config, &a, interrupt);
    }
    if a.sources.is_empty() {
        bail!("nothing to sync: give SOURCE URLs or paths, or --config FILE");
    }
    let store = open_for_sync(store_arg, None)?;
    if a.name.is_some() && a.sources.len() > 1 {
        bail!(
            "--name names one repository, but {} sources were given: sync them one by one",
            a.sources.len()
        );
    }
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
    let sources: Vec<Source> = a
        .sources
        .iter()
        .map(|s| Source::parse(s, a.name.as_deref(), auth.clone()))
        .collect::<Result<_, _>>()?;
    let cache = a
        .cache
        .clone()
        .unwrap_or_else(|| sync::default_cache(&store));
    std::fs::create_dir_all(&cache)
        .with_context(|| format!("cannot create the mirror cache {}", cache.display()))?;
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
    Ok(exit_for(
        sources.len(),
        failed,
        interrupt.load(Ordering::SeqCst),
    ))
}

/// Discovery results of a config run, for the summary.
#[derive(Default, serde::Serialize)]
struct DiscoverySummary {
    sources: usize,
    sources_failed: Vec<String>,
    discovered: usize,
    new: Vec<String>,
    renamed: Vec<(String, String)>,
    deleted: Vec<String>,
    disabled: Vec<String>,
    warnings: Vec<String>,
}

/// Lists every source of a config (no store involved).
fn discover_all(
    resolved: &[repovault::config::Resolved],
) -> Vec<(
    String,
    Result<
        (
            Vec<(Source, repovault::index::Registration)>,
            bool,
            Vec<String>,
        ),
        String,
    >,
)> {
    use repovault::config::Resolved;
    use repovault::discover::{discover_blocking, HttpOptions};
    let mut out = Vec::new();
    for r in resolved {
        let label = r.label();
        let result = match r {
            Resolved::Provider {
                source,
                token,
                bearer,
            } => match discover_blocking(source, &HttpOptions::default()) {
                Ok(listing) => {
                    let repos = listing
                        .repos
                        .into_iter()
                        .map(|d| {
                            let auth = token.clone().map(|t| Auth {
                                user: d.git_user.clone(),
                                token: t,
                                bearer: *bearer,
                            });
                            let reg = repovault::index::Registration {
                                key: d.key.clone(),
                                name: d.name.clone(),
                                url: d.clone_url.clone(),
                                disabled: d.disabled,
                                record: d.record.clone(),
                            };
                            (
                                Source {
                                    url: d.clone_url,
                                    name: d.name,
                                    auth,
                                },
                                reg,
                            )
                        })
                        .collect();
                    Ok((repos, listing.complete, listing.warnings))
                }
                Err(e) => Err(e.to_string()),
            },
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
                match err {
                    Some(e) => Err(e),
                    None => Ok((repos, true, Vec::new())),
                }
            }
        };
        out.push((label, result));
    }
    out
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
    std::fs::create_dir_all(&cache)
        .with_context(|| format!("cannot create the mirror cache {}", cache.display()))?;
    let opts = SyncOptions {
        cache,
        allow_incomplete: a.allow_incomplete,
    };
    let start = Instant::now();
    let writer = Mutex::new(store.writer_for(Duration::from_secs(a.lock_wait), "sync")?);
    let mut summary = DiscoverySummary {
        sources: resolved.len(),
        ..Default::default()
    };
    let mut sources = Vec::new();
    let now = jiff::Timestamp::now().as_second();
    for (label, result) in discover_all(&resolved) {
        match result {
            Ok((repos, complete, warnings)) => {
                summary.discovered += repos.len();
                summary
                    .warnings
                    .extend(warnings.into_iter().map(|w| format!("{label}: {w}")));
                if !complete {
                    summary.warnings.push(format!(
                        "{label}: the listing was incomplete; no repository was marked deleted"
                    ));
                }
                let regs: Vec<_> = repos.iter().map(|(_, r)| r.clone()).collect();
                let ch = writer
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .index()
                    .register(&label, &regs, complete, now)?;
                summary.new.extend(ch.new);
                summary.renamed.extend(ch.renamed);
                summary.deleted.extend(ch.deleted);
                summary.disabled.extend(ch.disabled);
                sources.extend(
                    repos
                        .into_iter()
                        .filter(|(_, r)| !r.disabled)
                        .map(|(s, _)| s),
                );
            }
            Err(e) => {
                tracing::error!(source = %label, "{e}");
                let named = if e.starts_with(&label) {
                    e
                } else {
                    format!("{label}: {e}")
                };
                summary.sources_failed.push(named);
            }
        }
    }
    let jobs = a.jobs.or(config.jobs).unwrap_or(4);
    crate::ui::set_summary_shown(!a.json && !crate::ui::quiet());
    let reports = run_jobs(&store, &writer, &sources, &opts, jobs, true, interrupt);
    let mut w = writer.into_inner().unwrap_or_else(|p| p.into_inner());
    w.commit()?;
    drop(w);
    let failed_repos = failed_or_skipped(&reports, sources.len());
    let doc = sync_summary(&reports, Some(&summary), start.elapsed());
    emit_summary(&doc, &reports, a.json, a.report.as_deref())?;
    if !a.json {
        for f in &summary.sources_failed {
            eprintln!("repovault: error: source {f}");
        }
    }
    let total = sources.len() + summary.sources_failed.len();
    let failed = failed_repos + summary.sources_failed.len();
    Ok(exit_for(
        total.max(1),
        failed,
        interrupt.load(Ordering::SeqCst),
    ))
}

fn cmd_config_check(path: &Path, json: bool) -> Result<u8> {
    let config = repovault::config::Config::load(path)?;
    let resolved = config.resolve(path)?;
    let listed = discover_all(&resolved);
    let mut failed = 0;
    let mut doc = Vec::new();
    let mut out = std::io::stdout().lock();
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
    for (label, result) in listed {
        match result {
            Ok((repos, complete, warnings)) => {
                if json {
                    doc.push(serde_json::json!({
                        "source": label,
                        "complete": complete,
                        "warnings": warnings,
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
    let mut out = std::io::stdout().lock();
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
