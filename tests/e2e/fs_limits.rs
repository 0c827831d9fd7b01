//! Per-task limits on handles, disk writes and created files, and the rules
//! for links (`host/src/runtime/fs_limits.rs`): a guest over a limit gets an
//! error inside the guest, its logs name the limit, and its neighbours are
//! unaffected. Also: a host short of descriptors requeues the task.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use wasq::config::Config;
use wasq::runtime::{
    Action, Execution, Failure, HOST_RESOURCES_DELAY, HandlerError, Invocation, Runtime,
};
use wasq_tests::{TestConfig, run_wasq};

/// A fresh directory with `inside.txt` in it.
fn granted_dir() -> PathBuf {
    let dir = tempfile::tempdir().unwrap().keep();
    std::fs::write(dir.join("inside.txt"), "granted content").unwrap();
    dir
}

/// `tasks` under `[defaults]` with small limits and `defaults` added.
fn config_with(defaults: &str, tasks: &str) -> TestConfig {
    TestConfig::new(&format!(
        r#"
[defaults]
fuel = 5_000_000_000
memory = "32MiB"
timeout = "20s"
{defaults}

{tasks}
"#
    ))
}

fn config(tasks: &str) -> TestConfig {
    config_with("", tasks)
}

async fn run(runtime: &Runtime, task_type: &str, payload: serde_json::Value) -> Execution {
    runtime
        .execute(Invocation::new(task_type, payload.to_string().into_bytes()))
        .await
}

/// The guest's own error (its `skip_retry` message), or a panic.
fn guest_error(run: &Execution) -> &str {
    match run.outcome.failure() {
        Some(Failure::Handler {
            error: HandlerError::SkipRetry { message },
        }) => message,
        other => panic!("expected the guest to report an error, got {other:?}"),
    }
}

fn result(run: &Execution) -> String {
    match &run.outcome {
        wasq::runtime::Outcome::Success { result } => String::from_utf8_lossy(result).into_owned(),
        other => panic!("expected success, got {other:?}"),
    }
}

/// The host's `refused by host` lines in the task's logs.
fn refusals(run: &Execution) -> Vec<String> {
    run.logs
        .iter()
        .filter(|l| l.message.starts_with("refused by host"))
        .map(|l| l.message.clone())
        .collect()
}

fn dir_toml(host: &Path, guest: &str, extra: &str) -> String {
    format!(
        r#"{{ host = {:?}, guest = "{guest}"{extra} }}"#,
        host.display().to_string()
    )
}

