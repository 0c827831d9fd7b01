//! The web dashboard end to end: `wasq dash --web` against the real
//! cluster, driven in headless Chromium (Debian's `chromium`, through
//! playwright-core in `tests/dashboard`) with real clicks: pause a queue,
//! open a task, run an archived task, see the counts change; then the same
//! page read-only. Each action's effect is checked in Redis.
//!
//! Then what keeps other sites out: writes without the page's token or
//! from another origin, requests for another Host (DNS rebinding), a page
//! on another origin trying to pause a queue in the same browser, the auth
//! token (header and cookie), and the refusal to listen beyond loopback
//! without one.
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
    dash_with(config, addr, if read_only { &["--read-only"] } else { &[] })
}

/// `wasq dash --web` on `addr` with `extra` arguments; killed when dropped.
pub(crate) fn dash_with(config: &wasq_tests::TestConfig, addr: &str, extra: &[&str]) -> KillOnDrop {
    let mut cmd = Command::new(wasq_bin());
    cmd.args([
        "dash",
        "--web",
        "--listen",
        addr,
        "--config",
        &config.path.display().to_string(),
    ]);
    cmd.args(extra).env_remove("WASQ_DASH_TOKEN");
    let child = KillOnDrop(cmd.stderr(std::process::Stdio::null()).spawn().unwrap());
    wait_listening(addr);
    child
}

fn browser(url: &str, queue: &str, task: &str, mode: &str) -> (bool, String) {
    node(&["dash.test.mjs", url, queue, task], mode)
}

/// Runs a script of `tests/dashboard` with node; returns whether it
/// succeeded, and its output.
fn node(args: &[&str], mode: &str) -> (bool, String) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboard");
    assert!(
        dir.join("node_modules/playwright-core").exists(),
        "run scripts/setup first: it installs chromium and the dashboard test's node modules"
    );
    let mut cmd = Command::new("node");
    cmd.current_dir(&dir).args(args).env("MODE", mode);
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
    let task = archived_task(&client, &q).await;
    let broker = client.broker();

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

