//! Helpers shared by the end-to-end tests that run workers: a worker in
//! this process with its event stream, a `wasq worker` child process with
//! its JSON lines (the one way a test starts either), configs on the shared
//! cluster, and plain HTTP requests to the dashboard and `/metrics`.

use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use wasq::worker::{TaskEvent, Worker};
use wasq::{Client, Task};
use wasq_tests::redis::shared_cluster;
use wasq_tests::{TestConfig, unique_queue};

/// A worker running in this process.
pub(crate) struct RunningWorker {
    stop: Option<oneshot::Sender<()>>,
    events: mpsc::UnboundedReceiver<TaskEvent>,
    handle: tokio::task::JoinHandle<()>,
}

impl RunningWorker {
    pub(crate) async fn start(config: &TestConfig) -> Self {
        let cfg = wasq::config::Config::load(&config.path).unwrap();
        let runtime = tokio::task::spawn_blocking(move || {
            let runtime = wasq::runtime::Runtime::load(&cfg).unwrap();
            (cfg, runtime)
        })
        .await
        .unwrap();
        let (cfg, runtime) = runtime;
        let mut worker = Worker::new(&cfg, runtime).await.unwrap();
        let events = worker.events();
        let (tx, rx) = oneshot::channel();
        let handle = tokio::spawn(async move {
            worker
                .run(async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
        Self {
            stop: Some(tx),
            events,
            handle,
        }
    }

    /// The next `n` events, or a panic after `within`.
    pub(crate) async fn next(&mut self, n: usize, within: Duration) -> Vec<TaskEvent> {
        let mut out = Vec::new();
        let deadline = Instant::now() + within;
        while out.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.events.recv()).await {
                Ok(Some(e)) => out.push(e),
                _ => panic!("expected {n} events within {within:?}, got {out:#?}"),
            }
        }
        out
    }

    /// Asserts nothing happens for `for_`.
    pub(crate) async fn quiet(&mut self, for_: Duration) {
        if let Ok(Some(e)) = tokio::time::timeout(for_, self.events.recv()).await {
            panic!("expected no task event, got {e:?}");
        }
    }

    pub(crate) async fn stop(mut self) -> mpsc::UnboundedReceiver<TaskEvent> {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(30), self.handle)
            .await
            .expect("worker stops in time")
            .unwrap();
        self.events
    }
}

/// A worker config on the shared cluster with the test guests registered.
pub(crate) fn config(queues: &[(&str, u32, Option<usize>)], extra: &str) -> TestConfig {
    let mut body = shared_cluster().toml();
    body.push_str(&queue_sections(queues));
    body.push_str(extra);
    body.push_str(GUEST_TYPES);
    TestConfig::new(&body)
}

pub(crate) fn queue_sections(queues: &[(&str, u32, Option<usize>)]) -> String {
    let mut body = String::new();
    for (name, priority, cap) in queues {
        body.push_str(&format!("\n[queues.{name:?}]\npriority = {priority}\n"));
        if let Some(cap) = cap {
            body.push_str(&format!("concurrency = {cap}\n"));
        }
    }
    body
}

pub(crate) const GUEST_TYPES: &str = r#"
[tasks.bad]
module = "{guests}/misbehave.wasm"
fuel = "unlimited"
timeout = "60s"
retry_delay = "1s"

[tasks.noop]
module = "{examples}/noop.wasm"
"#;

/// A fresh queue on the shared cluster, a worker consuming it, a client.
pub(crate) async fn one_queue(
    prefix: &str,
    extra: &str,
) -> (String, TestConfig, RunningWorker, Client) {
    let q = unique_queue(prefix);
    let config = config(&[(&q, 1, None)], extra);
    let worker = RunningWorker::start(&config).await;
    (q, config, worker, cluster_client().await)
}

pub(crate) async fn cluster_client() -> Client {
    Client::connect(&shared_cluster().redis_config())
        .await
        .unwrap()
}

/// Asserts that queue `q` holds no task (pending, active, retry or
/// archived) and never failed one.
pub(crate) async fn assert_nothing_left_or_failed(broker: &wasq::broker::Broker, q: &str) {
    let stats = broker.stats(q).await.unwrap();
    assert_eq!(
        (stats.pending, stats.active, stats.retry, stats.archived),
        (0, 0, 0, 0),
        "{stats:?}"
    );
    assert_eq!(stats.failed_total, 0, "{stats:?}");
}

pub(crate) fn payload(json: &str) -> Task {
    Task::new("bad", json.as_bytes().to_vec())
}

