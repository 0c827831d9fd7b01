//! Reloading a running `wasq worker` on the cluster: with `--watch`, an
//! edited limit applies to the next task, and an edited Redis address is
//! refused with a message while the running config goes on; without it,
//! SIGHUP reloads.

use std::time::{Duration, Instant};

use wasq::{Task, TaskOptions};
use wasq_tests::redis::shared_cluster;
use wasq_tests::{TestConfig, unique_queue};

use crate::support::*;

/// A config on the shared cluster: queue `q`, type `spin` with `fuel`,
/// and `redis` as the Redis section (the cluster's when `None`).
fn body(q: &str, fuel: &str, redis: Option<&str>) -> String {
    let redis = redis.map_or_else(|| shared_cluster().toml(), str::to_owned);
    let fuel = if fuel == "unlimited" {
        "\"unlimited\"".to_owned()
    } else {
        fuel.to_owned()
    };
    format!(
        "{redis}\n[queues.{q:?}]\n\n[tasks.spin]\nmodule = \"{{guests}}/misbehave.wasm\"\nfuel = {fuel}\n"
    )
}

/// Rewrites the config file (as `TestConfig::new` writes it).
fn rewrite(config: &TestConfig, body: &str) {
    let fresh = TestConfig::new(body);
    std::fs::copy(&fresh.path, &config.path).unwrap();
}

/// Waits until the worker's log holds `n` lines containing `needle`;
/// returns the log.
async fn log_lines(log: &std::path::Path, needle: &str, n: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.matches(needle).count() >= n {
            return text;
        }
        assert!(Instant::now() < deadline, "no {needle:?} in:\n{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Enqueues one spin of `iters` and returns its event from `worker`.
async fn spin(q: &str, worker: &mut SpawnedWorker, iters: u64) -> serde_json::Value {
    cluster_client()
        .await
        .enqueue(
            Task::new(
                "spin",
                format!(r#"{{"do": "spin", "iters": {iters}}}"#).into_bytes(),
            ),
            TaskOptions::default().queue(q).max_retry(0),
        )
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(e) = worker.drain_events().into_iter().next() {
            return e;
        }
        assert!(
            Instant::now() < deadline,
            "the task did not run: {:?}",
            worker.exited()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_applies_a_new_limit_and_refuses_a_new_redis_address() {
    let q = unique_queue("watch");
    let config = TestConfig::new(&body(&q, "unlimited", None));
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("worker.log");
    let mut worker = SpawnedWorker::start_with(&config, &log, "info", &["--watch"]);

    let ran = spin(&q, &mut worker, 2_000_000).await;
    assert_eq!(ran["disposition"], "done", "{ran}");

    // A smaller fuel limit applies to the next task.
    rewrite(&config, &body(&q, "100000", None));
    log_lines(&log, "wasq worker: reloaded", 1).await;
    let ran = spin(&q, &mut worker, 2_000_000).await;
    assert_eq!(ran["disposition"], "archived", "{ran}");
    assert_eq!(ran["cause"], "out_of_fuel", "{ran}");

    // Another Redis (and the fuel back up): refused as a whole, the
    // running config stays, the worker goes on.
    rewrite(
        &config,
        &body(
            &q,
            "unlimited",
            Some("[redis]\nurl = \"redis://127.0.0.1:1\"\n"),
        ),
    );
    let text = log_lines(&log, "not applied: the [redis] section changed", 1).await;
    assert!(text.contains("restart the worker"), "{text}");
    let ran = spin(&q, &mut worker, 2_000_000).await;
    assert_eq!(ran["cause"], "out_of_fuel", "the old config runs: {ran}");
    assert!(worker.exited().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_a_worker_that_does_not_watch() {
    let q = unique_queue("sighup");
    let config = TestConfig::new(&body(&q, "100000", None));
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("worker.log");
    let mut worker = SpawnedWorker::start_with(&config, &log, "info", &[]);
    let ran = spin(&q, &mut worker, 2_000_000).await;
    assert_eq!(ran["cause"], "out_of_fuel", "{ran}");

    rewrite(&config, &body(&q, "unlimited", None));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let ran = spin(&q, &mut worker, 2_000_000).await;
    assert_eq!(
        ran["cause"], "out_of_fuel",
        "not watched, not reloaded: {ran}"
    );

    worker.signal(libc::SIGHUP);
    log_lines(&log, "wasq worker: reloaded", 1).await;
    let ran = spin(&q, &mut worker, 2_000_000).await;
    assert_eq!(ran["disposition"], "done", "{ran}");
}
