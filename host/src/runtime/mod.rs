//! The sandbox runtime: runs one task in a fresh WebAssembly instance.
//!
//! ```text
//! Runtime::load(config)        once: engine + pool + epoch ticker,
//!   └─ per task type           read module → header check → compile or cache hit
//!                              → world check → InstancePre (HandlerPre)
//! Runtime::execute(invocation) per task:
//!   payload limit → pool slot → fresh Store (WASI ctx from grants, fuel,
//!   memory limiter, epoch deadline) → instantiate → call `handle`
//!   → Execution { outcome, fuel, wall time, memory peak, logs }
//! ```
//!
//! Nothing here knows Redis: the worker turns an [`Execution`]'s
//! [`Outcome`] into an ack, a retry or an archive ([`Failure::action`]).
//!
//! ```no_run
//! use wasq::config::Config;
//! use wasq::runtime::{Invocation, Runtime};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let runtime = Runtime::load(&Config::load("wasq.toml")?)?;
//! let run = runtime
//!     .execute(Invocation::new("notifications:email", br#"{"to": 42, "from": 7}"#.to_vec()))
//!     .await;
//! println!("{:?} in {:?} using {} fuel", run.outcome, run.wall_time, run.fuel_consumed);
//! # Ok(()) }
//! ```

mod bindings;
mod cache;
mod engine;
mod follow_ups;
mod fs_budget;
mod fs_limits;
pub mod guest_text;
mod imports;
mod journal;
mod load;
mod outcome;
mod sandbox;

pub mod bench;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use tokio::sync::{Notify, Semaphore};
use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime::{Engine, Store, Trap, UpdateDeadline};

pub use cache::CacheStatus;
pub use follow_ups::{FollowUp, MAX_FOLLOW_UP_BYTES, MAX_FOLLOW_UPS, follow_up_id};
pub use guest_text::{MAX_MESSAGE, cap_message, escape_control};
pub use journal::{LogLevel, LogLine, LogSource};
pub use load::{TaskTypeInfo, WORLD};
pub use outcome::{
    Action, Failure, HOST_RESOURCES_DELAY, HandlerError, LimitExceeded, Outcome, TrapCause,
};

use crate::config::{Config, ConfigError};
use bindings::{Handler, TaskError};
use guest_text::sanitize;
use journal::{Journal, TaskTags};
use sandbox::{Interrupted, MemoryLimitHit, MemoryLimiter, SandboxState};

/// The fuel of a task type with `fuel = "unlimited"`.
const UNLIMITED_FUEL: u64 = 1 << 60;

/// Errors at start-up: the config or a module is not usable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// The config is invalid, or a module file is missing, not a
    /// component, or does not compile (the message names file, line, key).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A component does not implement the `wasq:task/handler` world.
    #[error("task type {task_type}: module {} does not implement {WORLD}: {message}", module.display())]
    World {
        /// The task type.
        task_type: String,
        /// The module file.
        module: PathBuf,
        /// What is missing or wrong.
        message: String,
    },
    /// A grant cannot be honoured (e.g. a granted directory is missing).
    #[error("task type {task_type}: {message}")]
    Grant {
        /// The task type.
        task_type: String,
        /// What is wrong.
        message: String,
    },
    /// The engine could not be created (e.g. the pool cannot reserve memory).
    #[error("cannot create the wasm engine: {0}")]
    Engine(String),
}

/// Cancels a running task: the sandbox stops at its next epoch tick (or at
/// once when it waits on the host).
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<(AtomicBool, Notify)>);

impl CancelToken {
    /// A token that is not cancelled.
    pub fn new() -> Self {
        Self::default()
    }

    /// Cancels the task.
    pub fn cancel(&self) {
        self.0.0.store(true, Ordering::SeqCst);
        self.0.1.notify_waiters();
    }

    /// Whether [`cancel`](Self::cancel) was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.0.load(Ordering::SeqCst)
    }

    async fn cancelled(&self) {
        loop {
            let notified = self.0.1.notified();
            if self.is_cancelled() {
                return;
            }
            notified.await;
        }
    }
}

/// One task to run.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// Task id.
    pub id: String,
    /// Task type; picks the module.
    pub task_type: String,
    /// Queue the task came from.
    pub queue: String,
    /// Payload bytes.
    pub payload: Vec<u8>,
    /// Retries so far.
    pub retried: u32,
    /// Retries allowed.
    pub max_retry: u32,
    /// The task's own timeout; the sandbox gets the smaller of this and
    /// the task type's.
    pub timeout: Option<Duration>,
    /// The task's deadline.
    pub deadline: Option<SystemTime>,
    /// Headers.
    pub headers: Vec<(String, String)>,
    /// Cancels the run.
    pub cancel: Option<CancelToken>,
}

