//! JavaScript handlers, built by `wasq build` with ComponentizeJS: the JS
//! examples through the runtime and through a worker on the cluster, one
//! enqueued by `wasq enqueue`, and a misbehaving JS guest classified exactly
//! as the Rust one is. StarlingMonkey gives JavaScript no file API, so there
//! is no file-reading misbehaviour to test.
//!
//! Every JS component is built once per test run (the first test that needs
//! them builds all of them, under `target/wasq-test-js/`), and its compiled
//! code goes to the tests' shared cache. ComponentizeJS's output differs
//! from build to build (its snapshot holds a scratch path), so a component
//! whose sources have not changed since the last run is kept, and its
//! compiled code is found in the cache.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use wasq::runtime::{HandlerError, Invocation, TrapCause};
use wasq::worker::Disposition;
use wasq::{Task, TaskOptions};
use wasq_tests::redis::shared_cluster;
use wasq_tests::{TestConfig, run_wasq, unique_queue};

use crate::interpreted::{self, handler_error, ok_text, run, trap};
use crate::support::*;

/// The JavaScript sources built for the tests: (source, component name).
const SOURCES: &[(&str, &str)] = &[
    ("examples-wasm/js/email.js", "email"),
    ("examples-wasm/js/webhook_sync.js", "webhook_sync"),
    ("examples-wasm/js/primes.js", "primes"),
    ("examples-wasm/js/noop.js", "noop"),
    ("tests/guests/js/misbehave.js", "misbehave"),
    ("tests/guests/js/http_client.js", "http_client"),
];

/// What a component is built from besides its source.
const TOOLCHAIN: &[&str] = &[
    "guest-sdk/js/index.js",
    "guest-sdk/js/build.mjs",
    "guest-sdk/js/tools/package-lock.json",
    "wit/wasq.wit",
];

/// The directory of the built JS components; builds them on first use.
fn components() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        interpreted::build_components(
            "wasq-test-js",
            SOURCES,
            TOOLCHAIN,
            "is ComponentizeJS installed? scripts/setup",
        )
    })
}

pub(crate) fn module(name: &str) -> String {
    interpreted::module_in(components(), name)
}

/// Task types of the JS examples.
fn example_types() -> String {
    interpreted::example_types(&module("email"), &module("webhook_sync"), &module("primes"))
}

/// The misbehaving JS guest under the Rust one's limits.
fn misbehave_types() -> String {
    interpreted::misbehave_types(&module("misbehave"))
}

#[tokio::test]
async fn js_examples_give_the_rust_examples_results() {
    let runtime = TestConfig::new(&example_types()).runtime();
    interpreted::examples_give_the_rust_examples_results(&runtime, "js").await;
}

#[tokio::test]
async fn a_js_interpreter_is_stopped_by_fuel_and_by_its_timeout() {
    let runtime = TestConfig::new(&example_types()).runtime();
    let small = r#"{"n":10,"count":4,"largest":7}"#;
    interpreted::stopped_by_fuel_and_by_its_timeout(&runtime, 40_000_000, small).await;
}

