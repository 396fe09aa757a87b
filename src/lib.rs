//! gameday: a game-day chaos experiment runner for AWS.
//!
//! The binary (`src/main.rs`) is a thin edge over this library: `cli` parses
//! arguments and maps outcomes to exit codes; everything else is one module
//! per concern, named for it, in layers: each imports only from the ones
//! below it (top to bottom here; DESIGN.md, "Layers").
//!
//! The library exports what the binaries, the tests and the benchmarks use,
//! no more: the command line, the AWS clients (the sandbox's too), the
//! experiment model, and reading a run's journal. Everything else is
//! crate-private, so rustc reports what nothing uses.

// Layers, top to bottom: a module names only modules below it.

pub mod cli;

pub(crate) mod output;

pub(crate) mod recover;

pub(crate) mod engine;

pub(crate) mod due;

pub(crate) mod gate;
pub(crate) mod plan;

pub(crate) mod targets;

pub(crate) mod observe;

pub(crate) mod journal;
pub(crate) mod store;

pub mod experiment;
pub(crate) mod policy;
pub mod schedule;
pub mod suite;

pub(crate) mod environment;
pub(crate) mod faults;
pub(crate) mod halt;
pub mod lease;
pub(crate) mod lock;

pub mod aws;

pub(crate) mod model;

pub(crate) mod schema;
pub(crate) mod util;
pub(crate) mod yaml;

pub use journal::Verdict;
pub use output::{Summary, load as load_journal};
pub use util::format_duration;
pub use yaml::parse_duration;
