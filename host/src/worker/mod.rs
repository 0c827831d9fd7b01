//! The worker: pulls tasks from Redis and runs them in the sandbox.
//!
//! ```text
//!  wakers (BLPOP asynq:{q}:wake, one connection per queue) ──notify──┐
//!                                                                    ▼
//!  dispatcher: free slot (global + per-queue semaphores) → queue order (weighted or strict)
//!     → claim up to the free slots in one script → spawn one processor per task
//!  processor: decode TaskMessage → sandbox runtime (its own threads) → outcome
//!     → finish | retry | archive | drop | requeue (shutdown) → release slots
//!  acker (one per queue): acknowledges finished tasks in batches; when no
//!     other queue could come first, the same script call claims their
//!     replacements, which start with the finished tasks' slots
//!  modules (registry types): pub/sub + polling → fetch, verify, compile,
//!     try an instance → swap the type's version between tasks
//!  maintenance (own task): heartbeat leases + server registry, forward due
//!     scheduled/retry, recover abandoned leases, expire completed tasks
//! ```
//!
//! Guests run on a tokio runtime of their own, so a guest burning CPU never
//! delays heartbeats, fetching or acks on the worker's runtime.

mod ack;
mod dispatch;
mod follow_ups;
mod groups;
mod maintenance;
mod metrics;
mod modules;
mod process;
mod reload;
pub mod usage;

pub use reload::{ReloadError, Reloader};

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::{Notify, Semaphore, mpsc};

use crate::backoff::Backoff;
use crate::broker::{ArchiveLimits, Broker, BrokerError, GroupRules, QueueKeys, QueueLimits};
use crate::config::{Config, RetryDelay, WorkerConfig};
use crate::runtime::{CancelToken, Runtime};

/// Errors starting or running the worker.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkerError {
    /// The config has no `[redis]` section.
    #[error("the config has no [redis] section; add `cluster = [...]` or `url = \"redis://...\"`")]
    NoRedis,
    /// Redis failed.
    #[error(transparent)]
    Broker(#[from] BrokerError),
    /// The sandbox threads could not start.
    #[error("cannot start the sandbox threads: {0}")]
    Threads(std::io::Error),
    /// A `[[periodic]]` entry does not parse.
    #[error("[[periodic]]: {0}")]
    Periodic(String),
}

/// What happened to a task, reported as it happens.
#[derive(Debug, Clone, Serialize)]
pub struct TaskEvent {
    /// Task id.
    pub id: String,
    /// Task type.
    pub task_type: String,
    /// Queue.
    pub queue: String,
    /// What the worker did with it.
    pub disposition: Disposition,
    /// The handler's result (on success), as text when UTF-8.
    pub result: Option<String>,
    /// The failure, when it failed.
    pub error: Option<String>,
    /// Fuel consumed; `None` when not measured (the run was interrupted).
    pub fuel: Option<u64>,
    /// Time in the sandbox, microseconds.
    pub micros: u64,
    /// When the sandbox run started, Unix milliseconds (0 when it never
    /// ran); it ended `micros` later.
    pub started_at_ms: u64,
    /// `ok`, or the failure's cause (`out_of_fuel`, `timeout`, `panic`,
    /// `retry`, ... as [`Failure::cause_name`](crate::runtime::Failure::cause_name)).
    pub cause: String,
    /// Largest linear memory of the run, bytes.
    pub memory_peak: u64,
    /// SHA-256 of the module version the task ran on ("" when it never
    /// reached a sandbox).
    pub module: String,
}

/// What the worker did with a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Disposition {
    /// Succeeded and deleted.
    Done,
    /// Succeeded and kept for its retention.
    Completed,
    /// Failed, will be retried.
    Retry,
    /// Failed for good.
    Archived,
    /// Revoked by its handler and deleted.
    Dropped,
    /// Given back without using a retry: to pending at shutdown, or to run
    /// again later when the host could not run it (`host_resources`) or the
    /// handler was rate limited.
    Requeued,
    /// The lease was lost (another worker recovered it); nothing written.
    LeaseLost,
    /// Redis failed for as long as the worker retries (30 s); nothing
    /// written. The lease expires and the task runs again.
    WriteFailed,
}

