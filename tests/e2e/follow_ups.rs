//! Follow-up tasks enqueued by a guest, through a worker on the cluster:
//! they reach their queue (on another master) and run; an ungranted queue
//! and a failed run enqueue nothing; and a worker killed between sending
//! them and acknowledging their parent leaves exactly one of each.

use std::time::Duration;

use redis::AsyncCommands as _;
use wasq::broker::QueueKeys;
use wasq::runtime::follow_up_id;
use wasq::worker::Disposition;
use wasq::{Client, Task, TaskOptions};
use wasq_tests::redis::{RedisCluster, shared_cluster};
use wasq_tests::{TestConfig, unique_queue};

use crate::support::*;

/// A fresh queue whose master is none of `avoid` (indexes into the
/// cluster's nodes); returns it with its master's index.
fn queue_avoiding(cluster: &RedisCluster, prefix: &str, avoid: &[usize]) -> (String, usize) {
    loop {
        let q = unique_queue(prefix);
        let master = cluster.master_index_of(cluster.slot_of(&QueueKeys::new(&q).pending()));
        if !avoid.contains(&master) {
            return (q, master);
        }
    }
}

/// `[tasks.parent]`: the misbehaving guest, granted `queues`.
fn parent_type(queues: &[&str]) -> String {
    let granted: Vec<String> = queues.iter().map(|q| format!("{q:?}")).collect();
    format!(
        "\n[tasks.parent]\nmodule = \"{{guests}}/misbehave.wasm\"\nenqueue = [{}]\nretry_delay = \"1s\"\n",
        granted.join(", ")
    )
}

fn parent(json: &str) -> Task {
    Task::new("parent", json.as_bytes().to_vec())
}

async fn pending_len(client: &Client, q: &str) -> u64 {
    client
        .broker()
        .conn()
        .llen(QueueKeys::new(q).pending())
        .await
        .unwrap()
}