#[tokio::test]
async fn js_misbehaviour_is_classified_as_for_rust() {
    let runtime = TestConfig::new(&misbehave_types()).runtime();

    let looped = run(&runtime, "bad", r#"{"do": "loop"}"#).await;
    assert_eq!(trap(&looped), &TrapCause::OutOfFuel);
    assert_eq!(looped.fuel_consumed, 500_000_000);
    let looped = run(&runtime, "unlimited", r#"{"do": "loop"}"#).await;
    assert_eq!(trap(&looped), &TrapCause::Timeout);

    // Waiting on the host (a timer) is stopped by the deadline as well.
    let started = std::time::Instant::now();
    let slept = run(&runtime, "unlimited", r#"{"do": "sleep"}"#).await;
    assert_eq!(trap(&slept), &TrapCause::Timeout);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    let bomb = run(&runtime, "bad", r#"{"do": "memory"}"#).await;
    assert_eq!(trap(&bomb), &TrapCause::MemoryLimit { limit: 48 << 20 });
    assert!(bomb.memory_peak <= 48 << 20, "{}", bomb.memory_peak);

    // Any other throw is a retry whose message has the error's name,
    // message and stack.
    let thrown = run(&runtime, "bad", r#"{"do": "throw"}"#).await;
    match handler_error(&thrown) {
        HandlerError::Retry { message, delay } => {
            assert!(
                message.starts_with("RangeError: deliberate error for the test"),
                "{message}"
            );
            assert!(message.contains("fail@handler/misbehave.js:"), "{message}");
            assert!(message.contains("handle"), "{message}");
            assert_eq!(*delay, None);
        }
        other => panic!("expected a retry, got {other:?}"),
    }

    // The SDK's own errors say what the host does.
    let later = run(&runtime, "bad", r#"{"do": "retry-after"}"#).await;
    assert_eq!(
        handler_error(&later),
        &HandlerError::Retry {
            message: "try again later".into(),
            delay: Some(Duration::from_millis(1500))
        }
    );
    let revoked = run(&runtime, "bad", r#"{"do": "revoke"}"#).await;
    assert_eq!(
        handler_error(&revoked),
        &HandlerError::Revoke {
            message: "nobody wants this".into()
        }
    );
    interpreted::rate_limited_as_for_rust(&runtime).await;
    interpreted::group_as_for_rust(&runtime).await;

    let denied = run(
        &runtime,
        "granted",
        r#"{"do": "enqueue", "queue": "payments"}"#,
    )
    .await;
    match handler_error(&denied) {
        HandlerError::SkipRetry { message } => {
            assert!(message.contains("enqueue denied"), "{message}");
            assert!(message.contains("not granted queue"), "{message}");
            assert!(message.contains("[denied]"), "{message}");
        }
        other => panic!("expected skip-retry, got {other:?}"),
    }
    assert!(denied.follow_ups.is_empty());
    let granted = run(
        &runtime,
        "granted",
        r#"{"do": "enqueue", "queue": "webhooks"}"#,
    )
    .await;
    assert_eq!(granted.follow_ups.len(), 1, "{:?}", granted.outcome);
    assert_eq!(ok_text(&granted), granted.follow_ups[0].id);
    assert_eq!(granted.follow_ups[0].task_type, "webhooks:sync");

    // The task as the handler sees it.
    let mut invocation = Invocation::new("bad", br#"{"do": "info"}"#.to_vec());
    invocation.queue = "mail".into();
    let info = runtime.execute(invocation).await;
    let seen: serde_json::Value = serde_json::from_str(&ok_text(&info)).unwrap();
    assert_eq!(seen["taskType"], "bad");
    assert_eq!(seen["queue"], "mail");
    assert_eq!(seen["bytes"], 14);

    // After all that, the same runtime runs a normal task.
    assert_eq!(
        ok_text(&run(&runtime, "bad", r#"{"do": "ok"}"#).await),
        r#"{"do": "ok"}"#
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_handlers_run_on_a_worker_and_from_the_cli() {
    let q = unique_queue("js");
    let mut body = shared_cluster().toml();
    body.push_str(&queue_sections(&[(&q, 1, None)]));
    body.push_str(&example_types());
    body.push_str(&format!(
        r#"
[tasks."js:bad"]
module = {misbehave}
memory = "48MiB"
"#,
        misbehave = module("misbehave"),
    ));
    let config = TestConfig::new(&body);
    let mut worker = RunningWorker::start(&config).await;
    let client = cluster_client().await;

    // Enqueued by the Rust client.
    let email = client
        .enqueue(
            Task::new("notifications:email", br#"{"to": 42, "from": 7}"#.to_vec()),
            TaskOptions::default().queue(&q),
        )
        .await
        .unwrap();
    let events = worker.next(1, Duration::from_secs(30)).await;
    assert_eq!(events[0].id, email.id);
    assert_eq!(events[0].disposition, Disposition::Done);
    assert_eq!(events[0].result.as_deref(), Some("email sent from 7 to 42"));

    // Enqueued by `wasq enqueue`.
    let addrs = shared_cluster().addrs().join(",");
    let (code, out, err) = run_wasq(&[
        "enqueue",
        "webhooks:sync",
        "--cluster",
        "--cluster-addrs",
        &addrs,
        "--queue",
        &q,
        "--payload",
        r#"{"data": 1234}"#,
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let enqueued: serde_json::Value = serde_json::from_str(&out).unwrap();
    let events = worker.next(1, Duration::from_secs(30)).await;
    assert_eq!(
        Some(events[0].id.as_str()),
        enqueued["id"].as_str(),
        "{out}"
    );
    assert_eq!(events[0].task_type, "webhooks:sync");
    assert_eq!(events[0].disposition, Disposition::Done);
    assert_eq!(events[0].result.as_deref(), Some("webhook 1234 processed"));

    // A throw stores the stack as the task's error.
    let thrown = client
        .enqueue(
            Task::new("js:bad", br#"{"do": "throw"}"#.to_vec()),
            TaskOptions::default().queue(&q).max_retry(0),
        )
        .await
        .unwrap();
    let events = worker.next(1, Duration::from_secs(30)).await;
    assert_eq!(events[0].id, thrown.id);
    assert_eq!(events[0].disposition, Disposition::Archived);
    let error = events[0].error.as_deref().unwrap_or_default();
    assert!(error.contains("RangeError"), "{error}");
    assert!(error.contains("misbehave.js:"), "{error}");
    worker.stop().await;
}

#[test]
fn wasq_build_names_the_missing_js_toolchain() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("handler.js");
    std::fs::copy(
        interpreted::root().join("examples-wasm/js/email.js"),
        &source,
    )
    .unwrap();
    let output = std::process::Command::new(wasq_tests::wasq_bin())
        .arg("build")
        .arg(&source)
        .arg("-o")
        .arg(dir.path().join("out.wasm"))
        .env("WASQ_TOOLS", dir.path().join("none"))
        .current_dir(dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(err.contains("ComponentizeJS is not installed"), "{err}");
    assert!(err.contains("scripts/setup"), "{err}");
}

#[test]
fn the_js_noop_is_checked_and_benchmarked() {
    interpreted::check_and_bench_the_noop("js", &components().join("noop.wasm"));
}