pub(crate) struct QueueState {
    pub keys: QueueKeys,
    pub acker: ack::Acker,
    /// The queue's weight (a reload may change it).
    pub priority: AtomicU32,
    pub slots: Arc<Semaphore>,
    /// The queue's concurrency on this worker (a reload may change it).
    pub cap: AtomicUsize,
    /// How much of the queue's archive upkeep keeps.
    pub archive: ArchiveLimits,
    /// The ids the last claim saw next in line (see [`Broker::claim`]),
    /// locked for the whole of a claim: one claim at a time per queue.
    pub hint: tokio::sync::Mutex<Vec<String>>,
    /// When a claim last found the queue empty (or paused), as
    /// milliseconds since [`CLOCK`] plus one; 0 once it had work again.
    pub empty_at: AtomicU64,
    /// The queue's cluster-wide limits (decided in the claim script; a
    /// reload may change them).
    pub limits: RwLock<QueueLimits>,
    /// Until when a limit holds the queue's claims back, as milliseconds
    /// since [`CLOCK`]; no claim is tried before then.
    pub held_until: AtomicU64,
    /// When the queue's task groups are aggregated.
    pub groups: GroupRules,
    /// The type of the task that aggregates a group (default: the type of
    /// its oldest task).
    pub group_task_type: Option<String>,
}

/// How long a queue whose `max_running` is reached waits before claiming
/// again: slots free up on any worker, so the claim polls (a script call
/// per worker and queue every this long, only while the limit binds).
const RUNNING_POLL: Duration = Duration::from_millis(20);

/// How long a queue found empty is taken to be still empty, unless a wake
/// token says otherwise sooner (tasks another client enqueued without one,
/// an Asynq client's, are seen within this time).
const EMPTY_FOR: Duration = Duration::from_millis(100);

/// The monotonic clock behind [`QueueState::empty_at`].
static CLOCK: std::sync::LazyLock<Instant> = std::sync::LazyLock::new(Instant::now);

impl QueueState {
    /// The queue's weight.
    pub fn priority(&self) -> u32 {
        self.priority.load(Ordering::Relaxed)
    }

    /// The queue's concurrency on this worker.
    pub fn cap(&self) -> usize {
        self.cap.load(Ordering::Relaxed)
    }

    /// The queue's cluster-wide limits.
    pub fn limits(&self) -> QueueLimits {
        *self.limits.read().unwrap_or_else(|e| e.into_inner())
    }

    /// A claim found nothing to take.
    pub fn mark_empty(&self) {
        let now = CLOCK.elapsed().as_millis() as u64 + 1;
        self.empty_at.store(now, Ordering::Relaxed);
    }

    /// Tasks were taken, or a wake token says some are pending.
    pub fn mark_busy(&self) {
        self.empty_at.store(0, Ordering::Relaxed);
    }

    /// Whether the last claim found the queue empty (or paused), and no
    /// wake token or claimed task came since.
    pub fn was_empty(&self) -> bool {
        self.empty_at.load(Ordering::Relaxed) != 0
    }

    /// A claim was cut short by a limit: hold further claims back until
    /// the rate's next token is due, or for [`RUNNING_POLL`] (with some
    /// jitter, so workers do not poll in step).
    pub fn hold(&self, held: crate::broker::Held) {
        let wait = match held {
            crate::broker::Held::Rate(wait) => wait,
            crate::broker::Held::Running => RUNNING_POLL.mul_f64(rand::random_range(0.5..1.5)),
        };
        let until = CLOCK.elapsed() + wait;
        self.held_until
            .store(until.as_millis() as u64, Ordering::Relaxed);
    }

    /// How long a limit still holds the queue's claims back (zero: claim).
    pub fn held_for(&self) -> Duration {
        let until = Duration::from_millis(self.held_until.load(Ordering::Relaxed));
        until.saturating_sub(CLOCK.elapsed())
    }

