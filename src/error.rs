//! One typed path from an error to what it means: which exit code of the
//! README's table a failure ends the process with, and whether trying the
//! same thing again may succeed.
//!
//! Every module keeps its own thiserror enum; each one answers [`Classify`]
//! here, in one place, and a variant that wraps another module's error
//! (`#[error(transparent)] Store(store::Error)`) asks the wrapped error, so a
//! lock held by another writer is [`Failure::Locked`] however deep it is
//! wrapped. Nothing here looks at an error's text.
//!
//! The command line turns any error into an exit code with [`classified`]
//! (which of this crate's error types an `anyhow` cause is, then its
//! [`Classify::failure`]) and [`Failure::exit_code`]. The nightly runner
//! retries a repository only when [`Classify::is_retryable`] says so.

use crate::{
    commits, config, delta, diff, discover, find, index, lock, monitor, pack, prune, repair,
    restore, store, sync, usage, verify,
};

/// The exit code of a run that succeeded.
pub const EXIT_OK: u8 = 0;

/// What a failure means for the process: one row of the README's exit-code
/// table each (success, 0, is not a failure).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Failure {
    /// An error: nothing (or not everything) could run (1).
    Failed,
    /// A bad command line: an unknown option, a missing or malformed value (2).
    Usage,
    /// Partly done: some repositories failed, a snapshot left refs out, or a
    /// `--partial` restore left objects out (3).
    Partial,
    /// The store does not exist or is not a store this repovault can use (10).
    NotAStore,
    /// The store is locked by another writer (11).
    Locked,
    /// `verify` found damage (12).
    Damaged,
    /// Interrupted (Ctrl-C) (130).
    Interrupted,
}

impl Failure {
    /// The process exit code: the README's table.
    pub const fn exit_code(self) -> u8 {
        match self {
            Failure::Failed => 1,
            Failure::Usage => 2,
            Failure::Partial => 3,
            Failure::NotAStore => 10,
            Failure::Locked => 11,
            Failure::Damaged => 12,
            Failure::Interrupted => 130,
        }
    }

    /// Every failure, in the order of the table.
    pub const ALL: [Failure; 7] = [
        Failure::Failed,
        Failure::Usage,
        Failure::Partial,
        Failure::NotAStore,
        Failure::Locked,
        Failure::Damaged,
        Failure::Interrupted,
    ];
}

/// What an error means, answered from its type (never its text).
pub trait Classify {
    /// The exit-code row this error ends a command with.
    fn failure(&self) -> Failure;

    /// Whether the same operation may succeed when simply tried again: a
    /// transient network failure (connection refused, reset or aborted, a
    /// timeout, HTTP 5xx or 429). Rejected credentials, bad input and damage
    /// in the store are not.
    fn is_retryable(&self) -> bool {
        false
    }
}

/// The failure of the first of this crate's errors in `err`'s chain of
/// causes (`None` when none is), for an error that went through `anyhow` or
/// `Box<dyn Error>`. Each type answers for the errors it wraps, so the first
/// one found is the one to ask.
pub fn failure_of(err: &(dyn std::error::Error + 'static)) -> Option<Failure> {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(c) = classified(e) {
            return Some(c.failure());
        }
        cur = e.source();
    }
    None
}

/// `err` itself (not its causes) as one of this crate's error types, if it
/// is one.
pub fn classified<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a dyn Classify> {
    macro_rules! first_of {
        ($($t:ty),* $(,)?) => {
            $(if let Some(e) = err.downcast_ref::<$t>() {
                return Some(e);
            })*
        };
    }
    first_of!(
        store::Error,
        lock::Error,
        index::Error,
        pack::Error,
        repair::Error,
        verify::Error,
        prune::Error,
        restore::Error,
        restore::push::Error,
        sync::Error,
        usage::Error,
        find::Error,
        diff::Error,
        commits::Error,
        delta::Error,
        config::Error,
        discover::Error,
        monitor::Error,
    );
    None
}

/// Errors that are always a plain failure (1) and never worth retrying.
macro_rules! plain_failure {
    ($($t:ty),* $(,)?) => {
        $(impl Classify for $t {
            fn failure(&self) -> Failure {
                Failure::Failed
            }
        })*
    };
}

plain_failure!(
    index::Error,
    pack::Error,
    delta::Error,
    config::Error,
    monitor::Error
);

/// The failure of an error of module `$m` with `Store`, `Index` and
/// `Interrupted` variants, every other variant a plain failure.
macro_rules! store_index_or_interrupted {
    ($self:ident, $m:ident) => {{
        use $m::Error as E;
        match $self {
            E::Store(e) => e.failure(),
            E::Index(e) => e.failure(),
            E::Interrupted => Failure::Interrupted,
            _ => Failure::Failed,
        }
    }};
}

