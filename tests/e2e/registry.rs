//! The module registry on the cluster: `wasq module push` during a drain
//! swaps three `wasq worker` processes between tasks without losing or
//! repeating one; broken versions are refused (at push, or by the one
//! worker that cannot run them, which says why); rollback, a worker that
//! starts after a push with no file on its host, and bad input in Redis
//! (an unsealed upload, chunks that do not hash to their name, a missing
//! chunk, a type with no version).

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redis::AsyncCommands as _;
use wasq::broker::QueueKeys;
use wasq::registry::{Registry, RegistryError, keys};
use wasq::{Task, TaskOptions};
use wasq_tests::redis::shared_cluster;
use wasq_tests::{TestConfig, example, guest, run_wasq, unique_queue};

use crate::support::*;

/// A task type of this test only (the registry is shared by all tests).
fn unique_type(prefix: &str) -> String {
    unique_queue(&format!("reg-{prefix}"))
}

/// A config on the shared cluster with queue `queue` and registry type
/// `task_type` (with `memory`).
fn registry_config(queue: &str, task_type: &str, memory: &str, queue_extra: &str) -> TestConfig {
    let mut body = shared_cluster().toml();
    body.push_str(&format!(
        "\n[worker]\nconcurrency = 10\n\n[queues.{queue:?}]\n{queue_extra}\n\n\
         [tasks.{task_type:?}]\nmodule = \"registry\"\nmemory = {memory:?}\nretry_delay = \"1s\"\n"
    ));
    TestConfig::new(&body)
}

fn push(config: &TestConfig, file: &std::path::Path, task_type: &str) -> (i32, String, String) {
    run_wasq(&[
        "module",
        "push",
        &file.display().to_string(),
        "--type",
        task_type,
        "--config",
        &config.path.display().to_string(),
    ])
}

fn hash_of(file: &std::path::Path) -> String {
    wasq::registry::hash_of(&std::fs::read(file).unwrap())
}

async fn registry() -> Registry {
    Registry::new(cluster_client().await.broker().clone())
}