async fn task_exists(client: &Client, q: &str, id: &str) -> bool {
    client
        .broker()
        .conn()
        .exists(QueueKeys::new(q).task(id))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follow_up_reaches_a_queue_on_another_master_and_runs() {
    let cluster = shared_cluster();
    let (p, p_master) = queue_avoiding(cluster, "fu-parent", &[]);
    let (c, _) = queue_avoiding(cluster, "fu-child", &[p_master]);
    let config = config(&[(&p, 1, None), (&c, 1, None)], &parent_type(&[&c]));
    let mut worker = RunningWorker::start(&config).await;
    let client = cluster_client().await;
    let body = format!(r#"{{"do": "enqueue-many", "queues": [{c:?}]}}"#);
    let info = client
        .enqueue(parent(&body), TaskOptions::default().queue(&p))
        .await
        .unwrap();
    let child_id = follow_up_id(&info.id, 1);
    let events = worker.next(2, Duration::from_secs(20)).await;
    let parent_event = events.iter().find(|e| e.id == info.id).expect("parent ran");
    assert_eq!(parent_event.disposition, Disposition::Done);
    assert_eq!(parent_event.result.as_deref(), Some(child_id.as_str()));
    let child = events.iter().find(|e| e.id == child_id).expect("child ran");
    assert_eq!(
        (
            child.queue.as_str(),
            child.task_type.as_str(),
            child.disposition
        ),
        (c.as_str(), "bad", Disposition::Done)
    );
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ungranted_queue_and_a_failed_run_enqueue_nothing() {
    let cluster = shared_cluster();
    let (p, _) = queue_avoiding(cluster, "fu-parent", &[]);
    let (c, _) = queue_avoiding(cluster, "fu-child", &[]);
    let (u, _) = queue_avoiding(cluster, "fu-ungranted", &[]);
    let config = config(&[(&p, 1, None), (&c, 1, None)], &parent_type(&[&c]));
    let mut worker = RunningWorker::start(&config).await;
    let client = cluster_client().await;
    let once = TaskOptions::default().queue(&p).max_retry(0);
    let denied = client
        .enqueue(
            parent(&format!(r#"{{"do": "enqueue-many", "queues": [{u:?}]}}"#)),
            once.clone(),
        )
        .await
        .unwrap();
    let failed = client
        .enqueue(
            parent(&format!(r#"{{"do": "enqueue-then-fail", "queue": {c:?}}}"#)),
            once,
        )
        .await
        .unwrap();
    let events = worker.next(2, Duration::from_secs(20)).await;
    for id in [&denied.id, &failed.id] {
        let e = events.iter().find(|e| &e.id == id).unwrap();
        assert_eq!(e.disposition, Disposition::Archived, "{e:?}");
    }
    let denied_event = events.iter().find(|e| e.id == denied.id).unwrap();
    assert!(
        denied_event
            .error
            .as_deref()
            .unwrap_or("")
            .contains("not granted queue"),
        "{denied_event:?}"
    );
    // Nothing was stored for either: no follow-up ran, none is pending.
    worker.quiet(Duration::from_secs(1)).await;
    assert_eq!(pending_len(&client, &u).await, 0);
    assert_eq!(pending_len(&client, &c).await, 0);
    assert!(!task_exists(&client, &c, &follow_up_id(&failed.id, 1)).await);
    assert!(!task_exists(&client, &u, &follow_up_id(&denied.id, 1)).await);
    worker.stop().await;
}

/// The parent's worker is SIGKILLed after it sent the first of two
/// follow-ups and before it acknowledged the parent (the second's master
/// holds writes back). Another worker recovers the parent, runs it again,
/// and sends the same two ids: each follow-up runs exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_between_the_follow_ups_and_the_ack_leaves_exactly_one_of_each() {
    let cluster = tokio::task::spawn_blocking(|| RedisCluster::start(3, 0))
        .await
        .unwrap();
    // The held master serves neither the parent's queue nor the set of all
    // queues (every enqueue adds its queue there).
    let registry = cluster.master_index_of(cluster.slot_of(wasq::broker::keys::ALL_QUEUES));
    let (p, p_master) = queue_avoiding(&cluster, "fu-parent", &[]);
    let (b, b_master) = queue_avoiding(&cluster, "fu-held", &[p_master, registry]);
    let (a, _) = queue_avoiding(&cluster, "fu-first", &[b_master]);
    let settings = "[worker]\nlease = \"2s\"\nmaintenance_interval = \"200ms\"\n";
    let body = |queues: &[&str]| {
        let mut body = cluster.toml();
        let sections: Vec<(&str, u32, Option<usize>)> =
            queues.iter().map(|q| (*q, 1, None)).collect();
        body.push_str(&queue_sections(&sections));
        body.push_str(settings);
        body.push_str(&parent_type(&[&a, &b]));
        body.push_str(GUEST_TYPES);
        TestConfig::new(&body)
    };
    // The first worker consumes only the parent's queue, so the follow-ups
    // it sends stay pending until the second worker takes them.
    let first = body(&[&p]);
    let second = body(&[&p, &a, &b]);
    let client = Client::connect(&cluster.redis_config()).await.unwrap();

    let held = &cluster.nodes[b_master];
    held.cli(&["CLIENT", "PAUSE", "30000", "WRITE"]);
    let mut victim = SpawnedWorker::start(&first);
    let json = format!(r#"{{"do": "enqueue-many", "queues": [{a:?}, {b:?}]}}"#);
    let info = client
        .enqueue(parent(&json), TaskOptions::default().queue(&p))
        .await
        .unwrap();
    let (id_a, id_b) = (follow_up_id(&info.id, 1), follow_up_id(&info.id, 2));
    wait_for(|| task_exists(&client, &a, &id_a)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    victim.kill();
    held.cli(&["CLIENT", "UNPAUSE"]);
    let active: u64 = client
        .broker()
        .conn()
        .llen(QueueKeys::new(&p).active())
        .await
        .unwrap();
    assert_eq!(active, 1, "the parent was acknowledged before the kill");
    assert!(!task_exists(&client, &b, &id_b).await);

    let mut survivor = RunningWorker::start(&second).await;
    let events = survivor.next(3, Duration::from_secs(30)).await;
    let ran = |id: &str| events.iter().filter(|e| e.id == id).count();
    assert_eq!(
        (ran(&info.id), ran(&id_a), ran(&id_b)),
        (1, 1, 1),
        "{events:#?}"
    );
    assert!(
        events
            .iter()
            .all(|e| matches!(e.disposition, Disposition::Done)),
        "{events:#?}"
    );
    survivor.quiet(Duration::from_secs(2)).await;
    // Once the parent is acknowledged, the sent marks are gone.
    for (q, id) in [(&a, &id_a), (&b, &id_b)] {
        assert_eq!(pending_len(&client, q).await, 0);
        let mark: bool = client
            .broker()
            .conn()
            .exists(QueueKeys::new(q).sent(id))
            .await
            .unwrap();
        assert!(!mark, "the sent mark of {id} outlived its parent's ack");
    }
    survivor.stop().await;
}
