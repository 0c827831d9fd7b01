//! The worker's Prometheus metrics (the `prometheus-client` crate) and the
//! `/metrics` and `/healthz` endpoints (`[worker] metrics = "ip:port"`).
//!
//! | metric | type | labels |
//! | --- | --- | --- |
//! | `wasq_tasks_total` | counter | queue, task_type, outcome (`ok` or the failure's cause), disposition |
//! | `wasq_task_duration_seconds` | histogram | queue, task_type |
//! | `wasq_task_fuel` | histogram | task_type |
//! | `wasq_task_memory_peak_bytes` | histogram | task_type |
//! | `wasq_sandbox_memory_peak_bytes` | gauge (largest seen) | task_type |
//! | `wasq_queue_tasks` | gauge | queue, state |
//! | `wasq_queue_latency_seconds` | gauge (age of the oldest pending task) | queue |
//! | `wasq_queue_inflight` / `wasq_queue_concurrency_limit` | gauge | queue |
//! | `wasq_queue_rate_per_second` / `wasq_queue_rate_tokens` | gauge (the cluster-wide rate, the tokens in its bucket) | queue |
//! | `wasq_queue_max_running` | gauge (the cluster-wide cap; `wasq_queue_tasks{state="active"}` is its use) | queue |
//! | `wasq_queue_limit_deferred_claims` | gauge (task claims the limit deferred, all workers, from Redis) | queue, limit (`rate`, `max_running`) |
//! | `wasq_queue_limit_held_total` | counter (claims of this worker the limit cut short) | queue, limit |
//! | `wasq_redis_errors_total`, `wasq_redis_reconnects_total` | counter | |
//! | `wasq_http_requests_total` | counter | task_type, host (the `http` entry that admitted it, or `none`), outcome (`ok`, `denied`, `error`) |
//! | `wasq_http_request_duration_seconds` | histogram | task_type, host |
//!
//! Queue gauges are read from Redis when `/metrics` is scraped.
//!
//! Task types are chosen by whoever enqueues, and every label set lives as
//! long as the worker: only the task types of the config's `[tasks]` get
//! their own `task_type` label ([`Metrics::with_task_types`]); every other
//! type is counted as [`OTHER`].

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::{Shared, TaskEvent};

/// The `task_type` label of task types the config does not list.
pub(crate) const OTHER: &str = "other";

/// Which task types get their own label.
#[derive(Debug, Default)]
pub(crate) struct Labelled {
    /// These, and any other is [`OTHER`]; `None`: every task type (until
    /// [`Metrics::with_task_types`] is called).
    only: std::sync::RwLock<Option<HashSet<String>>>,
}

impl Labelled {
    /// Labels only `names` by name.
    pub(crate) fn only(names: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self {
            only: std::sync::RwLock::new(Some(names.into_iter().map(Into::into).collect())),
        }
    }

    /// Labels `names` by name too (task types a reload added). Names are
    /// never dropped: series already exported keep their label.
    pub(crate) fn add(&self, names: impl IntoIterator<Item = impl Into<String>>) {
        if let Some(only) = self
            .only
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
        {
            only.extend(names.into_iter().map(Into::into));
        }
    }