/// One task in `q`, archived.
async fn archived_task(client: &wasq::Client, q: &str) -> String {
    let task = client
        .enqueue(
            payload(r#"{"do": "ok", "to": "archive"}"#),
            TaskOptions::default().queue(q),
        )
        .await
        .unwrap()
        .id;
    let moved = client
        .broker()
        .move_tasks(
            q,
            TaskState::Pending,
            Move::Archive,
            std::slice::from_ref(&task),
        )
        .await
        .unwrap();
    assert_eq!(moved, 1);
    task
}

/// A free loopback address for a dashboard.
pub(crate) fn free_addr() -> String {
    format!("127.0.0.1:{}", wasq_tests::redis::RedisServer::free_port())
}

/// Whether `q` is paused, read in Redis.
async fn paused(q: &str) -> bool {
    let client = cluster_client().await;
    let mut conn = client.broker().conn();
    conn.exists(QueueKeys::new(q).paused()).await.unwrap()
}

/// [`request`] off the runtime's threads.
async fn call(addr: &str, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    let (addr, method, path) = (addr.to_owned(), method.to_owned(), path.to_owned());
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect();
    tokio::task::spawn_blocking(move || {
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        request(&addr, &method, &path, &headers)
    })
    .await
    .unwrap()
}

/// The per-page token the dashboard embeds in its page.
fn page_token(page: &str) -> String {
    let start = page
        .find(r#"name="wasq-token" content=""#)
        .map(|i| i + r#"name="wasq-token" content=""#.len())
        .unwrap_or_else(|| panic!("no token in the page: {page}"));
    let token = &page[start..start + page[start..].find('"').unwrap()];
    assert!(token.len() >= 32, "a short token: {token:?}");
    token.to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_refuses_writes_without_the_page_token_or_from_another_origin() {
    let q = unique_queue("dash-csrf");
    let config = config(&[(&q, 1, None)], "");
    let addr = free_addr();
    let _dash = dash(&config, &addr, false);
    let port = addr.rsplit_once(':').unwrap().1;
    let pause = format!("/api/queues/{q}/pause");

    let page = call(&addr, "GET", "/", &[]).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    let token = page_token(&page.body);
    // A second start has another token.
    let other = free_addr();
    let _other = dash(&config, &other, false);
    assert_ne!(token, page_token(&call(&other, "GET", "/", &[]).await.body));

    // Refused: no token, a wrong one, another origin (with the right
    // token, as if it had leaked), an opaque origin.
    let own_origin = format!("http://{addr}");
    for (headers, why) in [
        (vec![], "X-Wasq-Token"),
        (vec![("Origin", own_origin.as_str())], "X-Wasq-Token"),
        (vec![("X-Wasq-Token", "guess")], "X-Wasq-Token"),
        (
            vec![
                ("X-Wasq-Token", token.as_str()),
                ("Origin", "http://evil.example"),
            ],
            "origin",
        ),
        (
            vec![
                ("X-Wasq-Token", token.as_str()),
                ("Origin", "http://127.0.0.1:1"),
            ],
            "origin",
        ),
        (
            vec![("X-Wasq-Token", token.as_str()), ("Origin", "null")],
            "origin",
        ),
    ] {
        let r = call(&addr, "POST", &pause, &headers).await;
        assert_eq!(r.status, 403, "{headers:?}: {}", r.body);
        assert!(r.error().contains(why), "{headers:?}: {}", r.body);
    }
    // Another Host (a name rebound to this address): refused, reads too,
    // the page too.
    let rebound = format!("evil.example:{port}");
    for (method, path) in [("GET", "/"), ("GET", "/api/overview"), ("POST", &pause)] {
        let r = call(
            &addr,
            method,
            path,
            &[("Host", &rebound), ("X-Wasq-Token", &token)],
        )
        .await;
        assert_eq!(r.status, 403, "{method} {path}: {}", r.body);
        assert!(r.error().contains("Host"), "{}", r.body);
    }
    assert!(!paused(&q).await, "a refused request paused the queue");

    // Allowed: the page's token from the page's origin, by any loopback
    // name of the address.
    let r = call(
        &addr,
        "POST",
        &pause,
        &[("X-Wasq-Token", &token), ("Origin", &own_origin)],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(paused(&q).await);
    let localhost = format!("localhost:{port}");
    let r = call(
        &addr,
        "POST",
        &format!("/api/queues/{q}/resume"),
        &[
            ("Host", &localhost),
            ("Origin", &format!("http://{localhost}")),
            ("X-Wasq-Token", &token),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(!paused(&q).await);
}

/// A page that tries every way a page on another origin has to pause `q`
/// on the dashboard at `dash`, then sets `window.attempts` to what each
/// attempt got.
fn attack_page(dash: &str, q: &str) -> String {
    r#"<!doctype html>
<html><body>
<form id="form" method="POST" action="http://DASH/api/queues/QUEUE/pause" target="sink"></form>
<iframe name="sink"></iframe>
<script>
const dash = "http://DASH", pause = dash + "/api/queues/QUEUE/pause";
const attempts = [];
async function attempt(what, run) {
  try { attempts.push(`${what}: ${await run()}`); } catch (e) { attempts.push(`${what}: ${e.name}`); }
}
(async () => {
  // Simple requests: no preflight, an opaque answer.
  await attempt("simple POST", async () => (await fetch(pause, { method: "POST", mode: "no-cors" })).type);
  await attempt("text/plain POST", async () => (await fetch(pause, {
    method: "POST", mode: "no-cors", headers: { "Content-Type": "text/plain" }, body: "{}" })).type);
  // The dashboard's page, for its token.
  let token = "guess";
  await attempt("read the page", async () => {
    const html = await (await fetch(dash + "/")).text();
    token = (html.match(/name="wasq-token" content="([^"]*)"/) || [])[1] || token;
    return "yes";
  });
  // With the token header: the browser asks first (a preflight).
  await attempt("POST with the token header", async () =>
    (await fetch(pause, { method: "POST", headers: { "X-Wasq-Token": token } })).status);
  // A form posted into a frame.
  await attempt("form POST", () => new Promise((done) => {
    document.querySelector("iframe").onload = () => done("sent");
    setTimeout(() => done("no answer"), 5000);
    document.getElementById("form").submit();
  }));
  window.attempts = attempts;
})();
</script>
</body></html>
"#
    .replace("DASH", dash)
    .replace("QUEUE", q)
}

/// Serves `html` to every request on a fresh loopback port, from threads
/// that live as long as the test process; returns the address.
/// Hand-written because it answers every request with one page and never
/// parses one: an HTTP server crate would add more than it saves.
fn serve_page(html: String) -> String {
    use std::io::{Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let html = std::sync::Arc::new(html);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let html = html.clone();
            // A thread per connection: the browser may open one it never
            // uses.
            std::thread::spawn(move || {
                let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(10)));
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{html}",
                    html.len()
                );
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_from_another_origin_cannot_pause_a_queue_in_a_real_browser() {
    let q = unique_queue("dash-xorigin");
    let config = config(&[(&q, 1, None)], "");
    let addr = free_addr();
    let _dash = dash(&config, &addr, false);
    let evil = serve_page(attack_page(&addr, &q));
    let (ok, out) = tokio::task::spawn_blocking(move || {
        node(&["cross-origin.test.mjs", &format!("http://{evil}/")], "")
    })
    .await
    .unwrap();
    assert!(ok && out.contains("cross-origin done"), "{out}");
    assert!(out.contains("simple POST: opaque"), "{out}");
    assert!(!out.contains("read the page: yes"), "{out}");
    assert!(
        !paused(&q).await,
        "a page on another origin paused the queue:\n{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_auth_token_the_dashboard_wants_it_for_the_page_and_the_api() {
    let q = unique_queue("dash-auth");
    let config = config(&[(&q, 1, None)], "");
    let client = cluster_client().await;
    let task = archived_task(&client, &q).await;
    let addr = free_addr();
    let _dash = dash_with(&config, &addr, &["--auth-token", "s3cret-token"]);

    for path in ["/", "/api/overview"] {
        for auth in [None, Some("Bearer wrong"), Some("Basic czNjcmV0LXRva2Vu")] {
            let headers: Vec<_> = auth.map(|a| ("Authorization", a)).into_iter().collect();
            let r = call(&addr, "GET", path, &headers).await;
            assert_eq!(r.status, 401, "{path} {auth:?}: {}", r.body);
            assert!(r.body.contains("--auth-token"), "{}", r.body);
        }
        let r = call(
            &addr,
            "GET",
            path,
            &[("Authorization", "Bearer s3cret-token")],
        )
        .await;
        assert_eq!(r.status, 200, "{path}: {}", r.body);
    }

    // `/?token=` once: the page, and a cookie for what follows.
    assert_eq!(call(&addr, "GET", "/?token=wrong", &[]).await.status, 401);
    let r = call(&addr, "GET", "/?token=s3cret-token", &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    page_token(&r.body);
    let cookie = r.header("set-cookie").expect("a cookie").to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().unwrap().to_owned();
    let r = call(&addr, "GET", "/api/overview", &[("Cookie", &pair)]).await;
    assert_eq!(r.status, 200, "{}", r.body);

    // The cookie alone makes no write: it comes with any request to the
    // address. The page's token, or the bearer token, does.
    let pause = format!("/api/queues/{q}/pause");
    let r = call(&addr, "POST", &pause, &[("Cookie", &pair)]).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(!paused(&q).await);
    let r = call(
        &addr,
        "POST",
        &pause,
        &[("Authorization", "Bearer s3cret-token")],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(paused(&q).await);
    let r = call(
        &addr,
        "POST",
        &format!("/api/queues/{q}/resume"),
        &[("Authorization", "Bearer s3cret-token")],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);

    // In a real browser: the address with `?token=`, then the same clicks
    // as without a token.
    let (ok, out) = tokio::task::spawn_blocking({
        let (url, q, task) = (
            format!("http://{addr}/?token=s3cret-token"),
            q.clone(),
            task.clone(),
        );
        move || browser(&url, &q, &task, "")
    })
    .await
    .unwrap();
    assert!(ok && out.contains("dashboard ok"), "{out}");
    assert!(paused(&q).await, "the click did not pause the queue");
    let mut conn = client.broker().conn();
    let pending: Vec<String> = conn
        .lrange(QueueKeys::new(&q).pending(), 0, -1)
        .await
        .unwrap();
    assert_eq!(pending, vec![task]);
}

#[test]
fn the_dashboard_will_not_listen_beyond_loopback_without_a_token() {
    for (listen, env) in [
        ("0.0.0.0:0", None),
        ("[::]:0", None),
        ("0.0.0.0:0", Some("")),
    ] {
        let mut cmd = Command::new(wasq_bin());
        cmd.args([
            "dash",
            "--web",
            "--listen",
            listen,
            // Nothing listens there: were the listen address taken, the
            // dashboard would still not serve.
            "--redis-url",
            "redis://127.0.0.1:1",
            "--connect-timeout",
            "1s",
        ])
        .env_remove("WASQ_DASH_TOKEN");
        if let Some(token) = env {
            cmd.env("WASQ_DASH_TOKEN", token);
        }
        let out = cmd.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{listen}: {err}");
        assert!(
            err.contains("--auth-token")
                && err.contains("WASQ_DASH_TOKEN")
                && err.contains("--insecure"),
            "{listen} {env:?}: {err}"
        );
    }
}
