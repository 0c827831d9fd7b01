//! The web dashboard: one page (`dash.html`, embedded in the binary) and
//! the JSON API it polls. The API's shapes are those of the CLI's `--json`
//! output (`stats`, `task ls`, `task inspect`, `server ls`, `queue ls
//! --cluster`, `module ls`).
//!
//! | method | path | does |
//! | --- | --- | --- |
//! | GET | `/api/overview` | queues with counts, latency and pause state; cluster state; read-only flag |
//! | GET | `/api/queues/{q}/tasks?state=&page=&size=` | a page of a queue's tasks in one state |
//! | GET | `/api/queues/{q}/tasks/{id}` | one task |
//! | POST | `/api/queues/{q}/tasks/{id}/{run,delete,archive}` | move one task |
//! | POST | `/api/queues/{q}/all/{run,delete,archive}?state=` | move every task of a state |
//! | POST | `/api/tasks/{id}/cancel` | cancel a running task |
//! | POST | `/api/queues/{q}/{pause,resume}` | pause or resume a queue |
//! | GET | `/api/servers`, `/api/cluster`, `/api/modules` | servers, where queues live, task types |
//!
//! With `--read-only` every POST answers 403 and the page hides its actions.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use wasq::TaskState;
use wasq::broker::{Broker, Move};
use wasq::config::Config;

const PAGE: &str = include_str!("dash.html");

struct App {
    broker: Broker,
    config: Option<Config>,
    read_only: bool,
}

type Shared = Arc<App>;

/// An API error: a status and a message, sent as `{"error": "..."}`.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

impl From<wasq::broker::BrokerError> for ApiError {
    fn from(e: wasq::broker::BrokerError) -> Self {
        let status = match e {
            wasq::broker::BrokerError::Refused(_) => StatusCode::CONFLICT,
            _ => StatusCode::BAD_GATEWAY,
        };
        ApiError(status, e.to_string())
    }
}

type ApiResult = Result<Json<serde_json::Value>, ApiError>;

fn to_json(v: impl serde::Serialize) -> ApiResult {
    serde_json::to_value(v)
        .map(Json)
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// Serves until Ctrl-C.
pub async fn serve(
    broker: Broker,
    config: Option<Config>,
    listen: SocketAddr,
    read_only: bool,
) -> anyhow::Result<()> {
    let app = Arc::new(App {
        broker,
        config,
        read_only,
    });
    let router = Router::new()
        .route("/", get(page))
        .route("/api/overview", get(overview))
        .route("/api/queues/{queue}/tasks", get(tasks))
        .route("/api/queues/{queue}/tasks/{id}", get(task))
        .route("/api/queues/{queue}/tasks/{id}/{action}", post(move_one))
        .route("/api/queues/{queue}/all/{action}", post(move_all))
        .route("/api/queues/{queue}/{action}", post(pause_resume))
        .route("/api/tasks/{id}/cancel", post(cancel))
        .route("/api/servers", get(servers))
        .route("/api/cluster", get(cluster))
        .route("/api/modules", get(modules))
        .with_state(app);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
    eprintln!(
        "wasq dash: http://{listen}/{}",
        if read_only { " (read-only)" } else { "" }
    );
    axum::serve(listener, router)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

async fn page() -> impl IntoResponse {
    ([(header::CACHE_CONTROL, "no-store")], Html(PAGE))
}

async fn overview(State(app): State<Shared>) -> ApiResult {
    let mut queues = Vec::new();
    for q in app.broker.queues().await? {
        let stats = app.broker.stats(&q).await?;
        let latency = app.broker.latency(&q).await?;
        let mut row = serde_json::to_value(stats)
            .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        row["latency_secs"] = serde_json::json!(latency);
        queues.push(row);
    }
    let cluster = app.broker.cluster_info().await?;
    to_json(serde_json::json!({
        "queues": queues,
        "cluster": cluster,
        "read_only": app.read_only,
        "now": wasq::broker::now_secs(),
    }))
}

#[derive(Deserialize)]
struct TaskQuery {
    state: Option<String>,
    page: Option<usize>,
    size: Option<usize>,
}

fn parse_state(s: &str) -> Result<TaskState, ApiError> {
    s.parse().map_err(|e| ApiError(StatusCode::BAD_REQUEST, e))
}

fn parse_move(s: &str) -> Result<Move, ApiError> {
    Ok(match s {
        "run" => Move::Run,
        "delete" => Move::Delete,
        "archive" => Move::Archive,
        other => {
            return Err(ApiError(
                StatusCode::NOT_FOUND,
                format!("unknown action {other:?}"),
            ));
        }
    })
}

fn writable(app: &App) -> Result<(), ApiError> {
    if app.read_only {
        Err(ApiError(
            StatusCode::FORBIDDEN,
            "the dashboard is read-only".into(),
        ))
    } else {
        Ok(())
    }
}

async fn tasks(
    State(app): State<Shared>,
    Path(queue): Path<String>,
    Query(q): Query<TaskQuery>,
) -> ApiResult {
    let state = parse_state(q.state.as_deref().unwrap_or("pending"))?;
    let list = app
        .broker
        .list_tasks(
            &queue,
            state,
            q.page.unwrap_or(0),
            q.size.unwrap_or(20).min(200),
        )
        .await?;
    to_json(list)
}

async fn task(State(app): State<Shared>, Path((queue, id)): Path<(String, String)>) -> ApiResult {
    match app.broker.task(&queue, &id).await? {
        Some(t) => to_json(t),
        None => Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no task {id} in queue {queue}"),
        )),
    }
}