    /// Whether a claim found the queue empty within [`EMPTY_FOR`], and no
    /// wake token came since.
    pub fn known_empty(&self) -> bool {
        match self.empty_at.load(Ordering::Relaxed) {
            0 => false,
            at => {
                (CLOCK.elapsed().as_millis() as u64 + 1).saturating_sub(at)
                    < EMPTY_FOR.as_millis() as u64
            }
        }
    }
}

/// The slots a task holds while it runs: the worker's (global) and its
/// queue's.
pub(crate) type Slots = (
    tokio::sync::OwnedSemaphorePermit,
    tokio::sync::OwnedSemaphorePermit,
);

/// A task this worker is running.
pub(crate) struct Running {
    pub cancel: CancelToken,
    /// Until when this worker may go on running the task: the lease it last
    /// confirmed in Redis, less a safety margin. Past it, the task is
    /// stopped, since another worker may soon recover and start it.
    pub held_until: Instant,
    /// The lease expiry (Unix seconds) this worker last wrote for the task
    /// and saw succeed: the score its acknowledgement expects.
    pub lease_expiry: i64,
    /// Why the worker stopped the task itself, if it did.
    pub fenced: Option<Fence>,
    /// What `asynq:workers` shows of the task (Asynq's `WorkerInfo`).
    pub listed: ListedTask,
}

/// A running task as Asynq's tools list it in `asynq:workers`.
#[derive(Debug, Clone)]
pub(crate) struct ListedTask {
    /// Task type.
    pub task_type: String,
    /// The payload, when at most [`ListedTask::MAX_PAYLOAD`] bytes; larger ones
    /// are left out to keep heartbeats light.
    pub payload: Vec<u8>,
    /// When this worker started it.
    pub started: std::time::SystemTime,
    /// The earlier of start + timeout and the task's deadline, if any.
    pub deadline: Option<std::time::SystemTime>,
}

impl ListedTask {
    /// Largest payload shown.
    pub const MAX_PAYLOAD: usize = 1024;
}

/// Why a worker stopped a task whose lease it could not keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fence {
    /// The lease could not be renewed in time (Redis slow or unreachable).
    Expiring,
    /// Redis says the lease is no longer this worker's.
    Lost,
    /// An operator cancelled the task (`wasq task cancel`).
    Operator,
}

pub(crate) struct Shared {
    pub broker: Broker,
    /// Sends guests' follow-up tasks (over the broker's connection; the
    /// sandbox already held them to the parent type's `max_payload`).
    pub client: crate::Client,
    pub runtime: Arc<Runtime>,
    pub sandbox: tokio::runtime::Handle,
    pub settings: WorkerConfig,
    pub queues: Vec<Arc<QueueState>>,
    pub global: Arc<Semaphore>,
    pub inflight: Mutex<HashMap<String, HashMap<String, Running>>>,
    pub retry_delays: RwLock<HashMap<String, RetryDelay>>,
    pub events: Option<mpsc::UnboundedSender<TaskEvent>>,
    pub stopping: AtomicBool,
    pub stop: Notify,
    pub work: Notify,
    /// A task started: `asynq:workers` should show it soon.
    pub running_changed: Notify,
    pub server_id: String,
    pub started: std::time::SystemTime,
    pub metrics: metrics::Metrics,
    pub usage: usage::Usage,
    /// The `[[periodic]]` entries this worker's scheduler runs (none when
    /// `[worker] scheduler = false`).
    pub periodic: Vec<crate::schedule::Entry>,
    /// The task types whose module comes from the registry.
    pub modules: modules::Modules,
    /// The config running now (replaced by a reload).
    pub config: Mutex<Config>,
}

/// A worker ready to run: the queues of a config, the sandbox runtime of
/// its task types, and a connection to its Redis.
///
/// ```no_run
/// use wasq::config::Config;
/// use wasq::runtime::Runtime;
/// use wasq::worker::Worker;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let config = Config::load("wasq.toml")?;
/// let runtime = Runtime::load(&config)?;
/// let mut worker = Worker::new(&config, runtime).await?;
/// let mut events = worker.events();
/// tokio::spawn(async move {
///     while let Some(event) = events.recv().await {
///         println!("{} {} {:?}", event.queue, event.id, event.disposition);
///     }
/// });
/// // Until Ctrl-C, then a graceful stop.
/// worker.run(async { tokio::signal::ctrl_c().await.ok(); }).await?;
/// # Ok(()) }
/// ```
pub struct Worker {
    shared: Arc<Shared>,
    sandbox_threads: Option<tokio::runtime::Runtime>,
    /// The ackers' inboxes, one per queue in `shared.queues` order.
    inboxes: Vec<ack::Inbox>,
}

