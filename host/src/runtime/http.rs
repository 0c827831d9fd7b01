//! Outbound HTTP for handlers: `wasi:http/outgoing-handler`, linked for
//! every task type and denied unless the type's `http` list admits the
//! request. The host sends every request itself, one at a time through
//! [`send`]:
//!
//! ```text
//! request ─► scheme/host/port on the list? ── no ─► HTTP-request-denied
//!         ─► in-flight cap ─► resolve (pinned names first) ─► every address
//!            public, or named literally by the entry? ── no ─► destination-IP-prohibited
//!         ─► connect (timeout ≤ the task's time left) ─► TLS (system roots + http_ca)
//!         ─► HTTP/1.1, request body capped ─► response, body capped and
//!            timed between pieces ─► guest
//! ```
//!
//! Nothing is followed on the guest's behalf: a redirect reaches the guest,
//! and the request it makes next is checked again. Each request is logged
//! with the task's id and type and recorded in the run's report
//! ([`HttpCall`]), which the worker turns into metrics.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::Serialize;
use tokio::sync::Semaphore;
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

use crate::config::Config;
use crate::http_grant::HttpGrant;

/// How long a connect may take when the guest sets no timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection's I/O, kept running by wasi:http while the body is read.
type IoFuture = Box<dyn Future<Output = Result<(), Error>> + Send>;

/// What a task type may do over HTTP, built once at start-up.
pub(crate) struct HttpPolicy {
    pub grants: Vec<HttpGrant>,
    /// Built only for a type with grants: no request of another gets as
    /// far as TLS.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub max_body: u64,
    pub max_request_body: u64,
    pub max_in_flight: u32,
    /// Names resolved to fixed addresses instead of through DNS
    /// (`[runtime] http_resolve`).
    pub pinned: Arc<BTreeMap<String, Vec<IpAddr>>>,
}

impl HttpPolicy {
    /// No HTTP at all.
    pub fn none() -> Self {
        Self {
            grants: Vec::new(),
            tls: None,
            max_body: 0,
            max_request_body: 0,
            max_in_flight: 1,
            pinned: Default::default(),
        }
    }

    /// The policy of task type `name` in `config`.
    pub fn of(config: &Config, name: &str) -> Result<Self, String> {
        let (grants, ca) = config.http_of(name).unwrap_or_default();
        let limits = config.limits_of(name).unwrap_or_default();
        let tls = if grants.is_empty() {
            None
        } else {
            Some(Self::tls(ca.as_deref())?)
        };
        let pinned = config
            .runtime
            .http_resolve
            .iter()
            .map(|(host, addresses)| (host.to_ascii_lowercase(), addresses.clone()))
            .collect();
        Ok(Self {
            grants,
            tls,
            max_body: limits.max_http_body,
            max_request_body: limits.max_http_request_body,
            max_in_flight: limits.max_http_requests.max(1),
            pinned: Arc::new(pinned),
        })
    }