impl Classify for lock::Error {
    fn failure(&self) -> Failure {
        match self {
            lock::Error::Locked { .. } => Failure::Locked,
            lock::Error::Io { .. } => Failure::Failed,
        }
    }
}

impl Classify for store::Error {
    fn failure(&self) -> Failure {
        use store::Error as E;
        match self {
            E::NotFound { .. }
            | E::NotAStore { .. }
            | E::NotADirectory { .. }
            | E::BadConfig { .. }
            | E::NewerFormat { .. } => Failure::NotAStore,
            E::Lock(e) => e.failure(),
            E::Index(e) => e.failure(),
            E::Pack(e) => e.failure(),
            _ => Failure::Failed,
        }
    }
}

impl Classify for repair::Error {
    fn failure(&self) -> Failure {
        use repair::Error as E;
        match self {
            E::NotAStore { .. } => Failure::NotAStore,
            E::Lock(e) => e.failure(),
            E::Index(e) => e.failure(),
            E::Store(e) => e.failure(),
            E::Io { .. } => Failure::Failed,
        }
    }
}

impl Classify for verify::Error {
    fn failure(&self) -> Failure {
        use verify::Error as E;
        match self {
            E::Index(e) => e.failure(),
            E::Store(e) => e.failure(),
            E::Interrupted => Failure::Interrupted,
            E::BadSubset(_) => Failure::Usage,
        }
    }
}

impl Classify for prune::Error {
    fn failure(&self) -> Failure {
        use prune::Error as E;
        match self {
            E::Store(e) => e.failure(),
            E::Index(e) => e.failure(),
            E::Pack(e) => e.failure(),
            E::Interrupted => Failure::Interrupted,
            E::EmptyPolicy => Failure::Usage,
            _ => Failure::Failed,
        }
    }
}

impl Classify for restore::Error {
    fn failure(&self) -> Failure {
        store_index_or_interrupted!(self, restore)
    }
}

impl Classify for restore::push::Error {
    fn failure(&self) -> Failure {
        match self {
            restore::push::Error::Restore(e) => e.failure(),
            restore::push::Error::Interrupted => Failure::Interrupted,
            _ => Failure::Failed,
        }
    }
}

impl Classify for usage::Error {
    fn failure(&self) -> Failure {
        match self {
            usage::Error::Store(e) => e.failure(),
            usage::Error::Index(e) => e.failure(),
        }
    }
}

impl Classify for commits::Error {
    fn failure(&self) -> Failure {
        match self {
            commits::Error::Store(e) => e.failure(),
            _ => Failure::Failed,
        }
    }
}

impl Classify for find::Error {
    fn failure(&self) -> Failure {
        use find::Error as E;
        match self {
            E::Commits(e) => e.failure(),
            E::Store(e) => e.failure(),
            E::Empty => Failure::Usage,
            _ => Failure::Failed,
        }
    }
}

impl Classify for diff::Error {
    fn failure(&self) -> Failure {
        use diff::Error as E;
        match self {
            E::Commits(e) => e.failure(),
            E::BadId(_) => Failure::Usage,
            E::NoSnapshot(_) => Failure::Failed,
        }
    }
}

impl Classify for discover::Error {
    fn failure(&self) -> Failure {
        Failure::Failed
    }

    fn is_retryable(&self) -> bool {
        use discover::Error as E;
        match self {
            E::Http { status, .. } => *status >= 500 || *status == 429,
            E::Unreachable { .. } | E::RateLimited { .. } | E::Deadline { .. } => true,
            _ => false,
        }
    }
}

impl Classify for sync::Error {
    fn failure(&self) -> Failure {
        store_index_or_interrupted!(self, sync)
    }

    fn is_retryable(&self) -> bool {
        sync::Error::is_retryable(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_of_the_readme() {
        let codes: Vec<u8> = Failure::ALL.iter().map(|f| f.exit_code()).collect();
        assert_eq!(codes, [1, 2, 3, 10, 11, 12, 130]);
    }

    #[test]
    fn a_wrapped_lock_is_locked_however_deep() {
        let locked = || lock::Error::Locked {
            holder: lock::LockHolder::Other {
                pid: None,
                command: None,
            },
            waited: std::time::Duration::ZERO,
        };
        let e = repair::Error::Store(store::Error::Lock(locked()));
        assert_eq!(failure_of(&e), Some(Failure::Locked));
        let e = repair::Error::Lock(locked());
        assert_eq!(failure_of(&e), Some(Failure::Locked));
        let e =
            anyhow::Error::new(sync::Error::Store(store::Error::Lock(locked()))).context("syncing");
        assert_eq!(failure_of(e.as_ref()), Some(Failure::Locked));
    }
}
