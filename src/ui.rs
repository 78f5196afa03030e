//! What the CLI shows while it works: the meaning of `-q`, and progress bars.
//!
//! `-q` (quiet): nothing is printed on success, neither progress nor a
//! summary; errors and warnings still go to stderr, and `--json` / `--report`
//! output is still written because it was asked for. Listing commands
//! (`snapshots`, `repos`, `stats`, `restore --list`, `config check`) still
//! print what they list.
//!
//! Progress bars are drawn on stderr only when it is a terminal and `-q` is
//! not given: objects done of the total, bytes, rate and ETA, and for a run of
//! several repositories which one of how many. A bar is cleared when its step
//! ends, so no stale line stays above the results. Restore, verify and prune
//! draw one bar, and none with `--json`.

use indicatif::{BinaryBytes, MultiProgress, ProgressBar, ProgressStyle};
use repovault::progress::Progress;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

static QUIET: AtomicBool = AtomicBool::new(false);

/// Sets `-q` for the whole process (once, at start-up).
pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
}

/// Whether `-q` was given.
pub fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

/// Whether progress is drawn: stderr is a terminal and `-q` is not given.
pub fn draws() -> bool {
    !quiet() && std::io::stderr().is_terminal()
}

fn counted_style(unit: &str) -> ProgressStyle {
    ProgressStyle::with_template(&format!(
        "{{prefix}} {{msg}} [{{bar:30}}] {{human_pos}}/{{human_len}} {unit}, {{rate}}, eta {{eta}}"
    ))
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .with_key(
        "rate",
        |s: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = write!(w, "{}/s", indicatif::HumanCount(s.per_sec() as u64));
        },
    )
    .progress_chars("=> ")
}

fn spinner_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix} {spinner} {msg} {elapsed}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
}

/// The bars of one run (a sync of several repositories, or one restore).
pub struct Bars {
    multi: MultiProgress,
    overall: Option<ProgressBar>,
}

impl Bars {
    /// Bars for a run over `items` repositories, or `None` when nothing is
    /// drawn. With more than one, a top bar counts the repositories done.
    pub fn new(items: usize) -> Option<Self> {
        if !draws() {
            return None;
        }
        let multi = MultiProgress::new();
        let overall = (items > 1).then(|| {
            let b = multi.add(ProgressBar::new(items as u64));
            b.set_style(
                ProgressStyle::with_template(
                    "sync [{bar:30}] {pos}/{len} repositories, {elapsed}, eta {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            b.tick();
            b
        });
        Some(Self { multi, overall })
    }

    /// One more repository is done.
    pub fn item_done(&self) {
        if let Some(b) = &self.overall {
            b.inc(1);
        }
    }
}

impl Drop for Bars {
    fn drop(&mut self) {
        if let Some(b) = &self.overall {
            b.finish_and_clear();
        }
        let _ = self.multi.clear();
    }
}

/// `bar` as a spinner labelled `prefix`, saying `message` until its first step.
fn spinner(bar: ProgressBar, prefix: String, message: &'static str) -> ProgressBar {
    bar.set_style(spinner_style());
    bar.set_prefix(prefix);
    bar.set_message(message);
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// The step a [`Task`] is in.
#[derive(Clone)]
struct Step {
    what: String,
    since: Instant,
    unit: &'static str,
    counted: bool,
}

/// The progress of one repository's sync, or of one restore, verify or
/// prune: drawn as a bar when `bars` is given.
pub struct Task {
    bar: Option<ProgressBar>,
    step: Mutex<Step>,
}

impl Task {
    /// A task labelled `prefix` (e.g. `[2/5] host/repo`).
    pub fn new(bars: Option<&Bars>, prefix: String) -> Self {
        let bar = bars.map(|b| spinner(b.multi.add(ProgressBar::new_spinner()), prefix, "waiting"));
        Self::with_bar(bar)
    }

    /// The task of a command that does one thing (restore, verify, prune),
    /// labelled `prefix`: drawn only when [`draws`] and no `--json` is asked.
    pub fn single(prefix: String, json: bool) -> Self {
        let bar =
            (draws() && !json).then(|| spinner(ProgressBar::new_spinner(), prefix, "starting"));
        Self::with_bar(bar)
    }

    fn with_bar(bar: Option<ProgressBar>) -> Self {
        Self {
            bar,
            step: Mutex::new(Step {
                what: String::new(),
                since: Instant::now(),
                unit: "objects",
                counted: false,
            }),
        }
    }

    /// Removes the bar (the result is printed elsewhere).
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        self.finish();
    }
}

impl Progress for Task {
    fn begin(&self, what: &str, total: Option<u64>) {
        self.begin_counting(what, total, "objects");
    }

    fn begin_counting(&self, what: &str, total: Option<u64>, unit: &'static str) {
        *self.step.lock().unwrap_or_else(|p| p.into_inner()) = Step {
            what: what.to_owned(),
            since: Instant::now(),
            unit,
            counted: total.is_some(),
        };
        let Some(b) = &self.bar else { return };
        match total {
            Some(n) => {
                b.disable_steady_tick();
                b.set_message(what.to_owned());
                b.set_length(n);
                b.reset();
                b.set_style(counted_style(unit));
                b.tick();
            }
            None => {
                b.set_style(spinner_style());
                b.set_message(what.to_owned());
                b.enable_steady_tick(Duration::from_millis(120));
            }
        }
    }

    fn update(&self, done: u64, bytes: u64) {
        let Some(b) = &self.bar else { return };
        let step = self.step.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let (what, secs) = (&step.what, step.since.elapsed().as_secs_f64());
        // A spinner shows the count in its message; a step reading no data shows no bytes.
        let what = if step.counted {
            what.clone()
        } else {
            format!("{what} {} {}", indicatif::HumanCount(done), step.unit)
        };
        // A byte rate over less than a second says little.
        b.set_message(if bytes == 0 {
            what
        } else if secs >= 1.0 {
            format!(
                "{what} {} ({}/s)",
                BinaryBytes(bytes),
                BinaryBytes((bytes as f64 / secs) as u64)
            )
        } else {
            format!("{what} {}", BinaryBytes(bytes))
        });
        b.set_position(done);
    }
}
