//! Faults wasq must survive, against real Redis servers: workers killed
//! again and again during a steady stream, the queue's master killed (with
//! and without durable enqueues), Redis gone for 30 s, a Redis too slow to
//! renew leases, and SIGTERM with a hundred tasks running. Each test counts
//! every task it enqueued.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::AsyncCommands as _;
use wasq::broker::{Broker, QueueKeys};
use wasq::worker::{Disposition, TaskEvent};
use wasq::{Client, RedisConfig, TaskOptions};
use wasq_tests::redis::{RedisCluster, RedisServer};
use wasq_tests::{TestConfig, unique_queue};

use crate::support::*;

/// Counts of a queue by state, plus its lease set.
async fn snapshot(broker: &Broker, q: &str) -> (wasq::broker::QueueStats, u64) {
    let stats = broker.stats(q).await.unwrap();
    let leases: u64 = broker
        .conn()
        .zcard(QueueKeys::new(q).lease())
        .await
        .unwrap();
    (stats, leases)
}

/// Whether the task hash of `id` exists.
async fn task_exists(broker: &Broker, q: &str, id: &str) -> bool {
    broker
        .conn()
        .exists(QueueKeys::new(q).task(id))
        .await
        .unwrap()
}

/// Waits up to 60 s until every id in `ids` is a completed task of `q`.
async fn wait_completed(broker: &Broker, q: &str, ids: &[&str]) {
    let keys = QueueKeys::new(q);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let completed: Vec<String> = broker.conn().zrange(keys.completed(), 0, -1).await.unwrap();
        if ids.iter().all(|id| completed.iter().any(|c| c == id)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{ids:?} not all completed: {completed:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn kept(q: &str) -> TaskOptions {
    TaskOptions::default()
        .queue(q)
        .retention(Duration::from_secs(3600))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_again_and_again_loses_no_task() {
    let q = unique_queue("killloop");
    let config = config(
        &[(&q, 1, None)],
        "[worker]\nconcurrency = 8\nlease = \"2s\"\nmaintenance_interval = \"200ms\"\n",
    );
    let client = cluster_client().await;
    let total = 300;
    // A steady stream: one task every 10 ms while workers come and go.
    let producer = {
        let client = client.clone();
        let q = q.clone();
        tokio::spawn(async move {
            let mut ids = Vec::new();
            for n in 0..total {
                let info = client
                    .enqueue(
                        payload(&format!(r#"{{"do": "nap", "ms": 80, "n": {n}}}"#)),
                        kept(&q),
                    )
                    .await
                    .unwrap();
                ids.push(info.id);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            ids
        })
    };
    let mut runs: HashMap<String, usize> = HashMap::new();
    let mut count = |events: Vec<serde_json::Value>| {
        for e in events {
            *runs
                .entry(e["id"].as_str().unwrap().to_owned())
                .or_default() += 1;
        }
    };
    let kills = 5;
    for _ in 0..kills {
        let mut victim = SpawnedWorker::start(&config);
        tokio::time::sleep(Duration::from_millis(900)).await;
        victim.kill();
        count(victim.drain_events());
    }
    let last_kill = Instant::now();
    let ids = producer.await.unwrap();
    let mut survivor = SpawnedWorker::start(&config);
    let broker = client.broker();
    let keys = QueueKeys::new(&q);
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let done: u64 = broker.conn().zcard(keys.completed()).await.unwrap();
        if done == total as u64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {done} of {total} tasks completed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let recovered_in = last_kill.elapsed();
    tokio::time::sleep(Duration::from_millis(300)).await;
    count(survivor.drain_events());
    let completed: HashSet<String> = broker.conn().zrange(keys.completed(), 0, -1).await.unwrap();
    let missing: Vec<&String> = ids.iter().filter(|id| !completed.contains(*id)).collect();
    assert!(missing.is_empty(), "never completed: {missing:?}");
    let (stats, leases) = snapshot(broker, &q).await;
    assert_eq!(
        (
            stats.pending,
            stats.active,
            stats.retry,
            stats.archived,
            leases
        ),
        (0, 0, 0, 0, 0),
        "{stats:?}"
    );
    let twice = runs.values().filter(|&&n| n > 1).count();
    println!(
        "worker killed {kills} times during a stream of {total} tasks: all {total} completed, \
         {twice} seen completing more than once, last task done {recovered_in:.1?} after the last kill (lease 2s)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_a_hundred_tasks_running_completes_or_requeues_each() {
    let q = unique_queue("term100");
    let mut body = shared_cluster_toml();
    body.push_str(&queue_sections(&[(&q, 1, None)]));
    body.push_str("[worker]\nconcurrency = 100\nshutdown_timeout = \"2s\"\n");
    body.push_str(GUEST_TYPES);
    let config = TestConfig::with_sandboxes(&body, 100);
    let mut worker = SpawnedWorker::start(&config);
    let client = cluster_client().await;
    let mut short = HashSet::new();
    let mut long = HashSet::new();
    for n in 0..100 {
        let ms = if n % 2 == 0 { 300 } else { 60_000 };
        let info = client
            .enqueue(
                payload(&format!(r#"{{"do": "nap", "ms": {ms}, "n": {n}}}"#)),
                kept(&q),
            )
            .await
            .unwrap();
        if ms == 300 {
            short.insert(info.id);
        } else {
            long.insert(info.id);
        }
    }
    let broker = client.broker();
    let keys = QueueKeys::new(&q);
    // All 100 claimed; the short ones are still napping.
    wait_for(|| async {
        let (s, _) = snapshot(broker, &q).await;
        s.active + s.completed == 100
    })
    .await;
    worker.signal(libc::SIGTERM);
    let stopping = Instant::now();
    let status = loop {
        if let Some(status) = worker.exited() {
            break status;
        }
        assert!(
            stopping.elapsed() < Duration::from_secs(20),
            "the worker did not stop"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status:?}");
    let completed: HashSet<String> = broker.conn().zrange(keys.completed(), 0, -1).await.unwrap();
    let pending: HashSet<String> = broker.conn().lrange(keys.pending(), 0, -1).await.unwrap();
    assert_eq!(completed, short, "every short task completed");
    assert_eq!(pending, long, "every long task is pending again");
    let (stats, leases) = snapshot(broker, &q).await;
    assert_eq!((stats.active, leases), (0, 0));
    for id in &long {
        let state: String = broker.conn().hget(keys.task(id), "state").await.unwrap();
        assert_eq!(state, "pending");
    }
    println!(
        "SIGTERM with 100 running: 50 completed, 50 requeued, stopped in {:.1?}",
        stopping.elapsed()
    );
}

fn shared_cluster_toml() -> String {
    wasq_tests::redis::shared_cluster().toml()
}

/// One failover: a stream of enqueues and a worker on `q`, the master of
/// `q`'s slot killed mid-stream, then restarted (it returns as a replica).
/// Returns (acknowledged enqueues, of those lost, seconds until the first
/// enqueue acknowledged after the kill).
async fn failover_round(cluster: &mut RedisCluster, q: &str, durable: bool) -> (usize, usize, f64) {
    let mut body = cluster.toml();
    body.push_str(&queue_sections(&[(q, 1, None)]));
    body.push_str("[worker]\nlease = \"3s\"\nmaintenance_interval = \"200ms\"\n");
    body.push_str(GUEST_TYPES);
    let config = TestConfig::new(&body);
    let worker = RunningWorker::start(&config).await;
    let mut redis = cluster.redis_config();
    if durable {
        redis = redis.durable(1, Duration::from_secs(2));
    }
    let client = Client::connect(&redis).await.unwrap();
    let acked = Arc::new(Mutex::new(Vec::<(String, Instant)>::new()));
    let failed = Arc::new(Mutex::new(0usize));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let producer = {
        let (client, q, acked, failed, stop) = (
            client.clone(),
            q.to_owned(),
            acked.clone(),
            failed.clone(),
            stop.clone(),
        );
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                n += 1;
                let task = payload(&format!(r#"{{"do": "ok", "n": {n}}}"#));
                match client.enqueue(task, kept(&q)).await {
                    Ok(info) => acked.lock().unwrap().push((info.id, Instant::now())),
                    Err(_) => *failed.lock().unwrap() += 1,
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let slot = cluster.slot_of(&QueueKeys::new(q).pending());
    let victim = cluster.master_index_of(slot);
    cluster.nodes[victim].kill();
    let killed = Instant::now();
    // A replica takes over the slot.
    loop {
        if cluster.serving_master(slot).is_some_and(|m| m != victim) {
            break;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(30),
            "no failover within 30 s: {}",
            cluster.nodes[(victim + 1) % cluster.nodes.len()].cli(&["CLUSTER", "NODES"])
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let failed_over = killed.elapsed();
    // Durable enqueues need a replica again: the old master comes back
    // (it rejoins as a replica of the new one).
    cluster.nodes[victim].restart();
    tokio::task::block_in_place(|| cluster.wait_healthy());
    let resumed = loop {
        let first_after = acked
            .lock()
            .unwrap()
            .iter()
            .find(|(_, at)| *at > killed)
            .map(|(_, at)| at.duration_since(killed));
        if let Some(after) = first_after {
            break after;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(60),
            "enqueues never succeeded again"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Keep going a little on the new topology, then stop the stream.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    producer.await.unwrap();
    let acked: Vec<(String, Instant)> = acked.lock().unwrap().clone();
    // The worker carries on without a restart: everything still there is
    // processed (kept as completed).
    let broker = Broker::connect(&cluster.redis_config()).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (s, leases) = snapshot(&broker, q).await;
        if s.pending + s.active + s.retry + s.scheduled == 0 && leases == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "not drained: {s:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut lost = 0;
    for (id, _) in &acked {
        if !task_exists(&broker, q, id).await {
            lost += 1;
        }
    }
    let events = worker.stop().await;
    drop(events);
    println!(
        "failover ({}): slot {slot} moved to a replica {failed_over:.1?} after the master was killed; \
         first acknowledged enqueue {resumed:.1?} after; {} enqueues refused meanwhile",
        if durable { "durable" } else { "plain" },
        failed.lock().unwrap()
    );
    (acked.len(), lost, resumed.as_secs_f64())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_master_fails_over_and_durable_enqueues_lose_nothing() {
    let mut cluster = tokio::task::spawn_blocking(|| RedisCluster::start(3, 1))
        .await
        .unwrap();
    let plain_q = unique_queue("failover-plain");
    let (plain_acked, plain_lost, plain_resumed) =
        failover_round(&mut cluster, &plain_q, false).await;
    let durable_q = unique_queue("failover-durable");
    let (durable_acked, durable_lost, durable_resumed) =
        failover_round(&mut cluster, &durable_q, true).await;
    println!(
        "master failover: without WAIT {plain_lost} of {plain_acked} acknowledged enqueues lost, \
         enqueues succeeded again after {plain_resumed:.1} s; durable (WAIT 1): {durable_lost} of \
         {durable_acked} lost, enqueues resumed after {durable_resumed:.1} s"
    );
    assert_eq!(durable_lost, 0, "durable enqueues were lost in a failover");
    assert!(plain_acked > 100 && durable_acked > 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_gone_for_thirty_seconds_mid_run_is_survived() {
    let dir = tempfile::tempdir().unwrap();
    let mut redis = RedisServer::start(dir.path(), false);
    let url = format!("redis://{}", redis.addr());
    let q = unique_queue("outage");
    let mut body = format!("[redis]\nurl = {url:?}\n");
    body.push_str(&queue_sections(&[(&q, 1, None)]));
    body.push_str("[worker]\nlease = \"6s\"\n");
    body.push_str(GUEST_TYPES);
    let config = TestConfig::new(&body);
    let log = config.dir.path().join("worker.log");
    let mut worker = SpawnedWorker::start_logging(&config, &log);
    let client = Client::connect(&RedisConfig::single(&url)).await.unwrap();
    // One task runs across the outage: its lease cannot be renewed, so the
    // worker stops it and gives it back when Redis returns.
    let across = client
        .enqueue(payload(r#"{"do": "nap", "ms": 8000}"#), kept(&q))
        .await
        .unwrap();
    let keys = QueueKeys::new(&q);
    wait_for(|| async {
        client
            .broker()
            .conn()
            .llen::<_, u64>(keys.active())
            .await
            .unwrap()
            == 1
    })
    .await;
    redis.kill();
    let cpu_before = wasq_tests::procfs::cpu_seconds(worker.pid() as u32);
    let log_before = std::fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .count();

    // The CLI says what is wrong, after retrying for its connect timeout.
    let started = Instant::now();
    let (code, _, err) =
        wasq_tests::run_wasq(&["stats", "--redis-url", &url, "--connect-timeout", "2s"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("connecting to Redis") && err.contains("gave up after"),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));

    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(
        worker.child.0.try_wait().unwrap().is_none(),
        "the worker exited while Redis was away"
    );
    let cpu = wasq_tests::procfs::cpu_seconds(worker.pid() as u32) - cpu_before;
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    let log_lines = log_text.lines().count() - log_before;
    assert!(
        cpu < 3.0,
        "the worker burnt {cpu:.2} s of CPU in 30 s without Redis"
    );
    assert!(
        log_lines < 150,
        "{log_lines} log lines in 30 s without Redis: {log_text}"
    );
    assert!(
        log_text.contains("lease could not be renewed"),
        "the running task was not stopped: {log_text}"
    );
    redis.restart();
    // The stopped task comes back and completes, and new tasks run.
    let fresh = client
        .enqueue(payload(r#"{"do": "ok"}"#), kept(&q))
        .await
        .unwrap();
    let broker = client.broker();
    wait_completed(broker, &q, &[&across.id, &fresh.id]).await;
    println!(
        "30 s without Redis: {cpu:.2} s of worker CPU, {log_lines} log lines; all tasks completed after it returned"
    );
}

/// The time spans (Unix ms) each task ran, per worker.
fn spans(events: &[TaskEvent]) -> Vec<(String, u64, u64)> {
    events
        .iter()
        .filter(|e| e.started_at_ms > 0)
        .map(|e| {
            (
                e.id.clone(),
                e.started_at_ms,
                e.started_at_ms + e.micros / 1000,
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_too_slow_to_renew_leases_never_gets_a_task_run_twice_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start(dir.path(), false);
    let url = format!("redis://{}", redis.addr());
    let q = unique_queue("slow");
    let mut body = format!("[redis]\nurl = {url:?}\n");
    body.push_str(&queue_sections(&[(&q, 1, None)]));
    body.push_str("[worker]\nlease = \"2s\"\nmaintenance_interval = \"200ms\"\n");
    body.push_str(GUEST_TYPES);
    let config = TestConfig::new(&body);
    let a = RunningWorker::start(&config).await;
    let b = RunningWorker::start(&config).await;
    let client = Client::connect(&RedisConfig::single(&url)).await.unwrap();
    let task = client
        .enqueue(payload(r#"{"do": "nap", "ms": 3000}"#), kept(&q))
        .await
        .unwrap();
    let keys = QueueKeys::new(&q);
    wait_for(|| async {
        client
            .broker()
            .conn()
            .llen::<_, u64>(keys.active())
            .await
            .unwrap()
            == 1
    })
    .await;
    // Writes (and so every script) stall for 4 s, twice the lease.
    assert_eq!(
        redis.cli(&["CLIENT", "PAUSE", "4000", "WRITE"]).trim(),
        "OK"
    );
    let broker = client.broker();
    wait_completed(broker, &q, &[&task.id]).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let a_events = a.stop().await;
    let b_events = b.stop().await;
    let collect = |mut rx: tokio::sync::mpsc::UnboundedReceiver<TaskEvent>| {
        let mut out = Vec::new();
        while let Ok(e) = rx.try_recv() {
            out.push(e);
        }
        out
    };
    let (a_events, b_events) = (collect(a_events), collect(b_events));
    let all: Vec<&TaskEvent> = a_events.iter().chain(&b_events).collect();
    assert!(
        all.iter()
            .any(|e| e.error.as_deref() == Some("stopped: the lease could not be renewed in time")),
        "the holder did not stop the task when its lease ran out: {all:#?}"
    );
    assert!(
        all.iter()
            .any(|e| matches!(e.disposition, Disposition::Completed)),
        "{all:#?}"
    );
    // No two runs of the task overlap, on one worker or across both.
    let mut runs: Vec<(String, u64, u64)> = spans(&a_events);
    runs.extend(spans(&b_events));
    runs.sort_by_key(|r| r.1);
    for pair in runs.windows(2) {
        assert!(
            pair[0].2 <= pair[1].1,
            "two runs overlapped: {runs:?} ({all:#?})"
        );
    }
    println!(
        "slow Redis: {} runs of the task, none overlapping",
        runs.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_enqueues_are_refused_when_no_replica_confirms_them() {
    let dir = tempfile::tempdir().unwrap();
    let master = RedisServer::start(dir.path(), false);
    let replica = RedisServer::start(dir.path(), false);
    assert_eq!(
        replica
            .cli(&["REPLICAOF", "127.0.0.1", &master.port.to_string()])
            .trim(),
        "OK"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !replica
        .cli(&["INFO", "replication"])
        .contains("master_link_status:up")
    {
        assert!(Instant::now() < deadline, "the replica never synced");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let url = format!("redis://{}", master.addr());
    let config = RedisConfig::single(&url).durable(1, Duration::from_millis(300));
    let client = Client::connect(&config).await.unwrap();
    let q = unique_queue("durable");
    client
        .enqueue(payload(r#"{"do": "ok"}"#), TaskOptions::default().queue(&q))
        .await
        .expect("the replica confirms");

    // The replica stops (SIGSTOP): the enqueue is written on the master but
    // not confirmed, so it is not acknowledged.
    let replica_pid = replica.pid() as i32;
    // SAFETY: kill(2) on a redis-server this test started.
    unsafe {
        libc::kill(replica_pid, libc::SIGSTOP);
    }
    let started = Instant::now();
    let err = client
        .enqueue(
            payload(r#"{"do": "ok", "n": 2}"#),
            TaskOptions::default().queue(&q).task_id("unconfirmed"),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, wasq::EnqueueError::NotDurable { ref id, .. } if id == "unconfirmed"),
        "{err}"
    );
    assert!(err.to_string().contains("0 of 1 replicas"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // SAFETY: as above.
    unsafe {
        libc::kill(replica_pid, libc::SIGCONT);
    }
    // Once the replica is back, retrying with the same id tells whether the
    // first write survived: here it did (a conflict).
    let again = client
        .enqueue(
            payload(r#"{"do": "ok", "n": 2}"#),
            TaskOptions::default().queue(&q).task_id("unconfirmed"),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(again, wasq::EnqueueError::IdConflict { .. }),
        "{again}"
    );
    client
        .enqueue(
            payload(r#"{"do": "ok", "n": 3}"#),
            TaskOptions::default().queue(&q),
        )
        .await
        .expect("confirmed again once the replica is back");
}
