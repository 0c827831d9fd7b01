//! `wasq build`: turn a handler's source (a Rust crate, a Python file or
//! directory, a JavaScript module) into a component, with the WIT that this
//! `wasq` implements, then check it against the world as `wasq check` does.
//!
//! One module per language: [`rust`], [`python`] and [`js`]. Each writes
//! the component to the requested output path; this module detects the
//! language, provides the WIT in a temporary directory and loads the result
//! into a one-task runtime.

mod js;
mod python;
mod rust;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context as _, bail};

/// The WIT package this binary implements, written out for the toolchains
/// so that an installed `wasq` builds handlers anywhere.
pub const WIT: &str = include_str!("../../../../wit/wasq.wit");

/// The world every handler implements.
pub const WORLD: &str = wasq::runtime::WORLD;

/// Arguments of `wasq build`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The handler: a Rust crate (a dir with Cargo.toml), a Python file or a
    /// dir with app.py, or a JavaScript file or a dir with package.json.
    source: PathBuf,
    /// Where to write the component.
    #[arg(short, long)]
    out: PathBuf,
    /// The handler's language, when it is not detected from the source.
    #[arg(long, value_enum)]
    lang: Option<Lang>,
    /// Where to keep the code compiled by the check (default: wasq's usual
    /// cache, so a worker on this machine starts without compiling it).
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// Build only; do not load the component into a runtime to check it.
    #[arg(long)]
    no_check: bool,
}

/// A handler's language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    Rust,
    Python,
    Js,
}

impl std::fmt::Display for Lang {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Lang::Rust => "Rust",
            Lang::Python => "Python",
            Lang::Js => "JavaScript",
        })
    }
}

/// The language of a handler's source, from its files.
pub fn detect(source: &Path) -> anyhow::Result<Lang> {
    if source.is_file() {
        return match source.extension().and_then(|e| e.to_str()) {
            Some("py") => Ok(Lang::Python),
            Some("js" | "mjs") => Ok(Lang::Js),
            Some("toml") if source.file_name() == Some("Cargo.toml".as_ref()) => Ok(Lang::Rust),
            _ => bail!(
                "{}: not a handler source (expected a .py or .js file, or a directory)",
                source.display()
            ),
        };
    }
    if !source.is_dir() {
        bail!("{}: no such file or directory", source.display());
    }
    if source.join("Cargo.toml").is_file() {
        return Ok(Lang::Rust);
    }
    if source.join("package.json").is_file() {
        return Ok(Lang::Js);
    }
    if source.join("app.py").is_file() || !python::modules_in(source)?.is_empty() {
        return Ok(Lang::Python);
    }
    bail!(
        "{}: cannot tell the handler's language (no Cargo.toml, package.json, app.py or *.py)",
        source.display()
    )
}

/// A private temporary directory, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(what: &str) -> anyhow::Result<Self> {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir = std::env::temp_dir().join(format!(
            "wasq-{what}-{}-{nanos}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let mut builder = std::fs::DirBuilder::new();
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder
            .create(&dir)
            .with_context(|| format!("creating {}", dir.display()))?;
        Ok(Self(dir))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let lang = match args.lang {
        Some(lang) => lang,
        None => detect(&args.source)?,
    };
    let work = TempDir::new("build")?;
    let wit = work.path().join("wit");
    std::fs::create_dir(&wit)?;
    std::fs::write(wit.join("wasq.wit"), WIT)?;
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let started = Instant::now();
    let (source, out) = (args.source.clone(), args.out.clone());
    tokio::task::spawn_blocking(move || match lang {
        Lang::Rust => rust::build(&source, &out, &wit),
        Lang::Python => python::build(&source, &out, &wit),
        // JavaScript support is in host/src/cli/build/js.rs.
        Lang::Js => js::build(&source, &out, &wit),
    })
    .await
    .context("the build panicked")?
    .with_context(|| format!("building the {lang} handler {}", args.source.display()))?;
    let size = std::fs::metadata(&args.out)
        .with_context(|| format!("the build wrote no {}", args.out.display()))?
        .len();
    println!(
        "{}: {lang} handler built in {:.1?}, {} KiB",
        args.out.display(),
        started.elapsed(),
        size / 1024
    );
    if args.no_check {
        return Ok(ExitCode::SUCCESS);
    }
    check(&args.out, args.cache_dir.as_deref(), work.path()).await?;
    Ok(ExitCode::SUCCESS)
}

/// Loads the component as the only task type of a runtime, exactly as
/// `wasq check` loads a config's modules: it must implement the world and
/// import only what the host provides.
async fn check(module: &Path, cache_dir: Option<&Path>, work: &Path) -> anyhow::Result<()> {
    let module = std::path::absolute(module)?;
    let mut config = String::from("[runtime]\nmax_sandboxes = 1\n");
    if let Some(dir) = cache_dir {
        config += &format!("cache_dir = {}\n", toml_string(&std::path::absolute(dir)?));
    }
    // Generous: the check loads the component, it runs no task.
    config += &format!(
        "\n[tasks.\"build:check\"]\nmodule = {}\nmemory = \"1GiB\"\n",
        toml_string(&module)
    );
    let path = work.join("wasq.toml");
    std::fs::write(&path, config)?;
    let (_config, runtime) = super::load_runtime(&path)
        .await
        .with_context(|| format!("{} does not pass `wasq check`", module.display()))?;
    if let Some(t) = runtime.task_types().into_iter().next() {
        println!(
            "{}: implements {WORLD}; compiled in {:.1?} (sha256 {})",
            module.display(),
            t.load_time,
            &t.module_hash[..12]
        );
    }
    Ok(())
}

fn toml_string(path: &Path) -> String {
    // A TOML basic string is a JSON string for every path we write.
    serde_json::to_string(&path.to_string_lossy()).unwrap_or_default()
}

/// Runs a toolchain command, failing with its name and status.
pub fn run_tool(command: &mut std::process::Command, what: &str) -> anyhow::Result<()> {
    let status = command
        .status()
        .with_context(|| format!("running {what}"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}
