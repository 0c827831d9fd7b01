//! Shared support for wasq's end-to-end tests: where the built guests are,
//! configs written into temporary directories, and the `wasq` binary.
//!
//! Guests are built once per test build by `build.rs`; the compiled-module
//! cache is shared by all tests (`target/wasq-test-cache`), so each module
//! is compiled once per machine, not once per test.

use std::path::{Path, PathBuf};

use wasq::config::Config;
use wasq::runtime::{Runtime, RuntimeError};

/// A built example handler, e.g. `example("email")`.
pub fn example(name: &str) -> PathBuf {
    Path::new(env!("WASQ_EXAMPLES_DIR")).join(format!("{}.wasm", name.replace('-', "_")))
}

/// A built test guest, e.g. `guest("misbehave")`.
pub fn guest(name: &str) -> PathBuf {
    Path::new(env!("WASQ_GUESTS_DIR")).join(format!("{}.wasm", name.replace('-', "_")))
}

/// The compiled-component cache the tests share.
pub fn cache_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/wasq-test-cache")
}

/// The seed tutorial's three task types as `[tasks]` TOML, with `images`
/// granted read-write as `/images` to `images:resize`.
pub fn tutorial_task_types(images: &Path) -> String {
    format!(
        r#"
[tasks."notifications:email"]
module = "{{examples}}/email.wasm"

[tasks."webhooks:sync"]
module = "{{examples}}/webhook_sync.wasm"

[tasks."images:resize"]
module = "{{examples}}/image_resize.wasm"
memory = "256MiB"
dirs = [{{ host = {images:?}, guest = "/images", mode = "rw" }}]
"#,
        images = images.display().to_string()
    )
}

/// A config file in a fresh temporary directory.
pub struct TestConfig {
    /// The directory; removed on drop.
    pub dir: tempfile::TempDir,
    /// The config file inside it.
    pub path: PathBuf,
}

impl TestConfig {
    /// Writes `body` after a `[runtime]` section that points at the shared
    /// cache and keeps the pool small. `{examples}` and `{guests}` in
    /// `body` are replaced by the directories of the built guests.
    pub fn new(body: &str) -> Self {
        Self::with_sandboxes(body, 32)
    }

    /// Like [`new`](Self::new) with room for `max_sandboxes` tasks at once.
    pub fn with_sandboxes(body: &str, max_sandboxes: usize) -> Self {
        let dir = tempfile::tempdir().expect("creating a temp dir");
        let path = dir.path().join("wasq.toml");
        let text = format!(
            "[runtime]\ncache_dir = {:?}\nmax_sandboxes = {max_sandboxes}\n\n{}",
            cache_dir().display().to_string(),
            body.replace("{examples}", env!("WASQ_EXAMPLES_DIR"))
                .replace("{guests}", env!("WASQ_GUESTS_DIR"))
        );
        std::fs::write(&path, text).expect("writing the config");
        Self { dir, path }
    }

    /// Loads the config and the runtime.
    pub fn load(&self) -> Result<Runtime, RuntimeError> {
        let config = Config::load(&self.path)?;
        Runtime::load(&config)
    }

    /// Loads the runtime, panicking with the error.
    pub fn runtime(&self) -> Runtime {
        self.load()
            .unwrap_or_else(|e| panic!("loading {}: {e}", self.path.display()))
    }
}

/// The `wasq` binary (`scripts/test` builds it before the tests).
pub fn wasq_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/e2e-<hash> -> target/<profile>/wasq
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join("wasq"))
        .expect("target directory");
    assert!(
        bin.exists(),
        "{} is missing: run the tests with scripts/test (it builds the binary first), or `cargo build -p wasq` before `cargo test`",
        bin.display()
    );
    bin
}

/// Runs `wasq` with `args`; returns (exit code, stdout, stderr).
pub fn run_wasq(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(wasq_bin())
        .args(args)
        .output()
        .expect("running wasq");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub mod procfs;
pub mod redis;

/// A queue name unique to this test run, so tests can share one cluster.
pub fn unique_queue(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

/// A child process killed when dropped, so a failing test leaves no
/// `wasq worker` behind.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `component` with a custom section appended, named `name` and holding
/// `body`: the same handler under another SHA-256 (and as large as `body`
/// makes it), which the registry tests and benchmark push as new versions.
pub fn with_custom_section(component: &[u8], name: &str, body: &[u8]) -> Vec<u8> {
    fn leb(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let mut section = Vec::with_capacity(body.len() + name.len() + 5);
    leb(name.len(), &mut section);
    section.extend_from_slice(name.as_bytes());
    section.extend_from_slice(body);
    let mut out = Vec::with_capacity(component.len() + section.len() + 6);
    out.extend_from_slice(component);
    out.push(0);
    leb(section.len(), &mut out);
    out.extend_from_slice(&section);
    out
}
