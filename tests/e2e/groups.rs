//! Task groups (Asynq's aggregation, Asynq's layout) with workers on the
//! cluster: tasks added to a group wait as `aggregating` in Asynq's keys,
//! due groups become one task whose handler sees the group and its members
//! (max size, grace period and max delay as Asynq means them), and a
//! worker that dies in the middle of an aggregation loses and duplicates
//! nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use redis::AsyncCommands as _;
use wasq::broker::{GroupRules, QueueKeys};
use wasq::worker::Disposition;
use wasq::{TaskOptions, TaskState};
use wasq_tests::unique_queue;

use crate::support::*;

/// Adds `n` tasks to each of `groups` of `queue`, kept an hour once done.
async fn fill(queue: &str, groups: &[String], n: usize) -> BTreeMap<String, String> {
    let client = cluster_client().await;
    let mut tasks = Vec::new();
    for group in groups {
        for i in 0..n {
            let opts = TaskOptions::default()
                .queue(queue)
                .group(group)
                .retention(Duration::from_secs(3600));
            tasks.push((payload(&format!(r#"{{"n": {i}}}"#)), opts));
        }
    }
    let infos = client.enqueue_batch(tasks).await;
    let mut group_of = BTreeMap::new();
    let mut i = 0;
    for group in groups {
        for _ in 0..n {
            let info = infos[i].as_ref().unwrap();
            assert_eq!(info.state, TaskState::Aggregating);
            group_of.insert(info.id.clone(), group.clone());
            i += 1;
        }
    }
    group_of
}

/// The aggregated tasks kept as completed in `queue`: (group, member ids).
async fn aggregates(queue: &str) -> Vec<(String, Vec<String>)> {
    let client = cluster_client().await;
    let done = client
        .broker()
        .list_tasks(queue, TaskState::Completed, 0, 10_000)
        .await
        .unwrap();
    done.iter()
        .map(|t| {
            let v: serde_json::Value = serde_json::from_str(t.result.as_deref().unwrap()).unwrap();
            let ids = v["members"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["id"].as_str().unwrap().to_owned())
                .collect();
            (v["group"].as_str().unwrap().to_owned(), ids)
        })
        .collect()
}

/// Every task of `group_of` is in exactly one aggregate, of its own group.
fn each_once(aggregates: &[(String, Vec<String>)], group_of: &BTreeMap<String, String>) {
    let mut seen = BTreeSet::new();
    for (group, ids) in aggregates {
        for id in ids {
            assert_eq!(group_of.get(id), Some(group), "{id} in the wrong group");
            assert!(seen.insert(id.clone()), "{id} aggregated twice");
        }
    }
    assert_eq!(seen.len(), group_of.len(), "tasks were lost");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_tasks_in_ten_groups_of_max_size_fifty_become_twenty_tasks() {
    let q = unique_queue("groups");
    let config = config(
        &[],
        &format!("\n[queues.{q:?}]\ngroup_max_size = 50\ngroup_task_type = \"bad\"\n"),
    );
    let groups: Vec<String> = (0..10).map(|g| format!("user:{g}")).collect();
    let group_of = fill(&q, &groups, 100).await;

    // Asynq's layout while they wait: the groups' set, each group's zset,
    // and task hashes in state `aggregating` naming their group.
    let client = cluster_client().await;
    let broker = client.broker().clone();
    let listed = broker.groups(&q).await.unwrap();
    assert_eq!(listed.len(), 10);
    assert!(listed.iter().all(|(_, size)| *size == 100), "{listed:?}");
    let keys = QueueKeys::new(&q);
    let (id, group) = group_of.iter().next().unwrap();
    let fields: Vec<Option<String>> = redis::cmd("HMGET")
        .arg(keys.task(id))
        .arg("state")
        .arg("group")
        .query_async(&mut broker.conn())
        .await
        .unwrap();
    assert_eq!(
        fields,
        [Some("aggregating".to_owned()), Some(group.clone())]
    );
    let (code, out, err) = wasq_tests::run_wasq(&[
        "queue",
        "inspect",
        &q,
        "--config",
        &config.path.display().to_string(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("Groups:     10 (1000 task(s) aggregating)"),
        "{out}"
    );

    let workers: Vec<SpawnedWorker> = (0..2).map(|_| SpawnedWorker::start(&config)).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while broker.stats(&q).await.unwrap().completed < 20 {
        assert!(Instant::now() < deadline, "not aggregated in time");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // No more come: 20 aggregates of 50.
    tokio::time::sleep(Duration::from_secs(2)).await;
    drop(workers);
    let found = aggregates(&q).await;
    assert_eq!(found.len(), 20);
    assert!(found.iter().all(|(_, ids)| ids.len() == 50));
    each_once(&found, &group_of);
    assert!(broker.groups(&q).await.unwrap().is_empty());
    let stats = broker.stats(&q).await.unwrap();
    assert_eq!((stats.pending, stats.retry, stats.archived), (0, 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grace_period_and_the_max_delay_are_honoured() {
    let graced = unique_queue("grace");
    let delayed = unique_queue("max-delay");
    let config = config(
        &[],
        &format!(
            "\n[worker]\nmaintenance_interval = \"200ms\"\n\
             [queues.{graced:?}]\ngroup_grace = \"2s\"\ngroup_task_type = \"bad\"\n\
             [queues.{delayed:?}]\ngroup_grace = \"30s\"\ngroup_max_delay = \"3s\"\n\
             group_task_type = \"bad\"\n"
        ),
    );
    let mut worker = RunningWorker::start(&config).await;
    let client = cluster_client().await;
    let add = |queue: &str| {
        let opts = TaskOptions::default().queue(queue).group("g");
        client.enqueue(payload(r#"{"do": "ok"}"#), opts)
    };

    // Grace: the group is due 2 s after its newest task (scores are whole
    // seconds, so up to a second more), give or take a maintenance pass.
    add(&graced).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    add(&graced).await.unwrap();
    let last = Instant::now();
    let event = worker.next(1, Duration::from_secs(10)).await.remove(0);
    let waited = last.elapsed();
    assert_eq!(event.queue, graced);
    assert_eq!(event.disposition, Disposition::Done);
    assert!(
        waited >= Duration::from_millis(1000) && waited <= Duration::from_millis(3500),
        "aggregated {waited:?} after the newest task"
    );

    // Max delay: a task every 500 ms keeps the 30 s grace from ever
    // passing; the group is due 3 s after its oldest task anyway.
    let first = Instant::now();
    let mut aggregated_after = None;
    let mut added = 0;
    while first.elapsed() < Duration::from_secs(6) {
        add(&delayed).await.unwrap();
        added += 1;
        if let Ok(Some(event)) =
            tokio::time::timeout(Duration::from_millis(500), worker_event(&mut worker)).await
        {
            assert_eq!(event.queue, delayed);
            aggregated_after.get_or_insert(first.elapsed());
        }
    }
    let after = aggregated_after.expect("the max delay aggregated the group");
    assert!(
        after >= Duration::from_millis(2000) && after <= Duration::from_millis(4500),
        "aggregated {after:?} after the oldest task ({added} added)"
    );
    worker.stop().await;
}

/// The next task event of `worker`, if one comes.
async fn worker_event(worker: &mut RunningWorker) -> Option<wasq::worker::TaskEvent> {
    Some(worker.next(1, Duration::from_secs(30)).await.remove(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_dies_mid_aggregation_loses_and_duplicates_nothing() {
    let q = unique_queue("groups-kill");
    let config = config(
        &[],
        &format!(
            "\n[worker]\nlease = \"3s\"\nmaintenance_interval = \"200ms\"\n\
             [queues.{q:?}]\ngroup_max_size = 5\ngroup_grace = \"1s\"\n\
             group_task_type = \"bad\"\n"
        ),
    );
    let groups: Vec<String> = (0..20).map(|g| format!("g{g}")).collect();
    let group_of = fill(&q, &groups, 10).await;

    // The worst moment: an aggregator took a set and died before writing
    // its task. Its set stays behind until it is abandoned (the lease).
    let client = cluster_client().await;
    let broker = client.broker().clone();
    let keys = QueueKeys::new(&q);
    let rules = GroupRules {
        max_size: Some(5),
        ..GroupRules::default()
    };
    let orphan = broker
        .take_group(&keys, "g0", &rules, Duration::from_secs(3))
        .await
        .unwrap()
        .expect("g0 is due: it holds 10 tasks, the max size is 5");
    assert_eq!(orphan.ids.len(), 5);

    // A worker SIGKILLed while it aggregates, then one that carries on.
    let mut first = SpawnedWorker::start(&config);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    first.kill();
    let _second = SpawnedWorker::start(&config);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let found = aggregates(&q).await;
        let members: usize = found.iter().map(|(_, ids)| ids.len()).sum();
        if members == group_of.len() {
            each_once(&found, &group_of);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{members} of {} tasks aggregated",
            group_of.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The orphaned set was put back and aggregated once; none is left.
    let sets: u64 = broker.conn().zcard(keys.aggregation_sets()).await.unwrap();
    assert_eq!(sets, 0);
    // A late finish of the orphaned set writes nothing.
    let late = wasq::proto::TaskMessage {
        id: "late".into(),
        queue: q.clone(),
        r#type: "bad".into(),
        ..Default::default()
    };
    assert!(!broker.finish_group(&keys, &orphan, &late).await.unwrap());
    assert!(broker.task(&q, "late").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rust_guest_sees_the_group_and_its_members() {
    let runtime = config(&[], "").runtime();
    crate::interpreted::group_as_for_rust(&runtime).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_tasks_written_as_asynqs_client_writes_them_are_aggregated() {
    use prost::Message as _;
    let q = unique_queue("groups-asynq");
    let config = config(
        &[],
        &format!(
            "\n[worker]\nmaintenance_interval = \"200ms\"\n\
             [queues.{q:?}]\ngroup_grace = \"1s\"\ngroup_task_type = \"bad\"\n"
        ),
    );
    // What Asynq's AddToGroup writes: the hash (msg, state, group), the
    // group's zset scored by Unix seconds, the set of group names, and the
    // queue in asynq:queues. No wake token.
    let client = cluster_client().await;
    let broker = client.broker().clone();
    let keys = QueueKeys::new(&q);
    let now = wasq::broker::now_secs();
    let mut pipe = redis::pipe();
    for i in 0..3 {
        let msg = wasq::proto::TaskMessage {
            r#type: "email:notify".into(),
            payload: format!(r#"{{"n": {i}}}"#).into_bytes(),
            id: format!("asynq-{i}"),
            queue: q.clone(),
            retry: 25,
            timeout: 1800,
            group_key: "user:7".into(),
            ..Default::default()
        };
        pipe.hset_multiple(
            keys.task(&msg.id),
            &[
                ("msg", msg.encode_to_vec()),
                ("state", b"aggregating".to_vec()),
                ("group", b"user:7".to_vec()),
            ],
        )
        .zadd(keys.group("user:7"), &msg.id, now)
        .sadd(keys.groups(), "user:7");
    }
    let _: () = pipe.query_async(&mut broker.conn()).await.unwrap();
    let _: () = broker
        .conn()
        .sadd(wasq::broker::keys::ALL_QUEUES, &q)
        .await
        .unwrap();

    let mut worker = RunningWorker::start(&config).await;
    let event = worker.next(1, Duration::from_secs(15)).await.remove(0);
    assert_eq!(event.disposition, Disposition::Done);
    let result: serde_json::Value = serde_json::from_str(event.result.as_deref().unwrap()).unwrap();
    assert_eq!(result["group"], "user:7");
    let ids: Vec<&str> = result["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["asynq-0", "asynq-1", "asynq-2"]);
    worker.stop().await;
}
