//! The seed tutorial's client: enqueues one task of each type into its queue
//! on the cluster at 127.0.0.1:7000-7005 (or the nodes given as arguments).
//!
//! ```sh
//! cargo run -p wasq --no-default-features --example tutorial_client
//! ```
//! It needs only the client side of `wasq` (no wasm runtime).

use std::time::Duration;

use serde_json::json;
use wasq::{Client, RedisConfig, Task, TaskOptions};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut nodes: Vec<String> = std::env::args().skip(1).collect();
    if nodes.is_empty() {
        nodes = (7000..=7005)
            .map(|port| format!("127.0.0.1:{port}"))
            .collect();
    }
    let client = Client::connect(&RedisConfig::cluster(&nodes)).await?;

    let tasks = [
        (
            Task::json("notifications:email", &json!({"to": 42, "from": 7}))?,
            TaskOptions::default().queue("notifications"),
        ),
        (
            Task::json("webhooks:sync", &json!({"data": 1234}))?,
            TaskOptions::default()
                .queue("webhooks")
                .timeout(Duration::from_secs(30)),
        ),
        (
            Task::json(
                "images:resize",
                &json!({"src": "/images/sample.png", "width": 128, "height": 96}),
            )?,
            TaskOptions::default().queue("images").max_retry(3),
        ),
    ];
    for (task, options) in tasks {
        let info = client.enqueue(task, options).await?;
        println!(
            "enqueued {} {} into queue {} ({})",
            info.task_type, info.id, info.queue, info.state
        );
    }
    Ok(())
}
