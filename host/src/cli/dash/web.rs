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
//!
//! ## Who may use it
//!
//! Every request passes [`guard`] before its handler:
//!
//! - **Host** must name the listen address (any loopback name, `localhost`
//!   included, when it listens on loopback; an IP address of the machine
//!   when it listens on all of them), so a page whose DNS name was rebound
//!   to this address (DNS rebinding) gets 403.
//! - **Origin**, when the browser sends one, must be the dashboard's own
//!   (`http://` and the Host): 403 otherwise.
//! - **`--auth-token`**, when set, must come with every request, the page
//!   included: `Authorization: Bearer TOKEN`, or the session cookie that
//!   `/?token=TOKEN` sets (HttpOnly, SameSite=Strict; it names a random
//!   session of this process, not the token). 401 otherwise.
//! - **Every POST** carries `X-Wasq-Token` with the token embedded in the
//!   page when it was served (random per start), or the bearer token. A
//!   custom header makes a browser ask first (a CORS preflight), and the
//!   dashboard answers no CORS headers, so another site's page cannot
//!   send one; an HTML form or a simple `fetch` from there lacks it. 403
//!   otherwise.
//!
//! The page also may not be framed (`X-Frame-Options`, CSP
//! `frame-ancestors`), so no other site can overlay it to steer clicks.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use wasq::TaskState;
use wasq::broker::{Broker, Move};
use wasq::config::Config;

/// The page, with [`PAGE_TOKEN_SLOT`] where its token goes.
const PAGE: &str = include_str!("dash.html");

/// Replaced in [`PAGE`] by the page token when the dashboard starts.
const PAGE_TOKEN_SLOT: &str = "{{WASQ_PAGE_TOKEN}}";

/// The header every POST carries the page token in.
const TOKEN_HEADER: &str = "x-wasq-token";

/// The Content-Security-Policy of the page: its own script and styles
/// (inline), requests to its own origin, never framed, no forms.
const PAGE_CSP: &str = "default-src 'self'; script-src 'unsafe-inline'; \
    style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

struct App {
    broker: Broker,
    config: Option<Config>,
    read_only: bool,
    access: Access,
}

/// What [`guard`] checks requests against.
struct Access {
    /// The bound address (its real port when `--listen` gave port 0).
    listen: SocketAddr,
    /// The page as served: [`PAGE`] with the page token in it.
    page: String,
    /// The token embedded in the page, wanted in [`TOKEN_HEADER`] by every
    /// POST. Random per start.
    page_token: String,
    /// `--auth-token`, wanted by every request when set.
    auth_token: Option<String>,
    /// The value of the session cookie `/?token=` sets. Random per start.
    session: String,
}

