//! The `wasq` command line: see `wasq --help`.

mod cli;

/// mimalloc instead of the system allocator: a worker allocates and frees
/// small buffers for every task (Redis replies, messages, events), and
/// glibc's malloc was about a sixth of its CPU time in `perf` profiles of
/// `queue-bench`'s drain.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    quiet_when_stdout_closes();
    cli::main()
}

/// Ends the process quietly (exit 0) when stdout's reader has gone, as a
/// pipe's writer should (`wasq stats --json | head`): `print!` then
/// panics with "failed printing to stdout: Broken pipe", and this hook
/// exits instead of reporting that panic. Every other panic is reported as
/// before.
///
/// Not SIGPIPE's default disposition, the usual fix for filters: the
/// worker and the dashboards write to sockets too, and a vectored write
/// (`writev`, as hyper's and rustls' are) to a socket whose peer hung up
/// raises SIGPIPE, which would then kill a worker whenever a metrics
/// scrape went away mid-answer.
fn quiet_when_stdout_closes() {
    /// EPIPE on Linux, macOS and the BSDs.
    const EPIPE: i32 = 32;
    let closed = format!(
        "failed printing to stdout: {}",
        std::io::Error::from_raw_os_error(EPIPE)
    );
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if info.payload_as_str() == Some(closed.as_str()) {
            std::process::exit(0);
        }
        report(info);
    }));
}
