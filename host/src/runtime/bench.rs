//! Benchmarks of the sandbox itself, measured against a baseline in the same
//! run so the figures survive a noisy machine.
//!
//! - **Per-task overhead**: the median time to run a no-op handler through
//!   [`Runtime::execute`] (fresh store and instance from the pool, fuel,
//!   epoch deadline, journal, call, teardown) against a naive embedding of
//!   the same component: a new `Linker` with WASI (and wasi:http when the
//!   component imports it) per task, plain
//!   instantiation, the default on-demand allocator, no fuel or epochs.
//! - **Start-up**: [`Runtime::load`] of one module, or of a whole config,
//!   with an empty (cold) and a filled (warm) compiled-module cache.
//!
//! Each figure is measured per module, so a Rust, a Python and a JavaScript
//! no-op handler can be compared in one run.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use wasmtime::Store;
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};

use super::bindings::{Handler, Task};
use super::cache::ComponentCache;
use super::http::{HttpPolicy, Outbound};
use super::journal::{Journal, TaskTags};
use super::sandbox::{Grants, MemoryLimiter, SandboxState};
use super::{Invocation, Runtime, RuntimeError, engine};
use crate::config::Config;

/// Timings of one way of running tasks, in microseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Timings {
    /// Median.
    pub median_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// Tasks per second on one core, from the mean.
    pub tasks_per_sec: f64,
}

/// The per-task overhead report.
#[derive(Debug, Clone, Serialize)]
pub struct OverheadReport {
    /// Tasks run each way.
    pub iterations: usize,
    /// Our executor.
    pub wasq: Timings,
    /// The naive embedding.
    pub naive: Timings,
    /// wasq median / naive median (the target is at most 1/3).
    pub ratio: f64,
}

/// The outbound HTTP report: one local GET per task through the sandbox
/// against the same GET made by the host with hyper.
#[derive(Debug, Clone, Serialize)]
pub struct HttpReport {
    /// Requests made each way.
    pub iterations: usize,
    /// A task of the `http:get` handler, whose GET goes through wasi:http
    /// and the host's checks.
    pub wasq: Timings,
    /// The same GET from the host: a new connection and one request with
    /// hyper, as the host makes for the guest.
    pub host: Timings,
    /// wasq median / host median (the target is at most 1.5).
    pub ratio: f64,
}

/// The start-up report.
#[derive(Debug, Clone, Serialize)]
pub struct StartupReport {
    /// Task types loaded.
    pub task_types: usize,
    /// Load time with an empty cache, in milliseconds.
    pub cold_ms: f64,
    /// Load time with a filled cache, in milliseconds.
    pub warm_ms: f64,
}

/// Runs `iterations` no-op tasks each way, alternating in rounds so both
/// see the same machine noise. Both ways compile the module once, before
/// anything is timed, through the compiled-code cache in `cache_dir` (the
/// default cache when `None`), so only per-task costs are measured.
pub async fn overhead(
    module: &Path,
    iterations: usize,
    cache_dir: Option<&Path>,
) -> Result<OverheadReport, RuntimeError> {
    let mut text = String::from("[runtime]\nmax_sandboxes = 4\n");
    if let Some(dir) = cache_dir {
        text.push_str(&format!("cache_dir = {:?}\n", dir.display().to_string()));
    }
    text.push_str(&format!(
        "[tasks.noop]\nmodule = {:?}\n",
        module.display().to_string()
    ));
    let config = Config::parse(&text, None)?;
    let runtime = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || Runtime::load(&config))
            .await
            .map_err(|e| RuntimeError::Engine(format!("loading the module: {e}")))??
    };
    let naive = {
        let (module, cache) = (module.to_owned(), config.cache_dir());
        tokio::task::spawn_blocking(move || Naive::new(&module, cache))
            .await
            .map_err(|e| RuntimeError::Engine(format!("loading the module: {e}")))??
    };
    let mut ours = Vec::with_capacity(iterations);
    let mut theirs = Vec::with_capacity(iterations);
    // Warm both up (page faults, lazy init) before measuring.
    for _ in 0..20 {
        runtime
            .execute(Invocation::new("noop", b"{}".to_vec()))
            .await;
        naive.run().await?;
    }
    let rounds = 10;
    for _ in 0..rounds {
        for _ in 0..iterations / rounds {
            let started = Instant::now();
            let run = runtime
                .execute(Invocation::new("noop", b"{}".to_vec()))
                .await;
            ours.push(started.elapsed());
            if let Some(failure) = run.outcome.failure() {
                return Err(RuntimeError::Engine(format!(
                    "the no-op task failed: {failure}"
                )));
            }
        }
        for _ in 0..iterations / rounds {
            let started = Instant::now();
            naive.run().await?;
            theirs.push(started.elapsed());
        }
    }
    let wasq = timings(&mut ours);
    let naive = timings(&mut theirs);
    Ok(OverheadReport {
        iterations: ours.len(),
        ratio: wasq.median_us / naive.median_us,
        wasq,
        naive,
    })
}

