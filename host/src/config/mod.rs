//! `wasq.toml`: the host's configuration.
//!
//! One file configures the sandbox runtime and every task type. Each
//! `[tasks."<type>"]` table names the component that handles the type, its
//! limits (falling back to `[defaults]`) and what it is granted. Nothing is
//! granted unless listed.
//!
//! ```toml
//! [runtime]
//! cache_dir = ".wasq-cache"   # compiled components; only used if no one else can write it
//! max_sandboxes = 128         # sandboxes alive at once (the instance pool)
//!
//! [defaults]                  # limits of every task type unless it overrides them
//! fuel = 10_000_000_000       # instruction budget per task, or "unlimited"
//! memory = "128MiB"           # linear memory per task
//! timeout = "60s"             # wall clock per task (a task's own deadline may cut it shorter)
//! max_handles = 256           # open files, directories, listings and sockets held at once
//! max_write = "64MiB"         # bytes written per task into its rw dirs
//! max_files = 1000            # files, directories and links created per task
//!
//! [tasks."images:resize"]
//! module = "examples-wasm/target/wasm32-wasip2/release/image_resize.wasm"
//! memory = "512MiB"
//! dirs = [{ host = "./images", guest = "/images", mode = "rw", symlinks = false }]
//! env = ["THUMB_QUALITY"]     # host env vars passed through by name
//! clock = true                # real clocks; otherwise frozen at the task's start
//! enqueue = ["webhooks"]      # queues its handler may enqueue follow-ups into
//! ```
//!
//! Relative paths are resolved against the directory of the config file.
//! Unknown keys and bad values are errors that name the file, line and key
//! ([`ConfigError`]).

mod error;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

pub use crate::units::{ByteSize, Fuel, HumanDuration, SocketGrant, Transport, parse_socket_grant};
pub use error::ConfigError;
pub(crate) use error::toml_key;

/// The whole `wasq.toml`, as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Engine-wide settings.
    #[serde(default)]
    pub runtime: RuntimeConfig,
    /// Limits every task type gets unless it sets its own.
    #[serde(default)]
    pub defaults: LimitsConfig,
    /// Task types by name, e.g. `notifications:email`.
    #[serde(default)]
    pub tasks: BTreeMap<String, TaskTypeConfig>,
    /// Where Redis is (needed by the worker and the client commands).
    pub redis: Option<crate::redis_config::RedisConfig>,
    /// The worker's settings.
    #[serde(default)]
    pub worker: WorkerConfig,
    /// Queues the worker consumes, with their priority and concurrency.
    #[serde(default)]
    pub queues: BTreeMap<String, QueueConfig>,
    /// Where the file was read from (not a key of the file).
    #[serde(skip)]
    pub source: Option<PathBuf>,
    /// The file's text, kept to point errors found after parsing at a line.
    #[serde(skip)]
    text: String,
}

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
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            cache_dir: None,
            max_sandboxes: 128,
            epoch_tick: HumanDuration(Duration::from_millis(5)),
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

/// When a failed task is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RetryDelay {
    /// Asynq's default: `retried^4 + 15 + rand(0..30) * (retried + 1)` seconds.
    #[default]
    Asynq,
    /// A fixed delay.
    Fixed(Duration),
}

impl<'de> Deserialize<'de> for RetryDelay {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        if text == "asynq" {
            return Ok(RetryDelay::Asynq);
        }
        humantime::parse_duration(&text)
            .map(RetryDelay::Fixed)
            .map_err(|e| {
                serde::de::Error::custom(format!(
                    "retry_delay must be \"asynq\" or a duration like \"10s\", not {text:?} ({e})"
                ))
            })
    }
}

impl RetryDelay {
    /// The delay before retry number `retried + 1`.
    pub fn delay(&self, retried: u32) -> Duration {
        match self {
            RetryDelay::Fixed(d) => *d,
            RetryDelay::Asynq => {
                let n = u64::from(retried);
                let jitter = rand::random_range(0..30u64) * (n + 1);
                Duration::from_secs(
                    n.saturating_pow(4)
                        .saturating_add(15)
                        .saturating_add(jitter),
                )
            }
        }
    }
}

/// Limits of a sandbox; every field is optional where it appears in a task
/// type and falls back to `[defaults]`, then to the built-in default.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Instruction budget per task (default 10 billion), or `"unlimited"`.
    pub fuel: Option<Fuel>,
    /// Linear memory per task (default 128 MiB).
    pub memory: Option<ByteSize>,
    /// Wall-clock time per task (default 60 s).
    pub timeout: Option<HumanDuration>,
    /// Largest payload accepted (default 1 MiB).
    pub max_payload: Option<ByteSize>,
    /// Largest result accepted (default 1 MiB).
    pub max_result: Option<ByteSize>,
    /// Bytes of logs and stdout/stderr kept per task (default 64 KiB).
    pub max_log: Option<ByteSize>,
    /// Open files, directories, directory listings and sockets a task may
    /// hold at once (default 256).
    #[serde(default, deserialize_with = "handle_count")]
    pub max_handles: Option<u32>,
    /// Bytes a task may write into its `rw` directories (default 64 MiB).
    pub max_write: Option<ByteSize>,
    /// Files, directories and links a task may create (default 1000).
    pub max_files: Option<u64>,
}

