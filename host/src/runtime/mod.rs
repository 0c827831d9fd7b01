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
mod execute;
mod follow_ups;
mod footprint;
mod fs_budget;
mod fs_limits;
pub mod guest_text;
mod http;
mod imports;
mod journal;
mod load;
mod outcome;
mod sandbox;
mod swap;

pub mod bench;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tokio::sync::{Notify, Semaphore};
use wasmtime::Engine;
use wasmtime::component::{HasSelf, Linker};

pub use cache::CacheStatus;
pub use follow_ups::{FollowUp, MAX_FOLLOW_UP_BYTES, MAX_FOLLOW_UPS, follow_up_id};
pub use footprint::Footprint;
pub use guest_text::{MAX_MESSAGE, cap_message, escape_control};
pub use http::HttpCall;
pub use journal::{LogLevel, LogLine, LogSource};
pub use load::{TaskTypeInfo, WORLD};
pub use outcome::{
    Action, Failure, HOST_RESOURCES_DELAY, HandlerError, LimitExceeded, Outcome, TrapCause,
};
pub use swap::{Reconfigured, Stale, Version};

use crate::config::{Config, ConfigError};
use bindings::Handler;
use sandbox::SandboxState;

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
    /// For a task that aggregates a group: the group and its tasks.
    pub group: Option<Group>,
    /// Cancels the run.
    pub cancel: Option<CancelToken>,
}

/// The group a task aggregates (Asynq's task groups), as its handler sees
/// it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Group {
    /// The group's name.
    pub name: String,
    /// Its tasks, oldest first.
    pub members: Vec<Member>,
}

/// One task of a group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Member {
    /// Its id.
    pub id: String,
    /// Its task type.
    pub task_type: String,
    /// Its payload.
    pub payload: Vec<u8>,
    /// Its headers.
    pub headers: Vec<(String, String)>,
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
            group: None,
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
    /// The HTTP requests the handler made, in order, allowed or not.
    pub http: Vec<HttpCall>,
    /// Follow-up tasks the handler enqueued, in call order; empty unless
    /// the run succeeded. The worker sends them before it acknowledges the
    /// task.
    pub follow_ups: Vec<FollowUp>,
    /// SHA-256 of the module version the task ran on ("" when it never
    /// ran: an unknown type, or a registry type with no version yet).
    pub module_hash: String,
}

/// The sandbox runtime. Cheap to share behind an `Arc`; `execute` may run
/// concurrently up to `max_sandboxes` tasks (more wait for a slot).
pub struct Runtime {
    engine: Engine,
    /// The version each task type runs now; a task takes its `Arc` when it
    /// starts, so a swap never changes a running task's version.
    types: RwLock<BTreeMap<String, Arc<load::TaskType>>>,
    /// Canary versions, by task type, with the share of its tasks (0-1)
    /// that run them.
    canaries: RwLock<BTreeMap<String, (Arc<load::TaskType>, f64)>>,
    slots: Arc<Semaphore>,
    grace: Duration,
    /// What later versions are loaded with (see `swap`).
    loader: swap::Loader,
    _ticker: engine::EpochTicker,
}

impl Runtime {
    /// Builds the engine and loads every task type of the config, failing
    /// on the first module that is missing, not a component, or does not
    /// implement the world. Compiles missing cache entries (CPU-heavy:
    /// call it from `spawn_blocking` inside an async context).
    pub fn load(config: &Config) -> Result<Self, RuntimeError> {
        Self::load_with(config, &BTreeMap::new())
    }