impl Access {
    /// The session cookie's name; it carries the port, as browsers send a
    /// host's cookies to each of its ports.
    fn cookie_name(&self) -> String {
        format!("wasq_dash_{}", self.listen.port())
    }
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

/// A fresh random token (128 bits, hex).
fn random_token() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Serves until Ctrl-C. `auth_token` is `--auth-token`: when set, every
/// request must carry it (see the module docs).
pub async fn serve(
    broker: Broker,
    config: Option<Config>,
    listen: SocketAddr,
    read_only: bool,
    auth_token: Option<String>,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
    let bound = listener.local_addr()?;
    let page_token = random_token();
    let app = Arc::new(App {
        broker,
        config,
        read_only,
        access: Access {
            listen: bound,
            page: PAGE.replace(PAGE_TOKEN_SLOT, &page_token),
            page_token,
            auth_token,
            session: random_token(),
        },
    });
    let with_token = app.access.auth_token.is_some();
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
        .route("/api/cron", get(cron))
        .route_layer(axum::middleware::from_fn_with_state(app.clone(), guard))
        .with_state(app);
    eprintln!(
        "wasq dash: http://{bound}/{}{}",
        if with_token {
            "?token=<the auth token> (once; a cookie keeps it)"
        } else {
            ""
        },
        if read_only { " (read-only)" } else { "" }
    );
    axum::serve(listener, router)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

/// Compares two secrets in time that depends on their length only.
fn same_secret(given: &str, expected: &str) -> bool {
    given.len() == expected.len()
        && given
            .bytes()
            .zip(expected.bytes())
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0
}

/// Splits a Host header into its name (an IPv6 address without its
/// brackets) and port (80 when absent).
fn split_host(host: &str) -> Option<(&str, u16)> {
    let (name, port) = match host.strip_prefix('[') {
        Some(rest) => {
            let (inside, after) = rest.split_once(']')?;
            let port = match after {
                "" => None,
                after => Some(after.strip_prefix(':')?),
            };
            (inside, port)
        }
        None => match host.rsplit_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        },
    };
    let port = match port {
        Some(port) => port.parse().ok()?,
        None => 80,
    };
    Some((name, port))
}

/// Whether `host`, a request's Host header, names `listen`: its address
/// and port. On loopback any loopback address or `localhost` names it;
/// listening on every address, any IP address does. A DNS name never
/// does otherwise: that would let a page whose name was rebound to this
/// address in.
fn host_names(host: &str, listen: SocketAddr) -> bool {
    let Some((name, port)) = split_host(host) else {
        return false;
    };
    if port != listen.port() {
        return false;
    }
    let named: Option<IpAddr> = name.parse().ok();
    let listen = listen.ip().to_canonical();
    if listen.is_loopback() {
        name.eq_ignore_ascii_case("localhost")
            || named.is_some_and(|ip| ip.to_canonical().is_loopback())
    } else if listen.is_unspecified() {
        named.is_some()
    } else {
        named.is_some_and(|ip| ip.to_canonical() == listen)
    }
}

/// The value of the cookie `name`, if the request has one.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (n, v) = pair.trim().split_once('=')?;
            (n == name).then_some(v)
        })
}

/// The `token` of a query string, percent-decoded.
#[derive(Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

/// Lets a request through to its handler, or refuses it (see the module
/// docs): Host and Origin, the auth token, and the page token on POSTs.
async fn guard(State(app): State<Shared>, req: Request, next: Next) -> Response {
    let access = &app.access;
    let pass = match same_site(access, req.headers()).and_then(|host| authorize(access, &req, host))
    {
        Ok(pass) => pass,
        Err(refused) => {
            let unauthorized = refused.0 == StatusCode::UNAUTHORIZED;
            let mut refused = refused.into_response();
            if unauthorized {
                refused
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            return refused;
        }
    };
    let mut response = next.run(req).await;
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if let Some(cookie) = pass.set_cookie {
        headers.insert(header::SET_COOKIE, cookie);
    }
    response
}

/// The request's Host, once checked that it names the listen address and
/// that the Origin, if any, is the dashboard's own.
fn same_site<'a>(access: &Access, headers: &'a HeaderMap) -> Result<&'a str, ApiError> {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !host_names(host, access.listen) {
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            format!(
                "refused: the Host header {host:?} does not name this dashboard's address \
                 ({}); open it by that address",
                access.listen
            ),
        ));
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        if !origin.eq_ignore_ascii_case(&format!("http://{host}")) {
            return Err(ApiError(
                StatusCode::FORBIDDEN,
                format!(
                    "refused: a request from the origin {origin:?}; the dashboard only takes \
                     requests from its own page (http://{host})"
                ),
            ));
        }
    }
    Ok(host)
}

/// What [`authorize`] lets through with.
struct Pass {
    /// The session cookie to set (`/?token=` with the right token).
    set_cookie: Option<HeaderValue>,
}

