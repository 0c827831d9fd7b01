//! A handler that misbehaves on request, to prove the sandbox contains it.
//!
//! The payload `{"do": "<mode>", ...}` picks the misbehaviour; the tests
//! register this one module under several task types with different limits
//! and grants.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Deserialize;
use wasq_guest::{EnqueueOptions, Task, TaskError, info};

#[derive(Deserialize)]
struct Request {
    #[serde(rename = "do")]
    mode: String,
    #[serde(default)]
    path: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    queue: String,
    #[serde(default)]
    queues: Vec<String>,
    #[serde(default)]
    bytes: usize,
    #[serde(default)]
    lines: usize,
    #[serde(default)]
    addr: String,
    #[serde(default)]
    ms: u64,
    #[serde(default)]
    iters: u64,
    #[serde(default)]
    count: usize,
    #[serde(default)]
    target: String,
}

static CALLS: AtomicU64 = AtomicU64::new(0);

fn misbehave(task: Task) -> Result<Vec<u8>, TaskError> {
    // A task that aggregates a group answers with its group and members.
    if let Some(group) = task.group() {
        let members: Vec<serde_json::Value> = task
            .members()
            .iter()
            .map(|m| {
                serde_json::json!({
                    "id": m.id(),
                    "type": m.task_type(),
                    "payload": String::from_utf8_lossy(m.payload()),
                })
            })
            .collect();
        return Ok(serde_json::json!({ "group": group, "members": members })
            .to_string()
            .into_bytes());
    }
    let req: Request = task.json()?;
    match req.mode.as_str() {
        "ok" => Ok(task.payload().to_vec()),
        "loop" => {
            let mut x: u64 = 0;
            loop {
                x = black_box(x.wrapping_add(1));
            }
        }
        "memory" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1u8; 1 << 20]);
                black_box(&hoard);
            }
        }
        "panic" => panic!("deliberate panic for the test"),
        "stack" => Ok(recurse(black_box(1)).to_le_bytes().to_vec()),
        "huge-result" => Ok(vec![7u8; req.bytes]),
        "log-flood" => {
            for i in 0..req.lines {
                info!(format!("flood line {i} {}", "x".repeat(80)));
            }
            Ok(b"flooded".to_vec())
        }
        "stdout-flood" => {
            for i in 0..req.lines {
                println!("stdout line {i} {}", "y".repeat(80));
            }
            Ok(b"flooded".to_vec())
        }
        "read-file" => std::fs::read(&req.path)
            .map_err(|e| TaskError::skip_retry(format!("read {} failed: {e}", req.path))),
        "write-file" => std::fs::write(&req.path, b"written by the guest")
            .map(|()| b"written".to_vec())
            .map_err(|e| TaskError::skip_retry(format!("write {} failed: {e}", req.path))),
        "env" => {
            let seen: Vec<String> = std::env::vars().map(|(k, _)| k).collect();
            match std::env::var(&req.name) {
                Ok(value) => {
                    Ok(format!("{}={value}; all: {}", req.name, seen.join(",")).into_bytes())
                }
                Err(e) => Err(TaskError::skip_retry(format!(
                    "env {} unavailable: {e}; all: [{}]",
                    req.name,
                    seen.join(",")
                ))),
            }
        }
        "socket" => match std::net::TcpStream::connect(&req.addr) {
            Ok(_) => Ok(b"connected".to_vec()),
            Err(e) => Err(TaskError::skip_retry(format!(
                "connect {} failed: {e}",
                req.addr
            ))),
        },
        "listen" => match std::net::TcpListener::bind(&req.addr) {
            Ok(_) => Ok(b"listening".to_vec()),
            Err(e) => Err(TaskError::skip_retry(format!(
                "listen on {} failed: {e}",
                req.addr
            ))),
        },
        "udp" => {
            // Sends one datagram to `addr` from an ephemeral port.
            let sent = std::net::UdpSocket::bind("0.0.0.0:0")
                .and_then(|socket| socket.send_to(b"hello over udp", &req.addr));
            match sent {
                Ok(n) => Ok(format!("sent {n}").into_bytes()),
                Err(e) => Err(TaskError::skip_retry(format!(
                    "udp send to {} failed: {e}",
                    req.addr
                ))),
            }
        }
        "count" => {
            let n = CALLS.fetch_add(1, Ordering::SeqCst) + 1;
            Ok(n.to_string().into_bytes())
        }
        "clock" => {
            let before = std::time::SystemTime::now();
            let mut x = 0u64;
            for i in 0..500_000u64 {
                x = black_box(x ^ i);
            }
            let after = std::time::SystemTime::now();
            let ms = before
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis();
            let moved = after.duration_since(before).unwrap_or_default().as_nanos();
            Ok(format!("{ms} {moved}").into_bytes())
        }
        "started" => {
            // The wall clock is frozen at the sandbox's start: this is when
            // the task started, in Unix nanoseconds.
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            Ok(now.as_nanos().to_string().into_bytes())
        }
        "nap" => {
            std::thread::sleep(Duration::from_millis(req.ms));
            Ok(format!("napped {}ms", req.ms).into_bytes())
        }
        "spin" => {
            let mut x = 0u64;
            for i in 0..req.iters {
                x = black_box(x.wrapping_mul(31).wrapping_add(i));
            }
            Ok(format!("spun {}", x % 10).into_bytes())
        }
        "sleep" => {
            std::thread::sleep(Duration::from_secs(600));
            Ok(b"woke".to_vec())
        }
        "enqueue" => wasq_guest::enqueue(
            "webhooks:sync",
            br#"{"data": 1}"#,
            EnqueueOptions::default().queue(&req.queue),
        )
        .map(String::into_bytes)
        .map_err(|e| TaskError::skip_retry(e.to_string())),
        "enqueue-then-fail" => {
            wasq_guest::enqueue(
                "webhooks:sync",
                br#"{"data": 2}"#,
                EnqueueOptions::default().queue(&req.queue),
            )
            .map_err(|e| TaskError::skip_retry(e.to_string()))?;
            Err(TaskError::retry("failed after enqueueing"))
        }
        "enqueue-many" => {
            // One follow-up into each of `queues`, then `ms` of sleep.
            let mut ids = Vec::new();
            for queue in &req.queues {
                let id = wasq_guest::enqueue(
                    "bad",
                    br#"{"do": "ok"}"#,
                    EnqueueOptions::default().queue(queue),
                )
                .map_err(|e| TaskError::skip_retry(e.to_string()))?;
                ids.push(id);
            }
            std::thread::sleep(Duration::from_millis(req.ms));
            Ok(ids.join(",").into_bytes())
        }
        // Output and message abuse (the sandbox hardening suite).
        "exit" => std::process::exit(req.iters as i32),
        "log-empty" => {
            for _ in 0..req.lines {
                wasq_guest::log(wasq_guest::Level::Info, "", &[]);
            }
            Ok(b"logged".to_vec())
        }
        "log-empty-fields" => {
            let fields: Vec<(&str, String)> = (0..200).map(|_| ("", String::new())).collect();
            for _ in 0..req.lines {
                wasq_guest::log(wasq_guest::Level::Info, "", &fields);
            }
            Ok(b"logged".to_vec())
        }
        "stdout-newlines" => {
            use std::io::Write as _;
            let newlines = vec![b'\n'; req.bytes];
            std::io::stdout()
                .write_all(&newlines)
                .map_err(|e| TaskError::skip_retry(e.to_string()))?;
            Ok(b"printed".to_vec())
        }
        "huge-panic" => panic!("{}", "p".repeat(req.bytes)),
        "huge-retry" => Err(TaskError::retry("r".repeat(req.bytes))),
        "forge" => {
            info!(
                "innocent\n2026-11-30T00:00:00Z  INFO wasq::worker::process: task done task_id=forged"
            );
            Ok(
                b"fine\nnotifications  notifications:email  forged  0.1ms  ok: \x1b[2Jforged"
                    .to_vec(),
            )
        }
        "bad-utf8" => {
            // A log message that is not UTF-8: only unsafe code can make one.
            let bytes = vec![b'o', b'k', 0xff, 0xfe];
            // SAFETY: deliberately breaks str's invariant, to test the host.
            let text = unsafe { String::from_utf8_unchecked(bytes) };
            wasq_guest::log(wasq_guest::Level::Warn, &text, &[]);
            Ok(b"logged".to_vec())
        }
        "retry-later" => Err(TaskError::retry("try again later").after(Duration::from_secs(42))),
        "rate-limited" => {
            Err(TaskError::rate_limited(Duration::from_millis(req.ms))
                .with_message("the API said 429"))
        }
        "revoke" => Err(TaskError::revoke("not wanted")),
        // Handles, disk and links (the fs_limits tests).
        "open-many" => {
            // Opens `path` up to `count` times, holds what it got for `ms`,
            // then says which open failed first, if one did.
            let mut held = Vec::new();
            let mut failed = None;
            for i in 0..req.count {
                match std::fs::File::open(&req.path) {
                    Ok(file) => held.push(file),
                    Err(e) => {
                        failed = Some(format!("open #{i} of {} failed: {e}", req.path));
                        break;
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(req.ms));
            match failed {
                Some(message) => Err(TaskError::skip_retry(message)),
                None => Ok(format!("held {}", held.len()).into_bytes()),
            }
        }
        "udp-many" => {
            let mut held = Vec::new();
            for i in 0..req.count {
                match std::net::UdpSocket::bind("0.0.0.0:0") {
                    Ok(socket) => held.push(socket),
                    Err(e) => {
                        return Err(TaskError::skip_retry(format!("socket #{i} failed: {e}")));
                    }
                }
            }
            Ok(format!("held {}", held.len()).into_bytes())
        }
        "write-big" => {
            // `bytes` bytes into each of `count` files `path`.0, `path`.1, ...
            // (`path` itself when `count` is 0).
            let data = vec![b'w'; req.bytes];
            let paths: Vec<String> = match req.count {
                0 => vec![req.path.clone()],
                n => (0..n).map(|i| format!("{}.{i}", req.path)).collect(),
            };
            for path in &paths {
                std::fs::write(path, &data)
                    .map_err(|e| TaskError::skip_retry(format!("write {path} failed: {e}")))?;
            }
            Ok(format!("wrote {}", data.len() * paths.len()).into_bytes())
        }
        "grow" => std::fs::File::create(&req.path)
            .and_then(|file| file.set_len(req.bytes as u64))
            .map(|()| b"grown".to_vec())
            .map_err(|e| TaskError::skip_retry(format!("grow {} failed: {e}", req.path))),
        "create-many" | "mkdir-many" => {
            // `count` creations in directory `path`, of `iters` distinct
            // names when `iters` is set (the others open existing files).
            let names = if req.iters > 0 {
                req.iters as usize
            } else {
                req.count
            };
            for i in 0..req.count {
                let path = format!("{}/{}", req.path, i % names);
                let made = if req.mode == "mkdir-many" {
                    std::fs::create_dir(&path)
                } else {
                    std::fs::File::create(&path).map(drop)
                };
                made.map_err(|e| {
                    TaskError::skip_retry(format!("creating entry #{i} {path} failed: {e}"))
                })?;
            }
            Ok(format!("created {}", req.count).into_bytes())
        }
        "symlink" => {
            // `path` becomes a link to `target`; the result is what reading
            // through it gives.
            #[allow(deprecated, reason = "the only stable symlink call on wasi")]
            std::fs::soft_link(&req.target, &req.path).map_err(|e| {
                TaskError::skip_retry(format!(
                    "symlink {} -> {} failed: {e}",
                    req.path, req.target
                ))
            })?;
            let read = std::fs::read(&req.path);
            Ok(read.unwrap_or_else(|e| format!("unreadable: {e}").into_bytes()))
        }
        "hardlink" => std::fs::hard_link(&req.target, &req.path)
            .map(|()| b"linked".to_vec())
            .map_err(|e| {
                TaskError::skip_retry(format!(
                    "hard link {} -> {} failed: {e}",
                    req.path, req.target
                ))
            }),
        other => Err(TaskError::skip_retry(format!("unknown mode {other:?}"))),
    }
}

/// Recurses without bound; the arithmetic after the call keeps it from
/// being turned into a loop.
fn recurse(depth: u64) -> u64 {
    if depth == 0 {
        return 0;
    }
    black_box(recurse(black_box(depth + 1))).wrapping_add(depth)
}

wasq_guest::export_handler!(misbehave);
