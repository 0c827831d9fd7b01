//! A handler built against `wasq:task@0.1.0` (`wit/v0.1.0/`) with
//! wit-bindgen directly, as handlers built before 0.2.0 are: the host must
//! keep running it. It logs through 0.1.0's `log`, enqueues a follow-up
//! through 0.1.0's `enqueue` when the payload is `enqueue`, asks for a retry
//! in 3 s when it is `retry`, and otherwise returns the payload.

wit_bindgen::generate!({
    path: "../../../wit/v0.1.0",
    world: "wasq:task/handler@0.1.0",
});

use wasq::task::enqueue::{Options, enqueue};
use wasq::task::log::{Level, log};
use wasq::task::types::Retry;

struct Handler;

impl Guest for Handler {
    fn handle(task: Task) -> Result<Vec<u8>, TaskError> {
        log(
            Level::Info,
            "handled by a wasq:task@0.1.0 guest",
            &[("id".to_owned(), task.id.clone())],
        );
        match task.payload.as_slice() {
            b"retry" => Err(TaskError::Retry(Retry {
                message: "asked by a 0.1.0 guest".to_owned(),
                delay_ms: Some(3_000),
            })),
            b"enqueue" => {
                let options = Options {
                    queue: None,
                    max_retry: None,
                    process_in_ms: None,
                    timeout_ms: None,
                    task_id: None,
                    retention_ms: None,
                    headers: Vec::new(),
                };
                let id = enqueue("noop", b"{}", &options)
                    .map_err(|e| TaskError::SkipRetry(format!("{e:?}")))?;
                Ok(format!("enqueued {id}").into_bytes())
            }
            other => Ok(other.to_vec()),
        }
    }
}

export!(Handler);