/// The most `max_handles` may be: Linux's default per-process ceiling.
pub const MAX_HANDLES_CEILING: u32 = 1 << 20;

/// `max_handles`: at least 1, at most [`MAX_HANDLES_CEILING`].
fn handle_count<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<u32>, D::Error> {
    let n = i64::deserialize(deserializer)?;
    match u32::try_from(n) {
        Ok(n) if (1..=MAX_HANDLES_CEILING).contains(&n) => Ok(Some(n)),
        _ => Err(serde::de::Error::custom(format!(
            "max_handles must be between 1 and {MAX_HANDLES_CEILING}, not {n}"
        ))),
    }
}

/// `[tasks."<type>"]`: one task type.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskTypeConfig {
    /// The handler component (`.wasm`), relative to the config file.
    pub module: Spanned<PathBuf>,
    /// Instruction budget, overriding `[defaults]`.
    pub fuel: Option<Fuel>,
    /// Linear memory, overriding `[defaults]`.
    pub memory: Option<ByteSize>,
    /// Wall-clock time, overriding `[defaults]`.
    pub timeout: Option<HumanDuration>,
    /// Largest payload, overriding `[defaults]`.
    pub max_payload: Option<ByteSize>,
    /// Largest result, overriding `[defaults]`.
    pub max_result: Option<ByteSize>,
    /// Log bytes kept, overriding `[defaults]`.
    pub max_log: Option<ByteSize>,
    /// Handles held at once, overriding `[defaults]`.
    #[serde(default, deserialize_with = "handle_count")]
    pub max_handles: Option<u32>,
    /// Bytes written into `rw` directories, overriding `[defaults]`.
    pub max_write: Option<ByteSize>,
    /// Files, directories and links created, overriding `[defaults]`.
    pub max_files: Option<u64>,
    /// Directories preopened for the guest.
    #[serde(default)]
    pub dirs: Vec<DirGrant>,
    /// Host environment variables passed through, by name.
    #[serde(default)]
    pub env: Vec<String>,
    /// Real wall and monotonic clocks; without it both are frozen at the
    /// task's start.
    #[serde(default)]
    pub clock: bool,
    /// Socket addresses (`ip:port`, port `*` for any) the guest may connect to.
    #[serde(default)]
    pub network: Vec<String>,
    /// Queues the handler may enqueue follow-up tasks into.
    #[serde(default)]
    pub enqueue: Vec<String>,
    /// When failed tasks of this type are retried (default `"asynq"`).
    #[serde(default)]
    pub retry_delay: RetryDelay,
}

/// A directory granted to a task type.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "DirGrantToml")]
pub struct DirGrant {
    /// The directory on the host, relative to the config file.
    pub host: PathBuf,
    /// Where the guest sees it, e.g. `/images`.
    pub guest: String,
    /// `ro` (default) or `rw`.
    pub mode: DirMode,
    /// Whether the guest may create symbolic links in it (`rw` only; off by
    /// default). Even then a link must point down from its own directory:
    /// absolute targets and `..` are refused, so no link leads out of the
    /// directory, wherever it is moved later.
    pub symlinks: bool,
}

/// A `dirs` entry as written, checked into a [`DirGrant`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DirGrantToml {
    host: PathBuf,
    guest: String,
    #[serde(default)]
    mode: DirMode,
    #[serde(default)]
    symlinks: bool,
}

impl TryFrom<DirGrantToml> for DirGrant {
    type Error = String;

    fn try_from(dir: DirGrantToml) -> Result<Self, String> {
        if dir.symlinks && dir.mode != DirMode::ReadWrite {
            return Err(format!(
                "symlinks = true needs mode = \"rw\" (a read-only grant creates nothing), in the grant of {:?}",
                dir.guest
            ));
        }
        Ok(DirGrant {
            host: dir.host,
            guest: dir.guest,
            mode: dir.mode,
            symlinks: dir.symlinks,
        })
    }
}

/// Access to a granted directory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum DirMode {
    /// Read only.
    #[default]
    #[serde(rename = "ro")]
    ReadOnly,
    /// Read and write.
    #[serde(rename = "rw")]
    ReadWrite,
}

