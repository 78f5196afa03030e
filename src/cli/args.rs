//! The command line's clap definitions: the global options, the verbs and
//! their arguments (their doc comments are the `--help` text).

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// A clap value parser from a `FromStr` whose error is a message: the value
/// is checked while parsing, so a bad one exits 2 with clap's usage error,
/// and the argument keeps the text.
pub(crate) fn checked<T>(s: &str) -> Result<String, String>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    s.parse::<T>()
        .map(|_| s.to_owned())
        .map_err(|e| e.to_string())
}

/// A duration (`2d`, `36h`, `90s`, seconds), kept as text.
pub(crate) fn checked_duration(s: &str) -> Result<String, String> {
    repovault::monitor::parse_duration(s)
        .map(|_| s.to_owned())
        .map_err(|e| e.to_string())
}

/// A health-check URL (http or https).
pub(crate) fn checked_ping_url(s: &str) -> Result<String, String> {
    repovault::monitor::ping::Pinger::new(s).map(|_| s.to_owned())
}

/// A percentage, 0 to 100.
pub(crate) fn percent(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..=100.0).contains(&v) => Ok(v),
        _ => Err(format!("{s:?} is not a percentage from 0 to 100")),
    }
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
pub(crate) struct Cli {
    /// The store directory [default: $XDG_DATA_HOME/repovault/store]
    #[arg(
        long,
        global = true,
        env = "REPOVAULT_STORE",
        value_name = "DIR",
        help_heading = GLOBAL_OPTIONS,
        display_order = 1000
    )]
    pub(crate) store: Option<PathBuf>,
    /// More log output (-v info, -vv debug); RUST_LOG overrides
    #[arg(short, long, global = true, action = clap::ArgAction::Count, help_heading = GLOBAL_OPTIONS, display_order = 1001)]
    pub(crate) verbose: u8,
    /// Print nothing on success (no progress, no summary); errors and warnings still go to
    /// stderr, --json and --report are still written
    #[arg(short, long, global = true, help_heading = GLOBAL_OPTIONS, display_order = 1002)]
    pub(crate) quiet: bool,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
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
pub(crate) struct ManArgs {
    /// Instead, write repovault.1 and one page per verb (repovault-sync.1, ...) into DIR
    #[arg(long, value_name = "DIR")]
    pub(crate) dir: Option<PathBuf>,
}

#[derive(Args)]
pub(crate) struct CompletionsArgs {
    /// The shell, e.g. `repovault completions bash > /etc/bash_completion.d/repovault`
    #[arg(value_enum)]
    pub(crate) shell: clap_complete::Shell,
}

#[derive(Args)]
pub(crate) struct StatsArgs {
    /// Only this repository: what its snapshots need, what it alone holds, what it shares
    #[arg(long)]
    pub(crate) repo: Option<String>,
    /// Print one JSON document
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Args)]
pub(crate) struct InitArgs {
    /// zstd compression level (1-22)
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=22))]
    pub(crate) compression_level: i32,
    /// Pack files are closed at this size (MiB)
    #[arg(long, default_value_t = 32)]
    pub(crate) pack_size_mib: u64,
}

#[derive(Args)]
pub(crate) struct ForgetArgs {
    /// Remove exactly these snapshots (ids or unique prefixes), instead of applying keep rules
    #[arg(
        value_name = "SNAPSHOT-ID",
        conflicts_with_all = ["keep_last", "keep_hourly", "keep_daily", "keep_weekly",
            "keep_monthly", "keep_yearly", "keep_within", "config", "allow_empty"]
    )]
    pub(crate) snapshots: Vec<String>,
    /// Only this repository (a name or any unique suffix of one)
    #[arg(long)]
    pub(crate) repo: Option<String>,
    #[command(flatten)]
    pub(crate) keep: KeepArgs,
    /// Take the policy from this config file's [retention] (when no --keep-* option is given)
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// Allow removing the newest snapshot of a repository too
    #[arg(long)]
    pub(crate) allow_empty: bool,
    /// Print what would be kept and removed, and why, without changing anything
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Prune afterwards
    #[arg(long)]
    pub(crate) prune: bool,
    /// Print the result as one JSON document
    #[arg(long)]
    pub(crate) json: bool,
}

