//! Python handlers, built by `wasq build` with componentize-py: the Python
//! examples through the runtime and through a worker on the cluster, a
//! misbehaving Python guest classified exactly as the Rust one is, and
//! Python and Rust tasks enqueuing each other.
//!
//! Every Python component is built once per test run (the first test that
//! needs them builds all of them, under `target/wasq-test-python/`) unless
//! its sources are unchanged since the last run, and its compiled code goes
//! to the tests' shared cache.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use wasq::runtime::{HandlerError, TrapCause};
use wasq::worker::Disposition;
use wasq::{Task, TaskOptions};
use wasq_tests::redis::shared_cluster;
use wasq_tests::{TestConfig, unique_queue};

use crate::interpreted::{self, handler_error, ok_text, run, trap};
use crate::support::*;

/// The Python sources built for the tests: (source, component name).
const SOURCES: &[(&str, &str)] = &[
    ("examples-wasm/python/send_email.py", "send_email"),
    ("examples-wasm/python/webhook_sync.py", "webhook_sync"),
    ("examples-wasm/python/primes.py", "primes"),
    ("examples-wasm/python/noop.py", "noop"),
    ("tests/guests/python/misbehave.py", "misbehave"),
    ("tests/guests/python/http_client.py", "http_client"),
];

/// What a component is built from besides its source.
const TOOLCHAIN: &[&str] = &[
    "guest-sdk/python/wasq_guest/__init__.py",
    "guest-sdk/python/wasq_guest/_errors.py",
    "guest-sdk/python/wasq_guest/_handler.py",
    "guest-sdk/python/wasq_guest/_task.py",
    "guest-sdk/python/wasq_guest/http.py",
    "guest-sdk/python/wasq_guest/log.py",
    "host/src/cli/build/python.rs",
    "guest-sdk/js/tools/package-lock.json",
    "scripts/setup",
    "wit/wasq.wit",
];

/// The directory of the built Python components; builds them on first use.
fn components() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        interpreted::build_components(
            "wasq-test-python",
            SOURCES,
            TOOLCHAIN,
            "is componentize-py installed? scripts/setup",
        )
    })
}

pub(crate) fn module(name: &str) -> String {
    interpreted::module_in(components(), name)
}

/// Task types of the Python examples, as in examples-wasm/python/wasq.toml.
fn example_types() -> String {
    interpreted::example_types(
        &module("send_email"),
        &module("webhook_sync"),
        &module("primes"),
    )
}

/// The misbehaving Python guest under the Rust one's limits.
fn misbehave_types() -> String {
    interpreted::misbehave_types(&module("misbehave"))
}

#[tokio::test]
async fn python_examples_give_the_rust_examples_results() {
    let runtime = TestConfig::new(&example_types()).runtime();
    interpreted::examples_give_the_rust_examples_results(&runtime, "python").await;
}

#[tokio::test]
async fn an_interpreter_is_stopped_by_fuel_and_by_its_timeout() {
    let runtime = TestConfig::new(&example_types()).runtime();
    let small = r#"{"n": 10, "count": 4, "largest": 7}"#;
    interpreted::stopped_by_fuel_and_by_its_timeout(&runtime, 30_000_000, small).await;
}