impl Drop for Worker {
    fn drop(&mut self) {
        // A runtime may not be dropped (which blocks) inside async code.
        if let Some(threads) = self.sandbox_threads.take() {
            threads.shutdown_background();
        }
    }
}

impl Worker {
    /// Connects to the config's Redis and prepares the queues. Queues come
    /// from `[queues]`, or `default` when there are none.
    pub async fn new(config: &Config, runtime: Runtime) -> Result<Self, WorkerError> {
        let redis = config.redis.as_ref().ok_or(WorkerError::NoRedis)?;
        let broker = Broker::connect(redis).await?;
        Self::with_broker(config, runtime, broker)
    }

    /// Like [`new`](Self::new), but waits for Redis while it is unreachable,
    /// retrying with backoff (up to 10 s between tries) and logging each
    /// failure, until `give_up` resolves.
    pub async fn connect_patiently(
        config: &Config,
        runtime: Runtime,
        give_up: impl Future<Output = ()>,
    ) -> Result<Self, WorkerError> {
        let redis = config.redis.as_ref().ok_or(WorkerError::NoRedis)?;
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
        let mut give_up = std::pin::pin!(give_up);
        let broker = loop {
            match Broker::connect(redis).await {
                Ok(broker) => break broker,
                Err(e) => {
                    let delay = backoff.next_delay();
                    tracing::warn!("Redis is unreachable, retrying in {delay:?}: {e}");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = &mut give_up => return Err(e.into()),
                    }
                }
            }
        };
        Self::with_broker(config, runtime, broker)
    }

    /// Like [`new`](Self::new) over an existing broker.
    pub fn with_broker(
        config: &Config,
        runtime: Runtime,
        broker: Broker,
    ) -> Result<Self, WorkerError> {
        let settings = config.worker.clone();
        let server_id = uuid::Uuid::new_v4().to_string();
        let broker = broker.with_owner(&server_id);
        type QueueSettings = (
            u32,
            Option<usize>,
            ArchiveLimits,
            QueueLimits,
            (GroupRules, Option<String>),
        );
        let mut queue_configs: BTreeMap<String, QueueSettings> = config
            .queues
            .iter()
            .map(|(name, q)| {
                let archive = ArchiveLimits {
                    max: q.archive_max,
                    max_age: q.archive_max_age.0,
                };
                (
                    name.clone(),
                    (
                        q.priority,
                        q.concurrency,
                        archive,
                        QueueLimits {
                            rate: q.rate,
                            burst: q.burst.unwrap_or(1),
                            max_running: q.max_running,
                        },
                        (
                            GroupRules {
                                grace: q.group_grace.map_or(GroupRules::default().grace, |g| g.0),
                                max_delay: q.group_max_delay.map(|d| d.0),
                                max_size: q.group_max_size,
                            },
                            q.group_task_type.clone(),
                        ),
                    ),
                )
            })
            .collect();
        if queue_configs.is_empty() {
            queue_configs.insert(
                crate::task::DEFAULT_QUEUE.to_owned(),
                (
                    1,
                    None,
                    ArchiveLimits::default(),
                    QueueLimits::default(),
                    (GroupRules::default(), None),
                ),
            );
        }
        let mut inboxes = Vec::new();
        let queues = queue_configs
            .into_iter()
            .map(
                |(name, (priority, cap, archive, limits, (groups, group_task_type)))| {
                    let (acker, inbox) = ack::channel();
                    inboxes.push(inbox);
                    let cap = cap
                        .unwrap_or(settings.concurrency)
                        .min(settings.concurrency);
                    Arc::new(QueueState {
                        acker,
                        keys: QueueKeys::new(&name),
                        priority: AtomicU32::new(priority.max(1)),
                        slots: Arc::new(Semaphore::new(cap)),
                        cap: AtomicUsize::new(cap),
                        archive,
                        hint: Default::default(),
                        empty_at: AtomicU64::new(0),
                        limits: RwLock::new(limits),
                        held_until: AtomicU64::new(0),
                        groups,
                        group_task_type,
                    })
                },
            )
            .collect();
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        let sandbox_threads = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("wasq-sandbox")
            .enable_all()
            .build()
            .map_err(WorkerError::Threads)?;
        let periodic = if settings.scheduler {
            crate::schedule::entries(config).map_err(WorkerError::Periodic)?
        } else {
            Vec::new()
        };
        let modules = modules::Modules::new(crate::registry::Registry::new(broker.clone()));
        let retry_delays = config
            .tasks
            .iter()
            .map(|(name, t)| (name.clone(), t.retry_delay))
            .collect();
        Ok(Self {
            shared: Arc::new(Shared {
                client: crate::Client::from_broker(broker.clone()).max_payload(usize::MAX),
                broker,
                runtime: Arc::new(runtime),
                sandbox: sandbox_threads.handle().clone(),
                global: Arc::new(Semaphore::new(settings.concurrency)),
                settings,
                queues,
                inflight: Mutex::default(),
                retry_delays: RwLock::new(retry_delays),
                events: None,
                stopping: AtomicBool::new(false),
                stop: Notify::new(),
                work: Notify::new(),
                running_changed: Notify::new(),
                server_id,
                started: std::time::SystemTime::now(),
                metrics: metrics::Metrics::new().with_task_types(config.tasks.keys()),
                usage: usage::Usage::default().with_task_types(config.tasks.keys()),
                periodic,
                modules,
                config: Mutex::new(config.clone()),
            }),
            sandbox_threads: Some(sandbox_threads),
            inboxes,
        })
    }

    /// Reports every task's fate on the returned channel. Call before
    /// [`run`](Self::run).
    pub fn events(&mut self) -> mpsc::UnboundedReceiver<TaskEvent> {
        let (tx, rx) = mpsc::unbounded_channel();
        Arc::get_mut(&mut self.shared)
            .expect("events() is called before run()")
            .events = Some(tx);
        rx
    }

    /// Runs until `shutdown` resolves, then stops fetching, waits up to
    /// `shutdown_timeout` for running tasks and gives the rest back to
    /// pending.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<(), WorkerError> {
        let shared = self.shared.clone();
        tracing::info!(
            server_id = %shared.server_id,
            concurrency = shared.settings.concurrency,
            queues = ?shared.queues.iter().map(|q| q.keys.name().to_owned()).collect::<Vec<_>>(),
            "worker started"
        );
        let mut background = Vec::new();
        for (queue, inbox) in shared.queues.iter().zip(self.inboxes.drain(..)) {
            shared.broker.register_queue(queue.keys.name()).await?;
            shared
                .broker
                .publish_limits(&queue.keys, &queue.limits())
                .await?;
            background.push(tokio::spawn(dispatch::waker(shared.clone(), queue.clone())));
            background.push(tokio::spawn(ack::run(shared.clone(), queue.clone(), inbox)));
        }
        // Registry types start on their current version, not on whatever
        // the first task finds.
        modules::sync_once(&shared).await;
        background.push(tokio::spawn(modules::run(shared.clone())));
        background.push(tokio::spawn(maintenance::run(shared.clone())));
        background.push(tokio::spawn(maintenance::cancels(shared.clone())));
        if let Some(addr) = shared.settings.metrics {
            background.push(tokio::spawn(metrics::serve(shared.clone(), addr)));
        }
        let dispatcher = tokio::spawn(dispatch::run(shared.clone()));
        let scheduler_stop = Arc::new(Notify::new());
        let scheduler = tokio::spawn(crate::schedule::run(
            shared.broker.clone(),
            shared.periodic.clone(),
            format!(
                "{}:{}:{}",
                maintenance::host(),
                std::process::id(),
                shared.server_id
            ),
            scheduler_stop.clone(),
        ));

        shutdown.await;
        scheduler_stop.notify_one();
        let _ = scheduler.await;
        tracing::info!("shutting down: no new tasks; waiting for running ones");
        shared.stopping.store(true, Ordering::SeqCst);
        shared.stop.notify_waiters();
        shared.work.notify_one();
        let _ = dispatcher.await;
        let all = shared.settings.concurrency as u32;
        let drained = tokio::time::timeout(
            shared.settings.shutdown_timeout.0,
            shared.global.acquire_many(all),
        )
        .await;
        if drained.is_err() {
            let running: Vec<CancelToken> = shared
                .inflight
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .values()
                .flat_map(|m| m.values().map(|r| r.cancel.clone()))
                .collect();
            tracing::warn!(
                tasks = running.len(),
                "shutdown timeout: requeueing running tasks"
            );
            for token in running {
                token.cancel();
            }
            let _ = tokio::time::timeout(Duration::from_secs(10), shared.global.acquire_many(all))
                .await;
        }
        for task in background {
            task.abort();
        }
        if let Err(e) = shared.usage.flush(&shared.broker).await {
            tracing::debug!("recording task type usage failed: {e}");
        }
        maintenance::deregister(&shared).await;
        modules::forget(&shared).await;
        tracing::info!("worker stopped");
        Ok(())
    }
}

