//! Registry task types on a worker (`module = "registry"`): learn of a new
//! version (or a canary, run for a share of the type's tasks) at once (pub/sub on [`keys::CHANNEL`]) or within [`POLL`] (a
//! missed message), fetch it, verify its hash, compile it and try an
//! instance off the task path, then swap it in between tasks. A version
//! that fails any step is refused: the worker keeps what it runs, logs why,
//! counts it in `wasq_module_swaps{result="refused"}` and reports it, with
//! what it runs, in the registry (`wasq module ls`).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::Shared;
use crate::broker::now_secs;
use crate::registry::{Refusal, Registry, TypeStatus, WorkerReport, keys};

/// How often the current versions are read even without a message.
pub const POLL: Duration = Duration::from_secs(2);
/// How long a refused version is left alone before it is tried again (it
/// may be fixed in place: a missing chunk uploaded again). Each refusal in
/// a row doubles it, up to [`RETRY_REFUSED_MAX`]; a reload starts over.
const RETRY_REFUSED: Duration = Duration::from_secs(10);
/// The longest wait before a refused version is tried again.
const RETRY_REFUSED_MAX: Duration = Duration::from_secs(640);
/// How often the worker's report is written even when nothing changed.
const REPORT_EVERY: Duration = Duration::from_secs(5);

/// The registry side of a worker.
pub(crate) struct Modules {
    pub registry: Registry,
    /// What each type runs and refused, as last reported.
    status: Mutex<BTreeMap<String, TypeStatus>>,
    /// When each refused version was last tried, and how many times in a
    /// row it was refused.
    refused_at: Mutex<HashMap<(String, String), (Instant, u32)>>,
    /// A message said a version changed.
    changed: Notify,
}

impl Modules {
    pub(crate) fn new(registry: Registry) -> Self {
        Self {
            registry,
            status: Mutex::default(),
            refused_at: Mutex::default(),
            changed: Notify::new(),
        }
    }
}

/// Brings every registry type to its current version once (at start, before
/// any task is claimed).
pub(crate) async fn sync_once(shared: &Shared) {
    if shared.runtime.registry_types().is_empty() {
        return;
    }
    if let Err(e) = sync(shared).await {
        tracing::warn!("reading the module registry failed: {e}");
    }
    report(shared).await;
}

/// Follows the registry until the worker stops.
pub(crate) async fn run(shared: Arc<Shared>) {
    let listener = tokio::spawn(listen(shared.clone()));
    let mut reported = Instant::now();
    loop {
        tokio::select! {
            _ = shared.modules.changed.notified() => {}
            _ = tokio::time::sleep(POLL) => {}
        }
        // A reload may add or remove registry types.
        if shared.runtime.registry_types().is_empty() {
            continue;
        }
        let changed = match sync(&shared).await {
            Ok(changed) => changed,
            Err(e) => {
                tracing::debug!("reading the module registry failed: {e}");
                false
            }
        };
        if changed || reported.elapsed() >= REPORT_EVERY {
            report(&shared).await;
            reported = Instant::now();
        }
        if shared.is_stopping() {
            break;
        }
    }
    listener.abort();
}