    /// The TLS client config trusting the system's roots and, if given,
    /// the CA certificates of a PEM file.
    pub fn tls(extra_ca: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, String> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(system_roots().roots.iter().cloned());
        if let Some(path) = extra_ca {
            use rustls::pki_types::CertificateDer;
            use rustls::pki_types::pem::PemObject;
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("cannot read http_ca {}: {e}", path.display()))?;
            let mut added = 0;
            for cert in certs {
                let cert = cert.map_err(|e| format!("http_ca {}: {e}", path.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("http_ca {}: {e}", path.display()))?;
                added += 1;
            }
            if added == 0 {
                return Err(format!(
                    "http_ca {} holds no PEM certificate",
                    path.display()
                ));
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS set-up: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// The system's CA certificates, read once per process.
fn system_roots() -> &'static rustls::RootCertStore {
    static ROOTS: OnceLock<rustls::RootCertStore> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let mut roots = rustls::RootCertStore::empty();
        let found = rustls_native_certs::load_native_certs();
        for error in &found.errors {
            tracing::warn!("reading the system's CA certificates: {error}");
        }
        roots.add_parsable_certificates(found.certs);
        roots
    })
}

/// One HTTP request a task made, as its run's report carries it.
#[derive(Debug, Clone, Serialize)]
pub struct HttpCall {
    /// The method.
    pub method: String,
    /// The host, as the URL names it.
    pub host: String,
    /// The entry of the task type's `http` list that admitted it (`None`
    /// when none did): a label with as many values as the config has
    /// entries, which the worker's metrics use instead of the host.
    pub grant: Option<String>,
    /// `ok` (a response arrived, whatever its status), `denied` (not on the
    /// list, or an address it may not reach) or `error`.
    pub outcome: &'static str,
    /// The response's status.
    pub status: Option<u16>,
    /// From the request to the response's head.
    #[serde(with = "super::serde_micros")]
    pub duration: Duration,
    /// The response body's announced length, when it had one.
    pub bytes: Option<u64>,
    /// Why it failed.
    pub error: Option<String>,
}

/// The outgoing side of one sandbox: the task type's policy, the task's
/// deadline and in-flight cap, and the record of what it sent.
pub(crate) struct Outbound {
    pub policy: Arc<HttpPolicy>,
    pub deadline: Instant,
    pub in_flight: Arc<Semaphore>,
    pub calls: Arc<Mutex<Vec<HttpCall>>>,
    pub task_id: String,
    pub task_type: String,
}

impl Outbound {
    pub fn new(policy: Arc<HttpPolicy>, deadline: Instant, task_id: &str, task_type: &str) -> Self {
        Self {
            in_flight: Arc::new(Semaphore::new(policy.max_in_flight as usize)),
            policy,
            deadline,
            calls: Default::default(),
            task_id: task_id.to_owned(),
            task_type: task_type.to_owned(),
        }
    }
}

impl WasiHttpHooks for Outbound {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _response_done: IoFuture,
    ) -> Box<dyn Future<Output = Result<(http::Response<WasiBody>, IoFuture), Error>> + Send> {
        let call = Call {
            policy: self.policy.clone(),
            deadline: self.deadline,
            in_flight: self.in_flight.clone(),
        };
        let calls = self.calls.clone();
        let (task_id, task_type) = (self.task_id.clone(), self.task_type.clone());
        let grant = admitting_grant(&self.policy.grants, request.uri());
        Box::new(async move {
            let method = request.method().to_string();
            let host = request.uri().host().unwrap_or_default().to_owned();
            let started = Instant::now();
            let result = call.send(request, options).await;
            let duration = started.elapsed();
            let record = match &result {
                Ok((response, _)) => HttpCall {
                    method,
                    host,
                    grant,
                    outcome: "ok",
                    status: Some(response.status().as_u16()),
                    duration,
                    bytes: content_length(response.headers()),
                    error: None,
                },
                Err(error) => HttpCall {
                    method,
                    host,
                    grant,
                    outcome: match error {
                        Error::HttpRequestDenied | Error::DestinationIpProhibited => "denied",
                        _ => "error",
                    },
                    status: None,
                    duration,
                    bytes: None,
                    error: Some(describe(error)),
                },
            };
            tracing::info!(
                task_id = %task_id,
                task_type = %task_type,
                method = %record.method,
                host = %record.host,
                status = record.status,
                outcome = record.outcome,
                duration_ms = duration.as_secs_f64() * 1e3,
                bytes = record.bytes,
                error = record.error.as_deref(),
                "outbound http"
            );
            calls.lock().expect("http calls lock").push(record);
            result
        })
    }
}

/// The text of the first entry that admits a request to `uri`.
fn admitting_grant(grants: &[HttpGrant], uri: &http::Uri) -> Option<String> {
    let scheme = uri.scheme_str().unwrap_or("https");
    let host = uri.host()?.trim_matches(['[', ']']);
    let port = uri
        .port_u16()
        .unwrap_or(if scheme.eq_ignore_ascii_case("https") {
            443
        } else {
            80
        });
    grants
        .iter()
        .find(|g| g.matches(scheme, host, port))
        .map(ToString::to_string)
}

/// What one request needs from its sandbox.
struct Call {
    policy: Arc<HttpPolicy>,
    deadline: Instant,
    in_flight: Arc<Semaphore>,
}

