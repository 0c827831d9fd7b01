//! The `wasq` command line: see `wasq --help`.

mod cli;

/// mimalloc instead of the system allocator: a worker allocates and frees
/// small buffers for every task (Redis replies, messages, events), and
/// glibc's malloc was about a sixth of its CPU time in `perf` profiles of
/// `queue-bench`'s drain.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    cli::main()
}
