//! How a worker shares its slots among queues on the cluster: a queue's
//! concurrency cap is never exceeded, weighted priorities roughly follow
//! their weights, and under strict priority a draining queue yields its
//! slots as soon as a higher-priority queue gets work.

use std::time::{Duration, Instant};

use prost::Message as _;
use redis::AsyncCommands as _;
use wasq::broker::QueueKeys;
use wasq::proto::TaskMessage;
use wasq::worker::Disposition;
use wasq::{Task, TaskOptions};
use wasq_tests::unique_queue;

use crate::support::*;

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
