//! Shared helpers of the integration tests, one module per purpose:
//!
//! * [`git`]: the `git` CLI in a hermetic environment and [`TestRepo`], a
//!   working repository with a deterministic history;
//! * [`servers`]: real git servers on 127.0.0.1 ([`GitDaemon`], [`HttpGitServer`]);
//! * [`http_fake`]: the one fake HTTP server for the providers' REST APIs
//!   ([`HttpFake`]) and the HTTP helpers (base64, Basic auth, percent-decoding);
//! * [`cli`]: running the binary ([`Vault`], [`rv`], [`run_with_timeout`], ...);
//! * [`data`]: deterministic test data ([`Rng`], [`random_bytes`], [`text`]);
//! * [`files`]: files below a directory, byte search, tree listings;
//! * [`world`]: fixture stores built once per test process and shared.
//!
//! Everything is re-exported here, so tests name it `support::X`.
#![allow(dead_code)]

pub mod cli;
pub mod data;
pub mod files;
pub mod git;
pub mod http_fake;
pub mod servers;
pub mod world;

pub use cli::*;
pub use data::*;
pub use files::*;
pub use git::*;
pub use http_fake::*;
pub use servers::*;
pub use world::*;
