//! Redis over TLS: a single Redis and a cluster that speak only TLS (bus and
//! replication included), with a CA of the test's own given as `tls_ca`.
//! The worker, the client and the CLI all go through it. And Redis with ACL
//! credentials: servers whose default user is off take only `[redis]`
//! `username` and `password`.

use std::time::Duration;

use wasq::worker::Disposition;
use wasq::{Client, RedisConfig, TaskOptions};
use wasq_tests::redis::{RedisCluster, RedisServer, TlsFiles};
use wasq_tests::{TestConfig, run_wasq, unique_queue};

use crate::support::*;

fn tls_config(redis: &str, queue: &str) -> TestConfig {
    let mut body = redis.to_owned();
    body.push_str(&queue_sections(&[(queue, 1, None)]));
    body.push_str(GUEST_TYPES);
    TestConfig::new(&body)
}

/// Starts a worker on `config`, enqueues a task into `queue` through a
/// client on `redis`, and checks the worker runs it.
async fn runs_a_task(config: &TestConfig, redis: &RedisConfig, queue: &str) -> RunningWorker {
    let mut worker = RunningWorker::start(config).await;
    let client = Client::connect(redis).await.unwrap();
    let info = client
        .enqueue(
            payload(r#"{"do": "ok", "over": "tls"}"#),
            TaskOptions::default().queue(queue),
        )
        .await
        .unwrap();
    let event = &worker.next(1, Duration::from_secs(15)).await[0];
    assert_eq!(
        (event.id.as_str(), event.disposition),
        (info.id.as_str(), Disposition::Done)
    );
    worker
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_redis_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let tls = TlsFiles::generate(dir.path());
    let redis = RedisServer::start_tls(dir.path(), false, &tls);
    let url = format!("rediss://{}", redis.addr());
    let q = unique_queue("tls-single");
    let config = tls_config(
        &format!(
            "[redis]\nurl = {url:?}\ntls_ca = {:?}\n",
            tls.ca.display().to_string()
        ),
        &q,
    );
    let mut redis_config = RedisConfig::single(&url);
    redis_config.tls_ca = Some(tls.ca.clone());
    let worker = runs_a_task(&config, &redis_config, &q).await;
    // Without the CA the server's certificate is not trusted.
    let err = match Client::connect(&RedisConfig::single(&url)).await {
        Ok(_) => panic!("connected without trusting the test CA"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("cannot connect"), "{err}");
    // The CLI reads `tls_ca` from the config.
    let (code, out, err) = run_wasq(&[
        "queue",
        "inspect",
        &q,
        "--config",
        &config.path.display().to_string(),
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"processed_total\": 1"), "{out}");
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let tls = TlsFiles::generate(dir.path());
    let cluster = {
        let tls = tls.clone();
        tokio::task::spawn_blocking(move || RedisCluster::start_tls(3, 0, &tls))
            .await
            .unwrap()
    };
    let q = unique_queue("tls-cluster");
    let mut redis = cluster.toml();
    redis.push_str(&format!("tls_ca = {:?}\n", tls.ca.display().to_string()));
    let config = tls_config(&redis, &q);
    let mut redis_config = cluster.redis_config();
    redis_config.tls_ca = Some(tls.ca.clone());
    let worker = runs_a_task(&config, &redis_config, &q).await;
    let (code, out, err) = run_wasq(&[
        "queue",
        "ls",
        "--config",
        &config.path.display().to_string(),
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&q), "{out}");
    worker.stop().await;
}

/// Adds the ACL user `app` (password `s3cret`) to `server` and turns its
/// default user off, so only those credentials get in.
fn require_credentials(server: &RedisServer) {
    let added = server.cli(&[
        "ACL", "SETUSER", "app", "on", ">s3cret", "~*", "&*", "+@all",
    ]);
    assert_eq!(added.trim(), "OK", "{added}");
    let off = server.cli(&["ACL", "SETUSER", "default", "off"]);
    assert_eq!(off.trim(), "OK", "{off}");
}

/// `config` with the ACL user's credentials, and with a wrong password.
fn with_credentials(config: RedisConfig) -> (RedisConfig, RedisConfig) {
    let good = RedisConfig {
        username: Some("app".into()),
        password: Some("s3cret".into()),
        ..config
    };
    let wrong = RedisConfig {
        password: Some("not-it".into()),
        ..good.clone()
    };
    (good, wrong)
}

async fn refused(config: &RedisConfig) -> String {
    match Client::connect(config).await {
        Ok(_) => panic!("connected with a wrong password"),
        Err(e) => e.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_redis_with_acl_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start(dir.path(), false);
    require_credentials(&redis);
    let url = format!("redis://{}", redis.addr());
    let q = unique_queue("acl");
    let config = tls_config(
        &format!("[redis]\nurl = {url:?}\nusername = \"app\"\npassword = \"s3cret\"\n"),
        &q,
    );
    let (good, wrong) = with_credentials(RedisConfig::single(&url));
    // The worker's shared, blocking (wake) and pub/sub connections all get in.
    let worker = runs_a_task(&config, &good, &q).await;
    worker.stop().await;
    let err = refused(&wrong).await;
    assert!(err.contains("Password authentication failed"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_with_acl_credentials() {
    let cluster = tokio::task::spawn_blocking(|| RedisCluster::start(3, 0))
        .await
        .unwrap();
    for node in &cluster.nodes {
        require_credentials(node);
    }
    let q = unique_queue("acl-cluster");
    let mut redis = cluster.toml();
    redis.push_str("username = \"app\"\npassword = \"s3cret\"\n");
    let config = tls_config(&redis, &q);
    let (good, wrong) = with_credentials(cluster.redis_config());
    let worker = runs_a_task(&config, &good, &q).await;
    worker.stop().await;
    let err = refused(&wrong).await;
    assert!(err.contains("Password authentication failed"), "{err}");
    // The CLI's --cluster takes the credentials as flags or from the
    // environment.
    let addrs = cluster.addrs().join(",");
    let ls_args = [
        "queue",
        "ls",
        "--cluster",
        "--cluster-addrs",
        &addrs,
        "--json",
    ];
    let ls = |extra: &[&str]| {
        let mut args = ls_args.to_vec();
        args.extend_from_slice(extra);
        run_wasq(&args)
    };
    let (code, out, err) = ls(&["--username", "app", "--password", "s3cret"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&q), "{out}");
    let (code, _, err) = ls(&["--connect-timeout", "1s"]);
    assert_ne!(code, 0);
    assert!(err.contains("connecting to Redis"), "{err}");
    let out = std::process::Command::new(wasq_tests::wasq_bin())
        .args(ls_args)
        .env("WASQ_REDIS_USERNAME", "app")
        .env("WASQ_REDIS_PASSWORD", "s3cret")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