impl Call {
    async fn send(
        self,
        mut request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
    ) -> Result<(http::Response<WasiBody>, IoFuture), Error> {
        let policy = &self.policy;
        let uri = request.uri().clone();
        let scheme = uri.scheme_str().unwrap_or("https").to_ascii_lowercase();
        let https = scheme == "https";
        let host = uri
            .host()
            .ok_or(Error::HttpRequestUriInvalid)?
            .trim_matches(['[', ']'])
            .to_owned();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        if !HttpGrant::allows_request(&policy.grants, &scheme, &host, port) {
            return Err(Error::HttpRequestDenied);
        }
        let permit = self
            .in_flight
            .clone()
            .try_acquire_owned()
            .map_err(|_| Error::ConnectionLimitReached)?;
        let left = || self.deadline.saturating_duration_since(Instant::now());
        let connect_timeout = options
            .and_then(|o| o.connect_timeout)
            .unwrap_or(CONNECT_TIMEOUT)
            .min(left());

        let addresses = self.resolve(&host, port, connect_timeout).await?;
        let allowed: Vec<IpAddr> = addresses
            .iter()
            .copied()
            .filter(|ip| HttpGrant::allows_address(&policy.grants, &scheme, &host, port, *ip))
            .collect();
        // Every address the name has must pass: a name with one public and
        // one private address could be steered to the private one.
        if allowed.is_empty() || allowed.len() < addresses.len() {
            return Err(Error::DestinationIpProhibited);
        }

        if content_length(request.headers()).is_some_and(|n| n > policy.max_request_body) {
            return Err(Error::HttpRequestBodySize(Some(policy.max_request_body)));
        }
        let max_request = policy.max_request_body;
        let request_body = std::mem::replace(request.body_mut(), empty_body());
        *request.body_mut() = Limited::new(request_body, max_request as usize)
            .map_err(move |e| limit_error(e, Error::HttpRequestBodySize(Some(max_request))))
            .boxed_unsync();

        let tcp = self.connect(&allowed, port, connect_timeout).await?;
        let stream: Box<dyn Io> = if https {
            let name = rustls::pki_types::ServerName::try_from(host.clone())
                .map_err(|_| Error::HttpRequestUriInvalid)?;
            let config = policy.tls.clone().ok_or(Error::HttpRequestDenied)?;
            let tls = tokio::time::timeout(
                left(),
                tokio_rustls::TlsConnector::from(config).connect(name, tcp),
            )
            .await
            .map_err(|_| Error::ConnectionTimeout)?
            .map_err(tls_error)?;
            Box::new(tls)
        } else {
            Box::new(tcp)
        };
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(Error::from)?;
        let connection = wasmtime_wasi::runtime::spawn(async move {
            connection.await.map_err(Error::from)?;
            Ok::<(), Error>(())
        });
        // Origin form on the wire: the path and query only.
        let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
        *request.uri_mut() = http::Uri::builder()
            .path_and_query(path)
            .build()
            .map_err(|_| Error::HttpRequestUriInvalid)?;
        let first_byte = options
            .and_then(|o| o.first_byte_timeout)
            .unwrap_or(Duration::MAX)
            .min(left());
        let response = tokio::time::timeout(first_byte, sender.send_request(request))
            .await
            .map_err(|_| Error::ConnectionReadTimeout)?
            .map_err(Error::from)?;
        let max = policy.max_body;
        if content_length(response.headers()).is_some_and(|n| n > max) {
            return Err(Error::HttpResponseBodySize(Some(max)));
        }
        // Between two pieces of the body: the guest's timeout, never past
        // the task's deadline.
        let between = options
            .and_then(|o| o.between_bytes_timeout)
            .unwrap_or(Duration::MAX)
            .min(left());
        let response = response.map(|body| {
            let limited = Limited::new(body, max as usize)
                .map_err(move |e| limit_error(e, Error::HttpResponseBodySize(Some(max))))
                .boxed_unsync();
            BetweenBytes::new(limited, between).boxed_unsync()
        });
        let io: IoFuture = Box::new(async move {
            // The in-flight slot is held until the connection is done.
            let _permit = permit;
            connection.await
        });
        Ok((response, io))
    }

