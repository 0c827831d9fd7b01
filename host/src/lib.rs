//! # wasq: background tasks from Redis, each run in a WebAssembly sandbox
//!
//! wasq pulls tasks from Redis (a Redis Cluster in production, one Redis in
//! development) in Asynq's layout and runs each task type's handler, a
//! component built against the `wasq:task/handler` world (`wit/wasq.wit`),
//! in a fresh sandbox with the fuel, memory, time and grants its task type
//! is given in `wasq.toml`.
//!
//! ## Modules
//! - [`config`]: `wasq.toml`, with errors that name file, line and key.
//! - [`runtime`]: the sandbox: engine, module cache, per-task execution,
//!   classified outcomes, benchmarks.
//!
//! ## Crate features
//! - `runtime` (default): the wasmtime sandbox.
//! - `cli` (default): the `wasq` binary.
//!
//! A service that only enqueues depends on `wasq` with
//! `default-features = false` and builds no wasmtime.

#![deny(missing_docs)]

pub mod config;
#[cfg(feature = "runtime")]
pub mod runtime;
