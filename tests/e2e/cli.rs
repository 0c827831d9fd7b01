//! The `wasq` binary: `check` and `exec` on the example handlers, a reader
//! that goes away (`wasq stats --json | head`), shell completions and
//! `--version`.

use std::os::unix::process::ExitStatusExt as _;
use std::process::{Command, Stdio};

use wasq_tests::{TestConfig, run_wasq, wasq_bin};

fn examples_config() -> TestConfig {
    TestConfig::new(
        r#"
[tasks."notifications:email"]
module = "{examples}/email.wasm"

[tasks."webhooks:sync"]
module = "{examples}/webhook_sync.wasm"
"#,
    )
}

#[test]
fn check_lists_every_task_type() {
    let config = examples_config();
    let path = config.path.display().to_string();
    let (code, out, err) = run_wasq(&["check", "--config", &path]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("ok, 2 task type(s)"), "{out}");
    assert!(
        out.contains("notifications:email") && out.contains("webhooks:sync"),
        "{out}"
    );

    let (code, out, _) = run_wasq(&["check", "--config", &path, "--json"]);
    assert_eq!(code, 0);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["task_types"].as_array().unwrap().len(), 2);
    assert_eq!(report["task_types"][0]["name"], "notifications:email");
}

#[test]
fn check_fails_with_file_line_and_key() {
    let config = TestConfig::new("[tasks.a]\nmodule = \"{examples}/email.wasm\"\nfule = 1\n");
    let (code, _, err) = run_wasq(&["check", "--config", &config.path.display().to_string()]);
    assert_eq!(code, 2);
    assert!(
        err.contains("line 7") && err.contains("tasks.a.fule"),
        "{err}"
    );
}

#[test]
fn exec_runs_the_email_handler() {
    let config = examples_config();
    let path = config.path.display().to_string();
    let (code, out, err) = run_wasq(&[
        "exec",
        "--config",
        &path,
        "notifications:email",
        "--payload",
        r#"{"to": 42, "from": 7}"#,
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("outcome  ok"), "{out}");
    assert!(out.contains("result   email sent from 7 to 42"), "{out}");
    assert!(
        out.contains("INFO  sending email from user 7 to user 42 from=7 to=42"),
        "{out}"
    );
    assert!(out.contains("fuel     "), "{out}");
}

#[test]
fn exec_reports_failures_with_exit_code_1_and_json() {
    let config = examples_config();
    let path = config.path.display().to_string();
    let payload = config.dir.path().join("payload.json");
    std::fs::write(&payload, r#"{"dat": 1}"#).unwrap();
    let (code, out, _) = run_wasq(&[
        "exec",
        "--config",
        &path,
        "webhooks:sync",
        "--payload-file",
        &payload.display().to_string(),
        "--json",
    ]);
    assert_eq!(code, 1);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["outcome"]["status"], "failed");
    assert_eq!(report["outcome"]["failure"]["kind"], "handler");
    assert_eq!(
        report["outcome"]["failure"]["error"]["action"],
        "skip_retry"
    );
    assert!(report["fuel_consumed"].as_u64().unwrap() > 0);
}

#[test]
fn a_command_whose_reader_went_away_exits_quietly() {
    let redis = format!("redis://{}", wasq_tests::redis::shared_single().addr());
    for args in [&["stats", "--json"][..], &["stats"], &["queue", "ls"]] {
        let mut child = Command::new(wasq_bin())
            .args(args)
            .args(["--redis-url", &redis])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Like `| head -0`: the pipe's only reader is gone before wasq
        // prints.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() || out.status.signal() == Some(libc::SIGPIPE),
            "wasq {args:?}: {:?}\n{err}",
            out.status
        );
        assert!(!err.contains("panicked"), "wasq {args:?}: {err}");
        assert!(err.is_empty(), "wasq {args:?} printed: {err}");
    }
}

#[test]
fn completions_are_printed_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let (code, out, err) = run_wasq(&["completions", shell]);
        assert_eq!(code, 0, "{shell}: {err}");
        assert!(out.contains("wasq"), "{shell}: {out}");
        // Generated from the real command line: subcommands and their
        // flags are in it.
        assert!(
            out.contains("enqueue") && out.contains("cluster-addrs"),
            "{shell}: {out}"
        );
    }
    let (code, out, _) = run_wasq(&["completions", "--help"]);
    assert_eq!(code, 0);
    assert!(out.contains("bash-completion/completions/wasq"), "{out}");
    let (code, _, err) = run_wasq(&["completions", "tcsh"]);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn version_names_the_wit_package_and_the_commit() {
    let wit = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../wit/wasq.wit"),
    )
    .unwrap();
    let package = wit
        .lines()
        .find_map(|l| l.trim().strip_prefix("package "))
        .unwrap()
        .trim_end_matches(';');
    assert!(package.starts_with("wasq:task@"), "{package}");
    for flag in ["--version", "-V"] {
        let (code, out, err) = run_wasq(&[flag]);
        assert_eq!(code, 0, "{err}");
        let line = out.trim_end();
        assert!(line.starts_with("wasq "), "{line}");
        assert!(line.contains(&format!("({package}, commit ")), "{line}");
        let commit = line.rsplit("commit ").next().unwrap().trim_end_matches(')');
        assert!(
            commit == "unknown" || commit.chars().all(|c| c.is_ascii_hexdigit()),
            "{line}"
        );
    }
}
