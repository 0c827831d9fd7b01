//! `[[periodic]]`: tasks enqueued on a schedule by every worker's
//! scheduler, each tick exactly once however many workers run it.
//!
//! ```toml
//! [[periodic]]
//! name = "nightly-report"     # unique; part of every tick's task id
//! cron = "0 3 * * *"          # 5 fields, 6 with seconds first, @daily..., or "@every 30s"
//! timezone = "Europe/Berlin"  # the cron fields' zone (default UTC)
//! task_type = "reports:nightly"
//! payload = { kind = "daily" }  # a table (sent as JSON) or a string (sent as is)
//! queue = "reports"           # default "default"
//! max_retry = 3
//! timeout = "10m"
//! retention = "1h"
//! catch_up = "last"           # after downtime: "last" enqueues the latest missed tick once, "skip" none
//! ```

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::HumanDuration;

/// What a scheduler does about ticks that passed while no worker ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CatchUp {
    /// Enqueue the most recent missed tick, once.
    #[default]
    Last,
    /// Enqueue none; the next tick is the next one due.
    Skip,
}

impl CatchUp {
    /// The word used in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            CatchUp::Last => "last",
            CatchUp::Skip => "skip",
        }
    }
}

/// One `[[periodic]]` entry, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeriodicConfig {
    /// The entry's name: letters, digits, `-`, `_`, `.` and `:`.
    pub name: Spanned<String>,
    /// The schedule (see [`crate::schedule::Schedule`]).
    pub cron: Spanned<String>,
    /// The IANA time zone of the cron fields (default UTC).
    #[serde(default)]
    pub timezone: Option<String>,
    /// The task type enqueued.
    pub task_type: String,
    /// The payload: a string is sent as is, anything else as JSON.
    #[serde(default)]
    pub payload: Option<toml::Value>,
    /// The queue (default `default`).
    #[serde(default)]
    pub queue: Option<String>,
    /// Retries of each tick's task (default 25).
    #[serde(default)]
    pub max_retry: Option<u32>,
    /// Timeout of each tick's task.
    #[serde(default)]
    pub timeout: Option<HumanDuration>,
    /// Keep each tick's task as completed this long.
    #[serde(default)]
    pub retention: Option<HumanDuration>,
    /// Missed ticks after downtime (default `last`).
    #[serde(default)]
    pub catch_up: CatchUp,
}

impl PeriodicConfig {
    /// The payload's bytes.
    pub fn payload_bytes(&self) -> Vec<u8> {
        match &self.payload {
            None => Vec::new(),
            Some(toml::Value::String(text)) => text.clone().into_bytes(),
            Some(other) => serde_json::to_vec(other).unwrap_or_default(),
        }
    }

    /// The queue its ticks go to.
    pub fn queue(&self) -> &str {
        self.queue.as_deref().unwrap_or(crate::task::DEFAULT_QUEUE)
    }

    /// Its timeout, if set.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout.map(|t| t.0)
    }
}

/// Whether `name` may name an entry.
pub(crate) fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 100 {
        return Err("an entry's name is 1 to 100 characters".into());
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':')))
    {
        return Err(format!(
            "{name:?} has {bad:?}: a name is letters, digits, '-', '_', '.' and ':'"
        ));
    }
    Ok(())
}