    /// The addresses of `host`: itself when it is an IP, the pinned ones
    /// when it is pinned, else DNS.
    async fn resolve(
        &self,
        host: &str,
        port: u16,
        timeout: Duration,
    ) -> Result<Vec<IpAddr>, Error> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![ip]);
        }
        if let Some(pinned) = self.policy.pinned.get(&host.to_ascii_lowercase()) {
            return Ok(pinned.clone());
        }
        let found = tokio::time::timeout(timeout, tokio::net::lookup_host((host, port)))
            .await
            .map_err(|_| Error::DnsTimeout)?
            .map_err(|e| Error::DnsError {
                rcode: Some(e.to_string()),
                info_code: None,
            })?;
        let addresses: Vec<IpAddr> = found.map(|a| a.ip()).collect();
        if addresses.is_empty() {
            return Err(Error::DestinationNotFound);
        }
        Ok(addresses)
    }

    /// Connects to the first of `addresses` that answers.
    async fn connect(
        &self,
        addresses: &[IpAddr],
        port: u16,
        timeout: Duration,
    ) -> Result<tokio::net::TcpStream, Error> {
        let mut last = Error::DestinationUnavailable;
        for ip in addresses {
            match tokio::time::timeout(
                timeout,
                tokio::net::TcpStream::connect(SocketAddr::new(*ip, port)),
            )
            .await
            {
                Ok(Ok(stream)) => return Ok(stream),
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    last = Error::ConnectionRefused
                }
                Ok(Err(e)) => last = Error::Connect(e),
                Err(_) => last = Error::ConnectionTimeout,
            }
        }
        Err(last)
    }
}

/// A response body that fails with a read timeout when no frame arrives
/// within `timeout` of the last one (or of the response's head).
struct BetweenBytes {
    inner: WasiBody,
    timeout: Duration,
    sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl BetweenBytes {
    fn new(inner: WasiBody, timeout: Duration) -> Self {
        Self {
            inner,
            timeout,
            sleep: Box::pin(tokio::time::sleep(timeout)),
        }
    }
}

impl http_body::Body for BetweenBytes {
    type Data = bytes::Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, Error>>> {
        use std::task::Poll;
        let this = &mut *self;
        match std::pin::Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                let next = tokio::time::Instant::now() + this.timeout;
                this.sleep.as_mut().reset(next);
                Poll::Ready(frame)
            }
            Poll::Pending => match this.sleep.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Error::ConnectionReadTimeout))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> Io for T {}

fn empty_body() -> WasiBody {
    http_body_util::Empty::new()
        .map_err(|never: std::convert::Infallible| match never {})
        .boxed_unsync()
}

/// A body error from [`Limited`]: the cap, or what the inner body said.
fn limit_error(error: Box<dyn std::error::Error + Send + Sync>, over: Error) -> Error {
    if error.is::<LengthLimitError>() {
        return over;
    }
    match error.downcast::<Error>() {
        Ok(inner) => *inner,
        Err(other) => match other.downcast::<hyper::Error>() {
            Ok(hyper) => Error::from(*hyper),
            Err(other) => Error::InternalError(Some(other.to_string())),
        },
    }
}

fn tls_error(error: std::io::Error) -> Error {
    let text = error.to_string();
    if text.contains("certificate") || text.contains("UnknownIssuer") {
        Error::TlsCertificateError
    } else {
        Error::Tls(error)
    }
}

fn content_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// An error as a person reads it.
fn describe(error: &Error) -> String {
    match error {
        Error::HttpRequestDenied => "not on the task type's http list".into(),
        Error::DestinationIpProhibited => {
            "resolves to a loopback, private or link-local address that no entry names".into()
        }
        Error::HttpResponseBodySize(Some(max)) => {
            format!("response body over max_http_body ({max} bytes)")
        }
        Error::HttpRequestBodySize(Some(max)) => {
            format!("request body over max_http_request_body ({max} bytes)")
        }
        Error::ConnectionLimitReached => "more requests in flight than max_http_requests".into(),
        other => format!("{other:?}"),
    }
}
