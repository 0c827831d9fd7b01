//! Rust handlers: `cargo build --release --target wasm32-wasip2` in the
//! crate, then the `.wasm` that cargo reports is copied to the output. The
//! crate's `wasq-guest` dependency carries its own copy of the WIT.

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context as _, bail};

pub fn build(source: &Path, out: &Path, _wit: &Path) -> anyhow::Result<()> {
    let manifest = if source.is_file() {
        source.to_owned()
    } else {
        source.join("Cargo.toml")
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut child = Command::new(cargo)
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .arg("--manifest-path")
        .arg(&manifest)
        .arg("--message-format=json-render-diagnostics")
        .stdout(Stdio::piped())
        .spawn()
        .context("running cargo (is Rust installed? https://rustup.rs)")?;
    let mut wasm: Option<PathBuf> = None;
    let stdout = child.stdout.take().expect("piped stdout");
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line?;
        let Ok(message) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if message["reason"] != "compiler-artifact"
            || !same_file(&message["manifest_path"], &manifest)
        {
            continue;
        }
        for file in message["filenames"].as_array().into_iter().flatten() {
            if let Some(file) = file.as_str().filter(|f| f.ends_with(".wasm")) {
                wasm = Some(PathBuf::from(file));
            }
        }
    }
    let status = child.wait()?;
    if !status.success() {
        bail!(
            "cargo build failed ({status}); the wasm target is installed with `rustup target add wasm32-wasip2`"
        );
    }
    let Some(wasm) = wasm else {
        bail!(
            "cargo built no .wasm for {}: a handler crate has `[lib] crate-type = [\"cdylib\"]`",
            manifest.display()
        );
    };
    std::fs::copy(&wasm, out)
        .with_context(|| format!("copying {} to {}", wasm.display(), out.display()))?;
    Ok(())
}

fn same_file(reported: &serde_json::Value, manifest: &Path) -> bool {
    match (reported.as_str(), manifest.canonicalize()) {
        (Some(reported), Ok(manifest)) => Path::new(reported).canonicalize().ok() == Some(manifest),
        _ => false,
    }
}
