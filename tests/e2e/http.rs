//! Outbound HTTP (wasi:http) against HTTP servers this file starts on
//! loopback (and `openssl s_server` for TLS with the harness's CA): what a
//! task type's `http` list lets through, what it denies before any
//! connection, redirects checked hop by hop, names that resolve to loopback,
//! body caps, a server that never answers, and the webhook example
//! delivering through a worker beside ordinary tasks.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wasq::runtime::{Execution, Failure, HandlerError, Outcome, Runtime, TrapCause};
use wasq::worker::Disposition;
use wasq::{Task, TaskOptions};
use wasq_tests::TestConfig;

use crate::interpreted::run;
use crate::support::*;

/// A small HTTP/1.1 server on 127.0.0.1 with a few routes; it counts the
/// connections it accepts and keeps the bodies posted to `/hook`.
struct Server {
    port: u16,
    connections: Arc<AtomicUsize>,
    hooks: Arc<Mutex<Vec<String>>>,
}

impl Server {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let hooks = Arc::new(Mutex::new(Vec::new()));
        let (count, kept) = (connections.clone(), hooks.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                count.fetch_add(1, Ordering::SeqCst);
                let kept = kept.clone();
                std::thread::spawn(move || serve(stream, &kept));
            }
        });
        Self {
            port,
            connections,
            hooks,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// The `data` of every webhook posted to `/hook`, sorted.
    fn delivered(&self) -> Vec<i64> {
        let mut delivered: Vec<i64> = self
            .hooks
            .lock()
            .unwrap()
            .iter()
            .map(|b| {
                serde_json::from_str::<serde_json::Value>(b).unwrap()["data"]
                    .as_i64()
                    .unwrap()
            })
            .collect();
        delivered.sort();
        delivered
    }
}

fn serve(stream: TcpStream, hooks: &Mutex<Vec<String>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let target = parts.next().unwrap_or_default().to_owned();
    let mut headers = BTreeMap::new();
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).unwrap();
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
        }
    }
    let length: usize = headers
        .get("content-length")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let query: BTreeMap<&str, &str> = query.split('&').filter_map(|p| p.split_once('=')).collect();
    let mut out = stream;
    let respond = |out: &mut TcpStream, status: u16, extra: &[(&str, String)], body: &[u8]| {
        let mut head = format!("HTTP/1.1 {status} X\r\nconnection: close\r\n");
        for (name, value) in extra {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
        let _ = out.write_all(head.as_bytes());
        let _ = out.write_all(body);
    };
    match path {
        "/echo" => {
            let mut extra = vec![("x-echo-method", method.clone())];
            if let Some(value) = headers.get("x-test") {
                extra.push(("x-echo-test", value.clone()));
            }
            respond(&mut out, 200, &extra, &body);
        }
        "/big" => {
            let n: usize = query.get("n").and_then(|n| n.parse().ok()).unwrap_or(0);
            let body: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
            respond(&mut out, 200, &[], &body);
        }
        "/redirect" => {
            let to = query.get("to").copied().unwrap_or("/").to_owned();
            respond(&mut out, 302, &[("location", to)], b"");
        }
        "/hang" => std::thread::sleep(Duration::from_secs(60)),
        "/stall" => {
            // The head and 10 of 100 bytes, then nothing.
            let _ = out.write_all(b"HTTP/1.1 200 X\r\ncontent-length: 100\r\n\r\n0123456789");
            std::thread::sleep(Duration::from_secs(60));
        }
        "/status" => {
            let code = query
                .get("code")
                .and_then(|c| c.parse().ok())
                .unwrap_or(500);
            respond(&mut out, code, &[("retry-after", "7".into())], b"busy");
        }
        "/hook" => {
            hooks
                .lock()
                .unwrap()
                .push(String::from_utf8_lossy(&body).into_owned());
            respond(&mut out, 200, &[], b"ok");
        }
        _ => respond(&mut out, 404, &[], b"no such route"),
    }
}

