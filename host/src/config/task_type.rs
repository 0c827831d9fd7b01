//! `[defaults]` and `[tasks.<type>]`: a task type's module, its limits
//! (fuel, memory, time, sizes, handles, disk) and grants (directories, env,
//! clocks, network, queues), and its retry delay.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{ByteSize, Fuel, HumanDuration};

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
    /// Largest HTTP response body a task may read (default 10 MiB).
    pub max_http_body: Option<ByteSize>,
    /// Largest HTTP request body a task may send (default 10 MiB).
    pub max_http_request_body: Option<ByteSize>,
    /// HTTP requests a task may have in flight at once (default 16).
    pub max_http_requests: Option<u32>,
    /// Outbound HTTP allowed to every task type that sets no `http` of its
    /// own (see [`crate::http_grant`]).
    pub http: Option<Vec<String>>,
    /// A PEM file of extra CA certificates to trust for outbound HTTPS,
    /// beside the system's roots.
    pub http_ca: Option<PathBuf>,
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

impl TaskTypeConfig {
    /// Whether the module comes from the module registry in Redis
    /// (`module = "registry"`) rather than a file.
    ///
    /// ```
    /// let config: wasq::config::Config = toml::from_str(
    ///     "[tasks.email]\nmodule = \"registry\"\n",
    /// ).unwrap();
    /// assert!(config.tasks["email"].from_registry());
    /// ```
    pub fn from_registry(&self) -> bool {
        self.module.get_ref().as_os_str() == "registry"
    }
}

/// `[tasks."<type>"]`: one task type.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskTypeConfig {
    /// The handler component (`.wasm`), relative to the config file, or
    /// `"registry"`: the version `wasq module push` stored in Redis.
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
    /// Largest HTTP response body, overriding `[defaults]`.
    pub max_http_body: Option<ByteSize>,
    /// Largest HTTP request body, overriding `[defaults]`.
    pub max_http_request_body: Option<ByteSize>,
    /// HTTP requests in flight at once, overriding `[defaults]`.
    pub max_http_requests: Option<u32>,
    /// Outbound HTTP the handler may make: `scheme://host[:port]` entries
    /// (see [`crate::http_grant`]); replaces `[defaults]`'s list.
    pub http: Option<Vec<String>>,
    /// Extra CA certificates (PEM) for outbound HTTPS, overriding
    /// `[defaults]`.
    pub http_ca: Option<PathBuf>,
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
    /// Largest HTTP response body a task reads.
    pub max_http_body: u64,
    /// Largest HTTP request body a task sends.
    pub max_http_request_body: u64,
    /// HTTP requests in flight at once per task.
    pub max_http_requests: u32,
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
            max_http_body: 10 << 20,
            max_http_request_body: 10 << 20,
            max_http_requests: 16,
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
            max_http_body: self.max_http_body,
            max_http_request_body: self.max_http_request_body,
            max_http_requests: self.max_http_requests,
            http: self.http.clone(),
            http_ca: self.http_ca.clone(),
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
            max_http_body: self.max_http_body.map_or(base.max_http_body, |b| b.0),
            max_http_request_body: self
                .max_http_request_body
                .map_or(base.max_http_request_body, |b| b.0),
            max_http_requests: self.max_http_requests.unwrap_or(base.max_http_requests),
        }
    }
}
