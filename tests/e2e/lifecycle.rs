//! A task's way through its states, run by a worker on the cluster:
//! scheduled tasks wait for their time; failures retry with backoff, then
//! archive; skip-retry archives at once and revoke deletes, releasing the
//! unique lock; retention keeps a completed task, then it expires; a paused
//! queue is not consumed; unknown task types and timeouts fail clearly.

use std::time::{Duration, Instant};

use redis::AsyncCommands as _;
use wasq::broker::QueueKeys;
use wasq::worker::Disposition;
use wasq::{Task, TaskOptions, TaskState};
use wasq_tests::unique_queue;

use crate::support::*;

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