/// Runs `iterations` tasks of `module` (a handler that GETs the payload's
/// `url`, like `examples-wasm/http-get`) against a server on loopback, and
/// the same GET made by the host, alternating in rounds.
pub async fn http_overhead(
    module: &Path,
    iterations: usize,
    cache_dir: Option<&Path>,
) -> Result<HttpReport, RuntimeError> {
    let err = |what: &str, e: &dyn std::fmt::Display| RuntimeError::Engine(format!("{what}: {e}"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| err("binding the bench's server", &e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| err("binding the bench's server", &e))?;
    let app = axum::Router::new().route("/", axum::routing::get(|| async { "x".repeat(512) }));
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let mut text = format!(
        "[runtime]\nmax_sandboxes = 4\n[tasks.get]\nmodule = {:?}\nhttp = [\"http://{addr}\"]\n",
        module.display().to_string()
    );
    if let Some(dir) = cache_dir {
        text = text.replace(
            "[tasks.get]",
            &format!("cache_dir = {:?}\n[tasks.get]", dir.display().to_string()),
        );
    }
    let config = Config::parse(&text, None)?;
    let runtime = tokio::task::spawn_blocking(move || Runtime::load(&config))
        .await
        .map_err(|e| err("loading the module", &e))??;
    let payload = format!(r#"{{"url": "http://{addr}/"}}"#).into_bytes();
    let ours_once = || async {
        let run = runtime
            .execute(Invocation::new("get", payload.clone()))
            .await;
        match run.outcome {
            super::Outcome::Success { result } if result.starts_with(b"200 ") => Ok(()),
            other => Err(RuntimeError::Engine(format!(
                "the http:get task failed: {other:?}"
            ))),
        }
    };
    let host_once = || async move {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| err("host GET", &e))?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(wasmtime_wasi_http::io::TokioIo::new(stream))
                .await
                .map_err(|e| err("host GET", &e))?;
        let connection = tokio::spawn(connection);
        let request = http::Request::get("/")
            .header(http::header::HOST, addr.to_string())
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .map_err(|e| err("host GET", &e))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| err("host GET", &e))?;
        use http_body_util::BodyExt as _;
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| err("host GET", &e))?
            .to_bytes();
        drop(sender);
        let _ = connection.await;
        if body.len() == 512 {
            Ok(())
        } else {
            Err(RuntimeError::Engine("host GET: short body".into()))
        }
    };
    for _ in 0..20 {
        ours_once().await?;
        host_once().await?;
    }
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    let rounds = 10;
    for _ in 0..rounds {
        for _ in 0..iterations / rounds {
            let started = Instant::now();
            ours_once().await?;
            ours.push(started.elapsed());
        }
        for _ in 0..iterations / rounds {
            let started = Instant::now();
            host_once().await?;
            theirs.push(started.elapsed());
        }
    }
    server.abort();
    let wasq = timings(&mut ours);
    let host = timings(&mut theirs);
    Ok(HttpReport {
        iterations: ours.len(),
        ratio: wasq.median_us / host.median_us,
        wasq,
        host,
    })
}

/// Loads `config` twice with a fresh cache dir: cold, then warm.
pub fn startup(config: &Config) -> Result<StartupReport, RuntimeError> {
    let cache = tempdir();
    let mut config = config.clone();
    config.runtime.cache_dir = Some(cache.clone());
    let result = cold_and_warm(&config);
    let _ = std::fs::remove_dir_all(&cache);
    let (cold, warm) = result?;
    Ok(StartupReport {
        task_types: config.tasks.len(),
        cold_ms: cold.as_secs_f64() * 1e3,
        warm_ms: warm.as_secs_f64() * 1e3,
    })
}