#[tokio::test]
async fn a_guest_over_max_handles_gets_an_error_while_a_neighbour_still_runs() {
    let data = granted_dir();
    let grant = dir_toml(&data, "/data", "");
    let test = config(&format!(
        r#"
[tasks.hog]
module = "{{guests}}/misbehave.wasm"
dirs = [{grant}]

[tasks.small]
module = "{{guests}}/misbehave.wasm"
max_handles = 8
dirs = [{grant}]

[tasks.neighbour]
module = "{{guests}}/misbehave.wasm"
dirs = [{grant}]
"#
    ));
    let runtime = Arc::new(test.runtime());
    assert_eq!(
        runtime
            .task_types()
            .into_iter()
            .find(|t| t.name == "hog")
            .unwrap()
            .limits
            .max_handles,
        256,
        "the default"
    );

    // The hog opens as many files as it can and holds them for a second.
    let hog = tokio::spawn({
        let runtime = runtime.clone();
        async move {
            run(
                &runtime,
                "hog",
                serde_json::json!({"do": "open-many", "path": "/data/inside.txt", "count": 5000, "ms": 1500}),
            )
            .await
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Meanwhile neighbours with a dir grant build their WASI context, open
    // files and succeed.
    for _ in 0..5 {
        let neighbour = run(
            &runtime,
            "neighbour",
            serde_json::json!({"do": "open-many", "path": "/data/inside.txt", "count": 100}),
        )
        .await;
        assert_eq!(result(&neighbour), "held 100");
    }
    let hog = hog.await.unwrap();
    assert!(!hog.wall_time.is_zero());
    let error = guest_error(&hog);
    assert!(
        error.starts_with("open #256 of /data/inside.txt failed:"),
        "the 257th open fails inside the guest: {error}"
    );
    let refused = refusals(&hog);
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(
        refused[0].contains("256") && refused[0].contains("max_handles"),
        "{refused:?}"
    );

    // Handles are given back when dropped: a task may open and close many
    // more files than it may hold, and a type's own max_handles applies.
    let small = run(
        &runtime,
        "small",
        serde_json::json!({"do": "open-many", "path": "/data/inside.txt", "count": 9}),
    )
    .await;
    assert!(guest_error(&small).starts_with("open #8 "), "{small:?}");
    // A read-only grant: the write is refused by wasmtime-wasi, not by a
    // limit, and no handle leaks from the failed open.
    let denied = run(
        &runtime,
        "small",
        serde_json::json!({"do": "write-big", "path": "/data/x", "bytes": 1}),
    )
    .await;
    assert!(
        guest_error(&denied).contains("write /data/x failed"),
        "{denied:?}"
    );
    for _ in 0..3 {
        let again = run(
            &runtime,
            "small",
            serde_json::json!({"do": "open-many", "path": "/data/inside.txt", "count": 8}),
        )
        .await;
        assert_eq!(result(&again), "held 8");
    }
}

#[tokio::test]
async fn reading_files_does_not_use_up_handles() {
    let data = granted_dir();
    let test = config(&format!(
        r#"
[tasks.reader]
module = "{{guests}}/misbehave.wasm"
max_handles = 4
dirs = [{}]
"#,
        dir_toml(&data, "/data", r#", mode = "rw""#)
    ));
    let runtime = test.runtime();
    // 50 files written then read back, one at a time: each open (and its
    // stream) is released at its close.
    let wrote = run(
        &runtime,
        "reader",
        serde_json::json!({"do": "write-big", "path": "/data/f", "bytes": 100, "count": 50}),
    )
    .await;
    assert_eq!(result(&wrote), "wrote 5000");
    let read = run(
        &runtime,
        "reader",
        serde_json::json!({"do": "read-file", "path": "/data/f.49"}),
    )
    .await;
    assert_eq!(result(&read), "w".repeat(100));
}

#[tokio::test]
async fn sockets_count_against_max_handles() {
    let test = config(
        r#"
[tasks.sockets]
module = "{guests}/misbehave.wasm"
max_handles = 4
network = ["udp:127.0.0.1:9"]
"#,
    );
    let runtime = test.runtime();
    let run = run(
        &runtime,
        "sockets",
        serde_json::json!({"do": "udp-many", "count": 10}),
    )
    .await;
    let error = guest_error(&run);
    assert!(error.starts_with("socket #4 failed:"), "{error}");
    assert!(
        refusals(&run)
            .iter()
            .any(|l| l.contains("create-udp-socket") && l.contains("max_handles")),
        "{:?}",
        run.logs
    );
}

#[tokio::test]
async fn the_write_quota_stops_a_big_write_inside_the_guest() {
    let out = tempfile::tempdir().unwrap().keep();
    let test = config_with(
        r#"max_write = "1MiB""#,
        &format!(
            r#"
[tasks.writer]
module = "{{guests}}/misbehave.wasm"
dirs = [{}]
"#,
            dir_toml(&out, "/out", r#", mode = "rw""#)
        ),
    );
    let runtime = test.runtime();

    // Under the quota: fine.
    let small = run(
        &runtime,
        "writer",
        serde_json::json!({"do": "write-big", "path": "/out/small", "bytes": 512 << 10}),
    )
    .await;
    assert_eq!(result(&small), format!("wrote {}", 512 << 10));

    // 2 MiB at once: the write fails inside the guest with "no space".
    let big = run(
        &runtime,
        "writer",
        serde_json::json!({"do": "write-big", "path": "/out/big", "bytes": 2 << 20}),
    )
    .await;
    // `std::fs::write` goes through a stream, whose errors the guest's
    // libc reports as a plain I/O error; the task's logs name the limit.
    let error = guest_error(&big);
    assert!(error.starts_with("write /out/big failed:"), "{error}");
    let size = std::fs::metadata(out.join("big")).unwrap().len();
    assert!(size <= 1 << 20, "{size} bytes reached the disk");
    let refused = refusals(&big);
    assert!(
        refused.len() == 1 && refused[0].contains("max_write"),
        "{refused:?}"
    );

    // The quota is per task, over all files: the third 400 KiB file fails.
    let spread = run(
        &runtime,
        "writer",
        serde_json::json!({"do": "write-big", "path": "/out/part", "bytes": 400 << 10, "count": 3}),
    )
    .await;
    assert!(
        guest_error(&spread).starts_with("write /out/part.2 failed:"),
        "{spread:?}"
    );

    // Growing a file counts too, sparse or not.
    let grown = run(
        &runtime,
        "writer",
        serde_json::json!({"do": "grow", "path": "/out/sparse", "bytes": 3_000_000_000u64}),
    )
    .await;
    assert!(
        guest_error(&grown).to_lowercase().contains("no space left"),
        "{grown:?}"
    );
    let fits = run(
        &runtime,
        "writer",
        serde_json::json!({"do": "grow", "path": "/out/sparse", "bytes": 1000}),
    )
    .await;
    assert_eq!(result(&fits), "grown");
}

#[tokio::test]
async fn files_past_max_files_cannot_be_created() {
    let out = tempfile::tempdir().unwrap().keep();
    let test = config(&format!(
        r#"
[tasks.creator]
module = "{{guests}}/misbehave.wasm"
max_files = 10
dirs = [{}]
"#,
        dir_toml(&out, "/out", r#", mode = "rw""#)
    ));
    let runtime = test.runtime();
    let files = run(
        &runtime,
        "creator",
        serde_json::json!({"do": "create-many", "path": "/out", "count": 50}),
    )
    .await;
    let error = guest_error(&files);
    assert!(
        error.starts_with("creating entry #10 /out/10 failed:"),
        "{error}"
    );
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 10);
    assert!(
        refusals(&files).iter().any(|l| l.contains("max_files")),
        "{:?}",
        files.logs
    );

    // Opening existing files with `create` creates nothing: 40 opens of 5
    // names count 5.
    let reused = run(
        &runtime,
        "creator",
        serde_json::json!({"do": "create-many", "path": "/out", "count": 40, "iters": 5}),
    )
    .await;
    assert_eq!(result(&reused), "created 40");

    std::fs::create_dir(out.join("sub")).unwrap();
    let dirs = run(
        &runtime,
        "creator",
        serde_json::json!({"do": "mkdir-many", "path": "/out/sub", "count": 11}),
    )
    .await;
    assert!(
        guest_error(&dirs).starts_with("creating entry #10 "),
        "{dirs:?}"
    );
    assert_eq!(std::fs::read_dir(out.join("sub")).unwrap().count(), 10);
}

#[tokio::test]
async fn symlinks_out_of_a_grant_are_refused() {
    let plain = granted_dir();
    let linking = granted_dir();
    std::fs::create_dir(linking.join("sub")).unwrap();
    let test = config(&format!(
        r#"
[tasks.plain]
module = "{{guests}}/misbehave.wasm"
dirs = [{}]

[tasks.linking]
module = "{{guests}}/misbehave.wasm"
dirs = [{}]
"#,
        dir_toml(&plain, "/data", r#", mode = "rw""#),
        dir_toml(&linking, "/data", r#", mode = "rw", symlinks = true"#)
    ));
    let runtime = test.runtime();
    let symlink = |task_type: &'static str, link: &str, target: &str| {
        let payload = serde_json::json!({"do": "symlink", "path": link, "target": target});
        let runtime = &runtime;
        async move { run(runtime, task_type, payload).await }
    };

    // Without `symlinks = true`, no link at all, however harmless.
    for target in ["../../../../etc/passwd", "inside.txt"] {
        let refused = symlink("plain", "/data/g_rel", target).await;
        let error = guest_error(&refused);
        assert!(
            error.starts_with("symlink /data/g_rel -> ")
                && error.to_lowercase().contains("not permitted"),
            "{error}"
        );
        assert!(
            refusals(&refused)[0].contains("symlinks = true"),
            "{:?}",
            refused.logs
        );
    }
    assert!(std::fs::symlink_metadata(plain.join("g_rel")).is_err());

    // With it, a link that points down from its directory works ...
    let inside = symlink("linking", "/data/to_inside", "inside.txt").await;
    assert_eq!(result(&inside), "granted content");
    std::fs::write(linking.join("sub/deep.txt"), "deep").unwrap();
    let down = symlink("linking", "/data/to_deep", "sub/deep.txt").await;
    assert_eq!(result(&down), "deep");
    assert_eq!(
        std::fs::read_link(linking.join("to_deep")).unwrap(),
        Path::new("sub/deep.txt")
    );

    // ... and one that leaves it, or could once moved, is still refused.
    for (link, target) in [
        ("/data/g_rel", "../../../../etc/passwd"),
        ("/data/g_abs", "/etc/passwd"),
        ("/data/sub/g_up", "../inside.txt"),
        ("/data/g_mid", "sub/../../x"),
    ] {
        let refused = symlink("linking", link, target).await;
        let error = guest_error(&refused);
        assert!(
            error.to_lowercase().contains("not permitted"),
            "{link} -> {target}: {error}"
        );
        let host = linking.join(link.trim_start_matches("/data/"));
        assert!(
            std::fs::symlink_metadata(&host).is_err(),
            "{}",
            host.display()
        );
    }
}

#[tokio::test]
async fn hard_links_stay_within_one_grant() {
    let a = granted_dir();
    let b = granted_dir();
    let test = config(&format!(
        r#"
[tasks.linker]
module = "{{guests}}/misbehave.wasm"
dirs = [{}, {}]
"#,
        dir_toml(&a, "/a", r#", mode = "rw""#),
        dir_toml(&b, "/b", r#", mode = "rw""#)
    ));
    let runtime = test.runtime();
    let within = run(
        &runtime,
        "linker",
        serde_json::json!({"do": "hardlink", "target": "/a/inside.txt", "path": "/a/again.txt"}),
    )
    .await;
    assert_eq!(result(&within), "linked");
    assert_eq!(
        std::fs::read_to_string(a.join("again.txt")).unwrap(),
        "granted content"
    );
    let across = run(
        &runtime,
        "linker",
        serde_json::json!({"do": "hardlink", "target": "/a/inside.txt", "path": "/b/stolen.txt"}),
    )
    .await;
    let error = guest_error(&across);
    assert!(error.to_lowercase().contains("cross-device"), "{error}");
    assert!(!b.join("stolen.txt").exists());
}

#[test]
fn the_new_limits_are_validated_with_file_line_and_key() {
    let module = "module = 'x.wasm'";
    let cases = [
        (
            format!("[tasks.t]\n{module}\nmax_handles = 0\n"),
            "line 3",
            "tasks.t.max_handles",
            "between 1 and",
        ),
        (
            format!("[defaults]\nmax_handles = -3\n[tasks.t]\n{module}\n"),
            "line 2",
            "defaults.max_handles",
            "between 1 and",
        ),
        (
            format!("[tasks.t]\n{module}\nmax_write = \"lots\"\n"),
            "line 3",
            "tasks.t.max_write",
            "not a size",
        ),
        (
            format!("[tasks.t]\n{module}\nmax_files = \"many\"\n"),
            "line 3",
            "tasks.t.max_files",
            "",
        ),
        (
            format!(
                "[tasks.t]\n{module}\nclock = true\ndirs = [{{ host = '.', guest = '/d', symlinks = true }}]\n"
            ),
            "line 4",
            "tasks.t.dirs[0]",
            "symlinks = true needs mode = \"rw\"",
        ),
    ];
    for (text, line, key, message) in cases {
        let error = Config::parse(&text, Some(Path::new("wasq.toml")))
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("wasq.toml, ") && error.contains(line),
            "{text}: {error}"
        );
        assert!(error.contains(key), "{text}: {error}");
        assert!(error.contains(message), "{text}: {error}");
    }

    let config = Config::parse(
        &format!(
            "[defaults]\nmax_handles = 64\nmax_write = \"2MiB\"\n[tasks.t]\n{module}\nmax_files = 3\n\
             dirs = [{{ host = '.', guest = '/d', mode = 'rw', symlinks = true }}]\n[tasks.u]\n{module}\n"
        ),
        None,
    )
    .unwrap();
    let t = config.limits_of("t").unwrap();
    assert_eq!((t.max_handles, t.max_write, t.max_files), (64, 2 << 20, 3));
    assert!(config.tasks["t"].dirs[0].symlinks);
    let u = config.limits_of("u").unwrap();
    assert_eq!(u.max_files, 1000, "the default");
}

#[test]
fn a_host_short_of_resources_requeues_the_task_without_a_retry() {
    let failure = Failure::HostResources {
        message: "cannot build the sandbox's WASI context: Too many open files (os error 24)"
            .into(),
    };
    assert_eq!(
        failure.action(),
        Action::Requeue {
            delay: HOST_RESOURCES_DELAY
        }
    );
    assert_eq!(failure.cause_name(), "host_resources");
    assert!(failure.to_string().contains("Too many open files"));
}

/// The incident's other half: with the worker out of descriptors, a task
/// whose WASI context cannot be built is the host's problem, not the
/// task's. `wasq exec` runs under `ulimit -n 200` a task type with 300
/// granted directories.
#[test]
fn a_task_the_host_has_no_descriptors_for_is_requeued() {
    let data = granted_dir();
    let dirs: Vec<String> = (0..300)
        .map(|i| dir_toml(&data, &format!("/d{i}"), ""))
        .collect();
    let test = config(&format!(
        r#"
[tasks.wide]
module = "{{guests}}/misbehave.wasm"
dirs = [{}]
"#,
        dirs.join(", ")
    ));
    let config_path = test.path.display().to_string();
    let bin = wasq_tests::wasq_bin().display().to_string();
    let out = std::process::Command::new("sh")
        .args([
            "-c",
            r#"ulimit -n 200 && exec "$0" exec --config "$1" wide --payload '{"do": "ok"}' --json"#,
            &bin,
            &config_path,
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let failure = &report["outcome"]["failure"];
    assert_eq!(failure["kind"], "host_resources", "{report:#}");
    let message = failure["message"].as_str().unwrap();
    assert!(
        message.contains("WASI context") && message.contains("Too many open files"),
        "{message}"
    );
    // The same config runs fine where descriptors are not short.
    let (code, stdout, stderr) = run_wasq(&[
        "exec",
        "--config",
        &config_path,
        "wide",
        "--payload",
        r#"{"do": "ok"}"#,
    ]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
}
