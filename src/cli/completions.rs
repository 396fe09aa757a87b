//! `gameday completions SHELL`: a completion script generated from the same
//! clap definition the binary parses with, so it never drifts from the flags.

use clap::CommandFactory;
use clap_complete::Shell;

use super::shared::print_text;
use super::{Cli, Error, Outcome};

/// How to install each script; shown by `gameday completions --help`.
pub(super) const INSTALL: &str = "\
Install:
  bash  mkdir -p ~/.local/share/bash-completion/completions
        gameday completions bash > ~/.local/share/bash-completion/completions/gameday
  zsh   mkdir -p ~/.zfunc && gameday completions zsh > ~/.zfunc/_gameday
        (and in ~/.zshrc, before compinit: fpath=(~/.zfunc $fpath))
  fish  gameday completions fish > ~/.config/fish/completions/gameday.fish";

/// Prints the completion script for `shell` to stdout.
pub(super) fn print(shell: Shell) -> Result<Outcome, Error> {
    let mut cmd = Cli::command();
    let name = cmd.get_name().to_string();
    // Generated in memory: clap_complete panics on a failed write, and a
    // closed pipe (`gameday completions bash | head`) is not an error.
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, name, &mut script);
    print_text(&String::from_utf8_lossy(&script));
    Ok(Outcome::Done)
}
