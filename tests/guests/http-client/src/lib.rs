//! Makes the HTTP request its payload describes, for the outbound HTTP
//! tests: `{"method": "POST", "url": "...", "body_bytes": 5000000,
//! "headers": {"x-a": "b"}, "follow": true, "requests": 3}`.
//!
//! It returns the response as JSON (status, headers, body length, and the
//! body itself when it is short), follows one redirect when `follow` is set,
//! makes `requests` requests one after the other when asked, and sets a
//! timeout of `timeout_ms` when given. A failed
//! request is a skip-retry whose message starts with the error's kind
//! (`Denied: ...`, `TooLarge: ...`), so a test can read it.

use std::collections::BTreeMap;

use serde::Deserialize;
use wasq_guest::{Json, Task, TaskError, http};

#[derive(Deserialize)]
struct Request {
    #[serde(default = "get")]
    method: String,
    url: String,
    #[serde(default)]
    body_bytes: usize,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    follow: bool,
    #[serde(default = "one")]
    requests: usize,
    #[serde(default)]
    timeout_ms: Option<u64>,
}

fn get() -> String {
    "GET".into()
}

fn one() -> usize {
    1
}

fn run(task: Task) -> Result<Json<serde_json::Value>, TaskError> {
    let request: Request = task.json()?;
    let mut last = serde_json::Value::Null;
    for _ in 0..request.requests {
        let mut response = send(&request, &request.url)?;
        if request.follow && (300..400).contains(&response.status) {
            let location = response.header("location").unwrap_or_default().to_owned();
            response = send(&request, &location)?;
        }
        let body_text = if response.body.len() <= 1024 {
            response.text()
        } else {
            String::new()
        };
        last = serde_json::json!({
            "status": response.status,
            "headers": response.headers,
            "body_len": response.body.len(),
            "body_sum": response.body.iter().map(|b| u64::from(*b)).sum::<u64>(),
            "body": body_text,
        });
    }
    Ok(Json(last))
}

fn send(request: &Request, url: &str) -> Result<http::Response, TaskError> {
    let mut builder = http::request(&request.method, url);
    for (name, value) in &request.headers {
        builder = builder.header(name, value);
    }
    if let Some(ms) = request.timeout_ms {
        builder = builder.timeout(std::time::Duration::from_millis(ms));
    }
    if request.body_bytes > 0 {
        let body: Vec<u8> = (0..request.body_bytes).map(|i| (i % 251) as u8).collect();
        builder = builder.body(body);
    }
    builder
        .send()
        .map_err(|e| TaskError::skip_retry(format!("{:?}: {e}", e.kind())))
}

wasq_guest::export_handler!(run);
