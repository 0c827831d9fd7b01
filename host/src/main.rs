//! The `wasq` command line: see `wasq --help`.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