impl Invocation {
    /// A task with a fresh id on queue `default` and no retries.
    pub fn new(task_type: impl Into<String>, payload: Vec<u8>) -> Self {
        Self {
            id: uuid::Uuid::new_v4().to_string(),
            task_type: task_type.into(),
            queue: "default".into(),
            payload,
            retried: 0,
            max_retry: 0,
            timeout: None,
            deadline: None,
            headers: Vec::new(),
            cancel: None,
        }
    }
}

/// The report of one execution.
#[derive(Debug, Clone, Serialize)]
pub struct Execution {
    /// Task id.
    pub task_id: String,
    /// Task type.
    pub task_type: String,
    /// How it ended.
    pub outcome: Outcome,
    /// Instructions (fuel units) consumed; 0 when not measured.
    pub fuel_consumed: u64,
    /// Whether `fuel_consumed` was measured. It is not when the run was
    /// interrupted (timeout, cancel): compiled code keeps its fuel count in
    /// a register while it loops, and an interrupted loop never hands it
    /// back.
    pub fuel_measured: bool,
    /// Wall time from the call to `execute` to its end.
    #[serde(with = "serde_micros")]
    pub wall_time: Duration,
    /// Largest linear memory the guest had, in bytes.
    pub memory_peak: u64,
    /// Progress last reported by the handler.
    pub progress: Option<u8>,
    /// What the guest logged (within `max_log`).
    pub logs: Vec<LogLine>,
    /// Lines dropped past `max_log` (or past the most lines a task keeps).
    pub logs_dropped: u64,
    /// The bytes of those lines.
    pub logs_dropped_bytes: u64,
    /// Follow-up tasks the handler enqueued, in call order; empty unless
    /// the run succeeded. The worker sends them before it acknowledges the
    /// task.
    pub follow_ups: Vec<FollowUp>,
}

/// The sandbox runtime. Cheap to share behind an `Arc`; `execute` may run
/// concurrently up to `max_sandboxes` tasks (more wait for a slot).
pub struct Runtime {
    engine: Engine,
    types: BTreeMap<String, load::TaskType>,
    slots: Arc<Semaphore>,
    grace: Duration,
    _ticker: engine::EpochTicker,
}

impl Runtime {
    /// Builds the engine and loads every task type of the config, failing
    /// on the first module that is missing, not a component, or does not
    /// implement the world. Compiles missing cache entries (CPU-heavy:
    /// call it from `spawn_blocking` inside an async context).
    pub fn load(config: &Config) -> Result<Self, RuntimeError> {
        let max_memory = config
            .tasks
            .keys()
            .filter_map(|name| config.limits_of(name))
            .map(|limits| limits.memory)
            .max()
            .unwrap_or(crate::config::Limits::default().memory);
        let engine = engine::build(config.runtime.max_sandboxes, max_memory)
            .map_err(|e| RuntimeError::Engine(format!("{e:#}")))?;
        let linker = linker(&engine).map_err(|e| RuntimeError::Engine(format!("{e:#}")))?;
        fs_limits::raise_fd_limit(config);
        let cache = cache::ComponentCache::new(config.cache_dir(), &engine);
        let mut types = BTreeMap::new();
        for (name, task) in &config.tasks {
            types.insert(
                name.clone(),
                load::task_type(config, name, task, &engine, &linker, &cache)?,
            );
        }
        let tick = config.runtime.epoch_tick.0;
        Ok(Self {
            _ticker: engine::EpochTicker::start(engine.clone(), tick),
            engine,
            types,
            slots: Arc::new(Semaphore::new(config.runtime.max_sandboxes as usize)),
            grace: tick * 4 + Duration::from_millis(50),
        })
    }

    /// What was loaded, by task type.
    pub fn task_types(&self) -> impl Iterator<Item = &TaskTypeInfo> {
        self.types.values().map(|t| &t.info)
    }

    /// The wall-clock limit of `task_type` (the `timeout` of its config),
    /// if it is loaded.
    pub fn timeout_of(&self, task_type: &str) -> Option<Duration> {
        self.types.get(task_type).map(|t| t.info.limits.timeout)
    }