/// Start-up of a config with one task type of `module`.
pub fn module_startup(module: &Path) -> Result<StartupReport, RuntimeError> {
    let text = format!(
        "[tasks.noop]\nmodule = {:?}\n",
        module.display().to_string()
    );
    startup(&Config::parse(&text, None)?)
}

fn cold_and_warm(config: &Config) -> Result<(Duration, Duration), RuntimeError> {
    let started = Instant::now();
    drop(Runtime::load(config)?);
    let cold = started.elapsed();
    let started = Instant::now();
    drop(Runtime::load(config)?);
    Ok((cold, started.elapsed()))
}

fn tempdir() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("wasq-bench-{}", uuid::Uuid::new_v4()))
}

fn timings(samples: &mut [Duration]) -> Timings {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e6;
    let mean = samples.iter().sum::<Duration>().as_secs_f64() / samples.len() as f64;
    Timings {
        median_us: at(0.5),
        p99_us: at(0.99),
        tasks_per_sec: 1.0 / mean,
    }
}

/// The baseline: how a first embedding of wasmtime usually looks.
struct Naive {
    engine: wasmtime::Engine,
    component: Component,
    /// The component imports wasi:http (a Python or JavaScript handler
    /// does), so this embedding must link it too.
    http: bool,
}

impl Naive {
    /// Compiles the module for a default engine, or loads it from the
    /// cache (under that engine's own key).
    fn new(module: &Path, cache_dir: Option<std::path::PathBuf>) -> Result<Self, RuntimeError> {
        let err = |e: wasmtime::Error| RuntimeError::Engine(format!("naive embedding: {e:#}"));
        let engine = engine::build_on_demand().map_err(err)?;
        let bytes = std::fs::read(module)
            .map_err(|e| RuntimeError::Engine(format!("cannot read {}: {e}", module.display())))?;
        let cache = ComponentCache::new(cache_dir, &engine);
        let (component, _) = cache
            .load(&engine, &ComponentCache::module_hash(&bytes), &bytes)
            .map_err(err)?;
        let http = component
            .component_type()
            .imports(&engine)
            .any(|(name, _)| name.starts_with("wasi:http/"));
        Ok(Self {
            engine,
            component,
            http,
        })
    }

    async fn run(&self) -> Result<(), RuntimeError> {
        let err = |e: wasmtime::Error| RuntimeError::Engine(format!("naive run: {e:#}"));
        let mut linker = Linker::new(&self.engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(err)?;
        if self.http {
            wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).map_err(err)?;
        }
        Handler::add_to_linker::<SandboxState, HasSelf<SandboxState>>(&mut linker, |s| s)
            .map_err(err)?;
        let journal = Journal::new(
            TaskTags {
                id: "bench".into(),
                task_type: "noop".into(),
                queue: "default".into(),
            },
            1 << 16,
        );
        let grants = Arc::new(Grants::default());
        let state = SandboxState {
            wasi: grants
                .wasi_ctx(&journal, std::time::SystemTime::now())
                .map_err(err)?,
            table: ResourceTable::new(),
            limiter: MemoryLimiter {
                limit: u64::MAX,
                peak: 0,
            },
            journal,
            grants,
            fs: Default::default(),
            follow_ups: Default::default(),
            task_id: "bench".into(),
            task_type: "noop".into(),
            queue: "default".into(),
            max_payload: u64::MAX,
            deadline: Instant::now() + Duration::from_secs(60),
            cancel: None,
            http: wasmtime_wasi_http::WasiHttpCtx::new(),
            outbound: Outbound::new(
                Arc::new(HttpPolicy::none()),
                Instant::now() + Duration::from_secs(60),
                "bench",
                "noop",
            ),
        };
        let mut store = Store::new(&self.engine, state);
        let handler = Handler::instantiate_async(&mut store, &self.component, &linker)
            .await
            .map_err(err)?;
        let task = Task {
            id: "bench".into(),
            task_type: "noop".into(),
            queue: "default".into(),
            payload: b"{}".to_vec(),
            retried: 0,
            max_retry: 0,
            deadline_ms: None,
            headers: Vec::new(),
            group: None,
            members: Vec::new(),
        };
        match handler.call_handle(&mut store, &task).await.map_err(err)? {
            Ok(_) => Ok(()),
            Err(e) => Err(RuntimeError::Engine(format!(
                "the naive no-op task failed: {e:?}"
            ))),
        }
    }
}
