//! Enqueueing on the cluster (and on a Redis of its own where command
//! counts matter): unique locks, in both of Asynq's forms for an empty
//! payload, and task ids refuse duplicates; a replayed enqueue is a
//! success; concurrent enqueues share script calls (group commit) and each
//! caller gets its own outcome; every option of `wasq enqueue` is stored.

use std::time::Duration;

use prost::Message as _;
use redis::AsyncCommands as _;
use wasq::broker::{Enqueued, QueueKeys};
use wasq::proto::TaskMessage;
use wasq::{Client, EnqueueError, RedisConfig, Task, TaskOptions, TaskState};
use wasq_tests::redis::{RedisServer, shared_cluster};
use wasq_tests::{run_wasq, unique_queue};

use crate::support::*;

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