    /// The engine (shared with the benchmark).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Runs one task in a fresh sandbox. Never fails: every way a task can
    /// end, including an unknown task type, is an [`Outcome`].
    pub async fn execute(&self, invocation: Invocation) -> Execution {
        let started = Instant::now();
        let mut report = Execution {
            task_id: invocation.id.clone(),
            task_type: invocation.task_type.clone(),
            outcome: Outcome::Success { result: Vec::new() },
            fuel_consumed: 0,
            fuel_measured: false,
            wall_time: Duration::ZERO,
            memory_peak: 0,
            progress: None,
            logs: Vec::new(),
            logs_dropped: 0,
            logs_dropped_bytes: 0,
            follow_ups: Vec::new(),
        };
        let failed = |failure| Outcome::Failed { failure };
        let Some(task_type) = self.types.get(&invocation.task_type) else {
            report.outcome = failed(Failure::Host {
                message: format!(
                    "no module is registered for task type {:?}",
                    invocation.task_type
                ),
            });
            report.wall_time = started.elapsed();
            return report;
        };
        let limits = task_type.info.limits;
        let size = invocation.payload.len() as u64;
        if size > limits.max_payload {
            report.outcome = failed(Failure::Limit {
                limit: LimitExceeded::Payload {
                    size,
                    limit: limits.max_payload,
                },
            });
            report.wall_time = started.elapsed();
            return report;
        }
        let Ok(_slot) = self.slots.acquire().await else {
            unreachable!("the sandbox semaphore is never closed")
        };

        let mut budget = limits.timeout;
        if let Some(timeout) = invocation.timeout {
            budget = budget.min(timeout);
        }
        if let Some(deadline) = invocation.deadline {
            budget = budget.min(
                deadline
                    .duration_since(SystemTime::now())
                    .unwrap_or_default(),
            );
        }
        let deadline = Instant::now() + budget;
        let journal = Journal::new(
            TaskTags {
                id: invocation.id.clone(),
                task_type: invocation.task_type.clone(),
                queue: invocation.queue.clone(),
            },
            limits.max_log,
        );
        let wasi = match task_type.grants.wasi_ctx(&journal, SystemTime::now()) {
            Ok(wasi) => wasi,
            Err(e) => {
                let message = format!("cannot build the sandbox's WASI context: {e:#}");
                // Out of descriptors or memory: the host's state, not the task's.
                report.outcome = failed(if fs_limits::host_short_of_resources(&e) {
                    Failure::HostResources { message }
                } else {
                    Failure::Host { message }
                });
                report.wall_time = started.elapsed();
                return report;
            }
        };
        let state = SandboxState {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryLimiter {
                limit: limits.memory,
                peak: 0,
            },
            journal: journal.clone(),
            grants: task_type.grants.clone(),
            fs: fs_budget::FsLimits::new(&limits, journal.clone()),
            follow_ups: Default::default(),
            task_id: invocation.id.clone(),
            task_type: invocation.task_type.clone(),
            queue: invocation.queue.clone(),
            max_payload: limits.max_payload,
            deadline,
            cancel: invocation.cancel.clone(),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        // Unlimited fuel is a budget no task can spend (about a century of
        // computing), so what a task used is still measured.
        let fuel = limits.fuel.unwrap_or(UNLIMITED_FUEL);
        store.set_fuel(fuel).expect("fuel is enabled on the engine");
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|ctx| {
            let state = ctx.data();
            if state.cancel.as_ref().is_some_and(CancelToken::is_cancelled) {
                return Err(Interrupted::Cancelled.into());
            }
            if Instant::now() >= state.deadline {
                return Err(Interrupted::Timeout.into());
            }
            Ok(UpdateDeadline::Yield(1))
        });

        let task = bindings::Task {
            id: invocation.id.clone(),
            task_type: invocation.task_type.clone(),
            queue: invocation.queue.clone(),
            payload: invocation.payload,
            retried: invocation.retried,
            max_retry: invocation.max_retry,
            deadline_ms: invocation
                .deadline
                .and_then(|d| d.duration_since(SystemTime::UNIX_EPOCH).ok())
                .map(|d| d.as_millis() as u64),
            headers: invocation.headers,
        };
        let pre = &task_type.pre;
        let call = async {
            let handler: Handler = pre.instantiate_async(&mut store).await?;
            handler.call_handle(&mut store, &task).await
        };
        // The epoch callback stops guests that compute; this outer bound
        // stops guests that wait on the host (sleeps, I/O) past the deadline.
        let cancel = invocation.cancel.clone();
        let result = tokio::select! {
            r = tokio::time::timeout(budget + self.grace, call) => r.map_err(|_| Interrupted::Timeout),
            _ = async { match &cancel { Some(c) => c.cancelled().await, None => std::future::pending().await } } => Err(Interrupted::Cancelled),
        };
        journal.finish();

        report.outcome = match result {
            Err(Interrupted::Timeout) => failed(Failure::Trap {
                cause: TrapCause::Timeout,
            }),
            Err(Interrupted::Cancelled) => failed(Failure::Trap {
                cause: TrapCause::Cancelled,
            }),
            // `exit(0)`: done, with an empty result, as a CLI author expects.
            Ok(Err(error))
                if error
                    .downcast_ref::<wasmtime_wasi::I32Exit>()
                    .is_some_and(|exit| exit.0 == 0) =>
            {
                Outcome::Success { result: Vec::new() }
            }
            Ok(Err(error)) => failed(classify(&error, &journal)),
            Ok(Ok(Err(error))) => failed(Failure::Handler {
                error: handler_error(error),
            }),
            Ok(Ok(Ok(result))) if result.len() as u64 > limits.max_result => {
                failed(Failure::Limit {
                    limit: LimitExceeded::Result {
                        size: result.len() as u64,
                        limit: limits.max_result,
                    },
                })
            }
            Ok(Ok(Ok(result))) => Outcome::Success { result },
        };
        report.fuel_measured = !matches!(
            &report.outcome,
            Outcome::Failed {
                failure: Failure::Trap {
                    cause: TrapCause::Timeout | TrapCause::Cancelled
                }
            }
        );
        if report.fuel_measured {
            report.fuel_consumed = fuel.saturating_sub(store.get_fuel().unwrap_or(0));
        }
        report.memory_peak = store.data().limiter.peak;
        let mut journal = journal.lock();
        report.logs = std::mem::take(&mut journal.lines);
        report.logs_dropped = journal.dropped;
        report.logs_dropped_bytes = journal.dropped_bytes;
        report.progress = journal.progress;
        if report.outcome.is_success() {
            report.follow_ups = std::mem::take(&mut store.data_mut().follow_ups.tasks);
        }
        report.wall_time = started.elapsed();
        report
    }
}

