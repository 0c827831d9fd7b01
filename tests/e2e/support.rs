//! Helpers shared by the end-to-end tests that run workers: a worker in
//! this process with its event stream, a `wasq worker` child process with
//! its JSON lines (the one way a test starts either), configs on the shared
//! cluster.

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

    fn spawn(config: &TestConfig, stderr: std::process::Stdio, filter: &str) -> Self {
        let mut child = std::process::Command::new(wasq_tests::wasq_bin())
            .args([
                "worker",
                "--json",
                "--log",
                filter,
                "--config",
                &config.path.display().to_string(),
            ])
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

/// `method path` on `addr` over plain HTTP/1.1; returns (status, body).
pub(crate) fn http(addr: &str, method: &str, path: &str) -> (u16, String) {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (status, body.to_owned())
}

/// Waits until something listens on `addr`.
pub(crate) fn wait_listening(addr: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {addr}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
