//! A small blocking HTTP client over `wasi:http`, for handlers whose task
//! type is granted outbound HTTP (`http = [...]` in `wasq.toml`).
//!
//! The host checks every request against the task type's list before it
//! connects, refuses addresses a name should not lead to, caps bodies and
//! times out with the task; a refused request is an [`HttpError`] of kind
//! [`HttpErrorKind::Denied`]. Redirects are not followed: a 3xx is returned
//! as it is, and a request to its `Location` is checked again.
//!
//! ```no_run
//! use wasq_guest::{Task, TaskError, http};
//!
//! fn deliver(task: Task) -> Result<(), TaskError> {
//!     let response = http::post("https://hooks.example.com/events")
//!         .header("x-task-id", task.id())
//!         .body(task.payload().to_vec())
//!         .header("content-type", "application/json")
//!         .send()?;
//!     match response.status {
//!         200..=299 => Ok(()),
//!         429 | 500..=599 => Err(TaskError::retry(format!("receiver said {}", response.status))),
//!         other => Err(TaskError::skip_retry(format!("receiver refused: {other}"))),
//!     }
//! }
//! # fn main() {}
//! ```

use std::fmt;
use std::io::Write as _;

use std::time::Duration;

use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    ErrorCode, Fields, IncomingBody, Method, OutgoingBody, OutgoingRequest, RequestOptions, Scheme,
};

/// A `GET` request to `url`.
pub fn get(url: &str) -> RequestBuilder {
    request("GET", url)
}

/// A `POST` request to `url`.
pub fn post(url: &str) -> RequestBuilder {
    request("POST", url)
}

/// A `PUT` request to `url`.
pub fn put(url: &str) -> RequestBuilder {
    request("PUT", url)
}

/// A `DELETE` request to `url`.
pub fn delete(url: &str) -> RequestBuilder {
    request("DELETE", url)
}

/// A request with any method.
pub fn request(method: &str, url: &str) -> RequestBuilder {
    RequestBuilder {
        method: method.to_owned(),
        url: url.to_owned(),
        headers: Vec::new(),
        body: Vec::new(),
        timeout: None,
    }
}

/// A request being built; [`send`](Self::send) sends it.
#[derive(Debug, Clone)]
pub struct RequestBuilder {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    timeout: Option<Duration>,
}

impl RequestBuilder {
    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Sets the body to `value` as JSON, with `content-type:
    /// application/json`.
    pub fn json<T: serde::Serialize + ?Sized>(mut self, value: &T) -> Self {
        self.body = serde_json::to_vec(value).unwrap_or_default();
        self.headers
            .push(("content-type".into(), "application/json".into()));
        self
    }

    /// Gives up connecting, waiting for the response's head, or waiting
    /// between two pieces of its body after this long (the host also stops
    /// at the task's own deadline).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Sends the request and reads the whole response.
    pub fn send(self) -> Result<Response, HttpError> {
        let url = Url::parse(&self.url)?;
        let mut fields: Vec<(String, Vec<u8>)> = self
            .headers
            .iter()
            .map(|(name, value)| (name.to_ascii_lowercase(), value.clone().into_bytes()))
            .collect();
        // A known length goes on the wire as `content-length`, not chunked.
        if !self.body.is_empty() && !fields.iter().any(|(name, _)| name == "content-length") {
            fields.push((
                "content-length".into(),
                self.body.len().to_string().into_bytes(),
            ));
        }
        let headers = Fields::from_list(&fields)
            .map_err(|e| HttpError::new(HttpErrorKind::Invalid, format!("header: {e:?}")))?;
        let request = OutgoingRequest::new(headers);
        let invalid = |what: &str| HttpError::new(HttpErrorKind::Invalid, what.to_owned());
        request
            .set_method(&method(&self.method))
            .map_err(|()| invalid("method"))?;
        request
            .set_scheme(Some(&url.scheme))
            .map_err(|()| invalid("scheme"))?;
        request
            .set_authority(Some(&url.authority))
            .map_err(|()| invalid("host"))?;
        request
            .set_path_with_query(Some(&url.path))
            .map_err(|()| invalid("path"))?;
        let options = self.timeout.map(|timeout| {
            let options = RequestOptions::new();
            let nanos = u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX);
            let _ = options.set_connect_timeout(Some(nanos));
            let _ = options.set_first_byte_timeout(Some(nanos));
            let _ = options.set_between_bytes_timeout(Some(nanos));
            options
        });
        // Without a body the request is sent with none (no chunked framing,
        // one write on the wire): the body resource is taken only to write.
        let body = if self.body.is_empty() {
            None
        } else {
            Some(request.body().map_err(|()| invalid("body"))?)
        };
        let pending = outgoing_handler::handle(request, options).map_err(HttpError::from_code)?;
        if let Some(body) = body {
            let mut stream = body.write().map_err(|()| invalid("body stream"))?;
            let sent = stream
                .write_all(&self.body)
                .map_err(|e| e.to_string())
                .and_then(|()| {
                    // A stream the host closed has nothing left to flush.
                    match stream.blocking_flush() {
                        Ok(()) | Err(wasip2::io::streams::StreamError::Closed) => Ok(()),
                        Err(error) => Err(format!("{error:?}")),
                    }
                });
            if let Err(message) = sent {
                // The host stops reading a body it refuses (too large, the
                // connection failed): its reason is in the response.
                drop(stream);
                pending.subscribe().block();
                if let Some(Ok(Err(code))) = pending.get() {
                    return Err(HttpError::from_code(code));
                }
                return Err(HttpError::new(
                    HttpErrorKind::Connection,
                    format!("sending the body: {message}"),
                ));
            }
            drop(stream);
            OutgoingBody::finish(body, None).map_err(HttpError::from_code)?;
        }
        pending.subscribe().block();
        let response = match pending.get() {
            Some(Ok(Ok(response))) => response,
            Some(Ok(Err(code))) => return Err(HttpError::from_code(code)),
            Some(Err(())) | None => {
                return Err(HttpError::new(
                    HttpErrorKind::Other,
                    "the response was lost".into(),
                ));
            }
        };
        let status = response.status();
        let headers = response
            .headers()
            .entries()
            .into_iter()
            .map(|(name, value)| (name, String::from_utf8_lossy(&value).into_owned()))
            .collect();
        let incoming = response.consume().map_err(|()| invalid("response body"))?;
        let mut body = Vec::new();
        {
            let stream = incoming.stream().map_err(|()| invalid("response body"))?;
            // Large reads: each one is a call into the host.
            loop {
                match stream.blocking_read(64 << 10) {
                    Ok(chunk) => body.extend_from_slice(&chunk),
                    Err(wasip2::io::streams::StreamError::Closed) => break,
                    Err(wasip2::io::streams::StreamError::LastOperationFailed(error)) => {
                        // The host's body cap and cut connections end the
                        // stream with an error the guest sees only as text.
                        return Err(HttpError::new(
                            HttpErrorKind::Connection,
                            format!("reading the body: {}", error.to_debug_string()),
                        ));
                    }
                }
            }
        }
        drop(IncomingBody::finish(incoming));
        Ok(Response {
            status,
            headers,
            body,
        })
    }
}

