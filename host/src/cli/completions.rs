//! `wasq completions SHELL`: a completion script for the shell, generated
//! by `clap_complete` from the same definition that parses the command
//! line, so it knows every subcommand and flag of this build.

use std::process::ExitCode;

/// Where each shell looks for completion scripts (`wasq completions
/// --help`).
pub const WHERE_TO_PUT_IT: &str = "\
Save the script where your shell loads completions from, then open a new shell:

  bash  wasq completions bash > ~/.local/share/bash-completion/completions/wasq
        (needs the bash-completion package; for every user:
        /usr/share/bash-completion/completions/wasq)
  zsh   wasq completions zsh > ~/.zfunc/_wasq
        (with `fpath+=~/.zfunc` before `autoload -Uz compinit && compinit` in
        ~/.zshrc; for every user: /usr/local/share/zsh/site-functions/_wasq)
  fish  wasq completions fish > ~/.config/fish/completions/wasq.fish
        (for every user: /usr/share/fish/vendor_completions.d/wasq.fish)";

/// Arguments of `wasq completions`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The shell to complete in.
    #[arg(value_enum)]
    shell: clap_complete::Shell,
}

/// Prints the script for `command` (the whole `wasq` command line).
pub fn run(args: Args, command: &mut clap::Command) -> ExitCode {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, command, "wasq", &mut script);
    // print!, not a write to a locked stdout: a reader that went away
    // (`| head`) ends the process quietly (see main.rs).
    print!("{}", String::from_utf8_lossy(&script));
    ExitCode::SUCCESS
}