/// A linker with WASI 0.2, the per-task limits on handles, writes and
/// links over it (`fs_limits`), and the `wasq:task` imports.
fn linker(engine: &Engine) -> wasmtime::Result<Linker<SandboxState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    fs_limits::add_to_linker(&mut linker)?;
    Handler::add_to_linker::<SandboxState, HasSelf<SandboxState>>(&mut linker, |s| s)?;
    imports::add_lenient_log(&mut linker)?;
    Ok(linker)
}

/// Names the cause of a trap or host error.
fn classify(error: &wasmtime::Error, journal: &Journal) -> Failure {
    let trap = |cause| Failure::Trap { cause };
    if let Some(interrupted) = error.downcast_ref::<Interrupted>() {
        return trap(match interrupted {
            Interrupted::Timeout => TrapCause::Timeout,
            Interrupted::Cancelled => TrapCause::Cancelled,
        });
    }
    if let Some(exit) = error.downcast_ref::<wasmtime_wasi::I32Exit>() {
        return trap(TrapCause::Exit { code: exit.0 });
    }
    if let Some(hit) = error.downcast_ref::<MemoryLimitHit>() {
        return trap(TrapCause::MemoryLimit { limit: hit.limit });
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => trap(TrapCause::OutOfFuel),
        Some(Trap::StackOverflow) => trap(TrapCause::StackOverflow),
        Some(Trap::Interrupt) => trap(TrapCause::Timeout),
        Some(other) => match journal.lock().panic.clone() {
            Some(message) => trap(TrapCause::Panic { message }),
            None => trap(TrapCause::Other {
                message: other.to_string(),
            }),
        },
        None => match journal.lock().panic.clone() {
            Some(message) => trap(TrapCause::Panic { message }),
            // Text the guest handed over (its error, a panic message, an
            // enqueue) that is not UTF-8: the guest's fault, not the host's.
            None if error
                .chain()
                .any(|e| e.downcast_ref::<std::str::Utf8Error>().is_some()) =>
            {
                trap(TrapCause::Other {
                    message: "the guest passed text that is not valid UTF-8".into(),
                })
            }
            None if fs_limits::host_short_of_resources(error) => Failure::HostResources {
                message: format!("{error:#}"),
            },
            None => Failure::Host {
                message: format!("{error:#}"),
            },
        },
    }
}

fn handler_error(error: TaskError) -> HandlerError {
    match error {
        TaskError::Retry(retry) => HandlerError::Retry {
            message: sanitize(&retry.message),
            delay: retry.delay_ms.map(Duration::from_millis),
        },
        TaskError::SkipRetry(message) => HandlerError::SkipRetry {
            message: sanitize(&message),
        },
        TaskError::Revoke(message) => HandlerError::Revoke {
            message: sanitize(&message),
        },
    }
}

/// Serializes a duration as whole microseconds.
pub(crate) mod serde_micros {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
    }
}
