//! Cluster-wide queue limits (`rate`, `burst`, `max_running`) with several
//! `wasq worker` processes on the cluster: the rate holds in every 1 s
//! window and paces the whole run, `max_running` caps the active list
//! across workers and a SIGKILLed worker's slots come back when its leases
//! expire, tasks held back are neither retried nor failed, and
//! `wasq queue inspect` and `/metrics` show each limit and its use.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use redis::AsyncCommands as _;
use wasq::broker::QueueKeys;
use wasq::{Task, TaskOptions, TaskState};
use wasq_tests::{TestConfig, run_wasq, unique_queue};

use crate::support::*;

/// Enqueues `n` tasks of the `bad` guest with payload `json` into `queue`.
async fn fill(queue: &str, n: usize, json: &str, retention: Option<Duration>) -> Vec<String> {
    let client = cluster_client().await;
    let mut opts = TaskOptions::default().queue(queue).max_retry(3);
    if let Some(r) = retention {
        opts = opts.retention(r);
    }
    let tasks = (0..n).map(|_| (payload(json), opts.clone())).collect();
    client
        .enqueue_batch(tasks)
        .await
        .into_iter()
        .map(|r| r.unwrap().id)
        .collect()
}

/// The most of `times` (ms, sorted) that fall in any window of `window` ms.
fn busiest_window(times: &[i64], window: i64) -> usize {
    let mut most = 0;
    let mut start = 0;
    for end in 0..times.len() {
        while times[end] - times[start] >= window {
            start += 1;
        }
        most = most.max(end - start + 1);
    }
    most
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_holds_in_every_second_across_three_workers() {
    let q = unique_queue("rate");
    // A burst of 5 lets a worker that claims a little late (a busy
    // machine) catch up, so the whole run keeps the rate's pace.
    let config = config(
        &[],
        &format!("\n[queues.{q:?}]\nrate = \"50/s\"\nburst = 5\n"),
    );
    let ids = fill(
        &q,
        1000,
        r#"{"do": "started"}"#,
        Some(Duration::from_secs(3600)),
    )
    .await;
    let workers: Vec<SpawnedWorker> = (0..3).map(|_| SpawnedWorker::start(&config)).collect();

    let client = cluster_client().await;
    let broker = client.broker().clone();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let stats = broker.stats(&q).await.unwrap();
        if stats.completed == 1000 {
            break;
        }
        assert!(Instant::now() < deadline, "the run stalled: {stats:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    drop(workers);

    // Nothing lost, retried or failed.
    assert_nothing_left_or_failed(&broker, &q).await;
    let keys = QueueKeys::new(&q);
    let mut pipe = redis::pipe();
    for id in &ids {
        pipe.hget(keys.task(id), "claimed_at");
    }
    let claimed: Vec<Option<i64>> = pipe.query_async(&mut broker.conn()).await.unwrap();
    let mut claimed: Vec<i64> = claimed
        .into_iter()
        .map(|c| c.expect("every task has the limiter's start time"))
        .collect();
    claimed.sort_unstable();
    let completed = broker
        .list_tasks(&q, TaskState::Completed, 0, 1000)
        .await
        .unwrap();
    assert_eq!(completed.len(), 1000);
    assert!(completed.iter().all(|t| t.retried == 0));
    // When each handler ran, by its own clock (frozen at its start).
    let mut ran: Vec<i64> = completed
        .iter()
        .map(|t| t.result.as_deref().unwrap().parse::<i64>().unwrap() / 1_000_000)
        .collect();
    ran.sort_unstable();

    // At most 50 starts in any 1 s window, plus the burst of 5, by the
    // limiter's clock.
    let busiest = busiest_window(&claimed, 1000);
    assert!(busiest <= 55, "{busiest} starts in one second");
    // The whole run is paced by the rate: 995 starts after the burst, 20 ms
    // apart, within 10 % of 20 s.
    let span = (claimed[999] - claimed[0]) as f64 / 1000.0;
    assert!((18.0..=22.0).contains(&span), "the run took {span:.2}s");
    let span = (ran[999] - ran[0]) as f64 / 1000.0;
    assert!(
        (18.0..=22.0).contains(&span),
        "the handlers ran over {span:.2}s"
    );

    // Inspect shows the limit and the claims it deferred.
    let (code, out, err) = run_wasq(&[
        "queue",
        "inspect",
        &q,
        "--json",
        "--config",
        &config.path.display().to_string(),
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["limits"]["rate"], "50/s", "{out}");
    assert_eq!(v["limits"]["burst"], 5);
    assert!(v["limits"]["deferred_rate"].as_u64().unwrap() > 0, "{out}");
}

/// Samples the length of `queue`'s active list every few ms until stopped,
/// keeping the largest seen.
fn sample_active(queue: &str, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<u64> {
    let key = QueueKeys::new(queue).active();
    tokio::spawn(async move {
        let mut conn = cluster_client().await.broker().conn();
        let most = AtomicU64::new(0);
        while !stop.load(Ordering::Relaxed) {
            let n: u64 = conn.llen(&key).await.unwrap();
            most.fetch_max(n, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
        most.load(Ordering::Relaxed)
    })
}

/// Reads `/metrics` at `addr`: the value of the first line starting with
/// `prefix`.
fn metric(addr: &str, prefix: &str) -> Option<f64> {
    let (_, body) = http(addr, "GET", "/metrics");
    body.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_running_caps_four_workers_and_a_killed_workers_slots_come_back() {
    let q = unique_queue("running");
    let lease = Duration::from_secs(4);
    let metrics: Vec<String> = (0..4)
        .map(|_| format!("127.0.0.1:{}", wasq_tests::redis::RedisServer::free_port()))
        .collect();
    let configs: Vec<TestConfig> = metrics
        .iter()
        .map(|addr| {
            config(
                &[],
                &format!(
                    "\n[worker]\nconcurrency = 20\nlease = \"4s\"\nmetrics = \"{addr}\"\n\
                     [queues.{q:?}]\nmax_running = 5\n"
                ),
            )
        })
        .collect();
    let ids = fill(&q, 400, r#"{"do": "nap", "ms": 100}"#, None).await;
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = sample_active(&q, stop.clone());
    let mut workers: Vec<SpawnedWorker> = configs.iter().map(SpawnedWorker::start).collect();

    // Wait until the queue runs at its cap, then SIGKILL a worker holding
    // some of the slots.
    let client = cluster_client().await;
    let broker = client.broker().clone();
    let keys = QueueKeys::new(&q);
    let mut conn = broker.conn();
    let owners = async |conn: &mut wasq::broker::Conn| -> Vec<(String, String)> {
        let active: Vec<String> = conn.lrange(keys.active(), 0, -1).await.unwrap();
        let mut out = Vec::new();
        for id in active {
            let owner: Option<String> = conn.hget(keys.task(&id), "lease_owner").await.unwrap();
            out.push((id, owner.unwrap_or_default()));
        }
        out
    };
    let (victim, victim_id) = loop {
        let active = owners(&mut conn).await;
        let servers = broker.servers().await.unwrap();
        let found = workers.iter().enumerate().find_map(|(i, w)| {
            let server = servers.iter().find(|s| s.pid == w.pid())?;
            active
                .iter()
                .any(|(_, owner)| *owner == server.server_id)
                .then(|| (i, server.server_id.clone()))
        });
        if active.len() == 5
            && let Some(found) = found
        {
            break found;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    workers[victim].kill();
    let killed_at = Instant::now();

    // The dead worker's tasks hold their slots until their leases expire;
    // then they are recovered and the queue runs 5 again on the others.
    loop {
        let active = owners(&mut conn).await;
        if active.len() == 5 && !active.iter().any(|(_, owner)| *owner == victim_id) {
            break;
        }
        assert!(
            killed_at.elapsed() <= lease + Duration::from_secs(5),
            "the killed worker's slots did not come back: {active:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Everything finishes, each task done once.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let stats = broker.stats(&q).await.unwrap();
        if stats.pending + stats.active + stats.retry + stats.scheduled == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the run stalled: {stats:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let most = sampler.await.unwrap();
    assert!(most <= 5, "{most} tasks active at once");
    let stats = broker.stats(&q).await.unwrap();
    assert_eq!(stats.archived, 0, "{stats:?}");
    // Only the killed worker's tasks failed (their leases expired: at most
    // the 5 it could hold), and every task ended well.
    assert!((1..=5).contains(&stats.failed_total), "{stats:?}");
    assert_eq!(
        stats.processed_total,
        ids.len() as u64 + stats.failed_total,
        "{stats:?}"
    );

    // /metrics of a live worker: the cap and the claims it cut short.
    let live: Vec<&String> = metrics
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != victim)
        .map(|(_, a)| a)
        .collect();
    let cap = metric(live[0], &format!("wasq_queue_max_running{{queue=\"{q}\"}}"));
    assert_eq!(cap, Some(5.0));
    let held: f64 = live
        .iter()
        .filter_map(|addr| {
            metric(
                addr,
                &format!("wasq_queue_limit_held_total{{queue=\"{q}\",limit=\"max_running\"}}"),
            )
        })
        .sum();
    assert!(held > 0.0, "no claim was cut short by max_running");
    let (code, out, err) = run_wasq(&[
        "queue",
        "inspect",
        &q,
        "--config",
        &configs[0].path.display().to_string(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("of max_running 5 across all workers"), "{out}");
}

#[test]
fn bad_limits_are_refused_with_file_line_and_key() {
    for (body, key, says) in [
        ("rate = \"fast\"", "rate", "is not a rate"),
        ("rate = \"0/s\"", "rate", "at least 1"),
        ("burst = 5", "burst", "a burst needs a rate"),
        ("rate = \"10/s\"\nburst = 0", "burst", "at least 1"),
        ("max_running = 0", "max_running", "at least 1"),
    ] {
        let config = TestConfig::new(&format!(
            "[worker]\nconcurrency = 4\n\n[queues.mail]\npriority = 1\n{body}\n"
        ));
        let (code, _, err) = run_wasq(&["check", "--config", &config.path.display().to_string()]);
        assert_ne!(code, 0, "{body} was accepted");
        let text = std::fs::read_to_string(&config.path).unwrap();
        let line = 1 + text.lines().position(|l| l.starts_with(key)).unwrap();
        assert!(
            err.contains(&config.path.display().to_string())
                && err.contains(&format!("line {line}"))
                && err.contains(&format!("queues.mail.{key}"))
                && err.contains(says),
            "{body}: {err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_handler_runs_again_later_without_using_a_retry() {
    let (q, _config, mut worker, client) = one_queue("limited-by-api", "").await;
    // No retries at all: a retry would archive it, a rate limit must not.
    let info = client
        .enqueue(
            payload(r#"{"do": "rate-limited", "ms": 2000}"#),
            TaskOptions::default().queue(&q).max_retry(0),
        )
        .await
        .unwrap();
    let first = worker.next(1, Duration::from_secs(10)).await.remove(0);
    let first_at = Instant::now();
    assert_eq!(first.disposition, wasq::worker::Disposition::Requeued);
    let stored = client.broker().task(&q, &info.id).await.unwrap().unwrap();
    assert_eq!((stored.state.as_str(), stored.retried), ("retry", 0));
    assert!(
        stored
            .error
            .as_deref()
            .is_some_and(|e| e.contains("rate limited") && e.contains("the API said 429")),
        "{stored:?}"
    );
    // It runs again once the 2 s are up (the retry set is forwarded each
    // maintenance interval, and times are whole seconds), still with no
    // retry used and no failure counted.
    let second = worker.next(1, Duration::from_secs(10)).await.remove(0);
    let waited = first_at.elapsed();
    assert_eq!(second.id, info.id);
    assert_eq!(second.disposition, wasq::worker::Disposition::Requeued);
    assert!(
        waited >= Duration::from_millis(1000) && waited <= Duration::from_secs(5),
        "ran again after {waited:?}"
    );
    let stored = client.broker().task(&q, &info.id).await.unwrap().unwrap();
    assert_eq!(stored.retried, 0);
    let stats = client.broker().stats(&q).await.unwrap();
    assert_eq!((stats.failed_total, stats.archived), (0, 0), "{stats:?}");
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_built_against_wasq_task_0_1_0_still_runs_in_the_worker() {
    let q = unique_queue("v0-1");
    let config = config(
        &[(&q, 1, None)],
        &format!("\n[tasks.old]\nmodule = \"{{guests}}/handler_v0_1.wasm\"\nenqueue = [{q:?}]\n"),
    );
    let (code, out, err) = run_wasq(&["check", "--config", &config.path.display().to_string()]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("handler_v0_1.wasm  (wasq:task@0.1.0)"),
        "{out}"
    );
    assert!(out.contains("misbehave.wasm  (wasq:task@0.2.0)"), "{out}");

    let mut worker = RunningWorker::start(&config).await;
    let client = cluster_client().await;
    let opts = TaskOptions::default().queue(&q).max_retry(5);
    let echo = client
        .enqueue(Task::new("old", b"hello".to_vec()), opts.clone())
        .await
        .unwrap();
    let retry = client
        .enqueue(Task::new("old", b"retry".to_vec()), opts.clone())
        .await
        .unwrap();
    let parent = client
        .enqueue(Task::new("old", b"enqueue".to_vec()), opts.clone())
        .await
        .unwrap();
    let mut events = worker.next(4, Duration::from_secs(20)).await;
    events.sort_by_key(|e| e.id.clone());
    let by_id = |id: &str| events.iter().find(|e| e.id == id).unwrap();
    assert_eq!(by_id(&echo.id).disposition, wasq::worker::Disposition::Done);
    let retried = by_id(&retry.id);
    assert_eq!(retried.disposition, wasq::worker::Disposition::Retry);
    assert!(
        retried
            .error
            .as_deref()
            .is_some_and(|e| e.contains("retry in 3s") && e.contains("asked by a 0.1.0 guest")),
        "{retried:?}"
    );
    assert_eq!(
        by_id(&parent.id).disposition,
        wasq::worker::Disposition::Done
    );
    // The follow-up the 0.1.0 guest enqueued ran too (the fourth event).
    assert!(
        events
            .iter()
            .any(|e| e.task_type == "noop" && e.disposition == wasq::worker::Disposition::Done),
        "{events:#?}"
    );
    worker.stop().await;
}

#[test]
fn a_handler_of_an_unknown_wasq_task_version_is_refused_naming_both() {
    // The 0.1.0 guest with the version of every wasq:task import rewritten
    // to 0.9.0 in place: the same length, so the component stays valid.
    let bytes = std::fs::read(wasq_tests::guest("handler-v0-1")).unwrap();
    let mut patched = bytes.clone();
    let mut replaced = 0;
    let prefix = b"wasq:task/";
    for i in 0..patched.len().saturating_sub(prefix.len()) {
        if &patched[i..i + prefix.len()] != prefix {
            continue;
        }
        let tail = &patched[i..(i + 40).min(patched.len())];
        if let Some(at) = tail.windows(6).position(|w| w == b"@0.1.0") {
            let start = i + at + 1;
            patched[start..start + 5].copy_from_slice(b"0.9.0");
            replaced += 1;
        }
    }
    assert!(replaced > 0);
    let dir = tempfile::tempdir().unwrap();
    let module = dir.path().join("future.wasm");
    std::fs::write(&module, patched).unwrap();
    let config = TestConfig::new(&format!(
        "[tasks.future]\nmodule = \"{}\"\n",
        module.display()
    ));
    let (code, _, err) = run_wasq(&["check", "--config", &config.path.display().to_string()]);
    assert_ne!(code, 0);
    assert!(
        err.contains("built against wasq:task@0.9.0") && err.contains("wasq:task@0.2.0 and @0.1.0"),
        "{err}"
    );
}
