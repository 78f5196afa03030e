//! The integration tests: one binary (as ripgrep does), one module per area,
//! and one `support` module shared by all of them. Every test drives the real
//! `repovault` binary or library against real git repositories, real SQLite and
//! real git servers on 127.0.0.1.

mod support;

mod cli;
mod config_file;
mod damaged_index;
mod delta_cycle;
mod diff_find;
mod discover;
mod durable_write;
mod exit_codes;
mod fetch_failures;
mod index_truth;
mod mirror_cache;
mod monitoring;
mod names_time;
mod nightly;
mod output;
mod perms_locks;
mod progress;
mod push_restore;
mod retention;
mod snapshot_changes;
mod store;
mod sync_restore;
mod sync_safety;
mod verify;
