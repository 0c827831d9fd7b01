//! Periodic tasks: the `[[periodic]]` entries of a config, the task of each
//! tick, and the scheduler every worker runs.
//!
//! Any number of schedulers run the same entries and each tick is enqueued
//! once: a tick's task id is the entry's name and the tick's time
//! (`cron:<name>:<unix seconds>`), and the queue keeps the latest tick of
//! each entry it received (`asynq:{q}:cron:<name>`, set by the same script
//! that enqueues), so a second scheduler's enqueue of that tick, or of an
//! older one, is a no-op even after the first tick's task ran and was
//! deleted. A tick is due from its instant until [`DUE_FOR`] after it; one
//! that passed while no scheduler ran is a missed tick, which the entry's
//! `catch_up` decides on (`last`: the latest missed tick is enqueued once,
//! if the entry ever ran; `skip`: none).
//!
//! Each scheduler also registers its entries where Asynq's CLI and web UI
//! look (`asynq:schedulers`), and the scheduler that enqueued a tick records
//! it in the entry's history (`asynq:scheduler_history:<entry id>`, the
//! entry id a UUID v5 of its name, the same on every worker).

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::Notify;

use crate::broker::{Broker, Ticked};
use crate::config::{CatchUp, Config, PeriodicConfig};
use crate::proto::{SchedulerEntry, TaskMessage};
use crate::{Task, TaskOptions};

pub use crate::cron::Schedule;

/// How long after its instant a tick counts as due rather than missed.
pub const DUE_FOR: Duration = Duration::from_secs(2);

/// How often a scheduler renews its registration (Asynq's heartbeat); it
/// expires after twice this.
pub const HEARTBEAT: Duration = Duration::from_secs(10);

/// Asynq's timestamp for "never": Go's zero time.
const GO_ZERO_TIME: i64 = -62_135_596_800;

/// One periodic entry, parsed.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The entry as written.
    pub config: PeriodicConfig,
    /// When it fires.
    pub schedule: Schedule,
    /// Its id in Asynq's scheduler keys: a UUID v5 of its name.
    pub id: String,
}

impl Entry {
    /// Parses an entry (a config that loaded has valid ones).
    pub fn new(config: &PeriodicConfig) -> Result<Self, String> {
        let schedule = Schedule::parse(config.cron.get_ref(), config.timezone.as_deref())?;
        Ok(Self {
            id: entry_id(config.name.get_ref()),
            config: config.clone(),
            schedule,
        })
    }

    /// The entry's name.
    pub fn name(&self) -> &str {
        self.config.name.get_ref()
    }

    /// The id of tick `tick`'s task (Unix seconds).
    pub fn task_id(&self, tick: i64) -> String {
        format!("cron:{}:{tick}", self.name())
    }

    /// The task of tick `tick`.
    pub fn message(&self, tick: i64) -> TaskMessage {
        let task = Task::new(&self.config.task_type, self.config.payload_bytes());
        let mut options = TaskOptions::default()
            .queue(self.config.queue())
            .task_id(self.task_id(tick));
        if let Some(n) = self.config.max_retry {
            options = options.max_retry(n);
        }
        if let Some(timeout) = self.config.timeout() {
            options = options.timeout(timeout);
        }
        if let Some(retention) = self.config.retention {
            options = options.retention(retention.0);
        }
        crate::task::message(&task, &options)
    }

    /// The entry as Asynq's tools read it, with its next and previous
    /// ticks as of `now`.
    pub fn asynq_entry(&self, now: Timestamp) -> SchedulerEntry {
        let stamp = |t: Option<Timestamp>| {
            Some(crate::proto::Timestamp {
                seconds: t.map_or(GO_ZERO_TIME, |t| t.as_second()),
                nanos: 0,
            })
        };
        let mut options = vec![format!("Queue({:?})", self.config.queue())];
        if let Some(n) = self.config.max_retry {
            options.push(format!("MaxRetry({n})"));
        }
        if let Some(timeout) = self.config.timeout() {
            options.push(format!("Timeout({})", go_duration(timeout)));
        }
        if let Some(retention) = self.config.retention {
            options.push(format!("Retention({})", go_duration(retention.0)));
        }
        SchedulerEntry {
            id: self.id.clone(),
            spec: self.schedule.text().to_owned(),
            task_type: self.config.task_type.clone(),
            task_payload: self.config.payload_bytes(),
            enqueue_options: options,
            next_enqueue_time: stamp(self.schedule.next_after(now)),
            prev_enqueue_time: stamp(self.schedule.latest_at_or_before(now)),
        }
    }
}

/// The id of the entry named `name` in Asynq's scheduler keys.
pub fn entry_id(name: &str) -> String {
    uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_URL,
        format!("wasq:periodic:{name}").as_bytes(),
    )
    .to_string()
}

/// The entries of `config`.
pub fn entries(config: &Config) -> Result<Vec<Entry>, String> {
    config.periodic.iter().map(Entry::new).collect()
}

/// A duration as Go prints it (`30s`, `1m30s`, `1h0m0s`), as Asynq's
/// option strings carry it.
fn go_duration(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, s / 60 % 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m{s}s"),
        (h, m, s) => format!("{h}h{m}m{s}s"),
    }
}