/// Limits after defaults are applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Instruction budget; `None` is unlimited.
    pub fuel: Option<u64>,
    /// Linear memory in bytes.
    pub memory: u64,
    /// Wall-clock time.
    pub timeout: Duration,
    /// Largest payload in bytes.
    pub max_payload: u64,
    /// Largest result in bytes.
    pub max_result: u64,
    /// Log bytes kept per task.
    pub max_log: u64,
    /// Handles (open files, directories, listings, sockets) held at once.
    pub max_handles: u32,
    /// Bytes written into `rw` directories per task.
    pub max_write: u64,
    /// Files, directories and links created per task.
    pub max_files: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            fuel: Some(10_000_000_000),
            memory: 128 << 20,
            timeout: Duration::from_secs(60),
            max_payload: 1 << 20,
            max_result: 1 << 20,
            max_log: 64 << 10,
            max_handles: 256,
            max_write: 64 << 20,
            max_files: 1000,
        }
    }
}

impl TaskTypeConfig {
    /// The limits this task type sets itself (serde cannot flatten them
    /// into the table and still reject unknown keys).
    pub fn own_limits(&self) -> LimitsConfig {
        LimitsConfig {
            fuel: self.fuel,
            memory: self.memory,
            timeout: self.timeout,
            max_payload: self.max_payload,
            max_result: self.max_result,
            max_log: self.max_log,
            max_handles: self.max_handles,
            max_write: self.max_write,
            max_files: self.max_files,
        }
    }
}

impl LimitsConfig {
    /// These limits over `base`: what is set here wins.
    pub fn over(&self, base: &Limits) -> Limits {
        Limits {
            fuel: self.fuel.map_or(base.fuel, |f| f.0),
            memory: self.memory.map_or(base.memory, |b| b.0),
            timeout: self.timeout.map_or(base.timeout, |d| d.0),
            max_payload: self.max_payload.map_or(base.max_payload, |b| b.0),
            max_result: self.max_result.map_or(base.max_result, |b| b.0),
            max_log: self.max_log.map_or(base.max_log, |b| b.0),
            max_handles: self.max_handles.unwrap_or(base.max_handles),
            max_write: self.max_write.map_or(base.max_write, |b| b.0),
            max_files: self.max_files.unwrap_or(base.max_files),
        }
    }
}