/// The http-client guest under several task types: `ok` may reach the
/// server's port, `none` has no list, `other_port` lists another port,
/// `named` lists a wildcard whose names resolve (pinned) to loopback, and
/// `named_lo` lists loopback too.
fn types(server: &Server, extra: &str) -> String {
    let port = server.port;
    format!(
        r#"
[runtime.http_resolve]
"api.example.test" = ["127.0.0.1"]

[defaults]
timeout = "20s"

[tasks.ok]
module = "{{guests}}/http_client.wasm"
http = ["http://127.0.0.1:{port}"]
[tasks.none]
module = "{{guests}}/http_client.wasm"
[tasks.other_port]
module = "{{guests}}/http_client.wasm"
http = ["http://127.0.0.1:1"]
[tasks.named]
module = "{{guests}}/http_client.wasm"
http = ["http://*.example.test:*"]
[tasks.named_lo]
module = "{{guests}}/http_client.wasm"
http = ["http://*.example.test:*", "http://127.0.0.1:{port}"]
{extra}"#
    )
}

fn response(run: &Execution) -> serde_json::Value {
    match &run.outcome {
        Outcome::Success { result } => serde_json::from_slice(result).unwrap(),
        Outcome::Failed { failure } => panic!("request failed: {failure}"),
    }
}

/// The guest's error message (`Denied: ...`, `TooLarge: ...`).
fn refusal(run: &Execution) -> String {
    match run.outcome.failure() {
        Some(Failure::Handler {
            error: HandlerError::SkipRetry { message },
        }) => message.clone(),
        other => panic!("expected the guest's refusal, got {other:?}"),
    }
}

