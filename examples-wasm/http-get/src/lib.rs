//! `http:get`: GETs the payload's `url` and returns the response's status
//! and body length, e.g. `{"url": "https://status.example.com/health"}` →
//! `200 512`. `wasq bench --http` runs it to measure what a request costs
//! through the sandbox against the same request made by the host.

use serde::Deserialize;
use wasq_guest::{Task, TaskError, http};

#[derive(Deserialize)]
struct Get {
    url: String,
}

fn get(task: Task) -> Result<String, TaskError> {
    let Get { url } = task.json()?;
    let response = http::get(&url).send()?;
    Ok(format!("{} {}", response.status, response.body.len()))
}

wasq_guest::export_handler!(get);