impl Config {
    /// Reads and validates a config file.
    ///
    /// ```no_run
    /// let config = wasq::config::Config::load("wasq.toml")?;
    /// for (name, task) in &config.tasks {
    ///     println!("{name}: {}", config.resolve(task.module.get_ref()).display());
    /// }
    /// # Ok::<(), wasq::config::ConfigError>(())
    /// ```
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, Some(path))
    }

    /// Parses config text; `source` names the file in errors and anchors
    /// relative paths (the current directory when `None`).
    ///
    /// ```
    /// let config = wasq::config::Config::parse(r#"
    ///     [tasks."webhooks:sync"]
    ///     module = "sync.wasm"
    ///     fuel = "unlimited"
    /// "#, None)?;
    /// assert_eq!(config.limits_of("webhooks:sync").unwrap().fuel, None);
    ///
    /// let err = wasq::config::Config::parse("[tasks.x]\nmodule = 'x.wasm'\nfule = 1\n", None)
    ///     .unwrap_err();
    /// assert!(err.to_string().contains("line 3"), "{err}");
    /// assert!(err.to_string().contains("tasks.x.fule"), "{err}");
    /// # Ok::<(), wasq::config::ConfigError>(())
    /// ```
    pub fn parse(text: &str, source: Option<&Path>) -> Result<Self, ConfigError> {
        let located = |span: Option<std::ops::Range<usize>>, key: String, message: String| {
            let (line, column) = span.map_or((0, 0), |s| error::line_col(text, s.start));
            ConfigError::Invalid {
                path: source.map(Path::to_owned),
                line,
                column,
                key,
                message,
            }
        };
        let deserializer = toml::de::Deserializer::parse(text)
            .map_err(|e| located(e.span(), String::new(), e.message().to_owned()))?;
        let mut config: Config = serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let key = error::toml_path(e.path());
            let inner = e.into_inner();
            located(inner.span(), key, inner.message().to_owned())
        })?;
        config.source = source.map(Path::to_owned);
        config.text = text.to_owned();
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        for (name, task) in &self.tasks {
            let key = |field: &str| format!("tasks.{}.{field}", toml_key(name));
            if name.is_empty() {
                return Err(self.invalid_at(
                    task.module.span(),
                    key("module"),
                    "task type name is empty",
                ));
            }
            for (i, dir) in task.dirs.iter().enumerate() {
                if !dir.guest.starts_with('/') {
                    return Err(self.invalid_near(
                        &key("dirs"),
                        format!("{}[{i}].guest", key("dirs")),
                        format!(
                            "guest path {:?} must be absolute, like \"/data\"",
                            dir.guest
                        ),
                    ));
                }
            }
            for (i, addr) in task.network.iter().enumerate() {
                if let Err(message) = parse_socket_grant(addr) {
                    return Err(self.invalid_near(
                        &key("network"),
                        format!("{}[{i}]", key("network")),
                        message,
                    ));
                }
            }
        }
        if self.worker.concurrency == 0 {
            return Err(self.invalid_near(
                "concurrency",
                "worker.concurrency".into(),
                "must be at least 1".into(),
            ));
        }
        for (name, queue) in &self.queues {
            if let Err(e) = crate::names::check_queue_name(name) {
                return Err(self.invalid_near(
                    name,
                    format!("queues.{}", toml_key(name)),
                    e.to_string(),
                ));
            }
            if queue.concurrency == Some(0) {
                return Err(self.invalid_near(
                    "concurrency",
                    format!("queues.{}.concurrency", toml_key(name)),
                    "must be at least 1".into(),
                ));
            }
        }
        if self.runtime.max_sandboxes == 0 {
            return Err(self.invalid_near(
                "max_sandboxes",
                "runtime.max_sandboxes".into(),
                "must be at least 1".into(),
            ));
        }
        Ok(())
    }

    /// An error pointing at a span of the file.
    pub fn invalid_at(
        &self,
        span: std::ops::Range<usize>,
        key: String,
        message: impl Into<String>,
    ) -> ConfigError {
        let (line, column) = error::line_col(&self.text, span.start);
        ConfigError::Invalid {
            path: self.source.clone(),
            line,
            column,
            key,
            message: message.into(),
        }
    }

    /// An error pointing at the first line that mentions `needle`'s last
    /// dotted part (used for checks made after parsing).
    fn invalid_near(&self, needle: &str, key: String, message: String) -> ConfigError {
        let last = needle.rsplit('.').next().unwrap_or(needle);
        let line = self
            .text
            .lines()
            .position(|l| l.trim_start().starts_with(last))
            .map_or(0, |i| i + 1);
        ConfigError::Invalid {
            path: self.source.clone(),
            line,
            column: 1,
            key,
            message,
        }
    }

    /// The directory relative paths are resolved against.
    pub fn base_dir(&self) -> PathBuf {
        self.source
            .as_deref()
            .and_then(Path::parent)
            .map(Path::to_owned)
            .unwrap_or_default()
    }

    /// Resolves a path of the config file against its directory.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_owned()
        } else {
            self.base_dir().join(path)
        }
    }

    /// The limits of a task type after `[defaults]` and built-in defaults.
    pub fn limits_of(&self, task_type: &str) -> Option<Limits> {
        let base = self.defaults.over(&Limits::default());
        self.tasks
            .get(task_type)
            .map(|t| t.own_limits().over(&base))
    }

    /// The compiled-component cache directory: `[runtime] cache_dir`, else
    /// `$XDG_CACHE_HOME/wasq`, else `$HOME/.cache/wasq` (environment
    /// variables that are empty or relative are ignored). `None` when there
    /// is none: the cache is then off, never in a shared temporary
    /// directory, since cached files are loaded as native code.
    pub fn cache_dir(&self) -> Option<PathBuf> {
        if let Some(dir) = &self.runtime.cache_dir {
            return Some(self.resolve(dir));
        }
        let absolute = |var: &str| {
            std::env::var_os(var)
                .map(PathBuf::from)
                .filter(|path| path.is_absolute())
        };
        if let Some(xdg) = absolute("XDG_CACHE_HOME") {
            return Some(xdg.join("wasq"));
        }
        absolute("HOME").map(|home| home.join(".cache").join("wasq"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_retry_delay_is_asynqs_formula() {
        for retried in 0..6u32 {
            let n = u64::from(retried);
            let least = n.pow(4) + 15;
            let most = least + 29 * (n + 1);
            let seen: Vec<u64> = (0..200)
                .map(|_| RetryDelay::Asynq.delay(retried).as_secs())
                .collect();
            assert!(
                seen.iter().all(|s| (least..=most).contains(s)),
                "retry {retried}: {seen:?} outside {least}..={most}"
            );
            // The jitter is random, steps of retried + 1 seconds.
            assert!(seen.iter().all(|s| (s - least) % (n + 1) == 0));
            assert!(seen.iter().any(|s| *s != seen[0]), "no jitter at {retried}");
        }
        let fixed = RetryDelay::Fixed(Duration::from_secs(7));
        assert_eq!(fixed.delay(12), Duration::from_secs(7));
    }
}
