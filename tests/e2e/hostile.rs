//! Sandbox escapes beside normal traffic: a `wasq worker` takes guests that
//! try to get out (files outside their grant, `..`, symlinks out of a
//! granted directory, env vars, sockets, queues they were not granted) or to
//! take the host down (memory, endless loops with unlimited fuel, unbounded
//! recursion, log floods, huge results), to bloat what the host keeps (huge
//! panic and retry messages, floods of empty lines and fields), to forge the
//! worker's output (newlines and escape sequences), to trip it with text that
//! is not UTF-8, or that exit. It goes on with a stream of well-behaved
//! tasks meanwhile. Each hostile task ends with its documented cause and is
//! logged; the well-behaved tasks all finish while the worst guest is still
//! running; the worker's log and memory stay bounded.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use redis::AsyncCommands as _;

use wasq::TaskOptions;
use wasq_tests::{TestConfig, unique_queue};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escapes_are_denied_and_logged_while_ordinary_tasks_keep_running() {
    let granted = tempfile::tempdir().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    std::fs::write(granted.path().join("inside.txt"), "granted").unwrap();
    std::os::unix::fs::symlink("/etc", granted.path().join("etc-link")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", granted.path().join("passwd-link")).unwrap();
    let q = unique_queue("hostile");
    let mut body = wasq_tests::redis::shared_cluster().toml();
    body.push_str(&queue_sections(&[(&q, 1, None)]));
    body.push_str("[worker]\nconcurrency = 6\n");
    body.push_str(&format!(
        r#"
[tasks.hostile]
module = "{{guests}}/misbehave.wasm"
fuel = "unlimited"
timeout = "4s"
memory = "32MiB"
max_result = "64KiB"
max_log = "16KiB"
dirs = [{{ host = {dir:?}, guest = "/data" }}, {{ host = {scratch:?}, guest = "/scratch", mode = "rw" }}]
max_write = "1MiB"
max_files = 100
enqueue = ["webhooks"]

[tasks.flood]
module = "{{guests}}/misbehave.wasm"
fuel = "unlimited"
timeout = "60s"
memory = "32MiB"
max_log = "16KiB"

[tasks.noop]
module = "{{examples}}/noop.wasm"
"#,
        dir = granted.path().display().to_string(),
        scratch = scratch.path().display().to_string()
    ));
    let config = TestConfig::new(&body);
    let log = config.dir.path().join("worker.log");
    let mut worker = SpawnedWorker::start_logging_at(&config, &log, "info");
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
        // Descriptors, disk and links: refused inside the guest.
        (
            r#"{"do": "open-many", "path": "/data/inside.txt", "count": 5000}"#,
            "open #256 of /data/inside.txt failed",
        ),
        (
            r#"{"do": "write-big", "path": "/scratch/big", "bytes": 10000000}"#,
            "write /scratch/big failed",
        ),
        (
            r#"{"do": "create-many", "path": "/scratch", "count": 500}"#,
            "creating entry #",
        ),
        (
            r#"{"do": "symlink", "path": "/scratch/g_rel", "target": "../../../../etc/passwd"}"#,
            "symlink /scratch/g_rel -> ../../../../etc/passwd failed",
        ),
        (r#"{"do": "memory"}"#, "memory"),
        (r#"{"do": "stack"}"#, "stack overflow"),
        (r#"{"do": "huge-result", "bytes": 1000000}"#, "result"),
        // A 10 MB panic message and a 20 MB retry message are kept as their
        // first 4 KiB and how much was cut.
        (
            r#"{"do": "huge-panic", "bytes": 4000000}"#,
            "more bytes cut",
        ),
        (
            r#"{"do": "huge-retry", "bytes": 8000000}"#,
            "more bytes cut",
        ),
        // WASI 0.2's exit carries success or failure: any non-zero status
        // arrives as 1.
        (r#"{"do": "exit", "iters": 3}"#, "exited with status 1"),
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

    // Then floods of empty lines and fields, forged lines, text that is
    // not UTF-8 and exit(0): each task succeeds, and the worker's log and
    // memory stay bounded.
    let mut done_hostile: HashMap<String, &str> = HashMap::new();
    for payload in [
        r#"{"do": "log-empty", "lines": 300000}"#,
        r#"{"do": "stdout-newlines", "bytes": 10485760}"#,
        r#"{"do": "log-empty-fields", "lines": 20000}"#,
        r#"{"do": "forge"}"#,
        r#"{"do": "bad-utf8"}"#,
        r#"{"do": "exit", "iters": 0}"#,
    ] {
        let info = client
            .enqueue(
                wasq::Task::new("flood", payload.as_bytes().to_vec()),
                TaskOptions::default().queue(&q).max_retry(0),
            )
            .await
            .unwrap();
        done_hostile.insert(info.id, payload);
    }
    let mut done_ordinary = 0;
    let mut ordinary_done_at = None;
    let mut loop_archived_at = None;
    let mut archived: HashMap<String, String> = HashMap::new();
    let mut flood_done = false;
    let mut results: HashMap<String, String> = HashMap::new();
    let mut causes: HashMap<String, (String, Option<u64>)> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    while archived.len() < expected.len()
        || done_ordinary < ordinary
        || !flood_done
        || results.len() < done_hostile.len()
    {
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
            (Some("flood"), Some("done")) if done_hostile.contains_key(&id) => {
                let result = event["result"].as_str().unwrap_or_default().to_owned();
                results.insert(id, result);
            }
            (Some("hostile"), Some("archived")) => {
                causes.insert(
                    id.clone(),
                    (
                        event["cause"].as_str().unwrap_or_default().to_owned(),
                        event["fuel"].as_u64(),
                    ),
                );
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
    // Each hostile task ends with its documented cause.
    for (id, (payload, _)) in &expected {
        let (cause, fuel) = &causes[id];
        let want = match payload.split('"').nth(3).unwrap_or_default() {
            "loop" => "timeout",
            "memory" => "memory_limit",
            "stack" => "stack_overflow",
            "huge-result" => "result_too_large",
            "huge-panic" => "panic",
            "huge-retry" => "retry",
            "exit" => "exit",
            _ => "skip_retry",
        };
        assert_eq!(cause, want, "{payload}");
        if want == "timeout" {
            // An interrupted run's fuel is reported as not measured.
            assert_eq!(*fuel, None, "{payload}");
        }
        // What is stored and printed of a message is bounded.
        assert!(
            archived[id].len() < 5000,
            "{payload}: {} bytes",
            archived[id].len()
        );
    }
    let keys = wasq::broker::QueueKeys::new(&q);
    for id in expected.keys() {
        let msg: Vec<u8> = client
            .broker()
            .conn()
            .hget(keys.task(id), "msg")
            .await
            .unwrap();
        assert!(msg.len() < 8192, "a stored task of {} bytes", msg.len());
    }
    for (id, payload) in &done_hostile {
        let result = &results[id];
        assert!(
            !result.contains(['\n', '\r', '\u{1b}']),
            "{payload}: result printed with control characters: {result:?}"
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
    // Floods cost the log at most max_log per task (16 KiB at 64 bytes a
    // line or more), and no guest text forges a line of the worker's own.
    assert!(
        log_text.lines().count() < 5000,
        "{} log lines",
        log_text.lines().count()
    );
    assert!(
        !log_text
            .lines()
            .any(|l| l.starts_with("2026-11-30T00:00:00Z") || l.contains("\u{1b}")),
        "a guest forged a log line"
    );
    assert!(
        log_text.contains("not valid UTF-8"),
        "the bad text was not noted"
    );
    let peak_rss_mib = wasq_tests::procfs::status_kib(worker.pid() as u32, "VmHWM") / 1024;
    println!("hostile suite: worker peak RSS {peak_rss_mib} MiB");
    assert!(peak_rss_mib < 400, "worker peak RSS {peak_rss_mib} MiB");
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
    // Nothing was written through the read-only grant or the symlinks, and
    // the rw grant holds no more than max_write bytes, no link, and the
    // max_files entries of one task plus the other's one big file.
    assert!(!granted.path().join("new.txt").exists());
    let entries: Vec<std::fs::Metadata> = std::fs::read_dir(scratch.path())
        .unwrap()
        .map(|e| e.unwrap().path().symlink_metadata().unwrap())
        .collect();
    assert!(entries.len() <= 101, "{} files created", entries.len());
    assert!(entries.iter().all(|m| !m.file_type().is_symlink()));
    let written: u64 = entries.iter().map(std::fs::Metadata::len).sum();
    assert!(written <= 1 << 20, "{written} bytes written");
}
