//! Periodic tasks (`[[periodic]]`) on the cluster: several workers'
//! schedulers running one entry enqueue each tick once, through a SIGKILL
//! of one of them; after a full restart `catch_up = "last"` enqueues the
//! latest missed tick once and `"skip"` none; Asynq's scheduler keys,
//! `wasq cron` and the dashboard show the entries and their history; a bad
//! spec is refused with its file, line and key.
//!
//! The ticks go to a queue no worker consumes, so every tick's task stays
//! pending and the test reads them all.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::AsyncCommands as _;
use wasq::broker::QueueKeys;
use wasq_tests::unique_queue;

use crate::support::*;

/// The ticks (Unix seconds) of entry `name` pending in `queue`, in
/// enqueue order, from their task ids.
async fn ticks(queue: &str, name: &str) -> Vec<i64> {
    let client = cluster_client().await;
    let ids: Vec<String> = client
        .broker()
        .conn()
        .clone()
        .lrange(QueueKeys::new(queue).pending(), 0, -1)
        .await
        .unwrap();
    let prefix = format!("cron:{name}:");
    let mut ticks: Vec<i64> = ids
        .iter()
        .filter_map(|id| id.strip_prefix(&prefix)?.parse().ok())
        .collect();
    // LPUSH: the newest is first.
    ticks.reverse();
    ticks
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn entry(name: &str, spec: &str, queue: &str, catch_up: &str) -> String {
    format!(
        r#"
[[periodic]]
name = "{name}"
cron = "{spec}"
task_type = "reports:tick"
payload = {{ entry = "{name}" }}
queue = "{queue}"
catch_up = "{catch_up}"
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_schedulers_enqueue_every_tick_once_through_a_sigkill() {
    let work = unique_queue("cron-work");
    let ticks_q = unique_queue("cron-ticks");
    let config = config(
        &[(&work, 1, None)],
        &entry("every-second", "@every 1s", &ticks_q, "last"),
    );
    let mut workers: Vec<SpawnedWorker> = (0..3).map(|_| SpawnedWorker::start(&config)).collect();
    tokio::time::sleep(Duration::from_secs(5)).await;

    // Asynq's tools see three schedulers, each listing the entry.
    let client = cluster_client().await;
    let id = wasq::schedule::entry_id("every-second");
    let schedulers = client.broker().schedulers().await.unwrap();
    let listing = schedulers
        .iter()
        .filter(|(_, entries)| entries.iter().any(|e| e.id == id))
        .count();
    assert!(listing >= 3, "{schedulers:?}");

    workers[0].kill();
    let killed_at = now_secs() as i64;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (_, out, _) = wasq_tests::run_wasq(&[
        "cron",
        "ls",
        "--json",
        "--config",
        &config.path.display().to_string(),
    ]);
    // The dashboard's panel reads the same rows.
    let addr = crate::dashboard::free_addr();
    let dash = crate::dashboard::dash_with(&config, &addr, &["--read-only"]);
    let (status, body) = http(&addr, "GET", "/api/cron");
    drop(dash);
    for worker in &mut workers {
        worker.kill();
    }
    assert_eq!(status, 200, "{body}");
    let panel: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(panel[0]["name"], "every-second", "{panel}");
    assert!(panel[0]["schedulers"].as_u64().unwrap() >= 2, "{panel}");

    let ticks = ticks(&ticks_q, "every-second").await;
    let unique: BTreeSet<i64> = ticks.iter().copied().collect();
    assert_eq!(
        unique.len(),
        ticks.len(),
        "a tick enqueued twice: {ticks:?}"
    );
    assert!(ticks.len() >= 8, "too few ticks in 10 s: {ticks:?}");
    let (first, last) = (ticks[0], *ticks.last().unwrap());
    assert_eq!(
        ticks,
        (first..=last).collect::<Vec<_>>(),
        "a tick missed while workers lived"
    );
    assert!(
        last > killed_at + 3,
        "ticks went on after the SIGKILL: {ticks:?}"
    );

    // `wasq cron ls` and the history agree with the queue.
    let rows: serde_json::Value = serde_json::from_str(&out).unwrap();
    let row = &rows.as_array().unwrap()[0];
    assert_eq!(row["name"], "every-second");
    assert_eq!(row["spec"], "@every 1s");
    assert!(row["last_enqueued"].as_i64().unwrap() >= killed_at, "{row}");
    let history = client.broker().tick_history(&id, 1000).await.unwrap();
    let recorded: BTreeSet<i64> = history
        .iter()
        .filter_map(|e| e.task_id.rsplit(':').next()?.parse().ok())
        .collect();
    assert!(recorded.is_subset(&unique), "{recorded:?} vs {unique:?}");
    // A scheduler SIGKILLed between a tick's enqueue and its record may
    // leave one tick unrecorded.
    assert!(
        recorded.len() + 1 >= unique.len(),
        "{recorded:?} vs {unique:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_full_restart_catch_up_last_enqueues_one_missed_tick_and_skip_none() {
    let work = unique_queue("cron-work");
    let ticks_q = unique_queue("cron-catch");
    let period = 6;
    let mut extra = entry("catch-last", "@every 6s", &ticks_q, "last");
    extra.push_str(&entry("catch-skip", "@every 6s", &ticks_q, "skip"));
    let config = config(&[(&work, 1, None)], &extra);

    // Run until both entries have a tick, then stop every worker.
    let mut worker = SpawnedWorker::start(&config);
    let deadline = now_secs() + 20.0;
    while ticks(&ticks_q, "catch-last").await.is_empty()
        || ticks(&ticks_q, "catch-skip").await.is_empty()
    {
        assert!(now_secs() < deadline, "no first tick");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    worker.kill();
    let before_last = *ticks(&ticks_q, "catch-last").await.last().unwrap();
    let before_skip = *ticks(&ticks_q, "catch-skip").await.last().unwrap();

    // Down for at least two ticks; restart 4 s into a period, so the latest
    // tick is 4 s old: missed, not due.
    let at_least = before_last.max(before_skip) as f64 + 2.0 * period as f64;
    let mut restart = at_least.ceil() as i64;
    while restart.rem_euclid(period) != 4 {
        restart += 1;
    }
    tokio::time::sleep(Duration::from_secs_f64(
        (restart as f64 - now_secs()).max(0.0),
    ))
    .await;
    let mut worker = SpawnedWorker::start(&config);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    worker.kill();

    // The ticks that passed while no worker ran.
    let missed_last: Vec<i64> = (before_last + 1..=restart)
        .filter(|t| t % period == 0)
        .collect();
    let missed_skip: Vec<i64> = (before_skip + 1..=restart)
        .filter(|t| t % period == 0)
        .collect();
    assert!(missed_last.len() >= 2, "{missed_last:?}");
    let after: Vec<i64> = ticks(&ticks_q, "catch-last")
        .await
        .into_iter()
        .filter(|t| missed_last.contains(t))
        .collect();
    assert_eq!(
        after,
        [*missed_last.last().unwrap()],
        "catch_up = \"last\": the latest missed tick, once"
    );
    let skipped: Vec<i64> = ticks(&ticks_q, "catch-skip")
        .await
        .into_iter()
        .filter(|t| missed_skip.contains(t))
        .collect();
    assert!(
        skipped.is_empty(),
        "catch_up = \"skip\" enqueued {skipped:?}"
    );
}

#[test]
fn a_bad_cron_spec_is_refused_with_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wasq.toml");
    std::fs::write(
        &path,
        "[[periodic]]\nname = \"nightly\"\ncron = \"0 25 * * *\"\ntask_type = \"reports:make\"\n",
    )
    .unwrap();
    let (status, _, err) =
        wasq_tests::run_wasq(&["cron", "ls", "--config", &path.display().to_string()]);
    assert_ne!(status, 0);
    assert!(
        err.contains(&path.display().to_string())
            && err.contains("line 3")
            && err.contains("periodic[0].cron"),
        "{err}"
    );
}
