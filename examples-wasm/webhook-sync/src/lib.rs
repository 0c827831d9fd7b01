//! `webhooks:sync`: the seed tutorial's webhook handler.
//!
//! Payload: `{"data": <integer>}`, optionally with `"url"`. It delivers the
//! payload as JSON with a POST to the payload's `url`, else to the URL in
//! `WEBHOOK_URL` (an env var the task type is granted), and only logs it
//! when neither is set, as in the tutorial. The receiver's answer decides:
//! 2xx is done; 429 and 5xx are retried, after `Retry-After` when it says;
//! any other status archives the task, since sending it again cannot help.
//! The host allows only the hosts in the task type's `http` list.

use std::time::Duration;

use serde::Deserialize;
use wasq_guest::{Task, TaskError, http, info, warn};

#[derive(Deserialize)]
struct Webhook {
    data: i64,
    #[serde(default)]
    url: Option<String>,
}

fn sync(task: Task) -> Result<String, TaskError> {
    let hook: Webhook = task.json()?;
    let url = hook
        .url
        .clone()
        .or_else(|| std::env::var("WEBHOOK_URL").ok());
    let Some(url) = url else {
        info!(
            format!("processing webhook with data {}", hook.data),
            data = hook.data
        );
        return Ok(format!("webhook {} processed", hook.data));
    };
    let response = http::post(&url)
        .header("x-wasq-task-id", task.id())
        .body(task.payload().to_vec())
        .header("content-type", "application/json")
        .timeout(Duration::from_secs(10))
        .send()?;
    match response.status {
        200..=299 => {
            info!(
                format!("delivered webhook {} to {url}", hook.data),
                status = response.status
            );
            Ok(format!(
                "webhook {} delivered: {}",
                hook.data, response.status
            ))
        }
        429 | 500..=599 => {
            warn!(
                format!("receiver at {url} answered {}", response.status),
                status = response.status
            );
            let error = TaskError::retry(format!("receiver answered {}", response.status));
            Err(match response.retry_after() {
                Some(delay) => error.after(delay),
                None => error,
            })
        }
        status => Err(TaskError::skip_retry(format!(
            "receiver refused the webhook with {status}: {}",
            response.text().chars().take(200).collect::<String>()
        ))),
    }
}

wasq_guest::export_handler!(sync);
