//! What the tests of the interpreted languages (Python, JavaScript) share:
//! building their components, the task types of their examples and of their
//! misbehaving guest, the helpers that read an [`Execution`], and the check
//! that their examples give the Rust examples' results.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use wasq::runtime::{Execution, Failure, HandlerError, Invocation, Outcome, Runtime, TrapCause};

pub(crate) fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A stamp of the files a component is built from: its source and the
/// toolchain's `inputs`.
fn stamp(source: &str, inputs: &[&str]) -> String {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for file in inputs.iter().chain([&source]) {
        file.hash(&mut hasher);
        std::fs::read(root().join(file))
            .unwrap_or_default()
            .hash(&mut hasher);
    }
    format!("{:016x}", hasher.finish())
}

/// Builds each `(source, name)` of `sources` with `wasq build` into
/// `target/<out>/<name>.wasm`, unless the source and the toolchain's
/// `inputs` are unchanged since the last build (the toolchains' output
/// differs from build to build, so a kept component also keeps its
/// compiled code in the tests' cache). `hint` is added to a failure.
pub(crate) fn build_components(
    out: &str,
    sources: &[(&str, &str)],
    inputs: &[&str],
    hint: &str,
) -> PathBuf {
    let root = root();
    let out = root.join("target").join(out);
    std::fs::create_dir_all(&out).unwrap();
    for (source, name) in sources {
        let wasm = out.join(format!("{name}.wasm"));
        let stamp_file = out.join(format!("{name}.stamp"));
        let stamp = stamp(source, inputs);
        if wasm.is_file() && std::fs::read_to_string(&stamp_file).ok() == Some(stamp.clone()) {
            continue;
        }
        let _ = std::fs::remove_file(&stamp_file);
        let output = std::process::Command::new(wasq_tests::wasq_bin())
            .arg("build")
            .arg(root.join(source))
            .arg("-o")
            .arg(&wasm)
            .arg("--cache-dir")
            .arg(wasq_tests::cache_dir())
            .current_dir(&root)
            .output()
            .expect("running wasq build");
        assert!(
            output.status.success(),
            "wasq build {source} failed ({hint}):\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        eprintln!("{}", String::from_utf8_lossy(&output.stdout).trim_end());
        std::fs::write(&stamp_file, stamp).unwrap();
    }
    out
}

/// Component `name` in `dir` as a TOML string.
pub(crate) fn module_in(dir: &Path, name: &str) -> String {
    format!(
        "{:?}",
        dir.join(format!("{name}.wasm")).display().to_string()
    )
}

/// Task types of a language's examples (the modules as TOML strings): the
/// email, the webhook and the prime sieve, the sieve also under a small
/// fuel budget and with unlimited fuel and a short timeout. An interpreter's
/// component starts with 9 to 13 MiB of linear memory.
pub(crate) fn example_types(email: &str, webhook: &str, primes: &str) -> String {
    format!(
        r#"
[tasks."notifications:email"]
module = {email}
memory = "64MiB"
[tasks."webhooks:sync"]
module = {webhook}
memory = "64MiB"
[tasks."compute:primes"]
module = {primes}
memory = "64MiB"
[tasks."compute:primes-low-fuel"]
module = {primes}
memory = "64MiB"
fuel = 200_000_000
[tasks."compute:primes-unlimited"]
module = {primes}
memory = "64MiB"
fuel = "unlimited"
timeout = "500ms"
"#
    )
}

/// A misbehaving guest `m` under the limits of the Rust one's tests
/// (tests/e2e/sandbox.rs), with the memory an interpreter needs.
pub(crate) fn misbehave_types(m: &str) -> String {
    format!(
        r#"
[defaults]
fuel = 500_000_000
memory = "48MiB"
timeout = "5s"

[tasks.bad]
module = {m}
[tasks.unlimited]
module = {m}
fuel = "unlimited"
timeout = "300ms"
[tasks.granted]
module = {m}
enqueue = ["webhooks"]
"#
    )
}

pub(crate) async fn run(runtime: &Runtime, task_type: &str, payload: &str) -> Execution {
    runtime
        .execute(Invocation::new(task_type, payload.as_bytes().to_vec()))
        .await
}

pub(crate) fn ok_text(run: &Execution) -> String {
    match &run.outcome {
        Outcome::Success { result } => String::from_utf8(result.clone()).unwrap(),
        Outcome::Failed { failure } => panic!("task failed: {failure}"),
    }
}

pub(crate) fn trap(run: &Execution) -> &TrapCause {
    match run.outcome.failure() {
        Some(Failure::Trap { cause }) => cause,
        other => panic!("expected a trap, got {other:?}"),
    }
}

/// `{"do": "rate-limited", "ms": 2000}` gives what the Rust guest's
/// `TaskError::rate_limited` gives: a requeue in 2 s without a retry.
pub(crate) async fn rate_limited_as_for_rust(runtime: &Runtime) {
    let limited = run(runtime, "bad", r#"{"do": "rate-limited", "ms": 2000}"#).await;
    assert_eq!(
        handler_error(&limited),
        &HandlerError::RateLimited {
            message: "the API said 429".into(),
            after: std::time::Duration::from_secs(2),
        }
    );
    assert_eq!(
        limited.outcome.failure().unwrap().action(),
        wasq::runtime::Action::Requeue {
            delay: std::time::Duration::from_secs(2)
        }
    );
}

/// A task that aggregates a group reaches the handler with its group and
/// members, as the Rust guest sees them: `{"group", "members": [{"id",
/// "type", "payload"}]}`.
pub(crate) async fn group_as_for_rust(runtime: &Runtime) {
    let mut invocation = Invocation::new("bad", b"not json: members carry the data".to_vec());
    invocation.group = Some(wasq::runtime::Group {
        name: "user:42".into(),
        members: (1..=3)
            .map(|i| wasq::runtime::Member {
                id: format!("m{i}"),
                task_type: "email:notify".into(),
                payload: format!("{{\"n\": {i}}}").into_bytes(),
                headers: Vec::new(),
            })
            .collect(),
    });
    let ran = runtime.execute(invocation).await;
    let answer: serde_json::Value = serde_json::from_str(&ok_text(&ran)).unwrap();
    assert_eq!(
        answer,
        serde_json::json!({"group": "user:42", "members": [
            {"id": "m1", "type": "email:notify", "payload": "{\"n\": 1}"},
            {"id": "m2", "type": "email:notify", "payload": "{\"n\": 2}"},
            {"id": "m3", "type": "email:notify", "payload": "{\"n\": 3}"},
        ]})
    );
}

pub(crate) fn handler_error(run: &Execution) -> &HandlerError {
    match run.outcome.failure() {
        Some(Failure::Handler { error }) => error,
        other => panic!("expected a handler error, got {other:?}"),
    }
}

/// The examples of language `lang` in `runtime` (with [`example_types`])
/// give the Rust examples' results and logs, and archive a bad payload at
/// once as they do.
pub(crate) async fn examples_give_the_rust_examples_results(runtime: &Runtime, lang: &str) {
    let email = run(runtime, "notifications:email", r#"{"to": 42, "from": 7}"#).await;
    assert_eq!(ok_text(&email), "email sent from 7 to 42");
    assert_eq!(email.logs.len(), 1, "{:?}", email.logs);
    assert_eq!(
        email.logs[0].message,
        "sending email from user 7 to user 42"
    );
    assert!(email.logs[0].fields.contains(&("to".into(), "42".into())));
    assert!(email.logs[0].fields.contains(&("from".into(), "7".into())));
    eprintln!(
        "{lang} email: fuel {}, memory peak {} KiB, time {:?}",
        email.fuel_consumed,
        email.memory_peak >> 10,
        email.wall_time
    );

    let hook = run(runtime, "webhooks:sync", r#"{"data": 12345}"#).await;
    assert_eq!(ok_text(&hook), "webhook 12345 processed");
    assert_eq!(hook.logs[0].message, "processing webhook with data 12345");

    // A payload that cannot work is archived at once, as in Rust.
    let bad = run(runtime, "webhooks:sync", r#"{"nodata": 1}"#).await;
    assert!(
        matches!(handler_error(&bad), HandlerError::SkipRetry { .. }),
        "{:?}",
        bad.outcome
    );
    let bad = run(runtime, "notifications:email", "not json").await;
    match handler_error(&bad) {
        HandlerError::SkipRetry { message } => {
            assert!(message.contains("not the expected JSON"), "{message}")
        }
        other => panic!("expected skip-retry, got {other:?}"),
    }

    let primes = run(runtime, "compute:primes", r#"{"n": 100000}"#).await;
    let result: serde_json::Value = serde_json::from_str(&ok_text(&primes)).unwrap();
    assert_eq!(
        result,
        serde_json::json!({"n": 100000, "count": 9592, "largest": 99991})
    );
    assert_eq!(primes.progress, Some(100));
    eprintln!(
        "{lang} primes to 100000: fuel {}, time {:?}",
        primes.fuel_consumed, primes.wall_time
    );
}

/// The prime sieve of a language (with [`example_types`]) runs out of a
/// small fuel budget, and with unlimited fuel is stopped at its timeout
/// (sieving to `unlimited_n` takes longer); then the same runtime sieves to
/// 10 and returns `small` (the language's JSON).
pub(crate) async fn stopped_by_fuel_and_by_its_timeout(
    runtime: &Runtime,
    unlimited_n: u64,
    small: &str,
) {
    let run_fuel = run(runtime, "compute:primes-low-fuel", r#"{"n": 10000000}"#).await;
    assert_eq!(trap(&run_fuel), &TrapCause::OutOfFuel);
    assert_eq!(run_fuel.fuel_consumed, 200_000_000);

    let started = Instant::now();
    let payload = format!(r#"{{"n": {unlimited_n}}}"#);
    let run_time = run(runtime, "compute:primes-unlimited", &payload).await;
    assert_eq!(trap(&run_time), &TrapCause::Timeout);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // The same runtime runs the next task normally.
    let next = run(runtime, "compute:primes", r#"{"n": 10}"#).await;
    assert_eq!(ok_text(&next), small);
}

/// `wasq check` reports what a sandbox of the language's no-op handler
/// takes (more memory at start and more core instances than a Rust one:
/// the pool is sized from these), and `wasq bench` measures it per task
/// against the naive embedding of the same component.
pub(crate) fn check_and_bench_the_noop(label: &str, noop: &std::path::Path) {
    let cache = wasq_tests::cache_dir();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("wasq.toml");
    std::fs::write(
        &config,
        format!(
            "[runtime]\ncache_dir = {:?}\n[tasks.interpreted]\nmodule = {:?}\n[tasks.rust]\nmodule = {:?}\n",
            cache.display().to_string(),
            noop.display().to_string(),
            wasq_tests::example("noop").display().to_string(),
        ),
    )
    .unwrap();
    let (code, out, err) =
        wasq_tests::run_wasq(&["check", "--config", &config.display().to_string(), "--json"]);
    assert_eq!(code, 0, "{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    let of = |name: &str| {
        report["task_types"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == name)
            .unwrap_or_else(|| panic!("{name} missing from {out}"))["footprint"]
            .clone()
    };
    let (interpreted, rust) = (of("interpreted"), of("rust"));
    let initial = interpreted["initial_memory"].as_u64().unwrap();
    assert!(
        initial > 8 << 20 && initial > 4 * rust["initial_memory"].as_u64().unwrap(),
        "{label}: {interpreted} against rust {rust}"
    );
    assert!(
        interpreted["core_instances"].as_u64() >= rust["core_instances"].as_u64(),
        "{label}: {interpreted} against rust {rust}"
    );
    let (code, out, _) =
        wasq_tests::run_wasq(&["check", "--config", &config.display().to_string()]);
    assert_eq!(code, 0);
    assert!(out.contains("of linear memory at start"), "{out}");

    let module = format!("{label}={}", noop.display());
    let (code, out, err) = wasq_tests::run_wasq(&[
        "bench",
        "--module",
        &module,
        "--iterations",
        "20",
        "--cache-dir",
        &cache.display().to_string(),
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    let measured = &report["modules"][0];
    assert_eq!(measured["label"], label, "{out}");
    assert_eq!(measured["overhead"]["iterations"], 20, "{out}");
    for way in ["wasq", "naive"] {
        let median = measured["overhead"][way]["median_us"].as_f64().unwrap();
        let p99 = measured["overhead"][way]["p99_us"].as_f64().unwrap();
        assert!(median > 0.0 && p99 >= median, "{way}: {out}");
    }
}