/// Declares [`KeepArgs`]: each count field becomes `--keep-<rule> <N>`
/// (default 0, `-1` allowed), documented by its doc comment.
macro_rules! keep_args {
    ($($(#[doc = $doc:expr])* $count:ident,)*) => {
        /// The keep rules of `forget`.
        #[derive(Args)]
        pub(crate) struct KeepArgs {
            $(
                $(#[doc = $doc])*
                #[arg(long, value_name = "N", default_value_t = 0, allow_negative_numbers = true)]
                pub(crate) $count: i32,
            )*
            /// Keep every snapshot within this duration of the newest (e.g. 1y6m, 14d, 36h)
            #[arg(long, value_name = "DURATION", value_parser = checked::<repovault::retention::Within>)]
            pub(crate) keep_within: Option<String>,
        }
    };
}

keep_args! {
    /// Keep the newest N snapshots
    keep_last,
    /// Keep the newest snapshot of each of the last N hours (-1: all)
    keep_hourly,
    /// Keep the newest snapshot of each of the last N days (-1: all)
    keep_daily,
    /// Keep the newest snapshot of each of the last N ISO weeks (-1: all)
    keep_weekly,
    /// Keep the newest snapshot of each of the last N months (-1: all)
    keep_monthly,
    /// Keep the newest snapshot of each of the last N years (-1: all)
    keep_yearly,
}

#[derive(Args)]
pub(crate) struct PruneArgs {
    /// Repack packs whose live data is below this percentage of their bytes
    #[arg(long, default_value_t = 80.0, value_name = "PERCENT", value_parser = percent)]
    pub(crate) repack_below: f64,
    /// Report what would be freed without changing anything
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Print the result as one JSON document
    #[arg(long)]
    pub(crate) json: bool,
    /// Write Prometheus metrics (last run, last success, bytes freed) to FILE at the end
    #[arg(long, value_name = "FILE")]
    pub(crate) metrics_textfile: Option<PathBuf>,
}

#[derive(Subcommand)]
pub(crate) enum ConfigCommand {
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
pub(crate) struct VerifyArgs {
    /// Read every pack: check checksums, every chunk's blake3, every object's git id, every snapshot's closure
    #[arg(long)]
    pub(crate) read_data: bool,
    /// Read only part of the packs: N/M (part N of M) or P% (a random P percent); implies --read-data
    #[arg(long, value_name = "N/M|P%", value_parser = checked::<repovault::verify::Subset>)]
    pub(crate) read_data_subset: Option<String>,
    /// Only this repository: its snapshots and the packs and objects they need
    #[arg(long)]
    pub(crate) repo: Option<String>,
    /// Print the report as one JSON document
    #[arg(long)]
    pub(crate) json: bool,
    /// Write Prometheus metrics (last run, last success, damage found) to FILE at the end
    #[arg(long, value_name = "FILE")]
    pub(crate) metrics_textfile: Option<PathBuf>,
}

#[derive(Args)]
pub(crate) struct JsonArg {
    /// Print one JSON document
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Args)]
pub(crate) struct ReposArgs {
    /// Remove these repositories, which must have no snapshot (a failed sync of a
    /// mistyped URL, or one whose snapshots were all forgotten)
    #[arg(long, value_name = "REPO", conflicts_with = "stale")]
    pub(crate) remove: Vec<String>,
    /// Only the stale repositories: last successful backup older than --stale-after,
    /// or never backed up after a failed attempt (deleted upstream: never stale)
    #[arg(long)]
    pub(crate) stale: bool,
    /// How old a last successful backup may be: 2d, 36h, 90s, or seconds
    #[arg(long, value_name = "DURATION", default_value = "2d", requires = "stale",
          value_parser = checked_duration)]
    pub(crate) stale_after: String,
    /// Print one JSON document
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Args)]
pub(crate) struct SnapshotsArgs {
    /// Only this repository (a name or any unique suffix of one)
    #[arg(long)]
    pub(crate) repo: Option<String>,
    /// Only the newest snapshot of each repository
    #[arg(long)]
    pub(crate) latest: bool,
    /// Also list each snapshot's refs
    #[arg(long)]
    pub(crate) refs: bool,
    /// Print one JSON document
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Args)]
pub(crate) struct DiffArgs {
    /// The older snapshot: its id or any unique prefix of it
    #[arg(value_name = "SNAP1")]
    pub(crate) from: String,
    /// The newer snapshot: its id or any unique prefix of it
    #[arg(value_name = "SNAP2")]
    pub(crate) to: String,
    /// Read at most N commits from the store to count commits gained and lost
    #[arg(long, value_name = "N", default_value_t = repovault::commits::DEFAULT_MAX_COMMITS)]
    pub(crate) max_commits: u64,
    /// Print one JSON document
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Args)]
pub(crate) struct FindArgs {
    /// A ref name (v0.1.0, main, refs/heads/main) or a commit id (4 to 40 hex digits):
    /// a commit is held by the snapshots in which it is reachable from a ref
    #[arg(value_name = "REF-OR-COMMIT")]
    pub(crate) query: String,
    /// Only this repository's snapshots (a name or any unique suffix of one)
    #[arg(long)]
    pub(crate) repo: Option<String>,
    /// Read at most N commits from the store when looking for a commit
    #[arg(long, value_name = "N", default_value_t = repovault::commits::DEFAULT_MAX_COMMITS)]
    pub(crate) max_commits: u64,
    /// Print one JSON document
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Args)]
#[command(group(clap::ArgGroup::new("which").required(true).args(["snapshot", "at", "latest"])))]
pub(crate) struct RestoreArgs {
    /// The repository (its name or any unique suffix of it)
    #[arg(long)]
    pub(crate) repo: String,
    /// The snapshot id, or any unique prefix of it
    #[arg(long)]
    pub(crate) snapshot: Option<String>,
    /// The newest snapshot taken at or before TIME: 2026-12-02T21:09:21Z, with an offset
    /// (+01:00), without a zone (2026-12-02 21:09:21.123456, as `snapshots` prints it: UTC),
    /// or a date (2026-12-02: the end of that day, UTC)
    #[arg(long, value_name = "TIME", value_parser = repovault::restore::parse_time)]
    pub(crate) at: Option<jiff::Timestamp>,
    /// The newest snapshot
    #[arg(long)]
    pub(crate) latest: bool,
    /// Print the snapshot's refs instead of restoring
    #[arg(long)]
    pub(crate) list: bool,
    /// Allow DEST to be an existing empty directory
    #[arg(long)]
    pub(crate) force: bool,
    /// Restore what is intact when objects are missing or damaged, and list them
    #[arg(long)]
    pub(crate) partial: bool,
    /// Print the result as one JSON document
    #[arg(long)]
    pub(crate) json: bool,
    /// Push the snapshot's refs into the (empty) repository at URL instead of writing DEST:
    /// https, ssh, file:// or a path; with --force a non-empty one (its refs the snapshot
    /// has are overwritten, the others kept)
    #[arg(long, value_name = "URL", conflicts_with_all = ["dest", "list", "partial"])]
    pub(crate) push: Option<String>,
    /// With --push: environment variable holding an https token (sent as HTTP basic auth,
    /// never stored)
    #[arg(long, value_name = "VAR", requires = "push")]
    pub(crate) token_env: Option<String>,
    /// With --push: user name sent with the token
    #[arg(long, default_value = "git", value_name = "USER")]
    pub(crate) token_user: String,
    /// With --push: push hidden refs too (refs/pull/*, refs/merge-requests/*,
    /// refs/keep-around/*), which hosts refuse
    #[arg(long, requires = "push")]
    pub(crate) all_refs: bool,
    /// With --push: the most one push may send, in bytes (pushes are cut oldest first)
    #[arg(long, value_name = "BYTES", default_value_t = repovault::restore::push::DEFAULT_MAX_PUSH_BYTES, hide = true)]
    pub(crate) max_push_bytes: u64,
    /// Where to create the bare repository (must not exist, or be empty with --force)
    #[arg(value_name = "DEST", required_unless_present_any = ["list", "push"])]
    pub(crate) dest: Option<PathBuf>,
}

