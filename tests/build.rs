//! Builds every guest the tests run, once per test build: the example
//! handlers (`examples-wasm/`) and the misbehaving guests (`tests/guests/`),
//! for wasm32-wasip2 in release mode, each workspace in its own target dir.
//! Emits `WASQ_EXAMPLES_DIR` and `WASQ_GUESTS_DIR` for the tests, and fails
//! the build when a guest crate has no test that names it.

use std::path::{Path, PathBuf};
use std::process::Command;

const EXAMPLES: &[&str] = &["email", "webhook-sync", "image-resize", "noop", "http-get"];
const GUESTS: &[&str] = &[
    "misbehave",
    "not-a-handler",
    "big-static",
    "http-client",
    "handler-v0-1",
];

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap())
        .parent()
        .unwrap()
        .to_owned();
    for watched in [
        "wit",
        "guest-sdk/rust/src",
        "guest-sdk/rust/Cargo.toml",
        "examples-wasm/Cargo.toml",
        "tests/guests/Cargo.toml",
        "tests/e2e",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    for krate in EXAMPLES {
        println!(
            "cargo:rerun-if-changed={}",
            root.join("examples-wasm").join(krate).display()
        );
    }
    for krate in GUESTS {
        println!(
            "cargo:rerun-if-changed={}",
            root.join("tests/guests").join(krate).display()
        );
    }
    let examples = build(&root.join("examples-wasm"));
    let guests = build(&root.join("tests/guests"));
    println!("cargo:rustc-env=WASQ_EXAMPLES_DIR={}", examples.display());
    println!("cargo:rustc-env=WASQ_GUESTS_DIR={}", guests.display());
    require_tests(&root, GUESTS);
}

/// `cargo build --release` of a guest workspace; returns where its `.wasm`
/// files are.
fn build(workspace: &Path) -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace)
        .args(["build", "--release", "--target", "wasm32-wasip2"]);
    // The outer build's settings (target dir, flags, jobserver) are for the
    // host; the guests must not inherit them.
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        let keep = key == "CARGO_HOME" || key == "CARGO_NET_OFFLINE";
        if (key.starts_with("CARGO_") && !keep)
            || key.starts_with("RUST") && key != "RUSTUP_HOME" && key != "RUSTUP_TOOLCHAIN"
        {
            cmd.env_remove(&key);
        }
    }
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("cannot run cargo for {}: {e}", workspace.display()));
    assert!(
        status.success(),
        "building the guests in {} failed; is the target installed? (rustup target add wasm32-wasip2)",
        workspace.display()
    );
    workspace.join("target/wasm32-wasip2/release")
}

/// Every misbehaving guest must be used by some test, so none rots.
fn require_tests(root: &Path, guests: &[&str]) {
    let mut sources = String::new();
    for entry in std::fs::read_dir(root.join("tests/e2e")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "rs") {
            sources.push_str(&std::fs::read_to_string(path).unwrap());
        }
    }
    for guest in guests {
        // A library's .wasm has underscores, a binary's keeps its hyphens.
        let lib = format!("{}.wasm", guest.replace('-', "_"));
        let bin = format!("{guest}.wasm");
        assert!(
            sources.contains(&format!("\"{guest}\""))
                || sources.contains(&lib)
                || sources.contains(&bin),
            "guest {guest} is built but no test in tests/e2e uses it"
        );
    }
}
