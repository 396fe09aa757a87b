//! Integration tests: one binary, so the AWS SDK is linked once.
//! `scripts/test` installs moto and runs them; see tests/support for the harness.

mod support;

mod completions;
mod coordination;
mod deploy;
mod faults;
mod halt;
mod lifecycle;
mod locks;
mod notify;
mod observe;
mod report;
mod roles;
mod run;
mod safety;
mod sandbox;
mod schedules;
mod store;
mod storms;
mod suites;
mod traffic;
mod validate;