/// Runs `entries` until `stop` is notified: enqueues each tick when due
/// (and a missed one as its entry's `catch_up` says), and keeps scheduler
/// `scheduler_id` registered for Asynq's tools, unregistering it at the end.
pub async fn run(broker: Broker, entries: Vec<Entry>, scheduler_id: String, stop: Arc<Notify>) {
    if entries.is_empty() {
        return;
    }
    tracing::info!(
        scheduler_id = %scheduler_id,
        entries = ?entries.iter().map(Entry::name).collect::<Vec<_>>(),
        "scheduler started"
    );
    let stopped = stop.notified();
    tokio::pin!(stopped);
    let mut done: Vec<Option<i64>> = vec![None; entries.len()];
    let mut registered_at: Option<std::time::Instant> = None;
    loop {
        let now = Timestamp::now();
        for (entry, done) in entries.iter().zip(done.iter_mut()) {
            tick(&broker, entry, now, done).await;
        }
        if registered_at.is_none_or(|at| at.elapsed() >= HEARTBEAT) {
            let listed: Vec<SchedulerEntry> = entries.iter().map(|e| e.asynq_entry(now)).collect();
            match broker
                .register_scheduler(&scheduler_id, &listed, HEARTBEAT * 2)
                .await
            {
                Ok(()) => registered_at = Some(std::time::Instant::now()),
                Err(e) => tracing::warn!("registering the scheduler failed: {e}"),
            }
        }
        // Wake at the next tick of any entry, or within a second to retry
        // a tick that failed and to renew the registration.
        let now = Timestamp::now();
        let next = entries
            .iter()
            .filter_map(|e| e.schedule.next_after(now))
            .min()
            .map_or(Duration::from_secs(1), |t| {
                Duration::try_from(t.duration_since(now)).unwrap_or_default()
            });
        let retry = done.iter().any(Option::is_none);
        let wait = if retry {
            next.min(Duration::from_secs(1))
        } else {
            next.min(HEARTBEAT)
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = &mut stopped => break,
        }
    }
    if let Err(e) = broker.unregister_scheduler(&scheduler_id).await {
        tracing::debug!("unregistering the scheduler failed: {e}");
    }
    tracing::info!("scheduler stopped");
}

/// Enqueues `entry`'s latest tick at or before `now` unless this scheduler
/// already settled it (`done`).
async fn tick(broker: &Broker, entry: &Entry, now: Timestamp, done: &mut Option<i64>) {
    let Some(latest) = entry.schedule.latest_at_or_before(now) else {
        return;
    };
    let tick = latest.as_second();
    if done.is_some_and(|d| d >= tick) {
        return;
    }
    let late = Duration::try_from(now.duration_since(latest)).unwrap_or_default();
    let due = late <= DUE_FOR;
    let msg = entry.message(tick);
    let catch_up_last = entry.config.catch_up == CatchUp::Last;
    match broker
        .enqueue_tick(&msg, entry.name(), tick, due, catch_up_last)
        .await
    {
        Ok(outcome) => {
            *done = Some(tick);
            if outcome == Ticked::Enqueued {
                tracing::info!(
                    entry = entry.name(),
                    task_id = %msg.id,
                    task_type = %msg.r#type,
                    queue = %msg.queue,
                    missed = !due,
                    "periodic task enqueued"
                );
                if let Err(e) = broker.record_tick(&entry.id, &msg.id, tick).await {
                    tracing::warn!(entry = entry.name(), "recording the tick failed: {e}");
                }
            } else {
                tracing::debug!(entry = entry.name(), tick, ?outcome, "tick settled");
            }
        }
        Err(e) => tracing::warn!(
            entry = entry.name(),
            tick,
            "enqueueing a periodic task failed (retrying): {e}"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(go_duration(Duration::from_secs(30)), "30s");
        assert_eq!(go_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(go_duration(Duration::from_secs(3600)), "1h0m0s");
    }

    #[test]
    fn ticks_have_stable_ids_and_asynq_entries() {
        let config = Config::parse(
            r#"
[[periodic]]
name = "report"
cron = "@every 30s"
task_type = "reports:make"
payload = { kind = "daily" }
queue = "reports"
max_retry = 3
timeout = "90s"
"#,
            None,
        )
        .unwrap();
        let entry = &entries(&config).unwrap()[0];
        assert_eq!(entry.task_id(1_800_000_000), "cron:report:1800000000");
        assert_eq!(entry.id, entry_id("report"), "the same on every worker");
        let msg = entry.message(1_800_000_000);
        assert_eq!(
            (msg.queue.as_str(), msg.retry, msg.timeout),
            ("reports", 3, 90)
        );
        assert_eq!(msg.payload, br#"{"kind":"daily"}"#);
        let listed = entry.asynq_entry(Timestamp::from_second(1_800_000_010).unwrap());
        assert_eq!(
            listed.enqueue_options,
            ["Queue(\"reports\")", "MaxRetry(3)", "Timeout(1m30s)"]
        );
        assert_eq!(listed.next_enqueue_time.unwrap().seconds, 1_800_000_030);
        assert_eq!(listed.prev_enqueue_time.unwrap().seconds, 1_800_000_000);
    }

    #[test]
    fn bad_entries_name_the_line_and_key() {
        for (entry, key, why) in [
            (
                "name = \"a\"\ncron = \"61 * * * *\"",
                "periodic[0].cron",
                "not a cron spec",
            ),
            (
                "name = \"a\"\ncron = \"@every 1s\"\ntimezone = \"Nowhere/City\"",
                "periodic[0].cron",
                "time zone",
            ),
            (
                "name = \"a b\"\ncron = \"@every 1s\"",
                "periodic[0].name",
                "letters",
            ),
            (
                "name = \"a\"\ncron = \"@every 1s\"\ncatch_up = \"all\"",
                "periodic[0].catch_up",
                "unknown variant",
            ),
        ] {
            let text = format!("[[periodic]]\n{entry}\ntask_type = \"t\"\n");
            let error = Config::parse(&text, None).unwrap_err().to_string();
            assert!(
                error.contains(key) && error.contains(why) && error.contains("line"),
                "{entry}: {error}"
            );
        }
    }
}