    /// `task_type` itself if it may be a label, else [`OTHER`].
    pub(crate) fn label<'a>(&self, task_type: &'a str) -> &'a str {
        match &*self.only.read().unwrap_or_else(|e| e.into_inner()) {
            Some(names) if !names.contains(task_type) => OTHER,
            _ => task_type,
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TaskLabels {
    queue: String,
    task_type: String,
    outcome: String,
    disposition: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueTypeLabels {
    queue: String,
    task_type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    task_type: String,
    host: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpHostLabels {
    task_type: String,
    host: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModuleLabels {
    task_type: String,
    module: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SwapLabels {
    task_type: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TypeLabels {
    task_type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabels {
    queue: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLimitLabels {
    queue: String,
    limit: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueStateLabels {
    queue: String,
    state: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// The worker's metrics.
pub(crate) struct Metrics {
    registry: Registry,
    tasks: Family<TaskLabels, Counter>,
    duration: Family<QueueTypeLabels, Histogram>,
    fuel: Family<TypeLabels, Histogram>,
    memory: Family<TypeLabels, Histogram>,
    memory_peak: Family<TypeLabels, Gauge<i64, AtomicI64>>,
    queue_tasks: Family<QueueStateLabels, Gauge>,
    latency: Family<QueueLabels, FloatGauge>,
    inflight: Family<QueueLabels, Gauge>,
    limit: Family<QueueLabels, Gauge>,
    rate: Family<QueueLabels, FloatGauge>,
    rate_tokens: Family<QueueLabels, FloatGauge>,
    max_running: Family<QueueLabels, Gauge>,
    limit_deferred: Family<QueueLimitLabels, Gauge>,
    limit_held: Family<QueueLimitLabels, Counter>,
    redis_errors: Counter,
    redis_reconnects: Counter,
    http_requests: Family<HttpLabels, Counter>,
    http_duration: Family<HttpHostLabels, Histogram>,
    module: Family<ModuleLabels, Gauge>,
    module_swaps: Family<SwapLabels, Counter>,
    /// When Redis last answered, Unix ms (for `/healthz`).
    redis_ok_at: AtomicU64,
    /// The task types labelled by name.
    labelled: Labelled,
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let mut registry = Registry::with_prefix("wasq");
        let tasks = Family::<TaskLabels, Counter>::default();
        registry.register(
            "tasks",
            "Task runs by queue, type, outcome (ok or the failure's cause) and what was done with the task",
            tasks.clone(),
        );
        let duration = Family::<QueueTypeLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.000_1, 4.0, 12))
        });
        registry.register(
            "task_duration_seconds",
            "Time in the sandbox per task run",
            duration.clone(),
        );
        let fuel = Family::<TypeLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(1_000.0, 10.0, 9))
        });
        registry.register(
            "task_fuel",
            "Fuel (instructions) per task run",
            fuel.clone(),
        );
        let memory = Family::<TypeLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(65_536.0, 4.0, 10))
        });
        registry.register(
            "task_memory_peak_bytes",
            "Largest linear memory per task run",
            memory.clone(),
        );
        let memory_peak = Family::<TypeLabels, Gauge<i64, AtomicI64>>::default();
        registry.register(
            "sandbox_memory_peak_bytes",
            "Largest linear memory any run of the type had since the worker started",
            memory_peak.clone(),
        );
        let queue_tasks = Family::<QueueStateLabels, Gauge>::default();
        registry.register(
            "queue_tasks",
            "Tasks in each queue by state",
            queue_tasks.clone(),
        );
        let latency = Family::<QueueLabels, FloatGauge>::default();
        registry.register(
            "queue_latency_seconds",
            "Age of the oldest pending task of each queue",
            latency.clone(),
        );
        let inflight = Family::<QueueLabels, Gauge>::default();
        registry.register(
            "queue_inflight",
            "Tasks of each queue running on this worker",
            inflight.clone(),
        );
        let limit = Family::<QueueLabels, Gauge>::default();
        registry.register(
            "queue_concurrency_limit",
            "Most tasks of each queue this worker runs at once",
            limit.clone(),
        );
        let rate = Family::<QueueLabels, FloatGauge>::default();
        registry.register(
            "queue_rate_per_second",
            "Task starts a second each queue's rate allows, across all workers",
            rate.clone(),
        );
        let rate_tokens = Family::<QueueLabels, FloatGauge>::default();
        registry.register(
            "queue_rate_tokens",
            "Task starts each queue's rate would allow at once now (tokens in its bucket)",
            rate_tokens.clone(),
        );
        let max_running = Family::<QueueLabels, Gauge>::default();
        registry.register(
            "queue_max_running",
            "Most tasks of each queue running at once across all workers",
            max_running.clone(),
        );
        let limit_deferred = Family::<QueueLimitLabels, Gauge>::default();
        registry.register(
            "queue_limit_deferred_claims",
            "Task claims each limit deferred, across all workers (a task deferred twice counts twice)",
            limit_deferred.clone(),
        );
        let limit_held = Family::<QueueLimitLabels, Counter>::default();
        registry.register(
            "queue_limit_held",
            "Claims of this worker that a queue's limit cut short",
            limit_held.clone(),
        );
        let redis_errors = Counter::default();
        registry.register(
            "redis_errors",
            "Redis commands that failed",
            redis_errors.clone(),
        );
        let redis_reconnects = Counter::default();
        registry.register(
            "redis_reconnects",
            "Connections re-established after a failure",
            redis_reconnects.clone(),
        );
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "http_requests",
            "Outbound HTTP requests of handlers by task type, admitting http entry and outcome",
            http_requests.clone(),
        );
        let http_duration = Family::<HttpHostLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 4.0, 10))
        });
        registry.register(
            "http_request_duration_seconds",
            "Time from an outbound request to its response's head",
            http_duration.clone(),
        );
        let module = Family::<ModuleLabels, Gauge>::default();
        registry.register(
            "module",
            "1 for the module version (SHA-256) each registry task type runs on this worker",
            module.clone(),
        );
        let module_swaps = Family::<SwapLabels, Counter>::default();
        registry.register(
            "module_swaps",
            "Registry versions taken (installed) or refused (failed to fetch, compile or instantiate), by task type",
            module_swaps.clone(),
        );
        Self {
            registry,
            tasks,
            duration,
            fuel,
            memory,
            memory_peak,
            queue_tasks,
            latency,
            inflight,
            limit,
            rate,
            rate_tokens,
            max_running,
            limit_deferred,
            limit_held,
            redis_errors,
            redis_reconnects,
            http_requests,
            http_duration,
            module,
            module_swaps,
            redis_ok_at: AtomicU64::new(now_ms()),
            labelled: Labelled::default(),
        }
    }

    /// Labels only `task_types` (the config's `[tasks]`) by name; every
    /// other task type is labelled [`OTHER`], so producers cannot grow the
    /// label sets without bound.
    pub(crate) fn with_task_types(
        mut self,
        task_types: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        self.labelled = Labelled::only(task_types);
        self
    }

    /// Labels `task_types` by name too (a reload added them).
    pub(crate) fn add_task_types(&self, task_types: impl IntoIterator<Item = impl Into<String>>) {
        self.labelled.add(task_types);
    }

    /// Records the outbound HTTP requests of one run of `task_type`.
    pub(crate) fn http(&self, task_type: &str, calls: &[crate::runtime::HttpCall]) {
        let task_type = self.labelled.label(task_type);
        for call in calls {
            let host = call.grant.clone().unwrap_or_else(|| "none".to_owned());
            self.http_requests
                .get_or_create(&HttpLabels {
                    task_type: task_type.to_owned(),
                    host: host.clone(),
                    outcome: call.outcome.to_owned(),
                })
                .inc();
            if call.outcome == "ok" {
                self.http_duration
                    .get_or_create(&HttpHostLabels {
                        task_type: task_type.to_owned(),
                        host,
                    })
                    .observe(call.duration.as_secs_f64());
            }
        }
    }

    /// Records one finished task run.
    pub(crate) fn task(&self, event: &TaskEvent) {
        let disposition = event.disposition.as_str().to_owned();
        let task_type = self.labelled.label(&event.task_type);
        self.tasks
            .get_or_create(&TaskLabels {
                queue: event.queue.clone(),
                task_type: task_type.to_owned(),
                outcome: event.cause.clone(),
                disposition,
            })
            .inc();
        if event.started_at_ms == 0 {
            return;
        }
        self.duration
            .get_or_create(&QueueTypeLabels {
                queue: event.queue.clone(),
                task_type: task_type.to_owned(),
            })
            .observe(event.micros as f64 / 1e6);
        let by_type = TypeLabels {
            task_type: task_type.to_owned(),
        };
        if let Some(fuel) = event.fuel {
            self.fuel.get_or_create(&by_type).observe(fuel as f64);
        }
        self.memory
            .get_or_create(&by_type)
            .observe(event.memory_peak as f64);
        self.memory_peak
            .get_or_create(&by_type)
            .inner()
            .fetch_max(event.memory_peak as i64, Ordering::Relaxed);
    }

    /// A claim of `queue` was cut short by a limit.
    pub(crate) fn limit_held(&self, queue: &str, held: crate::broker::Held) {
        let limit = match held {
            crate::broker::Held::Rate(_) => "rate",
            crate::broker::Held::Running => "max_running",
        };
        self.limit_held
            .get_or_create(&QueueLimitLabels {
                queue: queue.to_owned(),
                limit: limit.to_owned(),
            })
            .inc();
    }

    /// `task_type` now runs `module` (replacing `old`, "" for none).
    pub(crate) fn module_installed(&self, task_type: &str, module: &str, old: &str) {
        if !old.is_empty() {
            self.module.remove(&ModuleLabels {
                task_type: task_type.to_owned(),
                module: old.to_owned(),
            });
        }
        self.module
            .get_or_create(&ModuleLabels {
                task_type: task_type.to_owned(),
                module: module.to_owned(),
            })
            .set(1);
        self.swap(task_type, "installed");
    }

    /// A registry version of `task_type` was not taken.
    pub(crate) fn module_refused(&self, task_type: &str) {
        self.swap(task_type, "refused");
    }

    fn swap(&self, task_type: &str, result: &str) {
        self.module_swaps
            .get_or_create(&SwapLabels {
                task_type: task_type.to_owned(),
                result: result.to_owned(),
            })
            .inc();
    }

    /// A Redis command failed.
    pub(crate) fn redis_error(&self) {
        self.redis_errors.inc();
    }

    /// A connection was re-established.
    pub(crate) fn redis_reconnect(&self) {
        self.redis_reconnects.inc();
    }

    /// Redis answered just now.
    pub(crate) fn redis_ok(&self) {
        self.redis_ok_at.store(now_ms(), Ordering::Relaxed);
    }

    /// How long since Redis last answered.
    pub(crate) fn since_redis_ok(&self) -> Duration {
        Duration::from_millis(now_ms().saturating_sub(self.redis_ok_at.load(Ordering::Relaxed)))
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

/// Refreshes the queue gauges from Redis and the semaphores, then encodes
/// every metric in the Prometheus text format.
async fn render(shared: &Shared) -> String {
    let m = &shared.metrics;
    for queue in &shared.queues {
        let name = queue.keys.name().to_owned();
        let by_queue = QueueLabels {
            queue: name.clone(),
        };
        m.limit.get_or_create(&by_queue).set(queue.cap() as i64);
        m.inflight
            .get_or_create(&by_queue)
            .set(queue.cap() as i64 - queue.slots.available_permits() as i64);
        let limited = queue.limits().any();
        let read = async {
            let stats = shared.broker.stats(&name).await?;
            let latency = shared.broker.latency(&name).await?;
            let limits = if limited {
                Some(shared.broker.limit_status(&name).await?)
            } else {
                None
            };
            Ok::<_, crate::broker::BrokerError>((stats, latency, limits))
        };
        match tokio::time::timeout(Duration::from_secs(2), read).await {
            Ok(Ok((stats, latency, limits))) => {
                m.redis_ok();
                if let Some(status) = limits {
                    render_limits(m, queue, &status);
                }
                for (state, n) in [
                    ("pending", stats.pending),
                    ("active", stats.active),
                    ("scheduled", stats.scheduled),
                    ("retry", stats.retry),
                    ("archived", stats.archived),
                    ("completed", stats.completed),
                ] {
                    m.queue_tasks
                        .get_or_create(&QueueStateLabels {
                            queue: name.clone(),
                            state: state.into(),
                        })
                        .set(n as i64);
                }
                m.latency.get_or_create(&by_queue).set(latency);
            }
            _ => m.redis_error(),
        }
    }
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &m.registry) {
        out = format!("# encoding failed: {e}\n");
    }
    out
}