pub(crate) async fn wait_for<F, Fut>(mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(15);
    while !check().await {
        assert!(Instant::now() < deadline, "condition not met in time");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `wasq worker --json` as a child process; its stdout lines arrive on
/// `lines`. Killed when dropped.
pub(crate) struct SpawnedWorker {
    pub child: wasq_tests::KillOnDrop,
    pub lines: mpsc::UnboundedReceiver<String>,
}

impl SpawnedWorker {
    pub(crate) fn start(config: &TestConfig) -> Self {
        Self::spawn(config, std::process::Stdio::null(), "warn")
    }

    /// Like [`start`](Self::start), its log (stderr) going to `log`.
    pub(crate) fn start_logging(config: &TestConfig, log: &std::path::Path) -> Self {
        Self::spawn(config, std::fs::File::create(log).unwrap().into(), "warn")
    }

    /// Like [`start_logging`](Self::start_logging), with the log filter
    /// `filter` (e.g. `info`).
    pub(crate) fn start_logging_at(
        config: &TestConfig,
        log: &std::path::Path,
        filter: &str,
    ) -> Self {
        Self::spawn(config, std::fs::File::create(log).unwrap().into(), filter)
    }

    /// Like [`start_logging_at`](Self::start_logging_at), with `extra`
    /// arguments for `wasq worker` (e.g. `--watch`).
    pub(crate) fn start_with(
        config: &TestConfig,
        log: &std::path::Path,
        filter: &str,
        extra: &[&str],
    ) -> Self {
        Self::spawn_with(
            config,
            std::fs::File::create(log).unwrap().into(),
            filter,
            extra,
        )
    }

    fn spawn(config: &TestConfig, stderr: std::process::Stdio, filter: &str) -> Self {
        Self::spawn_with(config, stderr, filter, &[])
    }

    fn spawn_with(
        config: &TestConfig,
        stderr: std::process::Stdio,
        filter: &str,
        extra: &[&str],
    ) -> Self {
        let mut child = std::process::Command::new(wasq_tests::wasq_bin())
            .args([
                "worker",
                "--json",
                "--log",
                filter,
                "--config",
                &config.path.display().to_string(),
            ])
            .args(extra)
            .stdout(std::process::Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in
                std::io::BufRead::lines(std::io::BufReader::new(stdout)).map_while(Result::ok)
            {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child: wasq_tests::KillOnDrop(child),
            lines,
        }
    }

    pub(crate) fn pid(&self) -> i32 {
        self.child.0.id() as i32
    }

    /// Sends `signal` (e.g. `libc::SIGTERM`).
    pub(crate) fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on a child this test started.
        unsafe {
            libc::kill(self.pid(), signal);
        }
    }

    /// The exit status if the process has exited, `None` while it runs.
    pub(crate) fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.0.try_wait().unwrap()
    }

    /// SIGKILL, and waits for the process to be gone.
    pub(crate) fn kill(&mut self) {
        let _ = self.child.0.kill();
        let _ = self.child.0.wait();
    }

    /// Every task event printed so far.
    pub(crate) fn drain_events(&mut self) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        while let Ok(line) = self.lines.try_recv() {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                && v.get("disposition").is_some()
            {
                out.push(v);
            }
        }
        out
    }
}

/// An HTTP answer, whatever its status: status, headers and body.
pub(crate) struct Reply {
    pub status: u16,
    pub headers: ureq::http::HeaderMap,
    pub body: String,
}

impl Reply {
    /// The first header called `name` (any case).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)?.to_str().ok()
    }

    /// The `error` of a JSON error body.
    pub(crate) fn error(&self) -> String {
        serde_json::from_str::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or_else(|| panic!("not a JSON error: {} {}", self.status, self.body))
    }
}

/// `method path` on `addr` over plain HTTP/1.1 with extra `headers` (a
/// `Host` among them replaces the default, `addr`), an empty body, no
/// proxy and no redirect followed: what the server said, status and all.
/// Blocking.
pub(crate) fn request(addr: &str, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .proxy(None)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let mut builder = ureq::http::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let mut response = agent
        .run(builder.body("").unwrap())
        .unwrap_or_else(|e| panic!("{method} http://{addr}{path}: {e}"));
    Reply {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        body: response
            .body_mut()
            .read_to_string()
            .unwrap_or_else(|e| panic!("{method} http://{addr}{path}: reading the body: {e}")),
    }
}

/// `method path` on `addr` over plain HTTP/1.1; returns (status, body).
/// Blocking.
pub(crate) fn http(addr: &str, method: &str, path: &str) -> (u16, String) {
    let reply = request(addr, method, path, &[]);
    (reply.status, reply.body)
}

/// Waits until something listens on `addr`.
pub(crate) fn wait_listening(addr: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {addr}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
