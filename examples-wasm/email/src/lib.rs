//! `notifications:email`: the seed tutorial's email handler.
//!
//! Payload: `{"to": <user id>, "from": <user id>}`. Logs that it sends an
//! email from `from` to `to` and returns a one-line receipt.

use serde::Deserialize;
use wasq_guest::{Task, TaskError, info};

#[derive(Deserialize)]
struct Email {
    to: i64,
    from: i64,
}

fn send_email(task: Task) -> Result<String, TaskError> {
    let email: Email = task.json()?;
    info!(
        format!(
            "sending email from user {} to user {}",
            email.from, email.to
        ),
        from = email.from,
        to = email.to
    );
    Ok(format!("email sent from {} to {}", email.from, email.to))
}

wasq_guest::export_handler!(send_email);