/// The gauges of a queue's limits: this worker's config, and their use
/// as Redis holds it.
fn render_limits(m: &Metrics, queue: &super::QueueState, status: &crate::broker::LimitStatus) {
    let by_queue = QueueLabels {
        queue: queue.keys.name().to_owned(),
    };
    if let Some(rate) = queue.limits().rate {
        m.rate.get_or_create(&by_queue).set(rate.per_second());
        m.rate_tokens
            .get_or_create(&by_queue)
            .set(status.tokens.unwrap_or(0.0));
    }
    if let Some(max) = queue.limits().max_running {
        m.max_running.get_or_create(&by_queue).set(max as i64);
    }
    for (limit, n) in [
        ("rate", status.deferred_rate),
        ("max_running", status.deferred_running),
    ] {
        m.limit_deferred
            .get_or_create(&QueueLimitLabels {
                queue: by_queue.queue.clone(),
                limit: limit.into(),
            })
            .set(n as i64);
    }
}

/// Serves `/metrics` and `/healthz` on `addr` until the task is aborted.
pub(crate) async fn serve(shared: Arc<Shared>, addr: SocketAddr) {
    use axum::http::{StatusCode, header};
    use axum::routing::get;
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("cannot serve metrics on {addr}: {e}");
            return;
        }
    };
    tracing::info!("metrics on http://{addr}/metrics, health on http://{addr}/healthz");
    let metrics_state = shared.clone();
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let shared = metrics_state.clone();
                async move {
                    (
                        [(
                            header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        render(&shared).await,
                    )
                }
            }),
        )
        .route(
            "/healthz",
            get(move || {
                let shared = shared.clone();
                async move {
                    let since = shared.metrics.since_redis_ok();
                    let healthy = since < Duration::from_secs(30);
                    let body = serde_json::json!({
                        "status": if healthy { "ok" } else { "unhealthy" },
                        "redis_last_ok_secs": since.as_secs_f64(),
                        "stopping": shared.is_stopping(),
                    });
                    let code = if healthy {
                        StatusCode::OK
                    } else {
                        StatusCode::SERVICE_UNAVAILABLE
                    };
                    (code, axum::Json(body))
                }
            }),
        );
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!("the metrics server stopped: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(task_type: &str) -> TaskEvent {
        TaskEvent::done_for_test(task_type)
    }

    fn encoded(metrics: &Metrics) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &metrics.registry).unwrap();
        out
    }

    #[test]
    fn task_types_not_configured_are_labelled_other() {
        let metrics = Metrics::new().with_task_types(["email"]);
        metrics.task(&event("email"));
        for n in 0..100 {
            metrics.task(&event(&format!("made-up:{n}")));
        }
        let text = encoded(&metrics);
        assert!(!text.contains("made-up"), "{text}");
        for family in [
            "wasq_tasks_total",
            "wasq_task_duration_seconds_count",
            "wasq_task_fuel_count",
            "wasq_task_memory_peak_bytes_count",
            "wasq_sandbox_memory_peak_bytes",
        ] {
            let series = |task_type: &str| {
                text.lines()
                    .filter(|l| {
                        l.starts_with(&format!("{family}{{"))
                            && l.contains(&format!("task_type=\"{task_type}\""))
                    })
                    .count()
            };
            assert_eq!(series("email"), 1, "{family}: {text}");
            assert_eq!(series(OTHER), 1, "{family}: {text}");
        }
        let other = text
            .lines()
            .find(|l| l.starts_with("wasq_tasks_total{") && l.contains("task_type=\"other\""))
            .unwrap();
        assert!(other.ends_with(" 100"), "{other}");
    }

    #[test]
    fn labelled_keeps_configured_names() {
        let only = Labelled::only(["a"]);
        assert_eq!(only.label("a"), "a");
        assert_eq!(only.label("b"), OTHER);
        assert_eq!(only.label(""), OTHER);
        assert_eq!(Labelled::default().label("b"), "b");
        // A reload adds a type: it is labelled by name from then on.
        only.add(["b"]);
        assert_eq!(only.label("b"), "b");
        assert_eq!(only.label("c"), OTHER);
    }
}
