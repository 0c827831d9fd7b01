//! Reloading a running worker's config (`wasq worker --watch`, SIGHUP):
//! what can change between tasks changes, all or nothing.
//!
//! | applies live | refused (the running config stays) |
//! | --- | --- |
//! | task types: modules, limits, grants, HTTP, retry delays; new and removed types | `[redis]` (where Redis is), `[runtime]` (the engine and its pool), `[worker]` |
//! | each queue's `priority`, `concurrency`, `rate`, `burst`, `max_running` | queues added or removed; a queue's other settings; `[[periodic]]` |
//!
//! Tasks already running finish on the module and limits they started
//! with; tasks claimed after the reload run on the new ones.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::{QueueState, Shared};
use crate::broker::QueueLimits;
use crate::config::{Config, QueueConfig};
use crate::runtime::{Reconfigured, RuntimeError};

/// Why a reload was not applied (nothing of it was).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReloadError {
    /// A setting that only a restart can change.
    #[error("not applied: {0}; restart the worker for it (the running config stays)")]
    NeedsRestart(String),
    /// A task type could not be loaded.
    #[error("not applied: {0} (the running config stays)")]
    Runtime(#[from] RuntimeError),
}

/// Applies new configs to a running worker. Cheap to clone.
#[derive(Clone)]
pub struct Reloader {
    shared: Arc<Shared>,
}

impl super::Worker {
    /// A handle that reloads this worker's config while it runs.
    pub fn reloader(&self) -> Reloader {
        Reloader {
            shared: self.shared.clone(),
        }
    }
}

impl Reloader {
    /// Applies `config` if every difference from the running config can
    /// change live; otherwise changes nothing and says what needs a
    /// restart. Loads changed modules (CPU-heavy): call it from a blocking
    /// context or accept the wait.
    pub async fn reload(&self, config: Config) -> Result<Reconfigured, ReloadError> {
        let shared = &self.shared;
        let old = shared
            .config
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        needs_restart(&old, &config).map_or(Ok(()), |what| Err(ReloadError::NeedsRestart(what)))?;
        let runtime = shared.runtime.clone();
        let new = config.clone();
        let changes = tokio::task::spawn_blocking(move || runtime.reconfigure(&new))
            .await
            .map_err(|e| {
                ReloadError::NeedsRestart(format!("loading the task types panicked: {e}"))
            })??;
        super::modules::forget_refusals(shared);
        shared.metrics.add_task_types(&changes.added);
        shared.usage.add_task_types(&changes.added);
        *shared
            .retry_delays
            .write()
            .unwrap_or_else(|e| e.into_inner()) = config
            .tasks
            .iter()
            .map(|(name, t)| (name.clone(), t.retry_delay))
            .collect();
        for queue in &shared.queues {
            if let Some(q) = config.queues.get(queue.keys.name()) {
                apply_queue(shared, queue, q).await;
            }
        }
        *shared.config.lock().unwrap_or_else(|e| e.into_inner()) = config;
        shared.work.notify_one();
        Ok(changes)
    }
}

/// What differs between `old` and `new` that a running worker cannot
/// change, if anything.
fn needs_restart(old: &Config, new: &Config) -> Option<String> {
    if old.redis != new.redis {
        return Some("the [redis] section changed (where Redis is, or how to log in)".into());
    }
    let same =
        |a: &dyn std::fmt::Debug, b: &dyn std::fmt::Debug| format!("{a:?}") == format!("{b:?}");
    if !same(&old.runtime, &new.runtime) {
        return Some("the [runtime] section changed (the engine and its sandbox pool)".into());
    }
    if !same(&old.worker, &new.worker) {
        return Some("the [worker] section changed".into());
    }
    let names = |c: &Config| c.queues.keys().cloned().collect::<Vec<_>>();
    if names(old) != names(new) {
        return Some(format!(
            "the queues changed ({} → {})",
            names(old).join(", "),
            names(new).join(", ")
        ));
    }
    for (name, q) in &old.queues {
        let n = &new.queues[name];
        if !same(&fixed_part(q), &fixed_part(n)) {
            return Some(format!(
                "queue {name:?} changed in a setting other than priority, concurrency, rate, \
                 burst and max_running"
            ));
        }
    }
    if !same(&old.periodic, &new.periodic) {
        return Some("the [[periodic]] entries changed".into());
    }
    None
}

/// A queue's settings without those a reload applies.
fn fixed_part(q: &QueueConfig) -> QueueConfig {
    QueueConfig {
        priority: 0,
        concurrency: None,
        rate: None,
        burst: None,
        max_running: None,
        ..q.clone()
    }
}

/// Applies a queue's new weight, concurrency and limits.
async fn apply_queue(shared: &Shared, queue: &Arc<QueueState>, q: &QueueConfig) {
    queue.priority.store(q.priority.max(1), Ordering::Relaxed);
    let cap = q
        .concurrency
        .unwrap_or(shared.settings.concurrency)
        .min(shared.settings.concurrency);
    let old = queue.cap.swap(cap, Ordering::Relaxed);
    if cap > old {
        queue.slots.add_permits(cap - old);
    } else if cap < old {
        // Taken out as running tasks give their slots back.
        let slots = queue.slots.clone();
        let fewer = (old - cap) as u32;
        tokio::spawn(async move {
            if let Ok(permits) = slots.acquire_many(fewer).await {
                permits.forget();
            }
        });
    }
    let limits = QueueLimits {
        rate: q.rate,
        burst: q.burst.unwrap_or(1),
        max_running: q.max_running,
    };
    if limits != queue.limits() {
        *queue.limits.write().unwrap_or_else(|e| e.into_inner()) = limits;
        if let Err(e) = shared.broker.publish_limits(&queue.keys, &limits).await {
            tracing::warn!(queue = %queue.keys.name(), "publishing the new limits failed: {e}");
        }
    }
}
