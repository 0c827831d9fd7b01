//! What a worker recovers from, on the cluster and on a single Redis:
//! messages that are not a `TaskMessage`, abandoned leases of deleted or
//! garbled tasks, a graceful shutdown with tasks running, a killed worker
//! whose task another takes over after the lease; a guest running longer
//! than its lease keeps it and shows in `asynq:workers` at once; Redis not
//! there at the start, then restarted.

use std::time::{Duration, Instant};

use prost::Message as _;
use redis::AsyncCommands as _;
use tokio::sync::mpsc;
use wasq::broker::QueueKeys;
use wasq::proto::TaskMessage;
use wasq::worker::Disposition;
use wasq::{Client, RedisConfig, TaskOptions};
use wasq_tests::{TestConfig, unique_queue};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_msg_that_is_not_a_task_message_is_archived() {
    let q = unique_queue("garbage");
    let config = config(&[(&q, 1, None)], "");
    let client = cluster_client().await;
    let keys = QueueKeys::new(&q);
    let mut conn = client.broker().conn();
    client.broker().register_queue(&q).await.unwrap();
    let _: () = redis::pipe()
        .hset(keys.task("junk"), "msg", "this is not protobuf \u{1}\u{2}")
        .hset(keys.task("junk"), "state", "pending")
        .lpush(keys.pending(), "junk")
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut worker = RunningWorker::start(&config).await;
    let event = &worker.next(1, Duration::from_secs(10)).await[0];
    assert_eq!(
        (event.id.as_str(), event.disposition),
        ("junk", Disposition::Archived)
    );
    assert!(
        event
            .error
            .as_deref()
            .unwrap()
            .contains("not a valid Asynq TaskMessage")
    );
    // The worker carries on with real tasks.
    client
        .enqueue(payload(r#"{"do": "ok"}"#), TaskOptions::default().queue(&q))
        .await
        .unwrap();
    assert_eq!(
        worker.next(1, Duration::from_secs(10)).await[0].disposition,
        Disposition::Done
    );
    worker.stop().await;
}

/// Recovery after a worker died must not stall on a lease whose task hash
/// was deleted by hand, or whose `msg` is missing or garbled: those leases
/// are dropped or archived, and the rest of the queue is recovered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_leases_of_deleted_or_garbled_tasks_do_not_stall_recovery() {
    let q = unique_queue("orphans");
    let config = config(
        &[(&q, 1, None)],
        "[worker]\nmaintenance_interval = \"200ms\"\n",
    );
    let client = cluster_client().await;
    let keys = QueueKeys::new(&q);
    let mut conn = client.broker().conn();
    client.broker().register_queue(&q).await.unwrap();
    let expired = wasq::broker::now_secs() - 60;
    let good = TaskMessage {
        r#type: "bad".into(),
        payload: br#"{"do": "ok"}"#.to_vec(),
        id: "good".into(),
        queue: q.clone(),
        retry: 3,
        timeout: 60,
        ..Default::default()
    };
    let _: () = redis::pipe()
        // A lease whose hash is gone.
        .lpush(keys.active(), "ghost")
        .zadd(keys.lease(), "ghost", expired)
        // A hash whose msg is not a TaskMessage, and one without msg.
        .hset(keys.task("garbled"), "msg", "not protobuf \u{1}")
        .hset(keys.task("garbled"), "state", "active")
        .hset(keys.task("garbled"), "lease_owner", "a-dead-worker")
        .lpush(keys.active(), "garbled")
        .zadd(keys.lease(), "garbled", expired)
        .hset(keys.task("no-msg"), "state", "active")
        .hset(keys.task("no-msg"), "lease_owner", "a-dead-worker")
        .lpush(keys.active(), "no-msg")
        .zadd(keys.lease(), "no-msg", expired)
        // A sound task the dead worker held.
        .hset(keys.task("good"), "msg", good.encode_to_vec())
        .hset(keys.task("good"), "state", "active")
        .hset(keys.task("good"), "lease_owner", "a-dead-worker")
        .lpush(keys.active(), "good")
        .zadd(keys.lease(), "good", expired)
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut worker = RunningWorker::start(&config).await;
    let event = &worker.next(1, Duration::from_secs(20)).await[0];
    assert_eq!(
        (event.id.as_str(), event.disposition),
        ("good", Disposition::Done)
    );
    wait_for(|| async {
        let stats = client.broker().stats(&q).await.unwrap();
        (stats.active, stats.archived) == (0, 2)
    })
    .await;
    let leases: u64 = conn.zcard(keys.lease()).await.unwrap();
    assert_eq!(leases, 0);
    let archived: Vec<String> = conn.zrange(keys.archived(), 0, -1).await.unwrap();
    assert_eq!(archived.len(), 2);
    assert!(archived.contains(&"garbled".to_string()) && archived.contains(&"no-msg".to_string()));
    // The garbled bytes are kept for inspection.
    let raw = client.broker().task_msg(&keys, "garbled").await.unwrap();
    assert_eq!(raw.as_deref(), Some(&b"not protobuf \x01"[..]));
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_requeues_unfinished_tasks() {
    let q = unique_queue("graceful");
    // One slot, two long tasks: the second must stay pending, and the
    // shutdown must not wait for a slot to free up before it starts.
    let config = config(
        &[(&q, 1, None)],
        "[worker]\nconcurrency = 1\nshutdown_timeout = \"300ms\"\n",
    );
    let worker = RunningWorker::start(&config).await;
    let client = cluster_client().await;
    let mut ids = Vec::new();
    for n in 0..2 {
        let info = client
            .enqueue(
                payload(&format!(r#"{{"do": "nap", "ms": 30000, "n": {n}}}"#)),
                TaskOptions::default().queue(&q),
            )
            .await
            .unwrap();
        ids.push(info.id);
    }
    let keys = QueueKeys::new(&q);
    let conn = client.broker().conn();
    wait_for(|| async { conn.clone().llen::<_, u64>(keys.active()).await.unwrap() == 1 }).await;
    let stopping = Instant::now();
    let mut events = worker.stop().await;
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "shutdown took {:?}",
        stopping.elapsed()
    );
    let event = events.recv().await.unwrap();
    assert_eq!(event.disposition, Disposition::Requeued);
    assert_eq!(event.id, ids[0], "the older task ran first");
    let mut pending: Vec<String> = conn.clone().lrange(keys.pending(), 0, -1).await.unwrap();
    pending.sort();
    ids.sort();
    assert_eq!(pending, ids, "both tasks are pending again");
    let active: u64 = conn.clone().llen(keys.active()).await.unwrap();
    assert_eq!(active, 0);
    for id in &ids {
        let state: String = conn.clone().hget(keys.task(id), "state").await.unwrap();
        assert_eq!(state, "pending");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_workers_task_is_recovered_after_its_lease_and_completed_by_another() {
    let q = unique_queue("killed");
    let config = config(&[(&q, 1, None)], "[worker]\nlease = \"2s\"\n");
    let client = cluster_client().await;
    let mut victim = SpawnedWorker::start(&config);
    let info = client
        .enqueue(
            payload(r#"{"do": "nap", "ms": 1500}"#),
            TaskOptions::default().queue(&q),
        )
        .await
        .unwrap();
    let keys = QueueKeys::new(&q);
    let conn = client.broker().conn();
    wait_for(|| async { conn.clone().llen::<_, u64>(keys.active()).await.unwrap() == 1 }).await;
    victim.kill();
    let killed_at = Instant::now();

    let mut rescuer = RunningWorker::start(&config).await;
    let events = rescuer.next(1, Duration::from_secs(20)).await;
    assert_eq!(
        (events[0].id.as_str(), events[0].disposition),
        (info.id.as_str(), Disposition::Done)
    );
    assert!(
        killed_at.elapsed() >= Duration::from_secs(1),
        "recovered before the lease expired"
    );
    let stats = client.broker().stats(&q).await.unwrap();
    assert_eq!((stats.active, stats.pending, stats.retry), (0, 0, 0));
    rescuer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_computing_longer_than_the_lease_keeps_it() {
    let (q, config, mut first, client) = one_queue("longrun", "[worker]\nlease = \"1s\"\n").await;
    let info = client
        .enqueue(
            payload(r#"{"do": "spin", "iters": 6000000000}"#),
            TaskOptions::default().queue(&q),
        )
        .await
        .unwrap();
    let keys = QueueKeys::new(&q);
    let conn = client.broker().conn();
    wait_for(|| async { conn.clone().llen::<_, u64>(keys.active()).await.unwrap() == 1 }).await;
    // Asynq's tools see the running task in `asynq:workers`.
    let shown = running_task_info(&client, &info.id).await;
    assert_eq!(
        (shown.task_type.as_str(), shown.queue.as_str()),
        ("bad", q.as_str())
    );
    assert_eq!(
        shown.task_payload,
        br#"{"do": "spin", "iters": 6000000000}"#
    );
    let start = shown.start_time.expect("a start time").seconds;
    assert!((wasq::broker::now_secs() - start).abs() < 30);
    // No deadline given: Asynq's default timeout of 30 minutes, but the
    // task type's timeout (60 s) is shorter, and that is what the sandbox
    // enforces.
    assert_eq!(shown.deadline.expect("a deadline").seconds - start, 60);
    // A second worker on the same queue must not get the task meanwhile.
    let mut second = RunningWorker::start(&config).await;
    let started = Instant::now();
    let events = first.next(1, Duration::from_secs(60)).await;
    assert_eq!(
        (events[0].id.as_str(), events[0].disposition),
        (info.id.as_str(), Disposition::Done)
    );
    assert!(
        started.elapsed() > Duration::from_millis(1500),
        "the guest was too quick to outlive its lease: {:?}",
        started.elapsed()
    );
    second.quiet(Duration::from_millis(500)).await;
    second.stop().await;
    first.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_task_shows_in_asynq_workers_within_a_second() {
    // The default lease (30 s) heartbeats every 10 s: the entry must not
    // wait for one.
    let (q, _config, worker, client) = one_queue("shown", "").await;
    // The worker's first heartbeat has passed by now.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let info = client
        .enqueue(
            payload(r#"{"do": "nap", "ms": 5000}"#),
            TaskOptions::default()
                .queue(&q)
                .timeout(Duration::from_secs(20)),
        )
        .await
        .unwrap();
    let keys = QueueKeys::new(&q);
    let conn = client.broker().conn();
    wait_for(|| async { conn.clone().llen::<_, u64>(keys.active()).await.unwrap() == 1 }).await;
    let started = Instant::now();
    let shown = running_task_info(&client, &info.id).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "shown after {:?}",
        started.elapsed()
    );
    // The task's own timeout (20 s) is shorter than the type's (60 s).
    let start = shown.start_time.expect("a start time").seconds;
    assert_eq!(shown.deadline.expect("a deadline").seconds - start, 20);
    worker.stop().await;
}

/// The `WorkerInfo` a worker wrote into `asynq:workers` for task `id`.
async fn running_task_info(client: &Client, id: &str) -> wasq::proto::WorkerInfo {
    let mut conn = client.broker().conn();
    let started = Instant::now();
    loop {
        let registries: Vec<String> = conn
            .zrange(wasq::broker::keys::ALL_WORKERS, 0, -1)
            .await
            .unwrap();
        for registry in registries {
            let raw: Option<Vec<u8>> = conn.hget(&registry, id).await.unwrap();
            if let Some(raw) = raw {
                return wasq::proto::WorkerInfo::decode(raw.as_slice()).unwrap();
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "task {id} never showed in asynq:workers"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_waits_for_redis_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let port = wasq_tests::redis::RedisServer::free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let q = unique_queue("restart");
    let mut body = format!("[redis]\nurl = {url:?}\n");
    body.push_str(&queue_sections(&[(&q, 1, None)]));
    body.push_str(GUEST_TYPES);
    let config = TestConfig::new(&body);
    // Redis is not there yet: the worker keeps trying instead of exiting.
    let mut worker = SpawnedWorker::start(&config);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        worker.exited().is_none(),
        "the worker gave up while Redis was down"
    );
    let mut redis = wasq_tests::redis::RedisServer::start_on(dir.path(), port, false);
    enqueue_and_await_done(&url, &q, 1, &mut worker.lines).await;

    // Redis restarts (same port, same append-only file): the worker reconnects.
    redis.kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _redis = wasq_tests::redis::RedisServer::start_on(dir.path(), port, false);
    enqueue_and_await_done(&url, &q, 2, &mut worker.lines).await;
}

/// Enqueues one task with a fresh client and waits for the worker's JSON
/// line saying it is done.
async fn enqueue_and_await_done(
    url: &str,
    queue: &str,
    n: u32,
    lines: &mut mpsc::UnboundedReceiver<String>,
) {
    let client = Client::connect(&RedisConfig::single(url)).await.unwrap();
    let info = client
        .enqueue(
            payload(&format!(r#"{{"do": "ok", "n": {n}}}"#)),
            TaskOptions::default().queue(queue),
        )
        .await
        .unwrap();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.recv())
        .await
        .expect("the worker reported nothing in time")
        .unwrap();
    assert!(
        line.contains(&info.id) && line.contains("\"done\""),
        "{line}"
    );
}
