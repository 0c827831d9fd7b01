//! The web dashboard end to end: `wasq dash --web` against the real
//! cluster, driven in headless Chromium (Debian's `chromium`, through
//! playwright-core in `tests/dashboard`) with real clicks: pause a queue,
//! open a task, run an archived task, see the counts change; then the same
//! page read-only. Each action's effect is checked in Redis.
//!
//! `WASQ_SCREENSHOTS=<dir>` saves screenshots of the main views there
//! (that is how `docs/` gets them).

use std::path::Path;
use std::process::Command;

use redis::AsyncCommands as _;
use wasq::TaskOptions;
use wasq::TaskState;
use wasq::broker::{Move, QueueKeys};
use wasq_tests::{KillOnDrop, unique_queue, wasq_bin};

use crate::support::*;

fn dash(config: &wasq_tests::TestConfig, addr: &str, read_only: bool) -> KillOnDrop {
    let mut cmd = Command::new(wasq_bin());
    cmd.args([
        "dash",
        "--web",
        "--listen",
        addr,
        "--config",
        &config.path.display().to_string(),
    ]);
    if read_only {
        cmd.arg("--read-only");
    }
    let child = KillOnDrop(cmd.stderr(std::process::Stdio::null()).spawn().unwrap());
    wait_listening(addr);
    child
}

fn browser(url: &str, queue: &str, task: &str, mode: &str) -> (bool, String) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboard");
    assert!(
        dir.join("node_modules/playwright-core").exists(),
        "run scripts/setup first: it installs chromium and the dashboard test's node modules"
    );
    let mut cmd = Command::new("node");
    cmd.current_dir(&dir)
        .args(["dash.test.mjs", url, queue, task])
        .env("MODE", mode);
    if let Ok(shots) = std::env::var("WASQ_SCREENSHOTS") {
        cmd.env("SHOTS", shots);
    }
    let out = cmd
        .output()
        .expect("running node (scripts/setup installs it)");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_dashboard_pauses_a_queue_and_runs_an_archived_task_in_a_real_browser() {
    let q = unique_queue("dash");
    let busy = unique_queue("dash-busy");
    let config = config(&[(&busy, 1, None)], "");
    // Some life on another queue, so the servers view has a worker.
    let worker = RunningWorker::start(&config).await;
    let client = cluster_client().await;
    for n in 0..20 {
        client
            .enqueue(
                payload(&format!(r#"{{"do": "ok", "n": {n}}}"#)),
                TaskOptions::default().queue(&busy),
            )
            .await
            .unwrap();
    }
    let task = client
        .enqueue(
            payload(r#"{"do": "ok", "to": "archive"}"#),
            TaskOptions::default().queue(&q),
        )
        .await
        .unwrap()
        .id;
    let broker = client.broker();
    let moved = broker
        .move_tasks(
            &q,
            TaskState::Pending,
            Move::Archive,
            std::slice::from_ref(&task),
        )
        .await
        .unwrap();
    assert_eq!(moved, 1);

    let addr = format!("127.0.0.1:{}", wasq_tests::redis::RedisServer::free_port());
    let _dash = dash(&config, &addr, false);
    let url = format!("http://{addr}/");
    let (ok, out) = tokio::task::spawn_blocking({
        let (url, q, task) = (url.clone(), q.clone(), task.clone());
        move || browser(&url, &q, &task, "")
    })
    .await
    .unwrap();
    assert!(ok, "{out}");
    assert!(out.contains("dashboard ok"), "{out}");

    // The clicks did what they showed.
    let keys = QueueKeys::new(&q);
    let mut conn = broker.conn();
    let paused: bool = conn.exists(keys.paused()).await.unwrap();
    assert!(paused, "the queue was not paused in Redis");
    let pending: Vec<String> = conn.lrange(keys.pending(), 0, -1).await.unwrap();
    assert_eq!(pending, vec![task.clone()]);
    assert_eq!(conn.zcard::<_, u64>(keys.archived()).await.unwrap(), 0);

    // Read-only: the same page with every action disabled, and the API
    // refuses them.
    broker
        .move_tasks(
            &q,
            TaskState::Pending,
            Move::Archive,
            std::slice::from_ref(&task),
        )
        .await
        .unwrap();
    let ro_addr = format!("127.0.0.1:{}", wasq_tests::redis::RedisServer::free_port());
    let _ro = dash(&config, &ro_addr, true);
    let (status, body) = tokio::task::spawn_blocking({
        let (addr, path) = (ro_addr.clone(), format!("/api/queues/{q}/tasks/{task}/run"));
        move || http(&addr, "POST", &path)
    })
    .await
    .unwrap();
    assert_eq!(status, 403, "{body}");
    let (ok, out) = tokio::task::spawn_blocking({
        let (url, q, task) = (format!("http://{ro_addr}/"), q.clone(), task.clone());
        move || browser(&url, &q, &task, "readonly")
    })
    .await
    .unwrap();
    assert!(ok && out.contains("dashboard read-only ok"), "{out}");
    assert_eq!(conn.zcard::<_, u64>(keys.archived()).await.unwrap(), 1);
    worker.stop().await;
}
