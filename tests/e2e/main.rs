//! End-to-end tests: real components from `examples-wasm/` and
//! `tests/guests/`, run through the wasq runtime and the `wasq` binary.
//! One test binary (see `Cargo.toml`), a module per area.

mod badinput;
mod cli;
mod dashboard;
mod enqueue;
mod examples;
mod faults;
mod follow_ups;
mod fs_limits;
mod groups;
mod hostile;
mod http;
mod inspect;
mod interpreted;
mod js;
mod leases;
mod lifecycle;
mod limits;
mod periodic;
mod priority;
mod python;
mod recovery;
mod registry;
mod reload;
mod sandbox;
mod startup;
mod support;
mod tls;
mod tutorial;
mod upkeep;
