//! The seed tutorial end to end: its three task types run by a worker on
//! the cluster, the worker registered where Asynq's tools look, and
//! `wasq queue ls --cluster` naming each queue's slot and master; then the
//! same round trip on a single Redis through `wasq enqueue` and `wasq stats`.

use std::collections::HashMap;
use std::time::Duration;

use redis::AsyncCommands as _;
use wasq::broker::{Broker, QueueKeys};
use wasq::worker::Disposition;
use wasq::{RedisConfig, Task, TaskOptions, TaskState};
use wasq_tests::redis::{shared_cluster, shared_single};
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
