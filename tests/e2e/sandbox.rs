//! Guests written to misbehave: each is stopped or denied with the right
//! classified outcome, and the same runtime runs a normal task right after.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasq::runtime::{
    Action, CancelToken, Execution, Failure, HandlerError, Invocation, LimitExceeded, Outcome,
    Runtime, TrapCause, follow_up_id,
};
use wasq_tests::TestConfig;

/// One module, "misbehave", under task types with different limits/grants.
fn config() -> TestConfig {
    let granted = tempfile::tempdir().unwrap().keep();
    std::fs::write(granted.join("inside.txt"), "granted content").unwrap();
    TestConfig::new(&format!(
        r#"
[defaults]
fuel = 50_000_000
memory = "32MiB"
timeout = "5s"
max_result = "64KiB"
max_log = "16KiB"
max_payload = "4KiB"

[tasks.bad]
module = "{{guests}}/misbehave.wasm"

[tasks.unlimited]
module = "{{guests}}/misbehave.wasm"
fuel = "unlimited"
timeout = "300ms"

[tasks.forever]
module = "{{guests}}/misbehave.wasm"
fuel = "unlimited"
timeout = "1h"

[tasks.granted]
module = "{{guests}}/misbehave.wasm"
dirs = [{{ host = {granted:?}, guest = "/data" }}]
env = ["PATH"]
clock = true
enqueue = ["webhooks"]
"#,
        granted = granted.display().to_string()
    ))
}

