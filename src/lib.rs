//! gameday: a game-day chaos experiment runner for AWS.
//!
//! The binary (`src/main.rs`) is a thin edge over this library: `cli` parses
//! arguments and maps outcomes to exit codes; everything else is one module
//! per concern, named for it.

pub mod aws;
pub mod cli;
pub mod engine;
pub mod environment;
pub mod experiment;
pub mod faults;
pub mod gate;
pub mod journal;
pub mod lock;
pub mod model;
pub mod observe;
pub mod output;
pub mod plan;
pub mod policy;
pub mod recover;
pub mod targets;
pub mod util;
pub mod yaml;