async fn move_one(
    State(app): State<Shared>,
    Path((queue, id, action)): Path<(String, String, String)>,
) -> ApiResult {
    writable(&app)?;
    let action = parse_move(&action)?;
    let Some(t) = app.broker.task(&queue, &id).await? else {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no task {id} in queue {queue}"),
        ));
    };
    let state = parse_state(&t.state)?;
    let moved = app.broker.move_tasks(&queue, state, action, &[id]).await?;
    to_json(serde_json::json!({ "moved": moved }))
}

async fn move_all(
    State(app): State<Shared>,
    Path((queue, action)): Path<(String, String)>,
    Query(q): Query<TaskQuery>,
) -> ApiResult {
    writable(&app)?;
    let action = parse_move(&action)?;
    let state = parse_state(q.state.as_deref().unwrap_or(""))?;
    let moved = app.broker.move_all(&queue, state, action).await?;
    to_json(serde_json::json!({ "moved": moved }))
}

async fn pause_resume(
    State(app): State<Shared>,
    Path((queue, action)): Path<(String, String)>,
) -> ApiResult {
    writable(&app)?;
    match action.as_str() {
        "pause" => app.broker.pause(&queue).await?,
        "resume" => app.broker.resume(&queue).await?,
        other => {
            return Err(ApiError(
                StatusCode::NOT_FOUND,
                format!("unknown action {other:?}"),
            ));
        }
    }
    to_json(serde_json::json!({ "queue": queue, "paused": action == "pause" }))
}

async fn cancel(State(app): State<Shared>, Path(id): Path<String>) -> ApiResult {
    writable(&app)?;
    app.broker.cancel(std::slice::from_ref(&id)).await?;
    to_json(serde_json::json!({ "cancel_sent": id }))
}

async fn servers(State(app): State<Shared>) -> ApiResult {
    to_json(app.broker.servers().await?)
}

async fn cluster(State(app): State<Shared>) -> ApiResult {
    let mut out = Vec::new();
    for q in app.broker.queues().await? {
        let loc = app.broker.locate(&q).await?;
        out.push(serde_json::json!({
            "queue": q,
            "slot": loc.as_ref().map(|l| l.slot),
            "nodes": loc.as_ref().map(|l| &l.nodes),
        }));
    }
    to_json(out)
}

async fn modules(State(app): State<Shared>) -> ApiResult {
    let Some(config) = &app.config else {
        return to_json(Vec::<()>::new());
    };
    let rows = super::super::module::rows(config, Some(&app.broker))
        .await
        .map_err(|e| ApiError(StatusCode::BAD_GATEWAY, format!("{e:#}")))?;
    to_json(rows)
}
