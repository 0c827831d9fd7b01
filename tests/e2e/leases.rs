//! Claims and acknowledgements at the broker level, with two workers
//! (brokers with different owners) on one queue of the real cluster: a
//! stale claim hint never takes a task twice, and a late acknowledgement
//! never deletes a task whose lease another worker holds, and an
//! acknowledgement that claims replacements acknowledges first.

use prost::Message as _;
use redis::AsyncCommands as _;
use wasq::broker::{Broker, Claimed, FailTo, LeaseHolder, QueueKeys, Refill, now_secs};
use wasq::proto::TaskMessage;
use wasq::{Client, TaskOptions};
use wasq_tests::unique_queue;

use crate::support::*;

async fn enqueue_ids(client: &Client, queue: &str, ids: &[&str]) {
    for id in ids {
        client
            .enqueue(
                payload(r#"{"do": "ok"}"#),
                TaskOptions::default().queue(queue).task_id(*id),
            )
            .await
            .unwrap();
    }
}

/// Acknowledges `done` (ids with the lease expiry last written) and claims
/// up to `want` replacements with `hint`, leased until `lease_expiry`.
async fn ack_and_claim(
    broker: &Broker,
    keys: &QueueKeys,
    done: &[(&str, i64)],
    (want, lease_expiry): (usize, i64),
    hint: &mut Vec<String>,
) -> (Vec<bool>, Vec<Claimed>) {
    let done: Vec<(String, i64)> = done.iter().map(|(id, e)| ((*id).to_owned(), *e)).collect();
    let refill = Refill {
        want,
        lease_expiry,
        hint,
        limits: Default::default(),
    };
    let (acked, claim) = broker
        .finish_many_and_claim(keys, &done, Some(refill))
        .await
        .unwrap();
    (acked, claim.tasks)
}

fn ids(claimed: &[Claimed]) -> Vec<String> {
    claimed.iter().map(|c| c.id.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_claim_hint_never_takes_a_task_twice() {
    let q = unique_queue("hints");
    let client = cluster_client().await;
    let all: Vec<String> = (0..10).map(|i| format!("h{i}")).collect();
    enqueue_ids(
        &client,
        &q,
        &all.iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .await;
    let keys = QueueKeys::new(&q);
    let a = client.broker().with_owner("worker-a");
    let b = client.broker().with_owner("worker-b");
    let expiry = now_secs() + 30;
    let (mut hint_a, mut hint_b) = (Vec::new(), Vec::new());

    // A claims the two oldest; its hint now names the next ones.
    let first = a.claim(&keys, 2, expiry, &mut hint_a).await.unwrap();
    assert_eq!(ids(&first), ["h0", "h1"]);
    assert_eq!(hint_a[..2], ["h2", "h3"]);
    // B, peeking on its own, takes exactly those.
    let second = b.claim(&keys, 3, expiry, &mut hint_b).await.unwrap();
    assert_eq!(ids(&second), ["h2", "h3", "h4"]);
    // A's hint is stale: the claim finds out, and takes the next ones.
    let third = a.claim(&keys, 2, expiry, &mut hint_a).await.unwrap();
    assert_eq!(ids(&third), ["h5", "h6"]);
    let rest_a = a.claim(&keys, 10, expiry, &mut hint_a).await.unwrap();
    let rest_b = b.claim(&keys, 10, expiry, &mut hint_b).await.unwrap();
    assert_eq!(ids(&rest_a), ["h7", "h8", "h9"]);
    assert!(rest_b.is_empty(), "B claimed {:?} again", ids(&rest_b));

    let mut conn = client.broker().conn();
    let active: Vec<String> = conn.lrange(keys.active(), 0, -1).await.unwrap();
    assert_eq!(active.len(), 10, "each task active once: {active:?}");
    let pending: usize = conn.llen(keys.pending()).await.unwrap();
    assert_eq!(pending, 0);
    for id in &all {
        let owner: String = conn.hget(keys.task(id), "lease_owner").await.unwrap();
        let expected = if ["h2", "h3", "h4"].contains(&id.as_str()) {
            "worker-b"
        } else {
            "worker-a"
        };
        assert_eq!(owner, expected, "owner of {id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_acknowledgement_never_takes_another_workers_lease() {
    let q = unique_queue("lateack");
    let client = cluster_client().await;
    enqueue_ids(&client, &q, &["mine", "lost", "renewed"]).await;
    let keys = QueueKeys::new(&q);
    let a = client.broker().with_owner("worker-a");
    let b = client.broker().with_owner("worker-b");
    let now = now_secs();
    let expiry_a = now + 30;
    let claimed = a.claim(&keys, 3, expiry_a, &mut Vec::new()).await.unwrap();
    assert_eq!(ids(&claimed), ["mine", "lost", "renewed"]);

    // "lost": A's lease runs out (as seen from a minute later), the task is
    // recovered to retry, forwarded, and B claims it with its own lease.
    let lost = TaskMessage::decode(claimed[1].msg.as_slice()).unwrap();
    assert!(
        b.fail(
            &lost,
            FailTo::Retry { at: now - 1 },
            LeaseHolder::ExpiredBy { by: expiry_a + 60 },
            "",
        )
        .await
        .unwrap(),
        "recovering the expired lease"
    );
    assert_eq!(b.forward(&keys).await.unwrap(), 1);
    let taken = b
        .claim(&keys, 1, expiry_a + 90, &mut Vec::new())
        .await
        .unwrap();
    assert_eq!(ids(&taken), ["lost"]);

    // "renewed": A's heartbeat extended the lease but A never saw the reply,
    // so A still expects the expiry of its claim.
    assert_eq!(
        a.extend_leases(&keys, &["renewed".to_owned()], expiry_a + 10)
            .await
            .unwrap(),
        [true]
    );

    // A acknowledges all three, late, with the expiry it last saw succeed.
    let acked = a
        .finish_many(
            &keys,
            &[
                ("mine".to_owned(), expiry_a),
                ("lost".to_owned(), expiry_a),
                ("renewed".to_owned(), expiry_a),
            ],
        )
        .await
        .unwrap();
    assert_eq!(acked, [true, false, true]);

    let mut conn = client.broker().conn();
    let active: Vec<String> = conn.lrange(keys.active(), 0, -1).await.unwrap();
    assert_eq!(active, ["lost"], "B's task stays active");
    let (state, owner): (String, String) = redis::cmd("HMGET")
        .arg(keys.task("lost"))
        .arg("state")
        .arg("lease_owner")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!((state.as_str(), owner.as_str()), ("active", "worker-b"));
    let lease: Option<f64> = conn.zscore(keys.lease(), "lost").await.unwrap();
    assert_eq!(
        lease,
        Some((expiry_a + 90) as f64),
        "B's lease is untouched"
    );

    // B's own acknowledgement goes through, and the counts add up.
    assert_eq!(
        b.finish_many(&keys, &[("lost".to_owned(), expiry_a + 90)])
            .await
            .unwrap(),
        [true]
    );
    // Processed: three done and the recovered attempt, which failed.
    let stats = client.broker().stats(&q).await.unwrap();
    assert_eq!(
        (stats.active, stats.processed_total, stats.failed_total),
        (0, 4, 1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledgement_claims_replacements_only_after_the_acks() {
    let q = unique_queue("refill");
    let client = cluster_client().await;
    enqueue_ids(&client, &q, &["r0", "r1", "r2", "r3", "r4", "r5"]).await;
    let keys = QueueKeys::new(&q);
    let a = client.broker().with_owner("worker-a");
    let mut conn = client.broker().conn();
    let expiry = now_secs() + 30;
    let mut hint = Vec::new();
    let first = a.claim(&keys, 2, expiry, &mut hint).await.unwrap();
    assert_eq!(ids(&first), ["r0", "r1"]);

    // Two done, two claimed in the same call with the hint.
    let (acked, claimed) = ack_and_claim(
        &a,
        &keys,
        &[("r0", expiry), ("r1", expiry)],
        (2, expiry + 1),
        &mut hint,
    )
    .await;
    assert_eq!(acked, [true, true]);
    assert_eq!(ids(&claimed), ["r2", "r3"]);
    assert!(claimed.iter().all(|c| !c.msg.is_empty()));
    assert_eq!(hint, ["r4", "r5"]);
    let active: Vec<String> = conn.lrange(keys.active(), 0, -1).await.unwrap();
    assert_eq!(active, ["r3", "r2"], "the acknowledged tasks left active");
    let exists: bool = conn.exists(keys.task("r0")).await.unwrap();
    assert!(!exists, "an acknowledged task is deleted");
    let (state, owner): (String, String) = redis::cmd("HMGET")
        .arg(keys.task("r2"))
        .arg("state")
        .arg("lease_owner")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!((state.as_str(), owner.as_str()), ("active", "worker-a"));
    let lease: Option<i64> = conn.zscore(keys.lease(), "r3").await.unwrap();
    assert_eq!(lease, Some(expiry + 1));

    // A paused queue: the acks go through, nothing is claimed.
    client.broker().pause(&q).await.unwrap();
    let (acked, claimed) = ack_and_claim(
        &a,
        &keys,
        &[("r2", expiry + 1), ("r3", expiry + 1)],
        (2, expiry + 1),
        &mut hint,
    )
    .await;
    assert_eq!(acked, [true, true]);
    assert!(claimed.is_empty());
    assert!(hint.is_empty());
    let active: u64 = conn.llen(keys.active()).await.unwrap();
    assert_eq!(active, 0);
    client.broker().resume(&q).await.unwrap();

    // No hint: nothing claimed, but a fresh hint comes back; with it, the
    // rest is claimed.
    let (_, claimed) = ack_and_claim(&a, &keys, &[], (2, expiry), &mut hint).await;
    assert!(claimed.is_empty());
    assert_eq!(hint, ["r4", "r5"]);
    let (_, claimed) = ack_and_claim(&a, &keys, &[], (5, expiry), &mut hint).await;
    assert_eq!(ids(&claimed), ["r4", "r5"]);
    let pending: u64 = conn.llen(keys.pending()).await.unwrap();
    assert_eq!(pending, 0);

    // Out of order: r5 is not at active's tail, so it is removed alone.
    let acked = a
        .finish_many(&keys, &[("r5".to_owned(), expiry)])
        .await
        .unwrap();
    assert_eq!(acked, [true]);
    let active: Vec<String> = conn.lrange(keys.active(), 0, -1).await.unwrap();
    assert_eq!(active, ["r4"]);
    let acked = a
        .finish_many(&keys, &[("r4".to_owned(), expiry)])
        .await
        .unwrap();
    assert_eq!(acked, [true]);
    let active: u64 = conn.llen(keys.active()).await.unwrap();
    assert_eq!(active, 0);
}