    /// Like [`load`](Self::load), with the bytes of the task types whose
    /// module comes from the registry (`module = "registry"`), by type. A
    /// registry type missing from `registry` has no version yet: its tasks
    /// are put back for later until [`install`](Self::install) gives it one.
    pub fn load_with(
        config: &Config,
        registry: &BTreeMap<String, Vec<u8>>,
    ) -> Result<Self, RuntimeError> {
        let max_memory = config
            .tasks
            .keys()
            .filter_map(|name| config.limits_of(name))
            .map(|limits| limits.memory)
            .max()
            .unwrap_or(crate::config::Limits::default().memory);
        let files = config
            .tasks
            .iter()
            .map(|(name, task)| load::read(config, name, task, registry))
            .collect::<Result<Vec<_>, _>>()?;
        let mut footprint = Footprint::max(files.iter().flatten().map(|f| &f.footprint));
        if config.tasks.values().any(|t| t.from_registry()) {
            // Later versions must fit the pool sized now.
            footprint = Footprint::max([&footprint, &swap::REGISTRY_FLOOR]);
        }
        let engine = engine::build(config.runtime.max_sandboxes, max_memory, &footprint)
            .map_err(|e| RuntimeError::Engine(format!("{e:#}")))?;
        let linker = linker(&engine).map_err(|e| RuntimeError::Engine(format!("{e:#}")))?;
        fs_limits::raise_fd_limit(config);
        let cache = cache::ComponentCache::new(config.cache_dir(), &engine);
        let mut types = BTreeMap::new();
        for ((name, task), file) in config.tasks.iter().zip(files) {
            let Some(file) = file else { continue };
            types.insert(
                name.clone(),
                Arc::new(load::task_type(
                    config, name, task, file, &engine, &linker, &cache,
                )?),
            );
        }
        let tick = config.runtime.epoch_tick.0;
        Ok(Self {
            _ticker: engine::EpochTicker::start(engine.clone(), tick),
            engine,
            types: RwLock::new(types),
            canaries: RwLock::default(),
            slots: Arc::new(Semaphore::new(config.runtime.max_sandboxes as usize)),
            grace: tick * 4 + Duration::from_millis(50),
            loader: swap::Loader {
                config: RwLock::new(Arc::new(config.clone())),
                linker,
                cache,
                pool: footprint,
                max_memory,
                generation: Default::default(),
                swap: Default::default(),
            },
        })
    }

    /// What is loaded now, by task type (a registry type with no version
    /// yet is not listed).
    pub fn task_types(&self) -> Vec<TaskTypeInfo> {
        self.read_types().values().map(|t| t.info.clone()).collect()
    }

    /// The wall-clock limit of `task_type` (the `timeout` of its config),
    /// if it is loaded.
    pub fn timeout_of(&self, task_type: &str) -> Option<Duration> {
        self.type_of(task_type).map(|t| t.info.limits.timeout)
    }

    /// The version a task of `task_type` starting now runs: its canary for
    /// the canary's share of tasks, else the current one.
    pub(crate) fn type_of(&self, task_type: &str) -> Option<Arc<load::TaskType>> {
        if let Some((canary, share)) = self
            .canaries
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(task_type)
            && rand::random::<f64>() < *share
        {
            return Some(canary.clone());
        }
        self.read_types().get(task_type).cloned()
    }

    fn read_types(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<load::TaskType>>> {
        self.types.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The engine (shared with the benchmark).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }
}

/// A linker with WASI 0.2, the per-task limits on handles, writes and
/// links over it (`fs_limits`), and the `wasq:task` imports.
fn linker(engine: &Engine) -> wasmtime::Result<Linker<SandboxState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    // wasi:http for every type; a type without `http` grants is denied
    // each request (runtime/http.rs).
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    fs_limits::add_to_linker(&mut linker)?;
    Handler::add_to_linker::<SandboxState, HasSelf<SandboxState>>(&mut linker, |s| s)?;
    bindings::v0_1::Handler::add_to_linker::<SandboxState, HasSelf<SandboxState>>(
        &mut linker,
        |s| s,
    )?;
    imports::add_lenient_log(&mut linker)?;
    Ok(linker)
}

/// Serializes a duration as whole microseconds.
pub(crate) mod serde_micros {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
    }
}
