//! Bad input gets a clear error and loses nothing: payloads a handler
//! cannot read, payloads over the limit, huge task ids, queue names that
//! would break the hash tag, unknown queues, and Redis refusing a write
//! (out of memory) in the middle of an enqueue.

use std::time::Duration;

use redis::AsyncCommands as _;
use wasq::broker::QueueKeys;
use wasq::worker::Disposition;
use wasq::{Client, EnqueueError, RedisConfig, Task, TaskOptions};
use wasq_tests::redis::RedisServer;
use wasq_tests::{TestConfig, run_wasq, unique_queue};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payload_the_handler_cannot_read_is_archived_with_the_reason() {
    let (q, _config, mut worker, client) = one_queue("badjson", "").await;
    let info = client
        .enqueue(
            payload("this is not JSON"),
            TaskOptions::default().queue(&q),
        )
        .await
        .unwrap();
    let event = &worker.next(1, Duration::from_secs(10)).await[0];
    assert_eq!(
        (event.id.as_str(), event.disposition),
        (info.id.as_str(), Disposition::Archived),
        "a payload that can never parse is not retried"
    );
    let error = event.error.as_deref().unwrap();
    assert!(error.contains("is not the expected JSON"), "{error}");
    // The archived task keeps its payload and error for inspection.
    let stats = client.broker().stats(&q).await.unwrap();
    assert_eq!((stats.archived, stats.failed_total), (1, 1));
    worker.stop().await;
}

#[tokio::test]
async fn oversized_payloads_huge_ids_and_bad_queue_names_are_refused_before_redis() {
    let client = cluster_client().await.max_payload(1024);
    let q = unique_queue("refused");
    let err = client
        .enqueue(
            Task::new("bad", vec![b'x'; 2048]),
            TaskOptions::default().queue(&q),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            EnqueueError::PayloadTooLarge {
                size: 2048,
                limit: 1024
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("payload too large"), "{err}");

    let huge_id = "i".repeat(10_000);
    let err = client
        .enqueue(
            Task::new("bad", b"{}".to_vec()),
            TaskOptions::default().queue(&q).task_id(&huge_id),
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("task id is 10000 bytes long; the limit is 256"),
        "{err}"
    );
    for name in ["a{b}", "two words", ""] {
        let err = client
            .enqueue(
                Task::new("bad", b"{}".to_vec()),
                TaskOptions::default().queue(name),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, EnqueueError::Invalid(_)), "{name:?}: {err}");
    }
    // Nothing reached Redis: the queue was never even registered.
    let queues = client.broker().queues().await.unwrap();
    assert!(!queues.contains(&q));

    // The CLI takes the task type's limit from the config.
    let mut body = wasq_tests::redis::shared_cluster().toml();
    body.push_str("[tasks.small]\nmodule = \"{examples}/noop.wasm\"\nmax_payload = \"1KiB\"\n");
    let config = TestConfig::new(&body);
    let big = "y".repeat(2000);
    let (code, _, err) = run_wasq(&[
        "enqueue",
        "small",
        "--config",
        &config.path.display().to_string(),
        "--queue",
        &q,
        "--payload",
        &big,
    ]);
    assert_eq!(code, 2);
    assert!(
        err.contains("payload too large: 2000 bytes, the limit is 1024 bytes"),
        "{err}"
    );

    // Unknown queues are named with the known ones.
    let (code, _, err) = run_wasq(&[
        "queue",
        "pause",
        "no-such-queue",
        "--cluster-addrs",
        &wasq_tests::redis::shared_cluster().addrs().join(","),
        "--cluster",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("no queue named \"no-such-queue\""), "{err}");
}

#[test]
fn a_queue_name_that_would_break_the_hash_tag_is_a_config_error() {
    let config = TestConfig::new("[queues.\"im{ages\"]\npriority = 1\n");
    let error = wasq::config::Config::load(&config.path)
        .unwrap_err()
        .to_string();
    assert!(error.contains("queues.\"im{ages\""), "{error}");
    assert!(error.contains("may not contain braces"), "{error}");
    assert!(
        error.contains(&config.path.display().to_string()),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_out_of_memory_fails_the_enqueue_clearly_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start(dir.path(), false);
    let url = format!("redis://{}", redis.addr());
    let client = Client::connect(&RedisConfig::single(&url)).await.unwrap();
    let q = unique_queue("oom");
    // Register the queue first, then let Redis refuse every write.
    client
        .enqueue(payload(r#"{"do": "ok"}"#), TaskOptions::default().queue(&q))
        .await
        .unwrap();
    assert_eq!(redis.cli(&["CONFIG", "SET", "maxmemory", "1"]).trim(), "OK");
    let err = client
        .enqueue(
            payload(r#"{"do": "ok", "n": 2}"#),
            TaskOptions::default().queue(&q).task_id("oom-task"),
        )
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("OOM"), "{text}");
    assert_eq!(redis.cli(&["CONFIG", "SET", "maxmemory", "0"]).trim(), "OK");
    let keys = QueueKeys::new(&q);
    let mut conn = client.broker().conn();
    let exists: bool = conn.exists(keys.task("oom-task")).await.unwrap();
    assert!(!exists, "a refused enqueue left its task hash");
    let pending: Vec<String> = conn.lrange(keys.pending(), 0, -1).await.unwrap();
    assert_eq!(
        pending.len(),
        1,
        "only the first task is pending: {pending:?}"
    );
    // With memory back, the same id goes in.
    client
        .enqueue(
            payload(r#"{"do": "ok", "n": 2}"#),
            TaskOptions::default().queue(&q).task_id("oom-task"),
        )
        .await
        .unwrap();
}
