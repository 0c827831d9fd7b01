//! The broker, worker and client against a real Redis Cluster (and a single
//! Redis where it differs): the seed tutorial and every state change.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use prost::Message as _;
use redis::AsyncCommands as _;
use tokio::sync::mpsc;
use wasq::broker::{Broker, Enqueued, QueueKeys};
use wasq::proto::TaskMessage;
use wasq::worker::Disposition;
use wasq::{Client, EnqueueError, RedisConfig, Task, TaskOptions, TaskState};
use wasq_tests::redis::{RedisServer, shared_cluster, shared_single};
use wasq_tests::{TestConfig, run_wasq, unique_queue};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_tutorial_end_to_end_on_the_cluster() {
    let images = tempfile::tempdir().unwrap();
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../examples-wasm/images/sample.png"
        ),
        images.path().join("cat.png"),
    )
    .unwrap();
    let mut body = shared_cluster().toml();
    body.push_str("\n[worker]\nconcurrency = 20\n");
    body.push_str(&queue_sections(&[
        ("notifications", 1, None),
        ("webhooks", 1, None),
        ("images", 1, None),
    ]));
    body.push_str(&wasq_tests::tutorial_task_types(images.path()));
    let config = TestConfig::new(&body);
    let mut worker = RunningWorker::start(&config).await;
    let client = cluster_client().await;
    let tasks = [
        (
            "notifications:email",
            r#"{"to": 42, "from": 7}"#,
            "notifications",
        ),
        ("webhooks:sync", r#"{"data": 1234}"#, "webhooks"),
        (
            "images:resize",
            r#"{"src": "/images/cat.png", "width": 32, "height": 24}"#,
            "images",
        ),
    ];
    for (task_type, json, queue) in tasks {
        let info = client
            .enqueue(
                Task::new(task_type, json.as_bytes().to_vec()),
                TaskOptions::default().queue(queue),
            )
            .await
            .unwrap();
        assert_eq!(
            (info.queue.as_str(), info.state),
            (queue, TaskState::Pending)
        );
    }
    let events = worker.next(3, Duration::from_secs(30)).await;
    let results: HashMap<&str, &str> = events
        .iter()
        .map(|e| {
            assert_eq!(e.disposition, Disposition::Done, "{e:?}");
            (e.task_type.as_str(), e.result.as_deref().unwrap())
        })
        .collect();
    assert_eq!(results["notifications:email"], "email sent from 7 to 42");
    assert_eq!(results["webhooks:sync"], "webhook 1234 processed");
    assert!(results["images:resize"].contains(r#""width":32,"height":24"#));
    assert!(images.path().join("cat.thumb.png").exists());

    // The worker registered itself where Asynq's tools look.
    let mut conn = client.broker().conn();
    let servers: Vec<String> = conn
        .zrange(wasq::broker::keys::ALL_SERVERS, 0, -1)
        .await
        .unwrap();
    // Other tests' workers share the cluster: find ours by its queues.
    let mut ours = None;
    for key in servers.iter().filter(|k| k.starts_with("asynq:servers:{")) {
        let raw: Option<Vec<u8>> = conn.get(key).await.unwrap();
        let Some(raw) = raw else { continue };
        let info = <wasq::proto::ServerInfo as prost::Message>::decode(raw.as_slice()).unwrap();
        if info.queues.contains_key("notifications") {
            ours = Some(info);
        }
    }
    let info = ours.expect("the worker is not registered in asynq:servers");
    assert_eq!(info.concurrency, 20);
    assert_eq!(info.queues.len(), 3);
    assert_eq!(info.status, "active");
    worker.stop().await;

    // `wasq queue ls --cluster` names each queue's slot and the nodes holding it.
    let addrs = shared_cluster().addrs().join(",");
    let (code, out, err) = run_wasq(&["queue", "ls", "--cluster", "--cluster-addrs", &addrs]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("Queue"), "{out}");
    for queue in ["notifications", "webhooks", "images"] {
        let slot: u16 = shared_cluster().nodes[0]
            .cli(&["CLUSTER", "KEYSLOT", &format!("asynq:{{{queue}}}:pending")])
            .trim()
            .parse()
            .unwrap();
        let master = shared_cluster().master_of(slot);
        let master_id = master.cli(&["CLUSTER", "MYID"]).trim().to_owned();
        let line = out
            .lines()
            .find(|l| l.split_whitespace().next() == Some(queue))
            .unwrap_or_else(|| panic!("{queue} missing in:\n{out}"));
        assert!(line.contains(&format!(" {slot} ")), "{line}");
        assert!(
            line.contains(&format!("{{{master_id} {}}}", master.addr())),
            "{line}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_tasks_wait_for_their_time() {
    let (q, _config, mut worker, client) = one_queue("sched", "").await;
    let info = client
        .enqueue(
            payload(r#"{"do": "ok"}"#),
            TaskOptions::default()
                .queue(&q)
                .process_in(Duration::from_secs(2)),
        )
        .await
        .unwrap();
    assert_eq!(info.state, TaskState::Scheduled);
    let enqueued = Instant::now();
    worker.quiet(Duration::from_millis(1000)).await;
    let events = worker.next(1, Duration::from_secs(6)).await;
    assert_eq!(events[0].id, info.id);
    assert!(
        enqueued.elapsed() >= Duration::from_secs(1),
        "ran early: {:?}",
        enqueued.elapsed()
    );
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_back_off_then_archive() {
    let (q, _config, mut worker, client) = one_queue("retry", "").await;
    let info = client
        .enqueue(
            payload(r#"{"do": "panic"}"#),
            TaskOptions::default().queue(&q).max_retry(2),
        )
        .await
        .unwrap();
    let started = Instant::now();
    let events = worker.next(3, Duration::from_secs(20)).await;
    let dispositions: Vec<Disposition> = events.iter().map(|e| e.disposition).collect();
    assert_eq!(
        dispositions,
        [
            Disposition::Retry,
            Disposition::Retry,
            Disposition::Archived
        ]
    );
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "no backoff: {:?}",
        started.elapsed()
    );
    assert!(
        events[2]
            .error
            .as_deref()
            .unwrap()
            .contains("deliberate panic")
    );

    let broker = client.broker().clone();
    let stats = broker.stats(&q).await.unwrap();
    assert_eq!(
        (stats.archived, stats.retry, stats.pending, stats.active),
        (1, 0, 0, 0)
    );
    assert_eq!((stats.processed_today, stats.failed_today), (3, 3));
    let msg = broker
        .task_msg(&QueueKeys::new(&q), &info.id)
        .await
        .unwrap()
        .unwrap();
    let msg = <wasq::proto::TaskMessage as prost::Message>::decode(msg.as_slice()).unwrap();
    assert_eq!(msg.retried, 2);
    assert!(msg.error_msg.contains("panic"), "{}", msg.error_msg);
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_retry_archives_at_once_and_revoke_deletes() {
    let (q, _config, mut worker, client) = one_queue("skip", "").await;
    let bad = client
        .enqueue(
            payload(r#"{"do": 7}"#),
            TaskOptions::default().queue(&q).max_retry(5),
        )
        .await
        .unwrap();
    let event = &worker.next(1, Duration::from_secs(10)).await[0];
    assert_eq!(
        (event.id.as_str(), event.disposition),
        (bad.id.as_str(), Disposition::Archived)
    );

    // Unique: revoking (and succeeding) releases the lock at once.
    let unique = || {
        TaskOptions::default()
            .queue(&q)
            .unique(Duration::from_secs(3600))
    };
    let revoked = client
        .enqueue(payload(r#"{"do": "revoke"}"#), unique())
        .await
        .unwrap();
    let event = &worker.next(1, Duration::from_secs(10)).await[0];
    assert_eq!(
        (event.id.as_str(), event.disposition),
        (revoked.id.as_str(), Disposition::Dropped)
    );
    let keys = QueueKeys::new(&q);
    assert!(
        client
            .broker()
            .task_msg(&keys, &revoked.id)
            .await
            .unwrap()
            .is_none()
    );
    let lock = keys.unique("bad", br#"{"do": "revoke"}"#);
    let mut conn = client.broker().conn();
    assert!(!conn.exists::<_, bool>(&lock).await.unwrap());
    let again = client
        .enqueue(payload(r#"{"do": "revoke"}"#), unique())
        .await
        .expect("the revoked task's unique lock is released");
    assert_eq!(
        worker.next(1, Duration::from_secs(10)).await[0].id,
        again.id
    );
    let done = client
        .enqueue(payload(r#"{"do": "ok"}"#), unique())
        .await
        .unwrap();
    assert_eq!(worker.next(1, Duration::from_secs(10)).await[0].id, done.id);
    client
        .enqueue(payload(r#"{"do": "ok"}"#), unique())
        .await
        .expect("the finished task's unique lock is released");
    assert_eq!(
        worker.next(1, Duration::from_secs(10)).await[0].disposition,
        Disposition::Done
    );
    let stats = client.broker().stats(&q).await.unwrap();
    assert_eq!(
        (stats.archived, stats.pending, stats.active, stats.retry),
        (1, 0, 0, 0)
    );
    worker.stop().await;
}

#[tokio::test]
async fn unique_tasks_and_task_ids_reject_duplicates() {
    let q = unique_queue("uniq");
    let client = cluster_client().await;
    let opts = || {
        TaskOptions::default()
            .queue(&q)
            .unique(Duration::from_secs(3600))
    };
    client
        .enqueue(payload(r#"{"do": "ok"}"#), opts())
        .await
        .unwrap();
    match client.enqueue(payload(r#"{"do": "ok"}"#), opts()).await {
        Err(EnqueueError::Duplicate { queue, .. }) => assert_eq!(queue, q),
        other => panic!("expected a duplicate, got {other:?}"),
    }
    // Another payload is not a duplicate.
    client
        .enqueue(payload(r#"{"do": "ok", "n": 2}"#), opts())
        .await
        .unwrap();

    let id = format!("order-{}", unique_queue("id"));
    let with_id = || TaskOptions::default().queue(&q).task_id(&id);
    client
        .enqueue(payload(r#"{"do": "ok"}"#), with_id())
        .await
        .unwrap();
    match client.enqueue(payload(r#"{"do": "ok"}"#), with_id()).await {
        Err(EnqueueError::IdConflict { id: got, .. }) => assert_eq!(got, id),
        other => panic!("expected an id conflict, got {other:?}"),
    }
    assert_eq!(client.broker().stats(&q).await.unwrap().pending, 3);

    // A scheduled unique task holds its lock until its unique TTL past its
    // process time (as in Asynq), not just for the TTL from now.
    let scheduled = client
        .enqueue(
            payload(r#"{"do": "later"}"#),
            opts().process_in(Duration::from_secs(7200)),
        )
        .await
        .unwrap();
    assert_eq!(scheduled.state, TaskState::Scheduled);
    let lock = QueueKeys::new(&q).unique("bad", br#"{"do": "later"}"#);
    let ttl: i64 = client.broker().conn().ttl(&lock).await.unwrap();
    assert!(
        (7200 + 3600 - 60..=7200 + 3600).contains(&ttl),
        "lock TTL {ttl} s"
    );
}

/// Asynq locks a unique task with a nil payload as `...:unique:<type>:` and
/// one with an empty, non-nil payload with the digest of "" appended. wasq
/// cannot tell the two apart: it writes the nil form and counts a lock held
/// in either form as a duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_payload_is_a_duplicate_of_a_lock_in_either_asynq_form() {
    let client = cluster_client().await;
    let unique = |q: &str| {
        TaskOptions::default()
            .queue(q)
            .unique(Duration::from_secs(600))
    };
    for form in ["nil", "empty"] {
        let q = unique_queue("uniq-empty");
        let keys = QueueKeys::new(&q);
        let held = match form {
            "nil" => keys.unique("ping", b""),
            _ => keys.unique_other_form("ping", b"").unwrap(),
        };
        assert!(held.ends_with(if form == "nil" {
            "unique:ping:"
        } else {
            "unique:ping:d41d8cd98f00b204e9800998ecf8427e"
        }));
        // An Asynq client holds the lock.
        let _: () = client
            .broker()
            .conn()
            .set_ex(&held, "asynq-task", 600)
            .await
            .unwrap();
        match client
            .enqueue(Task::new("ping", Vec::new()), unique(&q))
            .await
        {
            Err(EnqueueError::Duplicate { .. }) => {}
            other => panic!("{form} form: expected a duplicate, got {other:?}"),
        }
    }
    // wasq's own lock is the nil form.
    let q = unique_queue("uniq-empty");
    client
        .enqueue(Task::new("ping", Vec::new()), unique(&q))
        .await
        .unwrap();
    let nil_form: bool = client
        .broker()
        .conn()
        .exists(QueueKeys::new(&q).unique("ping", b""))
        .await
        .unwrap();
    assert!(nil_form);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_enqueues_share_script_calls_and_each_gets_its_own_outcome() {
    // On a Redis of its own, so its command counts are this test's alone.
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start(dir.path(), false);
    let single = Client::connect(&RedisConfig::single(&format!("redis://{}", redis.addr())))
        .await
        .unwrap();
    let q = unique_queue("group");
    let tasks = 400;
    // A sequential caller's tasks keep their order among the others'.
    tokio::join!(enqueue_mixed(&single, &q, tasks), async {
        for i in 0..20 {
            single
                .enqueue(
                    payload(r#"{"do": "ok"}"#),
                    TaskOptions::default()
                        .queue(&q)
                        .task_id(format!("seq-{i:02}")),
                )
                .await
                .unwrap();
        }
    });
    let stats = single.broker().stats(&q).await.unwrap();
    assert_eq!((stats.pending, stats.scheduled), (102 + 20, 100));
    let pending = redis.cli(&["LRANGE", &QueueKeys::new(&q).pending(), "0", "-1"]);
    let in_pop_order: Vec<&str> = pending
        .lines()
        .rev()
        .filter(|id| id.starts_with("seq-"))
        .collect();
    let expected: Vec<String> = (0..20).map(|i| format!("seq-{i:02}")).collect();
    assert_eq!(in_pop_order, expected);
    // 420 enqueues took far fewer script calls.
    let commandstats = redis.cli(&["INFO", "commandstats"]);
    let calls: u64 = commandstats
        .lines()
        .filter(|l| l.starts_with("cmdstat_evalsha:") || l.starts_with("cmdstat_eval:"))
        .filter_map(|l| {
            l.split("calls=")
                .nth(1)?
                .split(',')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum();
    assert!(
        (1..=tasks as u64 / 4).contains(&calls),
        "{calls} script calls for {tasks} concurrent enqueues"
    );

    // The same outcomes on the cluster.
    let q = unique_queue("group");
    let cluster = cluster_client().await;
    enqueue_mixed(&cluster, &q, tasks).await;
    let stats = cluster.broker().stats(&q).await.unwrap();
    assert_eq!((stats.pending, stats.scheduled), (102, 100));
}

/// An enqueue sent again after its reply was lost (the connection dropped
/// after Redis ran it) is a success, not an id conflict with itself: the
/// script knows it by its message and stamp. Another enqueue of the same id
/// is still a conflict.
#[tokio::test]
async fn a_replayed_enqueue_is_a_success_and_stores_one_task() {
    let q = unique_queue("replay");
    let client = cluster_client().await;
    let broker = client.broker();
    let msg = TaskMessage {
        r#type: "bad".into(),
        payload: br#"{"do": "ok"}"#.to_vec(),
        id: "order-7".into(),
        queue: q.clone(),
        retry: 25,
        timeout: 1800,
        ..Default::default()
    };
    let since = wasq::broker::now_nanos();
    for _ in 0..2 {
        assert_eq!(
            broker
                .enqueue_stamped(&msg, None, None, since)
                .await
                .unwrap(),
            Enqueued::Ok
        );
    }
    assert_eq!(
        broker
            .enqueue_stamped(&msg, None, None, since + 1)
            .await
            .unwrap(),
        Enqueued::IdConflict
    );
    let mut other = msg.clone();
    other.payload = br#"{"do": "other"}"#.to_vec();
    assert_eq!(
        broker
            .enqueue_stamped(&other, None, None, since)
            .await
            .unwrap(),
        Enqueued::IdConflict
    );
    assert_eq!(broker.stats(&q).await.unwrap().pending, 1);
}

/// Enqueues `n` tasks into `q` from 64 concurrent callers, a quarter each
/// plain, sharing one task id, unique with one payload, and scheduled, and
/// checks each caller's outcome.
async fn enqueue_mixed(client: &Client, q: &str, n: usize) {
    use futures::StreamExt as _;
    let outcomes: Vec<(usize, Result<_, _>)> = futures::stream::iter(0..n)
        .map(|i| async move {
            let opts = TaskOptions::default().queue(q);
            let (task, opts) = match i % 4 {
                0 => (payload(&format!(r#"{{"n": {i}}}"#)), opts),
                1 => (payload(r#"{"do": "ok"}"#), opts.task_id("shared-id")),
                2 => (
                    payload(r#"{"same": true}"#),
                    opts.unique(Duration::from_secs(3600)),
                ),
                _ => (
                    payload(&format!(r#"{{"n": {i}}}"#)),
                    opts.process_in(Duration::from_secs(3600)),
                ),
            };
            (i % 4, client.enqueue(task, opts).await)
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let count = |kind: usize, want: fn(&Result<wasq::TaskInfo, EnqueueError>) -> bool| {
        outcomes
            .iter()
            .filter(|(k, r)| *k == kind && want(r))
            .count()
    };
    let quarter = n / 4;
    assert_eq!(count(0, |r| r.is_ok()), quarter);
    assert_eq!(count(1, |r| r.is_ok()), 1);
    assert_eq!(
        count(1, |r| matches!(r, Err(EnqueueError::IdConflict { .. }))),
        quarter - 1
    );
    assert_eq!(count(2, |r| r.is_ok()), 1);
    assert_eq!(
        count(2, |r| matches!(r, Err(EnqueueError::Duplicate { .. }))),
        quarter - 1
    );
    assert_eq!(
        count(
            3,
            |r| matches!(r, Ok(info) if info.state == TaskState::Scheduled)
        ),
        quarter
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_keeps_completed_tasks_then_they_expire() {
    let (q, _config, mut worker, client) = one_queue("keep", "").await;
    let info = client
        .enqueue(
            payload(r#"{"do": "ok"}"#),
            TaskOptions::default()
                .queue(&q)
                .retention(Duration::from_secs(2)),
        )
        .await
        .unwrap();
    assert_eq!(
        worker.next(1, Duration::from_secs(10)).await[0].disposition,
        Disposition::Completed
    );
    let mut conn = client.broker().conn();
    let keys = QueueKeys::new(&q);
    let (state, result): (String, String) = redis::pipe()
        .hget(keys.task(&info.id), "state")
        .hget(keys.task(&info.id), "result")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        (state.as_str(), result.as_str()),
        ("completed", r#"{"do": "ok"}"#)
    );
    let deadline = Instant::now() + Duration::from_secs(8);
    loop {
        let exists: bool = conn.exists(keys.task(&info.id)).await.unwrap();
        if !exists {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "completed task was not deleted after its retention"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(client.broker().stats(&q).await.unwrap().completed, 0);
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_queues_are_not_consumed() {
    let q = unique_queue("paused");
    let config = config(&[(&q, 1, None)], "");
    let client = cluster_client().await;
    client.broker().pause(&q).await.unwrap();
    let mut worker = RunningWorker::start(&config).await;
    client
        .enqueue(payload(r#"{"do": "ok"}"#), TaskOptions::default().queue(&q))
        .await
        .unwrap();
    worker.quiet(Duration::from_millis(1500)).await;
    assert!(client.broker().stats(&q).await.unwrap().paused);
    client.broker().resume(&q).await.unwrap();
    assert_eq!(
        worker.next(1, Duration::from_secs(5)).await[0].disposition,
        Disposition::Done
    );
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_per_queue_concurrency_cap_is_never_exceeded() {
    let q = unique_queue("cap");
    let config = config(&[(&q, 1, Some(2))], "[worker]\nconcurrency = 10\n");
    let client = cluster_client().await;
    let tasks = (0..8)
        .map(|i| {
            (
                payload(&format!(r#"{{"do": "nap", "ms": 300, "n": {i}}}"#)),
                TaskOptions::default().queue(&q),
            )
        })
        .collect();
    for r in client.enqueue_batch(tasks).await {
        r.unwrap();
    }
    let mut worker = RunningWorker::start(&config).await;
    let mut conn = client.broker().conn();
    let keys = QueueKeys::new(&q);
    let mut max_active = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (active, pending): (u64, u64) = redis::pipe()
            .llen(keys.active())
            .llen(keys.pending())
            .query_async(&mut conn)
            .await
            .unwrap();
        max_active = max_active.max(active);
        if active == 0 && pending == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "tasks did not drain");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(max_active, 2, "the cap of 2 was exceeded or never reached");
    let events = worker.next(8, Duration::from_secs(5)).await;
    assert!(events.iter().all(|e| e.disposition == Disposition::Done));
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_priorities_roughly_follow_their_weights() {
    let heavy = unique_queue("heavy");
    let light = unique_queue("light");
    let config = config(
        &[(&heavy, 3, None), (&light, 1, None)],
        "[worker]\nconcurrency = 1\n",
    );
    let client = cluster_client().await;
    let mut batch = Vec::new();
    for q in [&heavy, &light] {
        for _ in 0..250 {
            batch.push((
                Task::new("noop", b"{}".to_vec()),
                TaskOptions::default().queue(q.as_str()),
            ));
        }
    }
    for r in client.enqueue_batch(batch).await {
        r.unwrap();
    }
    let mut worker = RunningWorker::start(&config).await;
    let events = worker.next(200, Duration::from_secs(90)).await;
    let from_heavy = events.iter().filter(|e| e.queue == heavy).count();
    let share = from_heavy as f64 / events.len() as f64;
    assert!(
        (0.6..=0.9).contains(&share),
        "heavy queue share {share:.2}, expected about 0.75"
    );
    worker.stop().await;
}

/// While a queue drains, its acker claims each finished batch's
/// replacements itself, but only while every queue that could come first
/// is known to be empty: work arriving in a higher-priority queue gets the
/// next slots, whether its client pushed a wake token (wasq's) or not (an
/// Asynq client's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_queue_yields_its_slots_when_a_higher_priority_queue_gets_work() {
    let high = unique_queue("first");
    let low = unique_queue("drain");
    let config = config(
        &[(&high, 2, None), (&low, 1, None)],
        "[worker]\nconcurrency = 4\nstrict_priority = true\n",
    );
    let client = cluster_client().await;
    client.broker().register_queue(&high).await.unwrap();
    let backlog = (0..600)
        .map(|i| {
            (
                payload(&format!(r#"{{"do": "nap", "ms": 10, "n": {i}}}"#)),
                TaskOptions::default().queue(&low),
            )
        })
        .collect();
    for r in client.enqueue_batch(backlog).await {
        r.unwrap();
    }
    let mut worker = RunningWorker::start(&config).await;
    // The low queue is draining and refilling itself.
    worker.next(40, Duration::from_secs(30)).await;

    // Two tasks the way wasq's client enqueues them (with a wake token),
    // two the way Asynq's does (hash and LPUSH, no token).
    for _ in 0..2 {
        client
            .enqueue(
                payload(r#"{"do": "ok"}"#),
                TaskOptions::default().queue(&high),
            )
            .await
            .unwrap();
    }
    let keys = QueueKeys::new(&high);
    let mut conn = client.broker().conn();
    for id in ["asynq-style-1", "asynq-style-2"] {
        let msg = TaskMessage {
            r#type: "noop".into(),
            payload: b"{}".to_vec(),
            id: id.into(),
            queue: high.clone(),
            retry: 25,
            timeout: 1800,
            ..Default::default()
        };
        let _: () = redis::pipe()
            .hset_multiple(
                keys.task(id),
                &[("msg", msg.encode_to_vec()), ("state", b"pending".to_vec())],
            )
            .lpush(keys.pending(), id)
            .query_async(&mut conn)
            .await
            .unwrap();
    }

    // Four slots at 10 ms a task: about 400 low tasks a second. A queue
    // found empty is trusted to stay empty for 100 ms (EMPTY_FOR), so the
    // high tasks, token or not, must start within about that: 40 low tasks,
    // plus the four running and one refill batch in flight.
    let mut low_meanwhile = 0;
    let mut high_done = 0;
    while high_done < 4 {
        let event = &worker.next(1, Duration::from_secs(30)).await[0];
        assert_eq!(event.disposition, Disposition::Done, "{event:?}");
        if event.queue == high {
            high_done += 1;
        } else {
            low_meanwhile += 1;
        }
    }
    println!("{low_meanwhile} low-priority tasks ran before the four high-priority ones");
    assert!(
        low_meanwhile <= 48,
        "{low_meanwhile} low-priority tasks ran before the high-priority ones"
    );
    let left: u64 = conn.llen(QueueKeys::new(&low).pending()).await.unwrap();
    assert!(left > 0, "the backlog drained first");
    worker.stop().await;
}

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
    let mut victim = wasq_tests::KillOnDrop(
        std::process::Command::new(wasq_tests::wasq_bin())
            .args(["worker", "--config", &config.path.display().to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
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
    victim.0.kill().unwrap();
    victim.0.wait().unwrap();
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
async fn a_single_redis_works_the_same() {
    let single = shared_single();
    let q = unique_queue("single");
    let url = format!("redis://{}", single.addr());
    let mut body = format!("[redis]\nurl = {url:?}\n");
    body.push_str(&queue_sections(&[(&q, 1, None)]));
    body.push_str(GUEST_TYPES);
    let config = TestConfig::new(&body);
    let mut worker = RunningWorker::start(&config).await;

    let (code, out, err) = run_wasq(&[
        "enqueue",
        "bad",
        "--redis-url",
        &url,
        "--queue",
        &q,
        "--payload",
        r#"{"do": "ok"}"#,
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let info: serde_json::Value = serde_json::from_str(&out).unwrap();
    let event = &worker.next(1, Duration::from_secs(10)).await[0];
    assert_eq!(event.id, info["id"].as_str().unwrap());
    assert_eq!(event.result.as_deref(), Some(r#"{"do": "ok"}"#));

    let (code, out, _) = run_wasq(&["stats", "--redis-url", &url, "--json"]);
    assert_eq!(code, 0);
    let stats: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(
        stats["cluster"].is_null(),
        "a single Redis has no cluster info"
    );
    let ours = stats["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["queue"] == q.as_str())
        .unwrap();
    assert_eq!(ours["processed_today"], 1);
    assert_eq!(ours["processed_total"], 1);
    let keys = QueueKeys::new(&q);
    let broker_conn = Broker::connect(&RedisConfig::single(&url)).await.unwrap();
    let task_id = info["id"].as_str().unwrap();
    assert!(
        broker_conn
            .task_msg(&keys, task_id)
            .await
            .unwrap()
            .is_none(),
        "a done task's hash was left behind"
    );
    let broker = Broker::connect(&RedisConfig::single(&url)).await.unwrap();
    assert!(broker.locate(&q).await.unwrap().is_none());
    worker.stop().await;
}

/// Every option of `wasq enqueue` lands in the stored `TaskMessage` and
/// the task's place, on the cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_enqueue_command_stores_every_option() {
    let q = unique_queue("cli");
    let addrs = shared_cluster().addrs().join(",");
    let enqueue = |extra: &[&str]| {
        let mut args = vec![
            "enqueue",
            "bad",
            "--cluster",
            "--cluster-addrs",
            &addrs,
            "--queue",
            &q,
            "--json",
        ];
        args.extend_from_slice(extra);
        let (code, out, err) = run_wasq(&args);
        assert_eq!(code, 0, "{err}");
        serde_json::from_str::<serde_json::Value>(&out).unwrap()
    };
    let client = cluster_client().await;
    let keys = QueueKeys::new(&q);
    let stored = |id: String| {
        let client = client.clone();
        let keys = keys.clone();
        async move {
            let raw = client.broker().task_msg(&keys, &id).await.unwrap().unwrap();
            TaskMessage::decode(raw.as_slice()).unwrap()
        }
    };

    let info = enqueue(&[
        "--payload",
        r#"{"do": "ok"}"#,
        "--process-in",
        "5m",
        "--max-retry",
        "3",
        "--timeout",
        "45s",
        "--unique",
        "1h",
        "--task-id",
        "cli-1",
        "--retention",
        "24h",
    ]);
    assert_eq!(
        (info["id"].as_str(), info["state"].as_str()),
        (Some("cli-1"), Some("scheduled"))
    );
    let now = wasq::broker::now_secs();
    assert!((info["next_process_at"].as_i64().unwrap() - (now + 300)).abs() <= 5);
    let msg = stored("cli-1".into()).await;
    assert_eq!((msg.retry, msg.timeout, msg.retention), (3, 45, 86_400));
    assert_eq!(msg.payload, br#"{"do": "ok"}"#);
    assert_eq!(msg.unique_key, keys.unique("bad", br#"{"do": "ok"}"#));

    // A time with an offset, and a deadline instead of a timeout.
    let info = enqueue(&[
        "--payload-file",
        concat!(env!("CARGO_MANIFEST_DIR"), "/e2e/main.rs"),
        "--process-at",
        "2099-01-01T10:00:00+01:00",
        "--deadline",
        "2099-01-01T12:00:00Z",
    ]);
    assert_eq!(info["next_process_at"].as_i64(), Some(4_070_941_200));
    let msg = stored(info["id"].as_str().unwrap().to_owned()).await;
    assert_eq!(
        (msg.deadline, msg.timeout, msg.retry),
        (4_070_952_000, 0, 25)
    );
    assert_eq!(
        msg.payload,
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/e2e/main.rs")).unwrap()
    );
    let stats = client.broker().stats(&q).await.unwrap();
    assert_eq!((stats.scheduled, stats.pending), (2, 0));

    // A time without a zone is refused, naming the option.
    let (code, _, err) = run_wasq(&[
        "enqueue",
        "bad",
        "--cluster",
        "--cluster-addrs",
        &addrs,
        "--process-at",
        "2099-01-01T10:00:00",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--process-at") && err.contains("no time zone"),
        "{err}"
    );
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
    let mut worker = wasq_tests::KillOnDrop(
        std::process::Command::new(wasq_tests::wasq_bin())
            .args([
                "worker",
                "--json",
                "--config",
                &config.path.display().to_string(),
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        worker.0.try_wait().unwrap().is_none(),
        "the worker gave up while Redis was down"
    );
    let mut redis = wasq_tests::redis::RedisServer::start_on(dir.path(), port, false);
    let lines = std::io::BufRead::lines(std::io::BufReader::new(worker.0.stdout.take().unwrap()));
    let (tx, mut rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    enqueue_and_await_done(&url, &q, 1, &mut rx).await;

    // Redis restarts (same port, same append-only file): the worker reconnects.
    redis.kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _redis = wasq_tests::redis::RedisServer::start_on(dir.path(), port, false);
    enqueue_and_await_done(&url, &q, 2, &mut rx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_task_types_and_timeouts_fail_clearly() {
    let (q, _config, mut worker, client) = one_queue("unknown", "").await;
    let unknown = client
        .enqueue(
            Task::new("nobody:handles-this", b"{}".to_vec()),
            TaskOptions::default().queue(&q).max_retry(0),
        )
        .await
        .unwrap();
    let event = &worker.next(1, Duration::from_secs(10)).await[0];
    assert_eq!(
        (event.id.as_str(), event.disposition),
        (unknown.id.as_str(), Disposition::Archived)
    );
    let error = event.error.as_deref().unwrap();
    assert!(
        error.contains("no module is registered for task type \"nobody:handles-this\""),
        "{error}"
    );

    // The task's own timeout bounds its sandbox time.
    let slow = client
        .enqueue(
            payload(r#"{"do": "nap", "ms": 20000}"#),
            TaskOptions::default()
                .queue(&q)
                .max_retry(0)
                .timeout(Duration::from_secs(1)),
        )
        .await
        .unwrap();
    let started = Instant::now();
    let event = &worker.next(1, Duration::from_secs(10)).await[0];
    assert_eq!(
        (event.id.as_str(), event.disposition),
        (slow.id.as_str(), Disposition::Archived)
    );
    assert!(
        event.error.as_deref().unwrap().contains("timeout"),
        "{event:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    worker.stop().await;
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
