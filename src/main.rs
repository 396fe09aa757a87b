//! The `gameday` binary: parse arguments, run the command, exit with its code.

fn main() {
    std::process::exit(gameday::cli::main());
}
