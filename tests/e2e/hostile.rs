//! Sandbox escapes beside normal traffic: a `wasq worker` takes guests that
//! try to get out (files outside their grant, `..`, symlinks out of a
//! granted directory, env vars, sockets, queues they were not granted) or to
//! take the host down (memory, endless loops with unlimited fuel, unbounded
//! recursion, log floods, huge results), while it goes on with a stream of
//! well-behaved tasks. Each attempt is denied, archived with its reason and
//! logged; the well-behaved tasks all finish while the worst guest is still
//! running.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use wasq::TaskOptions;
use wasq_tests::{TestConfig, unique_queue};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escapes_are_denied_and_logged_while_ordinary_tasks_keep_running() {
    let granted = tempfile::tempdir().unwrap();
    std::fs::write(granted.path().join("inside.txt"), "granted").unwrap();
    std::os::unix::fs::symlink("/etc", granted.path().join("etc-link")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", granted.path().join("passwd-link")).unwrap();
    let q = unique_queue("hostile");
    let mut body = wasq_tests::redis::shared_cluster().toml();
    body.push_str(&queue_sections(&[(&q, 1, None)]));
    body.push_str("[worker]\nconcurrency = 4\n");
    body.push_str(&format!(
        r#"
[tasks.hostile]
module = "{{guests}}/misbehave.wasm"
fuel = "unlimited"
timeout = "4s"
memory = "32MiB"
max_result = "64KiB"
max_log = "16KiB"
dirs = [{{ host = {dir:?}, guest = "/data" }}]
enqueue = ["webhooks"]

[tasks.noop]
module = "{{examples}}/noop.wasm"
"#,
        dir = granted.path().display().to_string()
    ));
    let config = TestConfig::new(&body);
    let log = config.dir.path().join("worker.log");
    let mut worker = SpawnedWorker::start_logging(&config, &log);
    let client = cluster_client().await;

    // (payload, words the archived task's error must contain)
    let attempts: &[(&str, &str)] = &[
        (r#"{"do": "loop"}"#, "timeout"),
        (
            r#"{"do": "read-file", "path": "/etc/passwd"}"#,
            "read /etc/passwd failed",
        ),
        (
            r#"{"do": "read-file", "path": "/data/../../etc/passwd"}"#,
            "read /data/../../etc/passwd failed",
        ),
        (
            r#"{"do": "read-file", "path": "/data/etc-link/passwd"}"#,
            "read /data/etc-link/passwd failed",
        ),
        (
            r#"{"do": "read-file", "path": "/data/passwd-link"}"#,
            "read /data/passwd-link failed",
        ),
        (
            r#"{"do": "write-file", "path": "/data/new.txt"}"#,
            "write /data/new.txt failed",
        ),
        (r#"{"do": "env", "name": "HOME"}"#, "env HOME unavailable"),
        (
            r#"{"do": "socket", "addr": "127.0.0.1:22"}"#,
            "connect 127.0.0.1:22 failed",
        ),
        (
            r#"{"do": "enqueue", "queue": "payments"}"#,
            "enqueue denied",
        ),
        (r#"{"do": "memory"}"#, "memory"),
        (r#"{"do": "stack"}"#, "stack overflow"),
        (r#"{"do": "huge-result", "bytes": 1000000}"#, "result"),
    ];
    let mut expected: HashMap<String, (&str, &str)> = HashMap::new();
    for (payload, words) in attempts {
        let info = client
            .enqueue(
                wasq::Task::new("hostile", payload.as_bytes().to_vec()),
                TaskOptions::default().queue(&q).max_retry(0),
            )
            .await
            .unwrap();
        expected.insert(info.id, (payload, words));
    }
    // A log flood is cut at max_log and the task still succeeds.
    let flood = client
        .enqueue(
            wasq::Task::new(
                "hostile",
                br#"{"do": "log-flood", "lines": 20000}"#.to_vec(),
            ),
            TaskOptions::default().queue(&q).max_retry(0),
        )
        .await
        .unwrap();
    // Meanwhile, ordinary traffic.
    let ordinary = 300;
    let batch: Vec<_> = (0..ordinary)
        .map(|n| {
            (
                wasq::Task::new("noop", format!(r#"{{"n": {n}}}"#).into_bytes()),
                TaskOptions::default().queue(&q),
            )
        })
        .collect();
    for result in client.enqueue_batch(batch).await {
        result.unwrap();
    }

    let mut done_ordinary = 0;
    let mut ordinary_done_at = None;
    let mut loop_archived_at = None;
    let mut archived: HashMap<String, String> = HashMap::new();
    let mut flood_done = false;
    let deadline = Instant::now() + Duration::from_secs(90);
    while archived.len() < expected.len() || done_ordinary < ordinary || !flood_done {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = tokio::time::timeout(left, worker.lines.recv())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "worker stalled: {done_ordinary}/{ordinary} ordinary done, archived {archived:#?}"
                )
            })
            .expect("the worker exited");
        let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if event.get("disposition").is_none() {
            continue;
        }
        let id = event["id"].as_str().unwrap_or_default().to_owned();
        match (event["task_type"].as_str(), event["disposition"].as_str()) {
            (Some("noop"), Some("done")) => {
                done_ordinary += 1;
                if done_ordinary == ordinary {
                    ordinary_done_at = Some(Instant::now());
                }
            }
            (Some("hostile"), Some("done")) if id == flood.id => flood_done = true,
            (Some("hostile"), Some("archived")) => {
                if expected.get(&id).is_some_and(|(p, _)| p.contains("loop")) {
                    loop_archived_at = Some(Instant::now());
                }
                archived.insert(id, event["error"].as_str().unwrap_or_default().to_owned());
            }
            other => panic!("unexpected event {other:?}: {line}"),
        }
    }
    for (id, (payload, words)) in &expected {
        let error = &archived[id];
        assert!(
            error.to_lowercase().contains(&words.to_lowercase()),
            "{payload}: archived with {error:?}, expected it to mention {words:?}"
        );
    }
    // The worst guest (an endless loop) held a slot for its whole timeout;
    // every ordinary task finished before it was stopped.
    assert!(
        ordinary_done_at.unwrap() < loop_archived_at.unwrap(),
        "ordinary tasks waited for the endless loop"
    );
    // Every denial is in the worker's log with the task's id and reason.
    let log_text = std::fs::read_to_string(&log).unwrap();
    for id in expected.keys() {
        assert!(
            log_text
                .lines()
                .any(|l| l.contains(id.as_str()) && l.contains("task failed")),
            "no log line for {id}: {log_text}"
        );
    }
    let stats = client.broker().stats(&q).await.unwrap();
    assert_eq!(
        (stats.archived, stats.pending, stats.active),
        (expected.len() as u64, 0, 0)
    );
    // Nothing was written through the read-only grant or the symlinks.
    assert!(!granted.path().join("new.txt").exists());
}