async fn attempt(runtime: &Runtime, task_type: &str, payload: &str) -> Execution {
    let run = runtime
        .execute(Invocation::new(task_type, payload.as_bytes().to_vec()))
        .await;
    // Whatever the guest did, the next task in the same runtime is fine.
    let next = runtime
        .execute(Invocation::new("bad", br#"{"do": "ok"}"#.to_vec()))
        .await;
    assert!(
        next.outcome.is_success(),
        "task after {payload} failed: {:?}",
        next.outcome
    );
    run
}

fn trap(run: &Execution) -> &TrapCause {
    match run.outcome.failure() {
        Some(Failure::Trap { cause }) => cause,
        other => panic!("expected a trap, got {other:?}"),
    }
}

fn handler_error(run: &Execution) -> &HandlerError {
    match run.outcome.failure() {
        Some(Failure::Handler { error }) => error,
        other => panic!("expected a handler error, got {other:?}"),
    }
}

fn skip_retry_message(run: &Execution) -> &str {
    match handler_error(run) {
        HandlerError::SkipRetry { message } => message,
        other => panic!("expected skip-retry, got {other:?}"),
    }
}

#[tokio::test]
async fn infinite_loop_runs_out_of_fuel() {
    let runtime = config().runtime();
    let run = attempt(&runtime, "bad", r#"{"do": "loop"}"#).await;
    assert_eq!(trap(&run), &TrapCause::OutOfFuel);
    assert_eq!(run.fuel_consumed, 50_000_000);
    assert_eq!(
        run.outcome.failure().unwrap().action(),
        Action::Retry { delay: None }
    );
}

#[tokio::test]
async fn infinite_loop_with_unlimited_fuel_times_out() {
    let runtime = config().runtime();
    let started = Instant::now();
    let run = attempt(&runtime, "unlimited", r#"{"do": "loop"}"#).await;
    assert_eq!(trap(&run), &TrapCause::Timeout);
    // An interrupted run's fuel is not measured (and not reported as a
    // number that would look like one).
    assert!(!run.fuel_measured);
    assert_eq!(run.fuel_consumed, 0);
    assert!(
        run.wall_time >= Duration::from_millis(300),
        "{:?}",
        run.wall_time
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "stopped late: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_guest_waiting_on_the_host_times_out_too() {
    let runtime = config().runtime();
    let run = attempt(&runtime, "unlimited", r#"{"do": "sleep"}"#).await;
    assert_eq!(trap(&run), &TrapCause::Timeout);
    assert!(
        run.wall_time < Duration::from_secs(5),
        "{:?}",
        run.wall_time
    );
}

#[tokio::test]
async fn the_task_timeout_can_only_shorten_the_type_limit() {
    let runtime = config().runtime();
    let mut invocation = Invocation::new("forever", br#"{"do": "loop"}"#.to_vec());
    invocation.timeout = Some(Duration::from_millis(200));
    let run = runtime.execute(invocation).await;
    assert_eq!(trap(&run), &TrapCause::Timeout);
    assert!(
        run.wall_time < Duration::from_secs(3),
        "{:?}",
        run.wall_time
    );
}

#[tokio::test]
async fn cancel_stops_a_running_guest() {
    let runtime = Arc::new(config().runtime());
    let cancel = CancelToken::new();
    let mut invocation = Invocation::new("forever", br#"{"do": "loop"}"#.to_vec());
    invocation.cancel = Some(cancel.clone());
    let task = tokio::spawn({
        let runtime = runtime.clone();
        async move { runtime.execute(invocation).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let cancelled_at = Instant::now();
    cancel.cancel();
    let run = task.await.unwrap();
    assert_eq!(trap(&run), &TrapCause::Cancelled);
    assert!(
        cancelled_at.elapsed() < Duration::from_secs(1),
        "{:?}",
        cancelled_at.elapsed()
    );
}

#[tokio::test]
async fn memory_bomb_stops_at_the_memory_limit() {
    let runtime = config().runtime();
    let run = attempt(&runtime, "bad", r#"{"do": "memory"}"#).await;
    assert_eq!(trap(&run), &TrapCause::MemoryLimit { limit: 32 << 20 });
    assert!(run.memory_peak <= 32 << 20, "{}", run.memory_peak);
    assert!(run.memory_peak > 16 << 20, "{}", run.memory_peak);
}

#[tokio::test]
async fn panic_is_named_with_its_message() {
    let runtime = config().runtime();
    let run = attempt(&runtime, "bad", r#"{"do": "panic"}"#).await;
    match trap(&run) {
        TrapCause::Panic { message } => assert!(
            message.contains("deliberate panic for the test"),
            "{message}"
        ),
        other => panic!("expected a panic, got {other:?}"),
    }
}

#[tokio::test]
async fn unbounded_recursion_overflows_the_stack() {
    let runtime = config().runtime();
    let run = attempt(&runtime, "unlimited", r#"{"do": "stack"}"#).await;
    assert_eq!(trap(&run), &TrapCause::StackOverflow);
}

#[tokio::test]
async fn huge_result_is_refused() {
    let runtime = config().runtime();
    let run = attempt(
        &runtime,
        "bad",
        r#"{"do": "huge-result", "bytes": 1000000}"#,
    )
    .await;
    assert_eq!(
        run.outcome.failure(),
        Some(&Failure::Limit {
            limit: LimitExceeded::Result {
                size: 1_000_000,
                limit: 64 << 10
            }
        })
    );
    assert_eq!(run.outcome.failure().unwrap().action(), Action::Archive);
}

#[tokio::test]
async fn oversized_payload_is_refused_before_the_sandbox_starts() {
    let runtime = config().runtime();
    let payload = format!(r#"{{"do": "ok", "pad": "{}"}}"#, "x".repeat(5000));
    let run = attempt(&runtime, "bad", &payload).await;
    assert!(matches!(
        run.outcome.failure(),
        Some(Failure::Limit {
            limit: LimitExceeded::Payload { limit: 4096, .. }
        })
    ));
    assert_eq!(run.fuel_consumed, 0);
}

#[tokio::test]
async fn log_flood_is_cut_at_max_log_and_the_task_still_succeeds() {
    let runtime = config().runtime();
    for mode in ["log-flood", "stdout-flood"] {
        let run = attempt(
            &runtime,
            "bad",
            &format!(r#"{{"do": "{mode}", "lines": 5000}}"#),
        )
        .await;
        assert!(run.outcome.is_success(), "{mode}: {:?}", run.outcome);
        let kept: usize = run.logs.iter().map(|l| l.message.len()).sum();
        assert!(kept <= 16 << 10, "{mode}: kept {kept} bytes");
        assert!(
            run.logs.len() > 100,
            "{mode}: kept only {} lines",
            run.logs.len()
        );
        assert_eq!(run.logs.len() as u64 + run.logs_dropped, 5_000, "{mode}");
    }
}

#[tokio::test]
async fn files_outside_the_grant_are_invisible() {
    let runtime = config().runtime();
    let run = attempt(
        &runtime,
        "bad",
        r#"{"do": "read-file", "path": "/etc/passwd"}"#,
    )
    .await;
    assert!(
        skip_retry_message(&run).contains("read /etc/passwd failed"),
        "{:?}",
        run.outcome
    );

    // Granted: the file inside is readable, `..` cannot climb out, and the
    // directory is read-only.
    let run = run_ok(
        &runtime,
        "granted",
        r#"{"do": "read-file", "path": "/data/inside.txt"}"#,
    )
    .await;
    assert_eq!(run, "granted content");
    let run = attempt(
        &runtime,
        "granted",
        r#"{"do": "read-file", "path": "/data/../../etc/passwd"}"#,
    )
    .await;
    assert!(
        skip_retry_message(&run).contains("failed"),
        "{:?}",
        run.outcome
    );
    let run = attempt(
        &runtime,
        "granted",
        r#"{"do": "write-file", "path": "/data/new.txt"}"#,
    )
    .await;
    assert!(
        skip_retry_message(&run).contains("write /data/new.txt failed"),
        "{:?}",
        run.outcome
    );
}

#[tokio::test]
async fn env_vars_are_only_the_granted_ones() {
    let runtime = config().runtime();
    let run = attempt(&runtime, "bad", r#"{"do": "env", "name": "HOME"}"#).await;
    assert!(
        skip_retry_message(&run).contains("all: []"),
        "{:?}",
        run.outcome
    );

    let seen = run_ok(&runtime, "granted", r#"{"do": "env", "name": "PATH"}"#).await;
    let path = std::env::var("PATH").unwrap();
    assert_eq!(seen, format!("PATH={path}; all: PATH"));
}

#[tokio::test]
async fn sockets_are_denied() {
    let runtime = config().runtime();
    let run = attempt(
        &runtime,
        "bad",
        r#"{"do": "socket", "addr": "127.0.0.1:6379"}"#,
    )
    .await;
    assert!(
        skip_retry_message(&run).contains("connect 127.0.0.1:6379 failed"),
        "{:?}",
        run.outcome
    );
}

/// A runtime whose task type `net` is granted TCP to `tcp` and UDP to
/// `udp`.
fn network_config(tcp: std::net::SocketAddr, udp: std::net::SocketAddr) -> TestConfig {
    TestConfig::new(&format!(
        r#"
[tasks.net]
module = "{{guests}}/misbehave.wasm"
network = ["{tcp}", "udp:{udp}"]

[tasks.bad]
module = "{{guests}}/misbehave.wasm"
"#
    ))
}

#[tokio::test]
async fn a_granted_address_can_be_reached_and_nothing_else() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let tcp = listener.local_addr().unwrap();
    let receiver = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    receiver
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let udp = receiver.local_addr().unwrap();
    let runtime = network_config(tcp, udp).runtime();

    // TCP: the implicit bind and the connect to the granted address pass.
    let accepted = std::thread::spawn(move || listener.accept().map(|(_, peer)| peer));
    let connect = format!(r#"{{"do": "socket", "addr": "{tcp}"}}"#);
    assert_eq!(run_ok(&runtime, "net", &connect).await, "connected");
    let peer = accepted.join().unwrap().unwrap();
    assert!(peer.ip().is_loopback(), "{peer}");

    // UDP: the datagram arrives.
    let send = format!(r#"{{"do": "udp", "addr": "{udp}"}}"#);
    assert_eq!(run_ok(&runtime, "net", &send).await, "sent 14");
    let mut buf = [0u8; 64];
    let (n, _) = receiver.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"hello over udp");

    // Refused: another port, UDP to the TCP grant, TCP to the UDP grant,
    // listening (on the wildcard or a chosen address), and any socket for
    // a type without grants.
    let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let refused = [
        (
            "net",
            format!(
                r#"{{"do": "socket", "addr": "{}"}}"#,
                other.local_addr().unwrap()
            ),
        ),
        ("net", format!(r#"{{"do": "udp", "addr": "{tcp}"}}"#)),
        ("net", format!(r#"{{"do": "socket", "addr": "{udp}"}}"#)),
        ("net", r#"{"do": "listen", "addr": "0.0.0.0:0"}"#.to_owned()),
        ("net", format!(r#"{{"do": "listen", "addr": "{tcp}"}}"#)),
        ("bad", connect.clone()),
        ("bad", send.clone()),
    ];
    for (task_type, payload) in refused {
        let run = attempt(&runtime, task_type, &payload).await;
        let message = skip_retry_message(&run);
        assert!(
            message.contains("failed") && !message.contains("connected"),
            "{task_type} {payload}: {message}"
        );
    }
    other.set_nonblocking(true).unwrap();
    assert!(other.accept().is_err(), "a refused connect got through");
}

#[tokio::test]
async fn no_state_survives_between_tasks() {
    let runtime = config().runtime();
    for _ in 0..3 {
        assert_eq!(run_ok(&runtime, "bad", r#"{"do": "count"}"#).await, "1");
    }
}

#[tokio::test]
async fn clocks_are_frozen_unless_granted() {
    let runtime = config().runtime();
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let frozen = run_ok(&runtime, "bad", r#"{"do": "clock"}"#).await;
    let (start, moved) = frozen.split_once(' ').unwrap();
    assert_eq!(moved, "0", "a frozen clock moved");
    let start: u128 = start.parse().unwrap();
    assert!(
        start + 1000 >= before && start <= before + 60_000,
        "{start} vs {before}"
    );

    let real = run_ok(&runtime, "granted", r#"{"do": "clock"}"#).await;
    let moved: u128 = real.split_once(' ').unwrap().1.parse().unwrap();
    assert!(moved > 0, "a granted clock did not move");
}

#[tokio::test]
async fn follow_up_tasks_only_into_granted_queues() {
    let runtime = config().runtime();
    let mut invocation = Invocation::new(
        "granted",
        br#"{"do": "enqueue", "queue": "webhooks"}"#.to_vec(),
    );
    let parent = invocation.id.clone();
    invocation.queue = "default".into();
    let run = runtime.execute(invocation).await;
    let id = match &run.outcome {
        Outcome::Success { result } => String::from_utf8(result.clone()).unwrap(),
        other => panic!("{other:?}"),
    };
    assert_eq!(run.follow_ups.len(), 1);
    assert_eq!(run.follow_ups[0].queue, "webhooks");
    assert_eq!(run.follow_ups[0].task_type, "webhooks:sync");
    // The id the guest got is derived from the parent's id and the call's
    // place, so every run of the parent asks for the same one.
    assert_eq!(id, follow_up_id(&parent, 1));
    assert_eq!(run.follow_ups[0].id, id);

    let run = attempt(
        &runtime,
        "granted",
        r#"{"do": "enqueue", "queue": "payments"}"#,
    )
    .await;
    assert!(
        skip_retry_message(&run).contains("enqueue denied"),
        "{:?}",
        run.outcome
    );
    assert!(
        run.logs
            .iter()
            .any(|l| l.message.contains("denied by host"))
    );
    assert!(run.follow_ups.is_empty(), "a denied enqueue was recorded");
}

#[tokio::test]
async fn a_failed_run_keeps_no_follow_ups() {
    let runtime = config().runtime();
    let run = attempt(
        &runtime,
        "granted",
        r#"{"do": "enqueue-then-fail", "queue": "webhooks"}"#,
    )
    .await;
    assert!(!run.outcome.is_success(), "{:?}", run.outcome);
    assert!(run.follow_ups.is_empty(), "{:?}", run.follow_ups);
}

#[tokio::test]
async fn handler_errors_say_what_to_do() {
    let runtime = config().runtime();
    let run = attempt(&runtime, "bad", r#"{"do": "retry-later"}"#).await;
    assert_eq!(
        run.outcome.failure().unwrap().action(),
        Action::Retry {
            delay: Some(Duration::from_secs(42))
        }
    );
    let run = attempt(&runtime, "bad", r#"{"do": "revoke"}"#).await;
    assert_eq!(run.outcome.failure().unwrap().action(), Action::Drop);
    let run = attempt(&runtime, "bad", r#"{"do": 7}"#).await;
    assert!(skip_retry_message(&run).contains("not the expected JSON"));
}

#[tokio::test]
async fn unknown_task_type_fails_clearly() {
    let runtime = config().runtime();
    let run = runtime
        .execute(Invocation::new("nope", b"{}".to_vec()))
        .await;
    let failure = run.outcome.failure().unwrap().to_string();
    assert!(
        failure.contains("no module is registered for task type \"nope\""),
        "{failure}"
    );
}

#[tokio::test]
async fn many_tasks_at_once_all_complete() {
    let runtime = Arc::new(config().runtime());
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let runtime = runtime.clone();
            tokio::spawn(async move {
                let payload = format!(r#"{{"do": "ok", "n": {i}}}"#);
                let run = runtime
                    .execute(Invocation::new("bad", payload.clone().into_bytes()))
                    .await;
                (payload, run)
            })
        })
        .collect();
    for task in tasks {
        let (payload, run) = task.await.unwrap();
        assert_eq!(
            run.outcome,
            Outcome::Success {
                result: payload.into_bytes()
            }
        );
    }
}

async fn run_ok(runtime: &Runtime, task_type: &str, payload: &str) -> String {
    let run = attempt(runtime, task_type, payload).await;
    match run.outcome {
        Outcome::Success { result } => String::from_utf8(result).unwrap(),
        Outcome::Failed { failure } => panic!("{payload}: {failure}"),
    }
}