#[cfg(test)]
impl TaskEvent {
    /// A task of `task_type` done in 100 µs with 1,000 fuel, for tests.
    pub(crate) fn done_for_test(task_type: &str) -> Self {
        TaskEvent {
            id: "id".into(),
            task_type: task_type.into(),
            queue: "default".into(),
            disposition: Disposition::Done,
            result: None,
            error: None,
            fuel: Some(1_000),
            micros: 100,
            started_at_ms: 1,
            cause: "ok".into(),
            memory_peak: 65_536,
            module: "ab".repeat(32),
        }
    }
}

impl Disposition {
    /// The name `--json` output uses (snake case).
    pub fn as_str(self) -> &'static str {
        match self {
            Disposition::Done => "done",
            Disposition::Completed => "completed",
            Disposition::Retry => "retry",
            Disposition::Archived => "archived",
            Disposition::Dropped => "dropped",
            Disposition::Requeued => "requeued",
            Disposition::LeaseLost => "lease_lost",
            Disposition::WriteFailed => "write_failed",
        }
    }
}

impl Shared {
    pub(crate) fn emit(&self, event: TaskEvent) {
        self.metrics.task(&event);
        self.usage.record(&event);
        if let Some(tx) = &self.events {
            let _ = tx.send(event);
        }
    }