async fn call(runtime: &Runtime, task_type: &str, request: serde_json::Value) -> Execution {
    run(runtime, task_type, &request.to_string()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_requests_round_trip_and_the_rest_are_denied_before_any_connection() {
    let server = Server::start();
    let runtime = TestConfig::new(&types(&server, "")).runtime();

    // A 5 MB body each way, a header, the method.
    let echo = call(
        &runtime,
        "ok",
        serde_json::json!({"method": "POST", "url": server.url("/echo"),
                           "body_bytes": 5_000_000, "headers": {"x-test": "yes"}}),
    )
    .await;
    let body = response(&echo);
    assert_eq!(body["status"], 200, "{body}");
    assert_eq!(body["body_len"], 5_000_000, "{body}");
    let sum: u64 = (0..5_000_000u64).map(|i| i % 251).sum();
    assert_eq!(body["body_sum"], sum, "the body came back intact");
    let headers = body["headers"].as_array().unwrap();
    assert!(
        headers.contains(&serde_json::json!(["x-echo-test", "yes"])),
        "{body}"
    );
    assert!(
        headers.contains(&serde_json::json!(["x-echo-method", "POST"])),
        "{body}"
    );
    assert_eq!(echo.http.len(), 1);
    assert_eq!(
        (echo.http[0].outcome, echo.http[0].status),
        ("ok", Some(200))
    );
    let big = response(
        &call(
            &runtime,
            "ok",
            serde_json::json!({"url": server.url("/big?n=5000000")}),
        )
        .await,
    );
    assert_eq!(big["body_len"], 5_000_000, "{big}");

    let seen = server.connections();
    for (task_type, url, why) in [
        ("none", server.url("/echo"), "no http list"),
        ("other_port", server.url("/echo"), "a port not on the list"),
        (
            "ok",
            format!("https://127.0.0.1:{}/echo", server.port),
            "a scheme not on the list",
        ),
        (
            "ok",
            format!("http://localhost:{}/echo", server.port),
            "a host not on the list",
        ),
        (
            "named",
            format!("http://api.example.test:{}/echo", server.port),
            "a wildcard name that resolves to loopback",
        ),
    ] {
        let denied = call(&runtime, task_type, serde_json::json!({"url": url})).await;
        let message = refusal(&denied);
        assert!(message.starts_with("Denied:"), "{why}: {message}");
        assert_eq!(denied.http[0].outcome, "denied", "{why}");
    }
    assert_eq!(
        server.connections(),
        seen,
        "a denied request reached the server"
    );

    // Loopback listed literally: the same name gets through.
    let named = call(
        &runtime,
        "named_lo",
        serde_json::json!({"url": format!("http://api.example.test:{}/echo", server.port)}),
    )
    .await;
    assert_eq!(response(&named)["status"], 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_to_a_host_not_on_the_list_is_denied_at_the_second_hop() {
    let server = Server::start();
    let elsewhere = Server::start();
    let runtime = TestConfig::new(&types(&server, "")).runtime();
    let to = elsewhere.url("/echo");
    let hop = call(
        &runtime,
        "ok",
        serde_json::json!({"url": server.url(&format!("/redirect?to={to}")), "follow": true}),
    )
    .await;
    assert!(refusal(&hop).starts_with("Denied:"), "{}", refusal(&hop));
    assert_eq!(hop.http.len(), 2);
    assert_eq!(
        (hop.http[0].status, hop.http[1].outcome),
        (Some(302), "denied")
    );
    assert_eq!(server.connections(), 1);
    assert_eq!(elsewhere.connections(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caps_and_a_silent_server_end_the_task_not_the_runtime() {
    let server = Server::start();
    let extra = format!(
        r#"
[tasks.capped]
module = "{{guests}}/http_client.wasm"
http = ["http://127.0.0.1:{port}"]
max_http_body = "1MiB"
max_http_request_body = "1KiB"
[tasks.short]
module = "{{guests}}/http_client.wasm"
http = ["http://127.0.0.1:{port}"]
timeout = "1s"
"#,
        port = server.port
    );
    let runtime = TestConfig::new(&types(&server, &extra)).runtime();
    let over = call(
        &runtime,
        "capped",
        serde_json::json!({"url": server.url("/big?n=2000000")}),
    )
    .await;
    let message = refusal(&over);
    assert!(message.starts_with("TooLarge:"), "{message}");
    assert!(
        over.http[0]
            .error
            .as_deref()
            .unwrap()
            .contains("max_http_body"),
        "{:?}",
        over.http
    );
    let posted = call(
        &runtime,
        "capped",
        serde_json::json!({"method": "POST", "url": server.url("/echo"), "body_bytes": 2000}),
    )
    .await;
    assert!(
        refusal(&posted).starts_with("TooLarge:"),
        "{}",
        refusal(&posted)
    );

    let started = std::time::Instant::now();
    let silent = call(
        &runtime,
        "short",
        serde_json::json!({"url": server.url("/hang")}),
    )
    .await;
    match silent.outcome.failure() {
        Some(Failure::Trap {
            cause: TrapCause::Timeout,
        }) => {}
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // The runtime goes on.
    let after = call(
        &runtime,
        "capped",
        serde_json::json!({"url": server.url("/big?n=10")}),
    )
    .await;
    assert_eq!(response(&after)["body_len"], 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_the_harness_ca_is_trusted_only_with_http_ca() {
    let dir = tempfile::tempdir().unwrap();
    let tls = wasq_tests::redis::TlsFiles::generate(dir.path());
    let port = {
        let probe = TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let _server = wasq_tests::KillOnDrop(
        std::process::Command::new("openssl")
            .args(["s_server", "-quiet", "-www", "-accept"])
            .arg(port.to_string())
            .arg("-cert")
            .arg(&tls.cert)
            .arg("-key")
            .arg(&tls.key)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("running openssl s_server"),
    );
    wait_listening(&format!("127.0.0.1:{port}"));
    let config = format!(
        r#"
[tasks.trusting]
module = "{{guests}}/http_client.wasm"
http = ["https://127.0.0.1:{port}"]
http_ca = {ca:?}
[tasks.default_roots]
module = "{{guests}}/http_client.wasm"
http = ["https://127.0.0.1:{port}"]
"#,
        ca = tls.ca.display().to_string()
    );
    let runtime = TestConfig::new(&config).runtime();
    let url = format!("https://127.0.0.1:{port}/");
    let trusted = call(&runtime, "trusting", serde_json::json!({"url": url})).await;
    assert_eq!(response(&trusted)["status"], 200);
    let untrusted = call(&runtime, "default_roots", serde_json::json!({"url": url})).await;
    let message = refusal(&untrusted);
    assert!(message.starts_with("Connection:"), "{message}");
    assert!(
        untrusted.http[0]
            .error
            .as_deref()
            .unwrap()
            .contains("Certificate"),
        "{:?}",
        untrusted.http
    );
}

#[test]
fn bad_http_entries_name_file_line_and_key() {
    for (entry, why) in [
        ("ftp://files.example.com", "scheme"),
        ("https://hooks.example.com/v1", "path"),
        ("https://*", "bare `*`"),
    ] {
        let config = TestConfig::new(&format!(
            "[tasks.a]\nmodule = \"{{examples}}/noop.wasm\"\nhttp = [\n  \"https://ok.example.com\",\n  {entry:?},\n]\n"
        ));
        let error = match config.load() {
            Err(error) => error.to_string(),
            Ok(_) => panic!("{entry} was accepted"),
        };
        assert!(
            error.contains("tasks.a.http[1]") && error.contains(why) && error.contains("line"),
            "{entry}: {error}"
        );
    }
}

/// The webhook example in each language, granted the server's port:
/// `webhooks:sync` (Rust), `webhooks:py` and `webhooks:js`.
fn webhook_types(server: &Server) -> String {
    format!(
        r#"
[defaults]
http = ["http://127.0.0.1:{port}"]

[tasks."webhooks:sync"]
module = "{{examples}}/webhook_sync.wasm"
[tasks."webhooks:py"]
module = {python}
timeout = "60s"
[tasks."webhooks:js"]
module = {js}
timeout = "60s"
"#,
        port = server.port,
        python = crate::python::module("webhook_sync"),
        js = crate::js::module("webhook_sync"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_example_answers_the_receivers_status_in_every_language() {
    let server = Server::start();
    let runtime = TestConfig::new(&webhook_types(&server)).runtime();
    let hook = |path: &str| format!(r#"{{"data": 5, "url": {:?}}}"#, server.url(path));
    for (n, task_type) in ["webhooks:sync", "webhooks:py", "webhooks:js"]
        .into_iter()
        .enumerate()
    {
        let done = run(&runtime, task_type, &hook("/hook")).await;
        assert!(done.outcome.is_success(), "{task_type}: {:?}", done.outcome);
        assert_eq!(server.hooks.lock().unwrap().len(), n + 1, "{task_type}");
        let delivered: serde_json::Value =
            serde_json::from_str(server.hooks.lock().unwrap().last().unwrap()).unwrap();
        assert_eq!(delivered["data"], 5, "{task_type}: the payload is the body");
        assert_eq!(
            (done.http.len(), done.http[0].status),
            (1, Some(200)),
            "{task_type}"
        );
        // 503 with `Retry-After: 7`: retried after 7 s, not the backoff.
        let busy = run(&runtime, task_type, &hook("/status?code=503")).await;
        match busy.outcome.failure() {
            Some(Failure::Handler {
                error: HandlerError::Retry { message, delay },
            }) => {
                assert!(message.contains("503"), "{task_type}: {message}");
                assert_eq!(*delay, Some(Duration::from_secs(7)), "{task_type}");
            }
            other => panic!("{task_type}: expected a retry, got {other:?}"),
        }
        // 400: sending it again cannot help, so it is archived.
        let refused = run(&runtime, task_type, &hook("/status?code=400")).await;
        match refused.outcome.failure() {
            Some(Failure::Handler {
                error: HandlerError::SkipRetry { message },
            }) => assert!(message.contains("400"), "{task_type}: {message}"),
            other => panic!("{task_type}: expected skip-retry, got {other:?}"),
        }
        // Without a url, as in the tutorial, it only logs.
        let tutorial = run(&runtime, task_type, r#"{"data": 1234}"#).await;
        assert!(tutorial.outcome.is_success(), "{task_type}");
        assert!(tutorial.http.is_empty(), "{task_type}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_and_javascript_clients_round_trip_and_are_denied_before_any_connection() {
    let server = Server::start();
    let config = format!(
        r#"
[defaults]
timeout = "60s"
fuel = "unlimited"

[tasks.py]
module = {python}
http = ["http://127.0.0.1:{port}"]
[tasks.js]
module = {js}
http = ["http://127.0.0.1:{port}"]
[tasks.py_none]
module = {python}
[tasks.js_none]
module = {js}
"#,
        port = server.port,
        python = crate::python::module("http_client"),
        js = crate::js::module("http_client"),
    );
    let runtime = TestConfig::new(&config).runtime();
    for lang in ["py", "js"] {
        // A 1 MB body each way, a header, the method.
        let echo = call(
            &runtime,
            lang,
            serde_json::json!({"method": "POST", "url": server.url("/echo"),
                               "body_bytes": 1_000_000, "headers": {"x-test": "yes"}}),
        )
        .await;
        let body = response(&echo);
        assert_eq!(body["status"], 200, "{lang}: {body}");
        assert_eq!(body["body_len"], 1_000_000, "{lang}: {body}");
        let sum: u64 = (0..1_000_000u64).map(|i| i % 251).sum();
        assert_eq!(body["body_sum"], sum, "{lang}: the body came back intact");
        let headers = body["headers"].as_array().unwrap();
        for pair in [["x-echo-test", "yes"], ["x-echo-method", "POST"]] {
            assert!(
                headers.contains(&serde_json::json!(pair)),
                "{lang}: {pair:?} not in {body}"
            );
        }
        assert_eq!((echo.http.len(), echo.http[0].outcome), (1, "ok"), "{lang}");
        let missing = response(
            &call(
                &runtime,
                lang,
                serde_json::json!({"url": server.url("/nowhere")}),
            )
            .await,
        );
        assert_eq!(
            (missing["status"].as_u64(), missing["body"].as_str()),
            (Some(404), Some("no such route")),
            "{lang}"
        );

        let seen = server.connections();
        for (task_type, url, why) in [
            (format!("{lang}_none"), server.url("/echo"), "no http list"),
            (
                lang.to_owned(),
                format!("http://localhost:{}/echo", server.port),
                "a host not on the list",
            ),
            (
                lang.to_owned(),
                "http://127.0.0.1:1/echo".to_owned(),
                "a port not on the list",
            ),
        ] {
            let denied = call(&runtime, &task_type, serde_json::json!({"url": url})).await;
            let message = refusal(&denied);
            assert_eq!(denied.http.len(), 1, "{task_type}, {why}: {message}");
            assert_eq!(denied.http[0].outcome, "denied", "{task_type}, {why}");
            if lang == "py" {
                assert!(message.starts_with("denied:"), "{why}: {message}");
            }
        }
        assert_eq!(
            server.connections(),
            seen,
            "{lang}: a denied request reached the server"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_and_javascript_webhooks_deliver_through_a_worker() {
    let server = Server::start();
    let (q, _config, mut worker, client) = one_queue("http-langs", &webhook_types(&server)).await;
    let each = 25;
    for i in 0..each {
        for (task_type, offset) in [("webhooks:py", 0), ("webhooks:js", 1000)] {
            let body = format!(
                r#"{{"data": {}, "url": {:?}}}"#,
                offset + i,
                server.url("/hook")
            );
            client
                .enqueue(
                    Task::new(task_type, body.into_bytes()),
                    TaskOptions::default().queue(&q),
                )
                .await
                .unwrap();
        }
    }
    let events = worker.next(2 * each, Duration::from_secs(180)).await;
    assert!(
        events.iter().all(|e| e.disposition == Disposition::Done),
        "{events:#?}"
    );
    let delivered = server.delivered();
    let expected: Vec<i64> = (0..each as i64).chain(1000..1000 + each as i64).collect();
    assert_eq!(delivered, expected, "every webhook delivered once");
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_example_delivers_through_a_worker_beside_ordinary_tasks() {
    let server = Server::start();
    let metrics = {
        let probe = TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().to_string()
    };
    let (q, config, mut worker, client) = one_queue(
        "http-hooks",
        &format!(
            r#"
[worker]
concurrency = 40
metrics = {metrics:?}

[tasks."webhooks:sync"]
module = "{{examples}}/webhook_sync.wasm"
http = ["http://127.0.0.1:{port}"]
retry_delay = "1s"
"#,
            port = server.port
        ),
    )
    .await;
    let hooks = 200;
    for i in 0..hooks {
        let body = format!(r#"{{"data": {i}, "url": {:?}}}"#, server.url("/hook"));
        client
            .enqueue(
                Task::new("webhooks:sync", body.into_bytes()),
                TaskOptions::default().queue(&q),
            )
            .await
            .unwrap();
        client
            .enqueue(
                Task::new("noop", b"{}".to_vec()),
                TaskOptions::default().queue(&q),
            )
            .await
            .unwrap();
    }
    // A receiver that answers 503 with Retry-After: the example retries.
    let busy = format!(
        r#"{{"data": -1, "url": {:?}}}"#,
        server.url("/status?code=503")
    );
    client
        .enqueue(
            Task::new("webhooks:sync", busy.into_bytes()),
            TaskOptions::default().queue(&q).max_retry(0),
        )
        .await
        .unwrap();
    let events = worker.next(2 * hooks + 1, Duration::from_secs(120)).await;
    let done = events
        .iter()
        .filter(|e| e.disposition == Disposition::Done)
        .count();
    assert_eq!(done, 2 * hooks, "{events:#?}");
    let failed = events
        .iter()
        .find(|e| e.disposition != Disposition::Done)
        .unwrap();
    assert!(
        failed.error.as_deref().unwrap_or_default().contains("503"),
        "{failed:?}"
    );
    let delivered = server.delivered();
    assert_eq!(delivered, (0..hooks as i64).collect::<Vec<_>>());
    let (status, text) = http(&metrics, "GET", "/metrics");
    assert_eq!(status, 200);
    let counted = format!(
        "wasq_http_requests_total{{task_type=\"webhooks:sync\",host=\"http://127.0.0.1:{}\",outcome=\"ok\"}} {}",
        server.port,
        hooks + 1
    );
    assert!(text.contains(&counted), "{counted} not in:\n{text}");
    // `wasq module ls` shows the type's requests from what workers recorded.
    let path = config.path.display().to_string();
    let requests = || {
        let (_, out, _) = wasq_tests::run_wasq(&["module", "ls", "--config", &path, "--json"]);
        let rows: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
        rows.as_array()
            .into_iter()
            .flatten()
            .find(|r| r["task_type"] == "webhooks:sync")
            .map(|r| r["last_hour"]["http"]["ok"].as_u64().unwrap_or(0))
            .unwrap_or(0)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while requests() < hooks as u64 + 1 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        requests() > hooks as u64,
        "module ls counted {} requests",
        requests()
    );
    worker.stop().await;
}

#[test]
fn wasq_bench_times_a_get_through_the_sandbox_against_the_host() {
    let noop = format!("rust={}", wasq_tests::example("noop").display());
    let http_get = wasq_tests::example("http-get").display().to_string();
    let cache = wasq_tests::cache_dir().display().to_string();
    let (code, out, err) = wasq_tests::run_wasq(&[
        "bench",
        "--module",
        &noop,
        "--http",
        "--http-module",
        &http_get,
        "--iterations",
        "20",
        "--cache-dir",
        &cache,
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["http"]["iterations"], 20, "{out}");
    for way in ["wasq", "host"] {
        let median = report["http"][way]["median_us"].as_f64().unwrap();
        assert!(median > 0.0, "{way}: {out}");
    }
    assert_eq!(report["targets"]["http_ratio"], 1.5);
}