#[derive(Args)]
pub(crate) struct SyncArgs {
    /// Git URLs (https, ssh, git, file) or local paths
    #[arg(
        value_name = "SOURCE",
        required_unless_present = "config",
        conflicts_with = "config"
    )]
    pub(crate) sources: Vec<String>,
    /// Back up everything a config file names (discovering organisations' repositories)
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// Also write the JSON summary to FILE
    #[arg(long, value_name = "FILE")]
    pub(crate) report: Option<PathBuf>,
    /// Name of the repository in the store (only with one SOURCE) [default: host/path]
    #[arg(long)]
    pub(crate) name: Option<String>,
    /// Mirror cache directory [default: $XDG_CACHE_HOME/repovault/<store id>]
    #[arg(long, value_name = "DIR")]
    pub(crate) cache: Option<PathBuf>,
    /// Environment variable holding an https token (sent as HTTP basic auth, never stored)
    #[arg(long, value_name = "VAR")]
    pub(crate) token_env: Option<String>,
    /// User name sent with the token
    #[arg(long, default_value = "git", value_name = "USER")]
    pub(crate) token_user: String,
    /// Repositories synced at once [default: min(4, number of sources)]
    #[arg(long, short)]
    pub(crate) jobs: Option<usize>,
    /// Record a snapshot even when the source lacks objects (marked incomplete)
    #[arg(long)]
    pub(crate) allow_incomplete: bool,
    /// Seconds to wait for another writer to release the store
    #[arg(long, default_value_t = 60)]
    pub(crate) lock_wait: u64,
    /// List what would change (refs added, removed, moved since the last snapshot);
    /// fetch nothing, write nothing, take no lock
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Print the summary as one JSON document
    #[arg(long)]
    pub(crate) json: bool,
    /// Write Prometheus metrics to FILE at the end of the run, failed runs too
    /// (config: metrics_textfile)
    #[arg(long, value_name = "FILE")]
    pub(crate) metrics_textfile: Option<PathBuf>,
    /// Ping URL/start when the run begins, URL on success, URL/EXITCODE on failure, with
    /// the summary as the body (config: ping_url); a failing ping never fails the run
    #[arg(long, value_name = "URL", value_parser = checked_ping_url)]
    pub(crate) ping_url: Option<String>,
}