/// Checks the auth token, if the dashboard has one, then the page token
/// of a POST (which the bearer token stands for).
fn authorize(access: &Access, req: &Request, host: &str) -> Result<Pass, ApiError> {
    let headers = req.headers();
    let mut pass = Pass { set_cookie: None };
    let mut bearer = false;
    if let Some(expected) = &access.auth_token {
        bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .is_some_and(|(scheme, token)| {
                scheme.eq_ignore_ascii_case("bearer") && same_secret(token.trim(), expected)
            });
        let query_token = Query::<TokenQuery>::try_from_uri(req.uri())
            .ok()
            .and_then(|q| q.0.token);
        let authorized = match (req.uri().path(), query_token) {
            ("/", Some(token)) => {
                let ok = same_secret(&token, expected);
                if ok {
                    let cookie = format!(
                        "{}={}; Path=/; HttpOnly; SameSite=Strict",
                        access.cookie_name(),
                        access.session
                    );
                    pass.set_cookie = HeaderValue::from_str(&cookie).ok();
                }
                ok
            }
            _ => {
                bearer
                    || cookie(headers, &access.cookie_name())
                        .is_some_and(|c| same_secret(c, &access.session))
            }
        };
        if !authorized {
            return Err(ApiError(
                StatusCode::UNAUTHORIZED,
                format!(
                    "this dashboard wants the auth token it was started with (--auth-token or \
                     WASQ_DASH_TOKEN): open http://{host}/?token=TOKEN once, or send \
                     Authorization: Bearer TOKEN"
                ),
            ));
        }
    }
    let page_token = headers
        .get(TOKEN_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| same_secret(t, &access.page_token));
    if req.method() == Method::POST && !bearer && !page_token {
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            "refused: an action without the X-Wasq-Token header of the dashboard's page \
             (reload the page)"
                .into(),
        ));
    }
    Ok(pass)
}

async fn page(State(app): State<Shared>) -> impl IntoResponse {
    (
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::CONTENT_SECURITY_POLICY, PAGE_CSP),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        Html(app.access.page.clone()),
    )
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

/// The config's `[[periodic]]` entries, as `wasq cron ls --json`.
async fn cron(State(app): State<Shared>) -> ApiResult {
    let Some(config) = &app.config else {
        return to_json(Vec::<()>::new());
    };
    let entries = wasq::schedule::entries(config)
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    let rows = super::super::cron::rows(&entries, &app.broker)
        .await
        .map_err(|e| ApiError(StatusCode::BAD_GATEWAY, format!("{e:#}")))?;
    to_json(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_headers_that_name_the_listen_address() {
        let loopback: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        for host in [
            "127.0.0.1:8080",
            "localhost:8080",
            "LocalHost:8080",
            "[::1]:8080",
            "127.0.0.2:8080",
        ] {
            assert!(host_names(host, loopback), "{host}");
        }
        for host in [
            "",
            "127.0.0.1",
            "127.0.0.1:8081",
            "evil.example:8080",
            "localhost.:8080",
            "[::1]8080",
            "10.0.0.5:8080",
        ] {
            assert!(!host_names(host, loopback), "{host}");
        }
        let on_80: SocketAddr = "[::1]:80".parse().unwrap();
        assert!(host_names("[::1]", on_80) && host_names("localhost", on_80));

        let everywhere: SocketAddr = "0.0.0.0:9000".parse().unwrap();
        for host in ["10.0.0.5:9000", "[fe80::1]:9000", "127.0.0.1:9000"] {
            assert!(host_names(host, everywhere), "{host}");
        }
        for host in ["myhost:9000", "evil.example:9000", "10.0.0.5:9001"] {
            assert!(!host_names(host, everywhere), "{host}");
        }

        let one: SocketAddr = "10.0.0.5:9000".parse().unwrap();
        assert!(host_names("10.0.0.5:9000", one));
        assert!(!host_names("10.0.0.6:9000", one));
        assert!(!host_names("localhost:9000", one));
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abd", "abc"));
        assert!(!same_secret("ab", "abc"));
        assert!(!same_secret("", "abc"));
    }
}