/// A response, read in full.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// The first header called `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body decoded from JSON.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }

    /// `Retry-After` in seconds, when the response has one in that form.
    pub fn retry_after(&self) -> Option<Duration> {
        self.header("retry-after")?
            .trim()
            .parse()
            .ok()
            .map(Duration::from_secs)
    }
}

/// What went wrong with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HttpErrorKind {
    /// The task type is not granted this scheme, host and port, or the
    /// host resolves to an address it may not reach.
    Denied,
    /// The URL, a header or the method is malformed.
    Invalid,
    /// A timeout: connecting, or waiting for the response.
    Timeout,
    /// DNS, connect, TLS or the connection failing.
    Connection,
    /// A body over the host's cap.
    TooLarge,
    /// Anything else.
    Other,
}

/// A failed request. Converts into a retry with `?`.
#[derive(Debug, Clone)]
pub struct HttpError {
    kind: HttpErrorKind,
    message: String,
}

impl HttpError {
    fn new(kind: HttpErrorKind, message: String) -> Self {
        Self { kind, message }
    }

    /// What went wrong.
    pub fn kind(&self) -> HttpErrorKind {
        self.kind
    }

    fn from_code(code: ErrorCode) -> Self {
        let kind = match &code {
            ErrorCode::HttpRequestDenied | ErrorCode::DestinationIpProhibited => {
                HttpErrorKind::Denied
            }
            ErrorCode::ConnectionTimeout
            | ErrorCode::ConnectionReadTimeout
            | ErrorCode::ConnectionWriteTimeout
            | ErrorCode::HttpResponseTimeout
            | ErrorCode::DnsTimeout => HttpErrorKind::Timeout,
            ErrorCode::HttpResponseBodySize(_) | ErrorCode::HttpRequestBodySize(_) => {
                HttpErrorKind::TooLarge
            }
            ErrorCode::HttpRequestUriInvalid | ErrorCode::HttpRequestMethodInvalid => {
                HttpErrorKind::Invalid
            }
            ErrorCode::DnsError(_)
            | ErrorCode::DestinationNotFound
            | ErrorCode::DestinationUnavailable
            | ErrorCode::ConnectionRefused
            | ErrorCode::ConnectionTerminated
            | ErrorCode::TlsProtocolError
            | ErrorCode::TlsCertificateError
            | ErrorCode::TlsAlertReceived(_) => HttpErrorKind::Connection,
            _ => HttpErrorKind::Other,
        };
        let message = match &code {
            ErrorCode::HttpRequestDenied => {
                "denied by the host: not on this task type's http list".to_owned()
            }
            ErrorCode::DestinationIpProhibited => {
                "denied by the host: the name resolves to a loopback, private or link-local \
                 address that the http list does not name"
                    .to_owned()
            }
            other => format!("{other:?}"),
        };
        Self::new(kind, message)
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http: {}", self.message)
    }
}

impl std::error::Error for HttpError {}

/// The parts of a URL wasi:http takes.
struct Url {
    scheme: Scheme,
    authority: String,
    path: String,
}

impl Url {
    fn parse(url: &str) -> Result<Self, HttpError> {
        let invalid = || HttpError::new(HttpErrorKind::Invalid, format!("not a URL: {url:?}"));
        let (scheme, rest) = url.split_once("://").ok_or_else(invalid)?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            _ => return Err(invalid()),
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(at) if rest[at..].starts_with('?') => (&rest[..at], format!("/{}", &rest[at..])),
            Some(at) => (&rest[..at], rest[at..].to_owned()),
            None => (rest, "/".to_owned()),
        };
        if authority.is_empty() {
            return Err(invalid());
        }
        Ok(Url {
            scheme,
            authority: authority.to_owned(),
            path,
        })
    }
}

fn method(name: &str) -> Method {
    match name.to_ascii_uppercase().as_str() {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        "PATCH" => Method::Patch,
        "OPTIONS" => Method::Options,
        other => Method::Other(other.to_owned()),
    }
}
