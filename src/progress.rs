//! Progress of long operations (sync, restore, verify, prune).
//!
//! The library says what it is doing and how far it got; the caller decides
//! how to show it (the CLI draws bars on a terminal, nothing otherwise).
//! Every method has an empty default, so an implementation picks what it needs
//! and [`NoProgress`] ignores everything.

/// Receives the progress of one operation (for sync: of one repository).
pub trait Progress: Sync {
    /// A step begins: `what` names it ("listing refs", "receiving", "storing",
    /// "restoring", "reading packs", "finding live objects"); `total` is the
    /// number of objects it goes through, when known.
    fn begin(&self, what: &str, total: Option<u64>) {
        let _ = (what, total);
    }

    /// Like [`Progress::begin`], for a step that counts `unit` (plural:
    /// "chunks", "packs") instead of objects.
    fn begin_counting(&self, what: &str, total: Option<u64>, unit: &'static str) {
        let _ = unit;
        self.begin(what, total);
    }

    /// In the current step, `done` objects (and `bytes` bytes of them) are
    /// done so far (`bytes` is 0 for a step that reads no data).
    fn update(&self, done: u64, bytes: u64) {
        let _ = (done, bytes);
    }

    /// A sync wrote `stats` to the store for the current repository (reported
    /// each time it releases the store's writer, also when it failed or was
    /// interrupted; the calls add up).
    fn written(&self, stats: &crate::store::WriteStats) {
        let _ = stats;
    }
}

/// Ignores all progress.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {}
