//! The inspection CLI against the real cluster: each command is run as
//! `wasq ...` and the state change it promises is checked in Redis.

use std::time::{Duration, Instant};

use redis::AsyncCommands as _;
use wasq::TaskOptions;
use wasq::broker::QueueKeys;
use wasq::worker::Disposition;
use wasq_tests::redis::shared_cluster;
use wasq_tests::{run_wasq, unique_queue};

use crate::support::*;

/// `wasq <args> --cluster --cluster-addrs <the shared cluster>`.
fn wasq(args: &[&str]) -> (i32, String, String) {
    let addrs = shared_cluster().addrs().join(",");
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--cluster", "--cluster-addrs", &addrs]);
    run_wasq(&all)
}

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_commands_move_tasks_as_they_promise() {
    let q = unique_queue("inspect");
    let client = cluster_client().await;
    let keys = QueueKeys::new(&q);
    let mut conn = client.broker().conn();
    let mut scheduled = Vec::new();
    for n in 0..3 {
        let info = client
            .enqueue(
                payload(&format!(r#"{{"do": "ok", "n": {n}}}"#)),
                TaskOptions::default()
                    .queue(&q)
                    .process_in(Duration::from_secs(3600)),
            )
            .await
            .unwrap();
        scheduled.push(info.id);
    }
    let pending = client
        .enqueue(
            payload(r#"{"do": "ok", "to": "pending"}"#),
            TaskOptions::default().queue(&q),
        )
        .await
        .unwrap()
        .id;

    // ls: a page of a state, as JSON.
    let (code, out, err) = wasq(&[
        "task",
        "ls",
        "--queue",
        &q,
        "--state",
        "scheduled",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let listed = json(&out);
    let mut ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    ids.sort();
    let mut want: Vec<&str> = scheduled.iter().map(String::as_str).collect();
    want.sort();
    assert_eq!(ids, want);
    let (code, out, _) = wasq(&[
        "task",
        "ls",
        "--queue",
        &q,
        "--state",
        "scheduled",
        "--size",
        "2",
        "--page",
        "1",
        "--json",
    ]);
    assert_eq!(code, 0);
    assert_eq!(json(&out).as_array().unwrap().len(), 1, "page 1 of size 2");

    // inspect: the payload, pretty-printed in the human form.
    let (code, out, _) = wasq(&["task", "inspect", &q, &pending, "--json"]);
    assert_eq!(code, 0);
    let task = json(&out);
    assert_eq!(task["state"], "pending");
    assert_eq!(task["task_type"], "bad");
    let (code, out, _) = wasq(&["task", "inspect", &q, &pending]);
    assert_eq!(code, 0);
    assert!(out.contains("\"to\": \"pending\""), "{out}");

    // Destructive commands need --yes when there is no terminal to ask on.
    let (code, _, err) = wasq(&["task", "archive", &q, &pending]);
    assert_eq!(code, 2);
    assert!(err.contains("without --yes"), "{err}");

    // archive: pending -> archived.
    let (code, _, err) = wasq(&["task", "archive", &q, &pending, "--yes"]);
    assert_eq!(code, 0, "{err}");
    let score: Option<f64> = conn.zscore(keys.archived(), &pending).await.unwrap();
    assert!(score.is_some());
    let state: String = conn.hget(keys.task(&pending), "state").await.unwrap();
    assert_eq!(state, "archived");
    let left: Vec<String> = conn.lrange(keys.pending(), 0, -1).await.unwrap();
    assert!(left.is_empty());

    // run: archived -> pending, with a wake token for idle workers.
    let (code, _, err) = wasq(&["task", "run", &q, &pending]);
    assert_eq!(code, 0, "{err}");
    let left: Vec<String> = conn.lrange(keys.pending(), 0, -1).await.unwrap();
    assert_eq!(left, vec![pending.clone()]);
    let wake: u64 = conn.llen(keys.wake()).await.unwrap();
    assert_eq!(wake, 1);

    // delete: gone, hash and all.
    let (code, _, err) = wasq(&["task", "delete", &q, &scheduled[0], "--yes"]);
    assert_eq!(code, 0, "{err}");
    let exists: bool = conn.exists(keys.task(&scheduled[0])).await.unwrap();
    assert!(!exists);
    let (code, _, err) = wasq(&["task", "delete", &q, "no-such-id", "--yes"]);
    assert_eq!(code, 1);
    assert!(err.contains("no such task"), "{err}");

    // runall / archiveall / deleteall per state.
    let (code, out, _) = wasq(&["task", "runall", &q, "--state", "scheduled"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("2 scheduled task(s)"), "{out}");
    assert_eq!(conn.llen::<_, u64>(keys.pending()).await.unwrap(), 3);
    assert_eq!(conn.zcard::<_, u64>(keys.scheduled()).await.unwrap(), 0);
    let (code, out, _) = wasq(&["task", "archiveall", &q, "--state", "pending", "--yes"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("3 pending task(s)"), "{out}");
    assert_eq!(conn.zcard::<_, u64>(keys.archived()).await.unwrap(), 3);
    let (code, _, _) = wasq(&["task", "deleteall", &q, "--state", "archived", "--yes"]);
    assert_eq!(code, 0);
    let stats = client.broker().stats(&q).await.unwrap();
    assert_eq!(
        (stats.pending, stats.scheduled, stats.archived),
        (0, 0, 0),
        "{stats:?}"
    );

    // Deleting a unique task frees its lock: the same task goes in again.
    let unique = TaskOptions::default()
        .queue(&q)
        .process_in(Duration::from_secs(3600))
        .unique(Duration::from_secs(3600));
    let first = client
        .enqueue(payload(r#"{"do": "ok", "u": 1}"#), unique.clone())
        .await
        .unwrap();
    let (code, _, err) = wasq(&["task", "delete", &q, &first.id, "--yes"]);
    assert_eq!(code, 0, "{err}");
    client
        .enqueue(payload(r#"{"do": "ok", "u": 1}"#), unique)
        .await
        .expect("the unique lock was released with the task");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_cancel_stops_a_running_task_within_a_second() {
    let (q, _config, mut worker, client) = one_queue("cancel", "").await;
    let info = client
        .enqueue(
            payload(r#"{"do": "nap", "ms": 30000}"#),
            TaskOptions::default().queue(&q),
        )
        .await
        .unwrap();
    let keys = QueueKeys::new(&q);
    let conn = client.broker().conn();
    wait_for(|| async { conn.clone().llen::<_, u64>(keys.active()).await.unwrap() == 1 }).await;
    // The worker subscribes right after it starts; give it a moment.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let asked = Instant::now();
    let (code, out, err) = wasq(&["task", "cancel", &info.id, "--yes"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("cancel sent for 1 task(s)"), "{out}");
    let event = &worker.next(1, Duration::from_secs(5)).await[0];
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "{:?}",
        asked.elapsed()
    );
    assert_eq!(
        (event.id.as_str(), event.disposition),
        (info.id.as_str(), Disposition::Archived)
    );
    assert!(
        event
            .error
            .as_deref()
            .unwrap()
            .contains("cancelled by an operator"),
        "{event:?}"
    );
    let (code, out, _) = wasq(&["task", "inspect", &q, &info.id, "--json"]);
    assert_eq!(code, 0);
    assert_eq!(json(&out)["state"], "archived");
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_inspect_history_rm_and_server_ls() {
    let (q, _config, mut worker, client) = one_queue("queueops", "").await;
    client
        .enqueue(payload(r#"{"do": "ok"}"#), TaskOptions::default().queue(&q))
        .await
        .unwrap();
    client
        .enqueue(
            payload(r#"{"do": "panic"}"#),
            TaskOptions::default().queue(&q).max_retry(0),
        )
        .await
        .unwrap();
    worker.next(2, Duration::from_secs(10)).await;

    let (code, out, err) = wasq(&["queue", "inspect", &q, "--json"]);
    assert_eq!(code, 0, "{err}");
    let inspected = json(&out);
    assert_eq!(inspected["stats"]["processed_today"], 2);
    assert_eq!(inspected["stats"]["failed_today"], 1);
    assert_eq!(inspected["stats"]["archived"], 1);
    assert!(inspected["location"]["slot"].as_u64().is_some());
    let (code, out, _) = wasq(&["queue", "inspect", &q]);
    assert_eq!(code, 0);
    assert!(
        out.contains("2 processed, 1 failed (50.0 % error rate)"),
        "{out}"
    );

    let (code, out, _) = wasq(&["queue", "history", &q, "--days", "3", "--json"]);
    assert_eq!(code, 0);
    let days = json(&out);
    assert_eq!(days.as_array().unwrap().len(), 3);
    assert_eq!(days[0]["processed"], 2);
    assert_eq!(days[0]["failed"], 1);
    assert_eq!(days[1]["processed"], 0);

    // The worker has registered itself with this queue.
    let (code, out, _) = wasq(&["server", "ls", "--json"]);
    assert_eq!(code, 0);
    let servers = json(&out);
    assert!(
        servers
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["queues"].get(&q).is_some() && s["status"] == "active"),
        "{out}"
    );
    worker.stop().await;

    // module ls: the type's module, hash and grants, and its last hour.
    let (code, out, err) = run_wasq(&[
        "module",
        "ls",
        "--config",
        &_config.path.display().to_string(),
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let modules = json(&out);
    let bad = modules
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["task_type"] == "bad")
        .expect("the bad type is listed");
    assert!(bad["module"].as_str().unwrap().ends_with("misbehave.wasm"));
    assert_eq!(bad["sha256"].as_str().unwrap().len(), 64);
    assert!(bad["fuel"].is_null(), "unlimited fuel");
    let hour = &bad["last_hour"];
    assert!(hour["runs"].as_u64().unwrap() >= 2, "{hour}");
    assert!(hour["failures"]["panic"].as_u64().unwrap() >= 1, "{hour}");
    assert!(hour["median_fuel"].as_u64().unwrap() > 0, "{hour}");

    // dash: one frame of the terminal view.
    let (code, out, err) = wasq(&["dash", "--once"]);
    assert_eq!(code, 0, "{err}");
    let row = out
        .lines()
        .find(|l| l.starts_with(q.as_str()))
        .unwrap_or_else(|| panic!("no row for {q}: {out}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells[5], "1", "one archived task: {row}");
    assert!(out.contains("cluster: ok · 6 nodes · 3 masters"), "{out}");

    // stats: error rate and the cluster's state.
    let (code, out, _) = wasq(&["stats", "--json"]);
    assert_eq!(code, 0);
    let stats = json(&out);
    assert_eq!(stats["cluster"]["state"], "ok");
    assert_eq!(stats["cluster"]["known_nodes"], 6);
    let (code, out, _) = wasq(&["stats"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("cluster: state ok, 6 known nodes, 3 masters"),
        "{out}"
    );

    // rm refuses a queue with tasks, then removes it with --force.
    let (code, _, err) = wasq(&["queue", "rm", &q, "--yes"]);
    assert_eq!(code, 2);
    assert!(err.contains("still has 1 task(s)"), "{err}");
    let (code, out, err) = wasq(&["queue", "rm", &q, "--force", "--yes"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("1 task(s) deleted"), "{out}");
    let queues = client.broker().queues().await.unwrap();
    assert!(!queues.contains(&q));
    let keys = QueueKeys::new(&q);
    let mut conn = client.broker().conn();
    for key in [keys.archived(), keys.processed_total(), keys.failed_total()] {
        let exists: bool = conn.exists(&key).await.unwrap();
        assert!(!exists, "{key} left behind");
    }
    let (code, _, err) = wasq(&["queue", "inspect", &q]);
    assert_eq!(code, 2);
    assert!(err.contains("no queue named"), "{err}");
}

/// The value of the sample of `metric` whose labels include all `labels`.
fn sample(text: &str, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{metric}{{")) || l.starts_with(&format!("{metric} ")))
        .find(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_health_after_a_known_workload() {
    let q = unique_queue("metrics");
    let port = wasq_tests::redis::RedisServer::free_port();
    let addr = format!("127.0.0.1:{port}");
    let config = config(
        &[(&q, 1, Some(3))],
        &format!("[worker]\nmetrics = {addr:?}\n"),
    );
    let mut worker = SpawnedWorker::start(&config);
    let client = cluster_client().await;
    for n in 0..3 {
        client
            .enqueue(
                payload(&format!(r#"{{"do": "ok", "n": {n}}}"#)),
                TaskOptions::default().queue(&q),
            )
            .await
            .unwrap();
    }
    client
        .enqueue(
            payload(r#"{"do": "panic"}"#),
            TaskOptions::default().queue(&q).max_retry(0),
        )
        .await
        .unwrap();
    for _ in 0..2 {
        client
            .enqueue(
                wasq::Task::new("noop", b"{}".to_vec()),
                TaskOptions::default().queue(&q),
            )
            .await
            .unwrap();
    }
    let mut seen = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen < 6 {
        assert!(Instant::now() < deadline, "only {seen} tasks reported");
        if let Ok(Some(line)) =
            tokio::time::timeout(Duration::from_secs(1), worker.lines.recv()).await
            && line.contains("\"disposition\"")
        {
            seen += 1;
        }
    }
    // A task's slots go back just after its event; scrape until they have.
    let scrape_deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let (status, text) = tokio::task::spawn_blocking({
            let addr = addr.clone();
            move || http(&addr, "GET", "/metrics")
        })
        .await
        .unwrap();
        assert_eq!(status, 200, "{text}");
        if sample(&text, "wasq_queue_inflight", &[("queue", q.as_str())]) == Some(0.0)
            || Instant::now() > scrape_deadline
        {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let q = q.as_str();
    let tasks = |t: &str, outcome: &str| {
        sample(
            &text,
            "wasq_tasks_total",
            &[("queue", q), ("task_type", t), ("outcome", outcome)],
        )
    };
    assert_eq!(tasks("bad", "ok"), Some(3.0), "{text}");
    assert_eq!(tasks("bad", "panic"), Some(1.0), "{text}");
    assert_eq!(tasks("noop", "ok"), Some(2.0), "{text}");
    assert_eq!(
        sample(
            &text,
            "wasq_task_duration_seconds_count",
            &[("queue", q), ("task_type", "bad")]
        ),
        Some(4.0)
    );
    assert_eq!(
        sample(&text, "wasq_task_fuel_count", &[("task_type", "noop")]),
        Some(2.0)
    );
    assert!(
        sample(
            &text,
            "wasq_sandbox_memory_peak_bytes",
            &[("task_type", "bad")]
        )
        .unwrap()
            > 0.0
    );
    assert_eq!(
        sample(
            &text,
            "wasq_queue_tasks",
            &[("queue", q), ("state", "archived")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "wasq_queue_concurrency_limit", &[("queue", q)]),
        Some(3.0)
    );
    assert_eq!(
        sample(&text, "wasq_queue_inflight", &[("queue", q)]),
        Some(0.0)
    );
    assert!(
        sample(&text, "wasq_redis_errors_total", &[]).is_some(),
        "{text}"
    );

    let (status, body) = tokio::task::spawn_blocking(move || http(&addr, "GET", "/healthz"))
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"status\":\"ok\""), "{body}");
}
