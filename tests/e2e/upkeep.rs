//! Messages that cannot be run where they sit, and the queue upkeep around
//! them: a `TaskMessage` naming another queue (or a unique lock of another
//! queue) is archived with its bytes and the reason, whether a worker claims
//! it or recovers it; one queue's bad task never skips the upkeep of the
//! queues after it; and the archive is trimmed as Asynq trims it.

use std::time::Duration;

use prost::Message as _;
use redis::AsyncCommands as _;
use wasq::broker::QueueKeys;
use wasq::proto::TaskMessage;
use wasq::worker::Disposition;
use wasq_tests::unique_queue;

use crate::support::*;

fn message(id: &str, queue: &str) -> TaskMessage {
    TaskMessage {
        r#type: "bad".into(),
        payload: br#"{"do": "ok"}"#.to_vec(),
        id: id.into(),
        queue: queue.into(),
        retry: 3,
        timeout: 60,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claimed_message_that_belongs_elsewhere_is_archived_with_the_reason() {
    let q = unique_queue("misfiled");
    let elsewhere = unique_queue("elsewhere");
    let config = config(&[(&q, 1, None)], "");
    let client = cluster_client().await;
    let keys = QueueKeys::new(&q);
    let mut conn = client.broker().conn();
    client.broker().register_queue(&q).await.unwrap();
    let other_queue = message("other-queue", &elsewhere);
    let mut other_lock = message("other-lock", &q);
    other_lock.unique_key = QueueKeys::new(&elsewhere).unique("bad", b"x");
    let mut pipe = redis::pipe();
    for msg in [&other_queue, &other_lock] {
        pipe.hset(keys.task(&msg.id), "msg", msg.encode_to_vec())
            .hset(keys.task(&msg.id), "state", "pending")
            .lpush(keys.pending(), &msg.id);
    }
    let _: () = pipe.query_async(&mut conn).await.unwrap();
    let good = client
        .enqueue(
            payload(r#"{"do": "ok"}"#),
            wasq::TaskOptions::default().queue(&q),
        )
        .await
        .unwrap();
    let mut worker = RunningWorker::start(&config).await;
    let events = worker.next(3, Duration::from_secs(20)).await;
    for (id, why) in [
        ("other-queue", "names queue"),
        ("other-lock", "is not a key of queue"),
    ] {
        let e = events.iter().find(|e| e.id == id).unwrap();
        assert_eq!(e.disposition, Disposition::Archived, "{e:?}");
        assert_eq!(e.cause, "invalid_msg");
        assert!(e.error.as_deref().unwrap().contains(why), "{e:?}");
        let reason: Option<String> = conn.hget(keys.task(id), "invalid").await.unwrap();
        assert!(reason.unwrap().contains(why));
    }
    let done = events.iter().find(|e| e.id == good.id).unwrap();
    assert_eq!(done.disposition, Disposition::Done);
    // Nothing stays active or leased, and the bytes are kept as they were.
    let stats = client.broker().stats(&q).await.unwrap();
    assert_eq!((stats.active, stats.archived), (0, 2));
    let leases: u64 = conn.zcard(keys.lease()).await.unwrap();
    assert_eq!(leases, 0);
    let raw = client
        .broker()
        .task_msg(&keys, "other-queue")
        .await
        .unwrap();
    assert_eq!(raw, Some(other_queue.encode_to_vec()));
    worker.stop().await;
}

/// Two queues, upkept in name order: the first holds an abandoned task whose
/// message names a queue in another slot (settling it by its message would
/// act on that other queue's keys and never clear its lease here), the
/// second an abandoned sound task. Both are dealt with.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_abandoned_task_never_stalls_the_recovery_of_other_queues() {
    let first = unique_queue("aa-recover");
    let second = unique_queue("zz-recover");
    let config = config(
        &[(&first, 1, None), (&second, 1, None)],
        "[worker]\nmaintenance_interval = \"200ms\"\n",
    );
    let client = cluster_client().await;
    let mut conn = client.broker().conn();
    let expired = wasq::broker::now_secs() - 60;
    for (q, msg) in [
        (&first, message("misfiled", &unique_queue("elsewhere"))),
        (&second, message("sound", &second)),
    ] {
        client.broker().register_queue(q).await.unwrap();
        let keys = QueueKeys::new(q);
        let _: () = redis::pipe()
            .hset(keys.task(&msg.id), "msg", msg.encode_to_vec())
            .hset(keys.task(&msg.id), "state", "active")
            .hset(keys.task(&msg.id), "lease_owner", "a-dead-worker")
            .lpush(keys.active(), &msg.id)
            .zadd(keys.lease(), &msg.id, expired)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    let mut worker = RunningWorker::start(&config).await;
    let event = &worker.next(1, Duration::from_secs(20)).await[0];
    assert_eq!(
        (event.id.as_str(), event.disposition),
        ("sound", Disposition::Done)
    );
    let keys = QueueKeys::new(&first);
    wait_for(|| async {
        let archived: Option<f64> = client
            .broker()
            .conn()
            .zscore(keys.archived(), "misfiled")
            .await
            .unwrap();
        archived.is_some()
    })
    .await;
    let reason: String = conn.hget(keys.task("misfiled"), "invalid").await.unwrap();
    assert!(reason.contains("names queue"), "{reason}");
    let (active, leases): (u64, u64) = redis::pipe()
        .llen(keys.active())
        .zcard(keys.lease())
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!((active, leases), (0, 0));
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_archive_keeps_at_most_its_count_and_age() {
    let by_count = unique_queue("archive-count");
    let by_age = unique_queue("archive-age");
    let mut extra = queue_sections(&[(&by_count, 1, None), (&by_age, 1, None)]);
    extra = extra.replace(
        &format!("[queues.{by_count:?}]\n"),
        &format!("[queues.{by_count:?}]\narchive_max = 3\narchive_max_age = \"1h\"\n"),
    );
    extra.push_str("[worker]\nmaintenance_interval = \"200ms\"\n");
    let config = config(&[], &extra);
    let client = cluster_client().await;
    let mut conn = client.broker().conn();
    let now = wasq::broker::now_secs();
    // by_count: six archived tasks, one of them two hours old; by_age: one
    // archived 91 days ago (past the default 90) and one an hour ago.
    let plant = |q: &str, ages: &[(&str, i64)]| {
        let keys = QueueKeys::new(q);
        let mut pipe = redis::pipe();
        for (id, age) in ages {
            pipe.hset(keys.task(id), "msg", message(id, q).encode_to_vec())
                .hset(keys.task(id), "state", "archived")
                .zadd(keys.archived(), *id, now - age);
        }
        pipe
    };
    let counted = [
        ("old", 7200),
        ("a", 14),
        ("b", 13),
        ("c", 12),
        ("d", 11),
        ("e", 10),
    ];
    let aged = [("ancient", 91 * 24 * 3600), ("recent", 3600)];
    let _: () = plant(&by_count, &counted)
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: () = plant(&by_age, &aged).query_async(&mut conn).await.unwrap();
    let worker = RunningWorker::start(&config).await;
    let archived = |q: String| {
        let client = client.clone();
        async move {
            let ids: Vec<String> = client
                .broker()
                .conn()
                .zrange(QueueKeys::new(&q).archived(), 0, -1)
                .await
                .unwrap();
            ids
        }
    };
    wait_for(|| async {
        archived(by_count.clone()).await.len() == 3 && archived(by_age.clone()).await.len() == 1
    })
    .await;
    assert_eq!(archived(by_count.clone()).await, ["c", "d", "e"]);
    assert_eq!(archived(by_age.clone()).await, ["recent"]);
    // The trimmed tasks' hashes are gone, the kept ones' are there.
    for (q, id, kept) in [
        (&by_count, "old", false),
        (&by_count, "a", false),
        (&by_count, "b", false),
        (&by_count, "c", true),
        (&by_age, "ancient", false),
        (&by_age, "recent", true),
    ] {
        let exists: bool = conn.exists(QueueKeys::new(q).task(id)).await.unwrap();
        assert_eq!(exists, kept, "{q} {id}");
    }
    worker.stop().await;
}
