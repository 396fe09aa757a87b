//! gameday: a game-day chaos experiment runner for AWS.
//!
//! The binary (`src/main.rs`) is a thin edge over this library: `cli` parses
//! arguments and maps outcomes to exit codes; everything else is one module
//! per concern, named for it.

pub mod activities;
pub mod aws;
pub mod cli;
pub mod engine;
pub mod environment;
pub mod experiment;
pub mod faults;
pub mod history;
pub mod journal;
pub mod lock;
pub mod observe;
pub mod plan;
pub mod progress;
pub mod publish;
pub mod recover;
pub mod report;
pub mod safety;
pub mod stats;
pub mod targets;
pub mod yaml;