    pub(crate) fn lease_expiry(&self) -> i64 {
        crate::broker::now_secs() + self.settings.lease.0.as_secs().max(1) as i64
    }

    /// How long after asking Redis for a lease (or its renewal) this worker
    /// trusts it: the lease less a fifth, to allow for clock skew between
    /// workers and for the time the request took.
    pub(crate) fn trusted_lease(&self) -> Duration {
        let lease = self.settings.lease.0.max(Duration::from_secs(1));
        lease - lease / 5
    }

    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }
}

/// How long [`retry_redis`] keeps trying a step.
pub(crate) const REDIS_RETRY_FOR: Duration = Duration::from_secs(30);

/// Retries an idempotent Redis step with backoff for up to
/// [`REDIS_RETRY_FOR`], so a short outage or failover does not lose an
/// acknowledgement.
pub(crate) async fn retry_redis<T, F, Fut>(what: &str, mut step: F) -> Result<T, BrokerError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, BrokerError>>,
{
    let started = Instant::now();
    let mut backoff = redis_backoff();
    loop {
        match step().await {
            Ok(v) => return Ok(v),
            Err(e) if started.elapsed() < REDIS_RETRY_FOR => {
                let delay = backoff.next_delay();
                tracing::warn!("{what} failed, retrying in {delay:?}: {e}");
                tokio::time::sleep(delay).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// The backoff of a Redis step retried in place: 50 ms doubling to 2 s.
pub(crate) fn redis_backoff() -> Backoff {
    Backoff::new(Duration::from_millis(50), Duration::from_secs(2))
}
