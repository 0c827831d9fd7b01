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
mod periodic;
mod task_type;
mod worker;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use crate::units::{ByteSize, Fuel, HumanDuration, SocketGrant, Transport, parse_socket_grant};
pub use error::ConfigError;
pub(crate) use error::toml_key;
pub use periodic::{CatchUp, PeriodicConfig};
pub use task_type::{
    DirGrant, DirMode, Limits, LimitsConfig, MAX_HANDLES_CEILING, RetryDelay, TaskTypeConfig,
};
pub use worker::{
    DEFAULT_ARCHIVE_MAX, DEFAULT_ARCHIVE_MAX_AGE, QueueConfig, RuntimeConfig, WorkerConfig,
};

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
    /// Tasks enqueued on a schedule (`[[periodic]]`).
    #[serde(default)]
    pub periodic: Vec<PeriodicConfig>,
    /// Where the file was read from (not a key of the file).
    #[serde(skip)]
    pub source: Option<PathBuf>,
    /// The file's text, kept to point errors found after parsing at a line.
    #[serde(skip)]
    text: String,
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
            if let Some(entries) = &task.http {
                self.check_http(entries, &key("http"))?;
            }
            if task.max_http_requests == Some(0) {
                return Err(self.invalid_near(
                    "max_http_requests",
                    key("max_http_requests"),
                    "must be at least 1".into(),
                ));
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
        if let Some(entries) = &self.defaults.http {
            self.check_http(entries, "defaults.http")?;
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
            let table = format!("queues.{}", toml_key(name));
            if queue.burst == Some(0) {
                return Err(self.invalid_in_table(&table, "burst", "must be at least 1".into()));
            }
            if queue.burst.is_some() && queue.rate.is_none() {
                return Err(self.invalid_in_table(
                    &table,
                    "burst",
                    "a burst needs a rate: add e.g. rate = \"100/s\"".into(),
                ));
            }
            if queue
                .group_grace
                .is_some_and(|g| g.0 < std::time::Duration::from_secs(1))
            {
                return Err(self.invalid_in_table(
                    &table,
                    "group_grace",
                    "must be at least 1s (Asynq's shortest grace period)".into(),
                ));
            }
            if queue.group_max_size == Some(0) {
                return Err(self.invalid_in_table(
                    &table,
                    "group_max_size",
                    "must be at least 1 (leave it out for no limit)".into(),
                ));
            }
            if let Some(task_type) = &queue.group_task_type
                && let Err(e) = crate::names::check_name("task type", task_type)
            {
                return Err(self.invalid_in_table(&table, "group_task_type", e.to_string()));
            }
            if queue.max_running == Some(0) {
                return Err(self.invalid_in_table(
                    &table,
                    "max_running",
                    "must be at least 1 (pause the queue to stop it)".into(),
                ));
            }
        }
        self.check_periodic()?;
        if self.runtime.max_sandboxes == 0 {
            return Err(self.invalid_near(
                "max_sandboxes",
                "runtime.max_sandboxes".into(),
                "must be at least 1".into(),
            ));
        }
        Ok(())
    }

    fn check_periodic(&self) -> Result<(), ConfigError> {
        let mut seen = std::collections::BTreeSet::new();
        for (i, entry) in self.periodic.iter().enumerate() {
            let key = |field: &str| format!("periodic[{i}].{field}");
            let name = entry.name.get_ref();
            if let Err(message) = periodic::check_name(name) {
                return Err(self.invalid_at(entry.name.span(), key("name"), message));
            }
            if !seen.insert(name.clone()) {
                return Err(self.invalid_at(
                    entry.name.span(),
                    key("name"),
                    format!("another [[periodic]] entry is named {name:?}"),
                ));
            }
            if let Err(message) =
                crate::cron::Schedule::parse(entry.cron.get_ref(), entry.timezone.as_deref())
            {
                return Err(self.invalid_at(entry.cron.span(), key("cron"), message));
            }
            if entry.task_type.is_empty() {
                return Err(self.invalid_at(
                    entry.name.span(),
                    key("task_type"),
                    "the task type is empty",
                ));
            }
            if let Err(e) = crate::names::check_queue_name(entry.queue()) {
                return Err(self.invalid_at(entry.name.span(), key("queue"), e.to_string()));
            }
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
    /// An error at `field` of the table `[table]` (the table's first line
    /// that sets it, else the table's header, else unknown).
    fn invalid_in_table(&self, table: &str, field: &str, message: String) -> ConfigError {
        let header = format!("[{table}]");
        let lines: Vec<&str> = self.text.lines().collect();
        let start = lines
            .iter()
            .position(|l| l.trim_start().replace(' ', "").starts_with(&header));
        let line = start.map_or(0, |start| {
            lines[start + 1..]
                .iter()
                .take_while(|l| !l.trim_start().starts_with('['))
                .position(|l| {
                    l.trim_start()
                        .strip_prefix(field)
                        .is_some_and(|rest| rest.trim_start().starts_with('='))
                })
                .map_or(start + 1, |i| start + 2 + i)
        });
        ConfigError::Invalid {
            path: self.source.clone(),
            line,
            column: 1,
            key: format!("{table}.{field}"),
            message,
        }
    }

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

    /// The outbound HTTP allow-list of a task type (its own `http`, else
    /// `[defaults]`'s; empty: no HTTP) and the extra CA file, resolved
    /// against the config's directory. The entries were checked at load.
    pub fn http_of(
        &self,
        task_type: &str,
    ) -> Option<(Vec<crate::http_grant::HttpGrant>, Option<PathBuf>)> {
        let task = self.tasks.get(task_type)?;
        let entries = task.http.as_ref().or(self.defaults.http.as_ref());
        let grants = entries
            .into_iter()
            .flatten()
            .filter_map(|entry| entry.parse().ok())
            .collect();
        let ca = task
            .http_ca
            .as_ref()
            .or(self.defaults.http_ca.as_ref())
            .map(|path| self.resolve(path));
        Some((grants, ca))
    }

    fn check_http(&self, entries: &[String], key: &str) -> Result<(), ConfigError> {
        for (i, entry) in entries.iter().enumerate() {
            if let Err(message) = entry.parse::<crate::http_grant::HttpGrant>() {
                // The line that holds the entry itself (arrays may span lines).
                let quoted = format!("{entry:?}");
                return Err(match self.text.find(&quoted) {
                    Some(at) => {
                        self.invalid_at(at..at + quoted.len(), format!("{key}[{i}]"), message)
                    }
                    None => {
                        let near = key.rsplit('.').next().unwrap_or(key);
                        self.invalid_near(near, format!("{key}[{i}]"), message)
                    }
                });
            }
        }
        Ok(())
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
    use std::time::Duration;

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