#[tokio::test]
async fn python_misbehaviour_is_classified_as_for_rust() {
    let runtime = TestConfig::new(&misbehave_types()).runtime();

    let looped = run(&runtime, "bad", r#"{"do": "loop"}"#).await;
    assert_eq!(trap(&looped), &TrapCause::OutOfFuel);
    let looped = run(&runtime, "unlimited", r#"{"do": "loop"}"#).await;
    assert_eq!(trap(&looped), &TrapCause::Timeout);

    let bomb = run(&runtime, "bad", r#"{"do": "alloc"}"#).await;
    assert_eq!(trap(&bomb), &TrapCause::MemoryLimit { limit: 48 << 20 });

    let raised = run(&runtime, "bad", r#"{"do": "raise", "value": 0}"#).await;
    match handler_error(&raised) {
        HandlerError::Retry { message, delay } => {
            assert!(
                message.starts_with("ZeroDivisionError: division by zero"),
                "{message}"
            );
            assert!(message.contains("Traceback"), "{message}");
            assert!(message.contains("in divide"), "{message}");
            assert!(message.contains("in nested"), "{message}");
            assert_eq!(*delay, None);
        }
        other => panic!("expected a retry, got {other:?}"),
    }

    let read = run(
        &runtime,
        "bad",
        r#"{"do": "read-file", "path": "/etc/passwd"}"#,
    )
    .await;
    match handler_error(&read) {
        HandlerError::SkipRetry { message } => {
            assert!(message.contains("read /etc/passwd failed"), "{message}")
        }
        other => panic!("expected skip-retry, got {other:?}"),
    }

    let denied = run(
        &runtime,
        "granted",
        r#"{"do": "enqueue", "type": "noop", "queue": "payments"}"#,
    )
    .await;
    match handler_error(&denied) {
        HandlerError::SkipRetry { message } => {
            assert!(message.contains("enqueue denied"), "{message}");
            assert!(message.contains("kind denied"), "{message}");
        }
        other => panic!("expected skip-retry, got {other:?}"),
    }
    assert!(denied.follow_ups.is_empty());
    let granted = run(
        &runtime,
        "granted",
        r#"{"do": "enqueue", "type": "webhooks:sync", "queue": "webhooks"}"#,
    )
    .await;
    assert_eq!(granted.follow_ups.len(), 1, "{:?}", granted.outcome);

    interpreted::rate_limited_as_for_rust(&runtime).await;
    interpreted::group_as_for_rust(&runtime).await;

    // After all that, the same runtime runs a normal task.
    assert_eq!(
        ok_text(&run(&runtime, "bad", r#"{"do": "ok"}"#).await),
        "ok"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_and_rust_handlers_share_a_worker_and_enqueue_each_other() {
    let py = unique_queue("py");
    let rs = unique_queue("rs");
    let mut body = shared_cluster().toml();
    body.push_str(&queue_sections(&[(&py, 1, None), (&rs, 1, None)]));
    body.push_str(&format!(
        r#"
[tasks."notifications:email"]
module = {email}
memory = "64MiB"
[tasks."py:parent"]
module = {misbehave}
memory = "64MiB"
enqueue = [{rs:?}]
[tasks.noop]
module = "{{examples}}/noop.wasm"
"#,
        email = module("send_email"),
        misbehave = module("misbehave"),
    ));
    let config = TestConfig::new(&body);
    let mut worker = RunningWorker::start(&config).await;
    let client = cluster_client().await;

    // A Python task enqueued by the Rust client.
    let email = client
        .enqueue(
            Task::new("notifications:email", br#"{"to": 42, "from": 7}"#.to_vec()),
            TaskOptions::default().queue(&py),
        )
        .await
        .unwrap();
    let events = worker.next(1, Duration::from_secs(30)).await;
    assert_eq!(events[0].id, email.id);
    assert_eq!(events[0].disposition, Disposition::Done);
    assert_eq!(events[0].result.as_deref(), Some("email sent from 7 to 42"));

    // A Python handler enqueues a follow-up that the Rust noop runs.
    let json = format!(r#"{{"do": "enqueue", "type": "noop", "queue": {rs:?}}}"#);
    let parent = client
        .enqueue(
            Task::new("py:parent", json.into_bytes()),
            TaskOptions::default().queue(&py),
        )
        .await
        .unwrap();
    let events = worker.next(2, Duration::from_secs(30)).await;
    let parent_event = events
        .iter()
        .find(|e| e.id == parent.id)
        .expect("parent ran");
    assert_eq!(
        parent_event.disposition,
        Disposition::Done,
        "{parent_event:?}"
    );
    let child_id = parent_event.result.clone().expect("the follow-up's id");
    let child = events.iter().find(|e| e.id == child_id).expect("child ran");
    assert_eq!(
        (
            child.queue.as_str(),
            child.task_type.as_str(),
            child.disposition
        ),
        (rs.as_str(), "noop", Disposition::Done)
    );

    // An exception stores its traceback as the task's error.
    let raised = client
        .enqueue(
            Task::new("py:parent", br#"{"do": "raise", "value": 0}"#.to_vec()),
            TaskOptions::default().queue(&py).max_retry(0),
        )
        .await
        .unwrap();
    let events = worker.next(1, Duration::from_secs(30)).await;
    assert_eq!(events[0].id, raised.id);
    assert_eq!(events[0].disposition, Disposition::Archived);
    let error = events[0].error.as_deref().unwrap_or_default();
    assert!(error.contains("ZeroDivisionError"), "{error}");
    assert!(error.contains("in divide"), "{error}");
    worker.stop().await;
}

#[test]
fn the_python_noop_is_checked_and_benchmarked() {
    interpreted::check_and_bench_the_noop("python", &components().join("noop.wasm"));
}
