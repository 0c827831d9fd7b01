//! `webhooks:sync`: the seed tutorial's webhook handler.
//!
//! Payload: `{"data": <integer>}`. Logs that it processes the webhook.

use serde::Deserialize;
use wasq_guest::{Task, TaskError, info};

#[derive(Deserialize)]
struct Webhook {
    data: i64,
}

fn sync(task: Task) -> Result<String, TaskError> {
    let hook: Webhook = task.json()?;
    info!(
        format!("processing webhook with data {}", hook.data),
        data = hook.data
    );
    Ok(format!("webhook {} processed", hook.data))
}

wasq_guest::export_handler!(sync);