/// Wakes the loop on every announcement; resubscribes when the connection
/// drops (the poll covers the gap).
async fn listen(shared: Arc<Shared>) {
    use futures::StreamExt as _;
    loop {
        let mut pubsub = match shared.broker.pubsub().await {
            Ok(p) => p,
            Err(e) => {
                tracing::debug!("module registry subscription failed: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if let Err(e) = pubsub.subscribe(keys::CHANNEL).await {
            tracing::debug!("module registry subscription failed: {e}");
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        let mut messages = pubsub.on_message();
        while messages.next().await.is_some() {
            shared.modules.changed.notify_one();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Reads the current versions and canaries, and takes every one this
/// worker does not run yet. True when anything changed.
async fn sync(shared: &Shared) -> Result<bool, crate::registry::RegistryError> {
    let modules = &shared.modules;
    let types = shared.runtime.registry_types();
    let current = modules.registry.current_of_all(&types).await?;
    let canaries = modules.registry.canaries_of(&types).await?;
    let mut changed = false;
    modules
        .status
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|t, _| types.contains(t));
    for ((task_type, target), canary) in types.iter().zip(current).zip(canaries) {
        let canary_hash = canary.as_ref().map(|c| c.hash.clone());
        changed |= follow_current(shared, task_type, target, canary_hash.as_deref()).await;
        changed |= follow_canary(shared, task_type, canary).await;
    }
    Ok(changed)
}

/// Brings `task_type` to `target` (its current version in the registry).
/// A refusal of the type's canary (`canary`) is left for the canary to
/// clear.
async fn follow_current(
    shared: &Shared,
    task_type: &str,
    target: Option<String>,
    canary: Option<&str>,
) -> bool {
    let modules = &shared.modules;
    let running = shared.runtime.module_hash_of(task_type).unwrap_or_default();
    let Some(target) = target.filter(|t| *t != running) else {
        let mut status = modules.status.lock().unwrap_or_else(|e| e.into_inner());
        let entry = status.entry(task_type.to_owned()).or_default();
        let stale_refusal = entry
            .refused
            .as_ref()
            .is_some_and(|r| Some(r.hash.as_str()) != canary);
        if entry.running != running || stale_refusal {
            entry.running = running;
            entry.refused = None;
            return true;
        }
        return false;
    };
    if refused_recently(shared, task_type, &target) {
        return false;
    }
    let started = Instant::now();
    match prepare(shared, task_type, &target).await {
        Ok(version) => {
            let old = match shared.runtime.install(version) {
                Ok(old) => old,
                Err(stale) => {
                    // Prepared again under the new config at the next look.
                    tracing::debug!(task_type = %task_type, module = %target, "{stale}");
                    return true;
                }
            };
            tracing::info!(
                task_type = %task_type,
                module = %target,
                replaced = %old,
                took_ms = started.elapsed().as_millis() as u64,
                "new module version installed; tasks from now on run it"
            );
            shared.metrics.module_installed(task_type, &target, &old);
            taken(shared, task_type, &target);
            let mut status = modules.status.lock().unwrap_or_else(|e| e.into_inner());
            let entry = status.entry(task_type.to_owned()).or_default();
            entry.running = target;
            entry.refused = None;
        }
        Err(reason) => refuse(shared, task_type, &target, &running, reason),
    }
    true
}

/// Runs `canary` (if any) for its share of `task_type`'s tasks, or ends the
/// canary this worker runs.
async fn follow_canary(
    shared: &Shared,
    task_type: &str,
    canary: Option<crate::registry::Canary>,
) -> bool {
    let modules = &shared.modules;
    let running = shared.runtime.canary_of(task_type);
    let set_status = |hash: Option<String>| {
        let mut status = modules.status.lock().unwrap_or_else(|e| e.into_inner());
        let entry = status.entry(task_type.to_owned()).or_default();
        let changed = entry.canary != hash;
        entry.canary = hash;
        changed
    };
    let Some(canary) = canary else {
        if let Some(ended) = shared.runtime.end_canary(task_type) {
            tracing::info!(task_type = %task_type, module = %ended, "canary ended");
        }
        return set_status(None);
    };
    match running {
        Some((hash, percent)) if hash == canary.hash => {
            if (percent - canary.percent).abs() > f64::EPSILON {
                shared.runtime.set_canary_share(task_type, canary.percent);
            }
            set_status(Some(hash))
        }
        _ => {
            if refused_recently(shared, task_type, &canary.hash) {
                return false;
            }
            match prepare(shared, task_type, &canary.hash).await {
                Ok(version) => {
                    if let Err(stale) = shared.runtime.install_canary(version, canary.percent) {
                        tracing::debug!(task_type = %task_type, module = %canary.hash, "{stale}");
                        return true;
                    }
                    let mut status = modules.status.lock().unwrap_or_else(|e| e.into_inner());
                    if let Some(entry) = status.get_mut(task_type)
                        && entry
                            .refused
                            .as_ref()
                            .is_some_and(|r| r.hash == canary.hash)
                    {
                        entry.refused = None;
                    }
                    drop(status);
                    tracing::info!(
                        task_type = %task_type,
                        module = %canary.hash,
                        percent = canary.percent,
                        "canary installed"
                    );
                    taken(shared, task_type, &canary.hash);
                    set_status(Some(canary.hash));
                }
                Err(reason) => {
                    let current = shared.runtime.module_hash_of(task_type).unwrap_or_default();
                    refuse(shared, task_type, &canary.hash, &current, reason);
                }
            }
            true
        }
    }
}

fn refused_recently(shared: &Shared, task_type: &str, hash: &str) -> bool {
    shared
        .modules
        .refused_at
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&(task_type.to_owned(), hash.to_owned()))
        .is_some_and(|(at, times)| at.elapsed() < retry_after(*times))
}

/// How long a version refused `times` times in a row is left alone.
fn retry_after(times: u32) -> Duration {
    RETRY_REFUSED
        .saturating_mul(1 << times.saturating_sub(1).min(16))
        .min(RETRY_REFUSED_MAX)
}

/// Forgets every refusal, so each version is tried again at once (after a
/// reload: new limits may admit it).
pub(crate) fn forget_refusals(shared: &Shared) {
    shared
        .modules
        .refused_at
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clear();
}

fn taken(shared: &Shared, task_type: &str, hash: &str) {
    shared
        .modules
        .refused_at
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&(task_type.to_owned(), hash.to_owned()));
}

/// Records that this worker does not take `hash` for `task_type`, and why.
fn refuse(shared: &Shared, task_type: &str, hash: &str, running: &str, reason: String) {
    tracing::warn!(
        task_type = %task_type,
        module = %hash,
        running = %running,
        "not taking the new module version: {reason}; the old one keeps running"
    );
    shared.metrics.module_refused(task_type);
    shared
        .modules
        .refused_at
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry((task_type.to_owned(), hash.to_owned()))
        .and_modify(|(at, times)| {
            *at = Instant::now();
            *times = times.saturating_add(1);
        })
        .or_insert((Instant::now(), 1));
    let mut status = shared
        .modules
        .status
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let entry = status.entry(task_type.to_owned()).or_default();
    entry.running = running.to_owned();
    entry.refused = Some(Refusal {
        hash: hash.to_owned(),
        reason,
    });
}

/// Fetches, verifies, compiles and tries version `hash` of `task_type`.
async fn prepare(
    shared: &Shared,
    task_type: &str,
    hash: &str,
) -> Result<crate::runtime::Version, String> {
    let bytes = shared
        .modules
        .registry
        .fetch_unverified(hash)
        .await
        .map_err(|e| e.to_string())?;
    let runtime = shared.runtime.clone();
    let (name, expected) = (task_type.to_owned(), hash.to_owned());
    let version = in_background(move || {
        crate::registry::verify(&expected, &bytes).map_err(|e| e.to_string())?;
        runtime.prepare(&name, bytes, &expected)
    })
    .await?;
    let runtime = shared.runtime.clone();
    shared
        .sandbox
        .spawn(async move {
            let tried = runtime.try_instance(&version).await;
            tried.map(|()| version)
        })
        .await
        .map_err(|e| format!("trying an instance panicked: {e}"))?
}

/// Runs `work` (hashing and compiling a new version) on a thread of its own
/// at the lowest CPU priority, so running tasks, claims and acks keep the
/// cores while it works.
async fn in_background<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("wasq-module-prep".into())
        .spawn(move || {
            // SAFETY: setpriority(2) on this thread only (a Linux thread id
            // is a process id for PRIO_PROCESS); it fails harmlessly
            // elsewhere.
            unsafe {
                let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
                libc::setpriority(libc::PRIO_PROCESS, tid, 19);
            }
            let _ = tx.send(work());
        })
        .map_err(|e| format!("cannot start a thread to compile it: {e}"))?;
    rx.await.map_err(|_| "compiling it panicked".to_owned())?
}

/// Writes what this worker runs into the registry.
async fn report(shared: &Shared) {
    let report = WorkerReport {
        server_id: shared.server_id.clone(),
        process: format!("{}:{}", super::maintenance::host(), std::process::id()),
        at: now_secs(),
        types: shared
            .modules
            .status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone(),
    };
    if let Err(e) = shared.modules.registry.report(&report).await {
        tracing::debug!("reporting module versions failed: {e}");
    }
}

/// Removes this worker's report (it stops).
pub(crate) async fn forget(shared: &Shared) {
    if shared.runtime.registry_types().is_empty() {
        return;
    }
    let _ = shared
        .modules
        .registry
        .forget_worker(&shared.server_id)
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_refused_again_and_again_is_tried_less_and_less_often() {
        assert_eq!(retry_after(1), RETRY_REFUSED);
        assert_eq!(retry_after(2), RETRY_REFUSED * 2);
        assert_eq!(retry_after(4), RETRY_REFUSED * 8);
        assert_eq!(retry_after(7), RETRY_REFUSED_MAX);
        assert_eq!(retry_after(u32::MAX), RETRY_REFUSED_MAX);
    }
}