/// The component in `file` with a custom section naming a fresh id appended:
/// the same handler under a hash no other test uses, so this test may
/// damage its chunks.
fn unique_component(file: &std::path::Path) -> Vec<u8> {
    let id = uuid::Uuid::new_v4().to_string();
    wasq_tests::with_custom_section(&std::fs::read(file).unwrap(), "wasq-test", id.as_bytes())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Waits until every worker reporting `task_type` runs `hash` (and at
/// least `workers` report it).
async fn wait_running(task_type: &str, hash: &str, workers: usize) {
    let registry = registry().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let reports = registry.workers().await.unwrap();
        let running: Vec<&str> = reports
            .iter()
            .filter_map(|r| r.types.get(task_type).map(|t| t.running.as_str()))
            .collect();
        if running.len() >= workers && running.iter().all(|h| *h == hash) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "workers of {task_type} run {running:?}, not {hash}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_during_a_drain_swaps_three_workers_without_losing_a_task() {
    const N: usize = 10_000;
    let q = unique_queue("regdrain");
    let t = unique_type("drain");
    // The rate spreads the drain over about 10 s, so the push lands in
    // the middle of it.
    let config = registry_config(&q, &t, "64MiB", "rate = \"1000/s\"\nburst = 20");
    let (v1_file, v2_file) = (guest("misbehave"), example("noop"));
    let (v1, v2) = (hash_of(&v1_file), hash_of(&v2_file));
    let (code, out, err) = push(&config, &v1_file, &t);
    assert_eq!(code, 0, "{out}{err}");

    let client = cluster_client().await;
    let opts = TaskOptions::default()
        .queue(&q)
        .max_retry(3)
        .retention(Duration::from_secs(3600));
    let tasks = (0..N)
        .map(|_| (Task::new(&t, br#"{"do": "ok"}"#.to_vec()), opts.clone()))
        .collect();
    let ids: Vec<String> = client
        .enqueue_batch(tasks)
        .await
        .into_iter()
        .map(|r| r.unwrap().id)
        .collect();
    let mut workers: Vec<SpawnedWorker> = (0..3).map(|_| SpawnedWorker::start(&config)).collect();
    wait_running(&t, &v1, 3).await;

    let broker = client.broker().clone();
    wait_for(|| async { broker.stats(&q).await.unwrap().completed >= 2_000 }).await;
    let (code, out, err) = push(&config, &v2_file, &t);
    let pushed_at = now_ms();
    assert_eq!(code, 0, "{out}{err}");
    let before = broker.stats(&q).await.unwrap();
    assert!(
        before.completed < N as u64 - 2_000,
        "the push came too late to test a swap under load: {before:?}"
    );
    wait_running(&t, &v2, 3).await;

    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let stats = broker.stats(&q).await.unwrap();
        if stats.completed == N as u64 {
            break;
        }
        assert!(Instant::now() < deadline, "the drain stalled: {stats:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Nothing lost, failed or run twice.
    assert_nothing_left_or_failed(&broker, &q).await;
    let events: Vec<serde_json::Value> =
        workers.iter_mut().flat_map(|w| w.drain_events()).collect();
    assert_eq!(events.len(), N, "one run per task");
    let unique: HashSet<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(unique.len(), N, "no task ran twice");
    assert!(events.iter().all(|e| e["disposition"] == "completed"));

    // Every task records v1 or v2, in Redis and in the worker's line, and
    // every task started more than 1 s after the push ran v2.
    let keys = QueueKeys::new(&q);
    let mut pipe = redis::pipe();
    for id in &ids {
        pipe.hget(keys.task(id), "module");
    }
    let recorded: Vec<Option<String>> = pipe.query_async(&mut broker.conn()).await.unwrap();
    let mut by_version: BTreeMap<String, usize> = BTreeMap::new();
    for m in recorded {
        let m = m.expect("every task records its module");
        assert!(m == v1 || m == v2, "{m}");
        *by_version.entry(m).or_default() += 1;
    }
    assert!(
        by_version.get(&v1).is_some_and(|n| *n >= 2_000),
        "{by_version:?}"
    );
    assert!(
        by_version.get(&v2).is_some_and(|n| *n >= 2_000),
        "{by_version:?}"
    );
    let mut late = 0;
    for e in &events {
        let started = e["started_at_ms"].as_u64().unwrap();
        if started > pushed_at + 1_000 {
            late += 1;
            assert_eq!(
                e["module"],
                v2,
                "a task started {}ms after the push ran v1",
                started - pushed_at
            );
        }
    }
    assert!(late > 1_000, "only {late} tasks started after the swap");
    // The history says who pushed what.
    let history = registry().await.history(&t).await.unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(
        (history[0].hash.as_str(), history[1].hash.as_str()),
        (v2.as_str(), v1.as_str())
    );
    assert!(
        history
            .iter()
            .all(|h| h.by.contains('@') && h.action == "push")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_versions_are_refused_at_push_or_by_the_worker_that_cannot_run_them() {
    let q = unique_queue("regbroken");
    let qb = unique_queue("regbroken-b");
    let t = unique_type("broken");
    let roomy = registry_config(&q, &t, "64MiB", "");
    let small = registry_config(&qb, &t, "16MiB", "");
    let v1 = hash_of(&guest("misbehave"));
    let (code, out, err) = push(&roomy, &guest("misbehave"), &t);
    assert_eq!(code, 0, "{out}{err}");

    // The wrong world is refused at push, naming the missing export, and
    // nothing changes.
    let (code, _, err) = push(
        &roomy,
        &std::path::Path::new(env!("WASQ_GUESTS_DIR")).join("not-a-handler.wasm"),
        &t,
    );
    assert_ne!(code, 0);
    assert!(err.contains("missing export `handle`"), "{err}");
    // So is a truncated component.
    let dir = tempfile::tempdir().unwrap();
    let truncated = dir.path().join("truncated.wasm");
    let bytes = std::fs::read(example("noop")).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let (code, _, err) = push(&roomy, &truncated, &t);
    assert_ne!(code, 0);
    assert!(err.contains("truncated.wasm"), "{err}");
    assert_eq!(registry().await.current_of(&t).await.unwrap(), v1);
    assert_eq!(registry().await.history(&t).await.unwrap().len(), 1);

    // A version one worker cannot run (48 MiB of static data, its memory
    // limit is 16 MiB): the other takes it, this one keeps v1 and says why.
    let mut a = SpawnedWorker::start(&roomy);
    let mut b = SpawnedWorker::start(&small);
    wait_running(&t, &v1, 2).await;
    let big = hash_of(&guest("big-static"));
    let (code, out, err) = push(&roomy, &guest("big-static"), &t);
    assert_eq!(code, 0, "{out}{err}");
    let registry = registry().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let (taken, refused) = loop {
        let reports = registry.workers().await.unwrap();
        let of = |hash: &str| {
            reports
                .iter()
                .filter_map(|r| r.types.get(&t))
                .filter(|s| s.running == hash)
                .cloned()
                .collect::<Vec<_>>()
        };
        let (taken, kept) = (of(&big), of(&v1));
        if taken.len() == 1 && kept.len() == 1 && kept[0].refused.is_some() {
            break (taken, kept[0].clone());
        }
        assert!(Instant::now() < deadline, "{reports:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(taken[0].refused.is_none());
    let refusal = refused.refused.unwrap();
    assert_eq!(refusal.hash, big);
    assert!(
        refusal.reason.contains("memory limit"),
        "{}",
        refusal.reason
    );
    // `module ls` shows it too.
    let (code, out, err) = run_wasq(&[
        "module",
        "ls",
        "--json",
        "--config",
        &small.path.display().to_string(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("raise `memory`"), "{out}");

    // Both go on running tasks, each on its version.
    let client = cluster_client().await;
    for queue in [&q, &qb] {
        client
            .enqueue(
                Task::new(&t, br#"{"do": "ok"}"#.to_vec()),
                TaskOptions::default().queue(queue),
            )
            .await
            .unwrap();
    }
    let on_a = first_event(&mut a).await;
    let on_b = first_event(&mut b).await;
    assert_eq!(on_a["module"], big, "{on_a}");
    assert_eq!(on_b["module"], v1, "{on_b}");
    assert_eq!(on_b["disposition"], "done", "{on_b}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_returns_every_worker_and_a_late_worker_needs_no_file() {
    let q = unique_queue("regroll");
    let t = unique_type("roll");
    let config = registry_config(&q, &t, "64MiB", "");
    let (v1, v2) = (hash_of(&guest("misbehave")), hash_of(&example("noop")));
    for file in [guest("misbehave"), example("noop")] {
        let (code, out, err) = push(&config, &file, &t);
        assert_eq!(code, 0, "{out}{err}");
    }
    // A second push of the current version changes nothing.
    let (code, out, _) = push(&config, &example("noop"), &t);
    assert_eq!(code, 0);
    assert!(out.contains("nothing changed"), "{out}");

    // Started after the push, with no module file anywhere in its config.
    let _w1 = SpawnedWorker::start(&config);
    let _w2 = SpawnedWorker::start(&config);
    wait_running(&t, &v2, 2).await;

    let cfg = config.path.display().to_string();
    let (code, out, err) = run_wasq(&["module", "rollback", &t, "--config", &cfg]);
    assert_eq!(code, 0, "{out}{err}");
    wait_running(&t, &v1, 2).await;
    let (code, out, err) = run_wasq(&["module", "history", &t, "--json", "--config", &cfg]);
    assert_eq!(code, 0, "{err}");
    let history: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(history["current"], v1);
    let actions: Vec<&str> = history["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["rollback", "push", "push"]);

    // Forward again by a prefix of the hash; a third worker starts on it.
    let (code, out, err) = run_wasq(&[
        "module",
        "rollback",
        &t,
        "--to",
        &v2[..10],
        "--config",
        &cfg,
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let _w3 = SpawnedWorker::start(&config);
    wait_running(&t, &v2, 3).await;
    let (code, _, err) = run_wasq(&[
        "module", "rollback", &t, "--to", "ffffffff", "--config", &cfg,
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("never ran a version ffffffff"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_in_the_registry_gets_a_clear_error_and_the_worker_keeps_its_version() {
    let q = unique_queue("regbad");
    let t = unique_type("bad");
    let config = registry_config(&q, &t, "64MiB", "");
    let broker = cluster_client().await.broker().clone();
    let small_chunks = Registry::new(broker.clone()).chunk_size(64 << 10);

    // A type with no version: clear errors, and its tasks wait (requeued,
    // no retry used) in a worker that starts anyway.
    let cfg = config.path.display().to_string();
    let (code, _, err) = run_wasq(&["module", "history", &t, "--config", &cfg]);
    assert_ne!(code, 0);
    assert!(
        err.contains("has no version in the module registry"),
        "{err}"
    );
    let (code, _, err) = run_wasq(&["module", "rollback", &t, "--config", &cfg]);
    assert_ne!(code, 0);
    assert!(err.contains("has no version"), "{err}");
    let mut worker = RunningWorker::start(&config).await;
    let client = cluster_client().await;
    client
        .enqueue(
            Task::new(&t, br#"{"do": "ok"}"#.to_vec()),
            TaskOptions::default().queue(&q).max_retry(0),
        )
        .await
        .unwrap();
    let waited = worker.next(1, Duration::from_secs(10)).await.remove(0);
    assert_eq!(waited.disposition, wasq::worker::Disposition::Requeued);
    assert!(
        waited.error.as_deref().unwrap_or("").contains("no version"),
        "{waited:?}"
    );

    // An upload that stopped half way cannot be sealed or pointed at.
    let bytes = unique_component(&example("noop"));
    let hash = wasq::registry::hash_of(&bytes);
    let mut conn = broker.conn();
    let () = conn
        .set(keys::chunk(&hash, 0), &bytes[..64 << 10])
        .await
        .unwrap();
    let chunks = bytes.len().div_ceil(64 << 10);
    match small_chunks.seal(&hash, bytes.len() as u64, chunks).await {
        Err(RegistryError::Missing { detail, .. }) => {
            assert!(detail.contains("missing chunk 1"), "{detail}")
        }
        other => panic!("{other:?}"),
    }
    match small_chunks.point(&t, &hash, "test@host", "push").await {
        Err(RegistryError::Missing { detail, .. }) => {
            assert!(detail.contains("no manifest"), "{detail}")
        }
        other => panic!("{other:?}"),
    }
    let _: i64 = conn.del(keys::chunk(&hash, 0)).await.unwrap();

    // v1, properly, in several chunks: the waiting task runs on it.
    let v1_bytes = std::fs::read(guest("misbehave")).unwrap();
    let v1 = small_chunks.push(&t, &v1_bytes, "test@host").await.unwrap();
    let ran = worker.next(1, Duration::from_secs(15)).await.remove(0);
    assert_eq!(ran.disposition, wasq::worker::Disposition::Done, "{ran:?}");
    assert_eq!(ran.module, v1.hash);

    // Chunks that do not hash to their name: refused, v1 keeps running.
    let (v2, _) = small_chunks
        .upload(&unique_component(&example("noop")))
        .await
        .unwrap();
    let _: i64 = conn
        .setrange(keys::chunk(&v2, 0), 100, "garbage")
        .await
        .unwrap();
    small_chunks
        .point(&t, &v2, "test@host", "push")
        .await
        .unwrap();
    let reason = refusal_of(&t, &v2).await;
    assert!(reason.contains("do not match"), "{reason}");
    // A missing chunk (deleted by hand): refused, naming the chunk.
    let v3_bytes = unique_component(&guest("handler-v0-1"));
    assert!(v3_bytes.len() > 64 << 10, "two chunks or more");
    let (v3, _) = small_chunks.upload(&v3_bytes).await.unwrap();
    let _: i64 = conn.del(keys::chunk(&v3, 1)).await.unwrap();
    small_chunks
        .point(&t, &v3, "test@host", "push")
        .await
        .unwrap();
    let reason = refusal_of(&t, &v3).await;
    assert!(reason.contains("chunk 1 of"), "{reason}");

    // Through all of it the worker runs v1.
    client
        .enqueue(
            Task::new(&t, br#"{"do": "ok"}"#.to_vec()),
            TaskOptions::default().queue(&q),
        )
        .await
        .unwrap();
    let ran = worker.next(1, Duration::from_secs(10)).await.remove(0);
    assert_eq!(ran.disposition, wasq::worker::Disposition::Done, "{ran:?}");
    assert_eq!(ran.module, v1.hash);
    // Fixing the version in place (uploading it again) lets the worker take it.
    let _: i64 = conn.del(keys::manifest(&v3)).await.unwrap();
    small_chunks.upload(&v3_bytes).await.unwrap();
    wait_running(&t, &v3, 1).await;
    worker.stop().await;
}

/// The first task event a spawned worker prints.
async fn first_event(worker: &mut SpawnedWorker) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(e) = worker.drain_events().into_iter().next() {
            return e;
        }
        assert!(Instant::now() < deadline, "no task ran");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Pushes `file` as a canary of `task_type` for `share` of its tasks with
/// `wasq module push --canary`.
fn push_canary(file: &std::path::Path, task_type: &str, share: &str, config: &str) {
    let file = file.display().to_string();
    let (code, out, err) = run_wasq(&[
        "module", "push", &file, "--type", task_type, "--canary", share, "--config", config,
    ]);
    assert_eq!(code, 0, "{out}{err}");
}

/// Waits until a worker reports refusing `hash` for `task_type`; returns why.
async fn refusal_of(task_type: &str, hash: &str) -> String {
    let registry = registry().await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        for report in registry.workers().await.unwrap() {
            if let Some(refused) = report.types.get(task_type).and_then(|s| s.refused.clone())
                && refused.hash == hash
            {
                return refused.reason;
            }
        }
        assert!(Instant::now() < deadline, "no worker refused {hash}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `workers` workers report `canary` as `task_type`'s canary
/// (`None`: none).
async fn wait_canary(task_type: &str, canary: Option<&str>, workers: usize) {
    let registry = registry().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let reports = registry.workers().await.unwrap();
        let seen: Vec<Option<String>> = reports
            .iter()
            .filter_map(|r| r.types.get(task_type).map(|t| t.canary.clone()))
            .collect();
        if seen.len() >= workers && seen.iter().all(|c| c.as_deref() == canary) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "canaries of {task_type}: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Enqueues `n` tasks that panic on the misbehaving guest (and succeed on
/// the no-op one), and returns the events of their runs.
async fn run_panics(
    q: &str,
    t: &str,
    n: usize,
    workers: &mut [SpawnedWorker],
) -> Vec<serde_json::Value> {
    let client = cluster_client().await;
    let tasks = (0..n)
        .map(|_| {
            (
                Task::new(t, br#"{"do": "panic"}"#.to_vec()),
                TaskOptions::default().queue(q).max_retry(0),
            )
        })
        .collect();
    for r in client.enqueue_batch(tasks).await {
        r.unwrap();
    }
    let mut events = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while events.len() < n {
        for w in workers.iter_mut() {
            events.extend(w.drain_events());
        }
        assert!(Instant::now() < deadline, "{} of {n} ran", events.len());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_runs_its_share_shows_its_failure_rate_and_ends_by_a_command() {
    let q = unique_queue("regcanary");
    let t = unique_type("canary");
    let config = registry_config(&q, &t, "64MiB", "");
    let cfg = config.path.display().to_string();
    // v1 succeeds whatever the payload; v2 panics on these tasks.
    let (v1, v2) = (hash_of(&example("noop")), hash_of(&guest("misbehave")));
    let (code, out, err) = push(&config, &example("noop"), &t);
    assert_eq!(code, 0, "{out}{err}");
    let mut workers = vec![SpawnedWorker::start(&config), SpawnedWorker::start(&config)];
    wait_running(&t, &v1, 2).await;

    push_canary(&guest("misbehave"), &t, "25%", &cfg);
    wait_canary(&t, Some(&v2), 2).await;
    assert_eq!(
        registry().await.current_of(&t).await.unwrap(),
        v1,
        "a canary is not current"
    );

    let events = run_panics(&q, &t, 400, &mut workers).await;
    let on_canary: Vec<&serde_json::Value> = events.iter().filter(|e| e["module"] == v2).collect();
    let on_current = events.iter().filter(|e| e["module"] == v1).count();
    assert_eq!(on_canary.len() + on_current, 400);
    // 25 % of 400 is 100, give or take three standard deviations.
    assert!(
        (50..=150).contains(&on_canary.len()),
        "{} on the canary",
        on_canary.len()
    );
    assert!(
        on_canary
            .iter()
            .all(|e| e["cause"] == "panic" && e["disposition"] == "archived")
    );
    assert!(
        events
            .iter()
            .filter(|e| e["module"] == v1)
            .all(|e| e["disposition"] == "done")
    );

    // `module ls` compares the two versions' failure rates.
    let deadline = Instant::now() + Duration::from_secs(20);
    let listed = loop {
        let (code, out, err) = run_wasq(&["module", "ls", "--json", "--config", &cfg]);
        assert_eq!(code, 0, "{err}");
        let rows: serde_json::Value = serde_json::from_str(&out).unwrap();
        let row = rows
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["task_type"] == t.as_str())
            .unwrap()
            .clone();
        let versions = &row["last_hour"]["modules"];
        if versions[&v2]["runs"].as_u64() == Some(on_canary.len() as u64)
            && versions[&v1]["runs"].as_u64() == Some(on_current as u64)
        {
            break row;
        }
        assert!(Instant::now() < deadline, "{row:#}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(listed["canary"]["hash"], v2);
    assert_eq!(listed["canary"]["percent"], 25.0);
    let versions = &listed["last_hour"]["modules"];
    assert_eq!(versions[&v2]["failures"], on_canary.len() as u64);
    assert_eq!(versions[&v1]["failures"], 0);

    // Rolled back: the canary ends, every task runs v1.
    let (code, out, err) = run_wasq(&["module", "rollback", &t, "--config", &cfg]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("canary"), "{out}");
    wait_canary(&t, None, 2).await;
    // The canary was never the type's version, so it is nothing to roll
    // back to.
    let (code, out, err) = run_wasq(&["module", "rollback", &t, "--config", &cfg]);
    assert_ne!(code, 0, "{out}{err}");
    assert!(err.contains("no earlier version"), "{err}");
    let events = run_panics(&q, &t, 100, &mut workers).await;
    assert!(
        events
            .iter()
            .all(|e| e["module"] == v1 && e["disposition"] == "done")
    );

    // Again, then promoted: v2 runs every task.
    push_canary(&guest("misbehave"), &t, "50", &cfg);
    wait_canary(&t, Some(&v2), 2).await;
    let (code, out, err) = run_wasq(&["module", "promote", &t, "--config", &cfg]);
    assert_eq!(code, 0, "{out}{err}");
    wait_running(&t, &v2, 2).await;
    wait_canary(&t, None, 2).await;
    let events = run_panics(&q, &t, 50, &mut workers).await;
    assert!(events.iter().all(|e| e["module"] == v2));
    let history = registry().await.history(&t).await.unwrap();
    let actions: Vec<&str> = history.iter().map(|h| h.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "promote",
            "canary 50 %",
            "canary ended",
            "canary 25 %",
            "push"
        ]
    );
}

/// A reload between a version's preparation and its install turns that
/// version away (it would carry the old limits); the worker prepares it
/// again under the new config. A canary takes a reload's limits, and ends
/// when its type stops coming from the registry.
#[test]
fn a_reload_turns_away_a_version_prepared_before_it_and_retargets_the_canary() {
    let config = |fuel: u64, registry: bool| {
        let module = if registry {
            "\"registry\"".to_owned()
        } else {
            format!("{:?}", example("noop").display().to_string())
        };
        let config = TestConfig::new(&format!(
            "[tasks.\"reload:t\"]\nmodule = {module}\nfuel = {fuel}\n"
        ));
        wasq::config::Config::load(&config.path).unwrap()
    };
    let fuel_of = |runtime: &wasq::runtime::Runtime| {
        runtime
            .task_types()
            .into_iter()
            .find(|t| t.name == "reload:t")
            .map(|t| t.limits.fuel)
    };
    let v1 = unique_component(&example("noop"));
    let v2 = unique_component(&example("noop"));
    let v3 = unique_component(&example("noop"));
    let (h1, h2, h3) = (
        wasq::registry::hash_of(&v1),
        wasq::registry::hash_of(&v2),
        wasq::registry::hash_of(&v3),
    );
    let runtime = wasq::runtime::Runtime::load_with(
        &config(1_000_000, true),
        &BTreeMap::from([("reload:t".to_owned(), v1)]),
    )
    .unwrap();
    assert_eq!(runtime.module_hash_of("reload:t"), Some(h1.clone()));

    // v2 prepared under the old config, installed after a reload: turned away.
    let stale = runtime.prepare("reload:t", v2.clone(), &h2).unwrap();
    let canary = runtime.prepare("reload:t", v3, &h3).unwrap();
    runtime.install_canary(canary, 10.0).unwrap();
    runtime.reconfigure(&config(2_000_000, true)).unwrap();
    assert_eq!(runtime.install(stale).err(), Some(wasq::runtime::Stale));
    assert_eq!(runtime.module_hash_of("reload:t"), Some(h1.clone()));
    assert_eq!(fuel_of(&runtime), Some(Some(2_000_000)));
    // Prepared again, it installs with the new limits.
    let fresh = runtime.prepare("reload:t", v2, &h2).unwrap();
    assert_eq!(fresh.info().limits.fuel, Some(2_000_000));
    assert_eq!(runtime.install(fresh).unwrap(), h1);
    assert_eq!(runtime.module_hash_of("reload:t"), Some(h2));

    // The canary runs on with the reload's limits ...
    assert_eq!(runtime.canary_of("reload:t").map(|c| c.0), Some(h3.clone()));
    runtime.reconfigure(&config(3_000_000, true)).unwrap();
    assert_eq!(runtime.canary_of("reload:t").map(|c| c.0), Some(h3));
    assert_eq!(fuel_of(&runtime), Some(Some(3_000_000)));
    // ... and ends when the type runs a file instead.
    runtime.reconfigure(&config(3_000_000, false)).unwrap();
    assert_eq!(runtime.canary_of("reload:t"), None);
}
