//! # wasq: background tasks from Redis, each run in a WebAssembly sandbox
//!
//! wasq pulls tasks from Redis (a Redis Cluster in production, one Redis in
//! development) in Asynq's layout and runs each task type's handler, a
//! component built against the `wasq:task/handler` world (`wit/wasq.wit`),
//! in a fresh sandbox with the fuel, memory, time and grants its task type
//! is given in `wasq.toml`.
//!
//! ## Modules
//! - [`client`]: enqueue tasks ([`Client`], [`Task`], [`TaskOptions`]).
//! - [`broker`]: every state change of a task in Redis, in Asynq's layout.
//! - [`config`]: `wasq.toml`, with errors that name file, line and key.
//! - [`runtime`]: the sandbox: engine, module cache, per-task execution,
//!   classified outcomes, benchmarks.
//! - [`registry`]: handler modules stored in Redis by hash, each task
//!   type's current version and history (`wasq module push`).
//! - [`worker`]: pulls tasks under per-queue concurrency and priority,
//!   runs them in the sandbox, acknowledges, retries or archives them.
//! - Leaf types, which import nothing of wasq's: [`backoff`] (the retry
//!   policy), [`keys`] (Asynq's key
//!   layout), [`names`] (queue and task names), [`units`] (sizes,
//!   durations, fuel, network grants), [`redis_config`] (how to reach
//!   Redis), [`proto`] (Asynq's protobuf messages), [`http_grant`] (the
//!   outbound HTTP allow-list).
//!
//! Data flows one way: `cli` → [`worker`] → {[`registry`] → [`broker`], [`runtime`]} →
//! leaf types; [`client`] → [`broker`]; [`config`] → leaf types.
//! `scripts/modgraph` prints the graph and fails on a cycle.
//!
//! ## Crate features
//! - `runtime` (default): the wasmtime sandbox and the worker.
//! - `cli` (default): the `wasq` binary.
//!
//! A service that only enqueues depends on `wasq` with
//! `default-features = false` and builds no wasmtime.

#![deny(missing_docs)]

pub mod backoff;
pub mod broker;
pub mod client;
pub mod config;
pub mod cron;
pub mod http_grant;
pub mod keys;
pub mod names;
pub mod proto;
pub mod redis_config;
#[cfg(feature = "runtime")]
pub mod registry;
#[cfg(feature = "runtime")]
pub mod runtime;
pub mod schedule;
pub mod task;
pub mod units;
#[cfg(feature = "runtime")]
pub mod worker;

pub use broker::RedisConfig;
pub use client::{Client, EnqueueError};
pub use task::{Task, TaskInfo, TaskOptions, TaskState};
