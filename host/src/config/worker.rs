//! `[runtime]`, `[worker]` and `[queues.<name>]`: the engine, the worker's
//! concurrency and timings, and each queue's priority, concurrency,
//! cluster-wide limits and archive bounds.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::HumanDuration;
use crate::units::Rate;

/// `[runtime]`: settings of the engine shared by all task types.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// Where compiled components are cached (default: `$XDG_CACHE_HOME/wasq`,
    /// else `~/.cache/wasq`; with neither variable set, no cache). Cached
    /// code is loaded as native code, so the directory is used only if it
    /// is owned by the user wasq runs as and not writable by group or
    /// others (a missing one is created with mode 0700); otherwise the
    /// cache is off, with a warning.
    pub cache_dir: Option<PathBuf>,
    /// How many sandboxes may be alive at once; sizes the instance pool.
    pub max_sandboxes: u32,
    /// How often the engine checks deadlines and lets other work run.
    pub epoch_tick: HumanDuration,
    /// Host names that outbound HTTP resolves to fixed addresses instead of
    /// through DNS, as curl's `--resolve` does (split-horizon names, tests):
    /// `{ "hooks.internal" = ["10.0.0.7"] }`. The addresses are checked as
    /// resolved ones are: a non-public one still needs an entry naming it.
    pub http_resolve: std::collections::BTreeMap<String, Vec<std::net::IpAddr>>,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            cache_dir: None,
            max_sandboxes: 128,
            epoch_tick: HumanDuration(Duration::from_millis(5)),
            http_resolve: Default::default(),
        }
    }
}

/// `[worker]`: how the worker consumes queues.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerConfig {
    /// Tasks in flight at once, over all queues.
    pub concurrency: usize,
    /// Always drain higher-priority queues first (else weighted order).
    pub strict_priority: bool,
    /// How long a graceful shutdown waits for running tasks before it
    /// requeues them.
    pub shutdown_timeout: HumanDuration,
    /// How long a claimed task's lease lasts without a heartbeat; a task
    /// whose worker died is recovered after it.
    pub lease: HumanDuration,
    /// How often due scheduled/retry tasks are moved to pending, abandoned
    /// leases recovered and expired completed tasks deleted.
    pub maintenance_interval: HumanDuration,
    /// Serve Prometheus `/metrics` and `/healthz` on this address, e.g.
    /// `"127.0.0.1:9464"` (off by default).
    pub metrics: Option<std::net::SocketAddr>,
    /// Run the scheduler of the config's `[[periodic]]` entries (default
    /// true; any number of workers may, each tick is enqueued once).
    pub scheduler: bool,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            concurrency: 10,
            strict_priority: false,
            shutdown_timeout: HumanDuration(Duration::from_secs(8)),
            lease: HumanDuration(Duration::from_secs(30)),
            maintenance_interval: HumanDuration(Duration::from_secs(1)),
            metrics: None,
            scheduler: true,
        }
    }
}

/// `[queues.<name>]`: one queue the worker consumes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    /// Weight (or rank with `strict_priority`); default 1.
    #[serde(default = "one")]
    pub priority: u32,
    /// At most this many tasks of the queue run at once on this worker.
    pub concurrency: Option<usize>,
    /// At most this many task starts per period across all workers of the
    /// cluster: `"100/s"`, `"6000/m"`, `"500/h"`, `"10/30s"`. Tasks held
    /// back stay pending (no retry, no failure).
    pub rate: Option<Rate>,
    /// Starts the rate allows at once after a quiet spell, above its steady
    /// pace (default 1: evenly spaced starts).
    pub burst: Option<u32>,
    /// At most this many tasks of the queue run at once across all workers
    /// of the cluster (a crashed worker's tasks count until their leases
    /// expire).
    pub max_running: Option<u64>,
    /// The task type of the task that aggregates a group (default: the type
    /// of the group's oldest task).
    pub group_task_type: Option<String>,
    /// A group is aggregated once no task joined it for this long (Asynq's
    /// `GroupGracePeriod`; default 1 minute, at least 1 s).
    pub group_grace: Option<HumanDuration>,
    /// A group is aggregated once its oldest task waited this long
    /// (`GroupMaxDelay`; default none).
    pub group_max_delay: Option<HumanDuration>,
    /// A group is aggregated once it holds this many tasks, and one
    /// aggregated task takes at most this many (`GroupMaxSize`; default
    /// none).
    pub group_max_size: Option<u64>,
    /// At most this many archived tasks are kept (the oldest go first);
    /// default 10,000, as Asynq.
    #[serde(default = "default_archive_max")]
    pub archive_max: u64,
    /// Archived tasks older than this are deleted; default 90 days, as
    /// Asynq.
    #[serde(default = "default_archive_max_age")]
    pub archive_max_age: HumanDuration,
}

fn one() -> u32 {
    1
}

/// Asynq's `maxArchiveSize`.
pub const DEFAULT_ARCHIVE_MAX: u64 = 10_000;

/// Asynq's `archivedExpirationInDays`, 90 days.
pub const DEFAULT_ARCHIVE_MAX_AGE: Duration = Duration::from_secs(90 * 24 * 3600);

fn default_archive_max() -> u64 {
    DEFAULT_ARCHIVE_MAX
}

fn default_archive_max_age() -> HumanDuration {
    HumanDuration(DEFAULT_ARCHIVE_MAX_AGE)
}
