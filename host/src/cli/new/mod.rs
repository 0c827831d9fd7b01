//! `wasq new --lang rust|python|js NAME`: a handler project that builds
//! with `wasq build` and runs with `wasq exec` as generated. The templates
//! are the files next to this one, embedded in the binary.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};

use super::build::Lang;

/// Arguments of `wasq new`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The handler's language.
    #[arg(long, value_enum)]
    lang: Lang,
    /// The project's directory (created; its last part names the handler).
    name: PathBuf,
    /// The task type the project's wasq.toml registers (default: `NAME:run`).
    #[arg(long)]
    task_type: Option<String>,
}

const RUST_CARGO: &str = include_str!("rust/Cargo.toml.tmpl");
const RUST_LIB: &str = include_str!("rust/lib.rs.tmpl");
const PYTHON_APP: &str = include_str!("python/app.py.tmpl");
const JS_APP: &str = include_str!("js/app.js.tmpl");
const WASQ_TOML: &str = include_str!("wasq.toml.tmpl");

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let dir = &args.name;
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .context("the project's name is not UTF-8")?
        .to_owned();
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        || !name.starts_with(|c: char| c.is_ascii_alphabetic())
    {
        bail!("{name}: a project name is letters, digits, - and _, starting with a letter");
    }
    if dir.exists() {
        bail!("{}: already exists", dir.display());
    }
    let task_type = args.task_type.unwrap_or_else(|| format!("{name}:run"));
    let module = format!("{}.wasm", name.replace('-', "_"));
    let mut files: Vec<(PathBuf, String)> = Vec::new();
    let (source, build_arg) = match args.lang {
        Lang::Rust => {
            let sdk = rust_sdk_dependency(dir)?;
            files.push((
                "Cargo.toml".into(),
                RUST_CARGO.replace("{name}", &name).replace("{sdk}", &sdk),
            ));
            files.push(("src/lib.rs".into(), RUST_LIB.to_owned()));
            files.push((".gitignore".into(), format!("target/\n{module}\n")));
            ("src/lib.rs", ".")
        }
        Lang::Python => {
            files.push(("app.py".into(), PYTHON_APP.to_owned()));
            files.push((".gitignore".into(), format!("{module}\n__pycache__/\n")));
            ("app.py", "app.py")
        }
        Lang::Js => {
            files.push(("app.js".into(), JS_APP.to_owned()));
            files.push((".gitignore".into(), format!("{module}\nnode_modules/\n")));
            ("app.js", "app.js")
        }
    };
    files.push((
        "wasq.toml".into(),
        WASQ_TOML
            .replace("{task_type}", &task_type)
            .replace("{module}", &module)
            .replace("{build}", &format!("wasq build {build_arg} -o {module}"))
            .replace(
                "{memory}",
                // An interpreter starts with ~13 MiB of memory in use.
                if args.lang == Lang::Rust {
                    "32MiB"
                } else {
                    "64MiB"
                },
            ),
    ));
    for (path, text) in &files {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    println!(
        "created {} ({} handler for {task_type} in {source})",
        dir.display(),
        args.lang
    );
    println!(
        "  cd {} && wasq build {build_arg} -o {module}",
        dir.display()
    );
    println!("  wasq exec {task_type} --payload '{{\"name\": \"wasq\"}}'");
    Ok(ExitCode::SUCCESS)
}

/// The `wasq-guest` dependency: a path to guest-sdk/rust when the project is
/// created inside a wasq checkout, otherwise the git repository.
fn rust_sdk_dependency(project: &Path) -> anyhow::Result<String> {
    let project = std::path::absolute(project)?;
    for dir in project.ancestors().skip(1) {
        let sdk = dir.join("guest-sdk/rust");
        if sdk.join("Cargo.toml").is_file() {
            let depth = project
                .strip_prefix(dir)
                .map_or(0, |rest| rest.components().count());
            let relative = format!("{}guest-sdk/rust", "../".repeat(depth));
            return Ok(format!("wasq-guest = {{ path = {relative:?} }}"));
        }
    }
    Ok(
        "# The SDK is not on crates.io: point this at a wasq checkout's guest-sdk/rust,\n\
        # e.g. wasq-guest = { path = \"/src/wasq/guest-sdk/rust\" }, or at its git repository.\n\
        wasq-guest = { git = \"https://github.com/wasq/wasq\" }"
            .to_owned(),
    )
}
