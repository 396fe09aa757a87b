//! `gameday completions SHELL`: the real binary prints a script that names the
//! commands and flags, and that the shell itself accepts (where installed).

use std::path::Path;
use std::process::Command;

/// Runs `gameday completions <shell>`: (exit code, stdout, stderr).
fn completions(shell: &str) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_gameday"))
        .args(["completions", shell])
        .output()
        .expect("run gameday");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The script of `shell`, checked to name every command and a few flags.
fn script(shell: &str) -> String {
    let (code, stdout, stderr) = completions(shell);
    assert_eq!(code, 0, "{shell}: {stderr}");
    assert!(
        stderr.is_empty(),
        "{shell}: nothing but the script is printed: {stderr}"
    );
    for word in [
        "validate",
        "plan",
        "run",
        "recover",
        "cleanup",
        "policy",
        "report",
        "history",
        "completions",
        // Flags (each shell spells them its own way: `--approve`, `-l approve`):
        // one of a single command, one flattened into several, an AWS flag.
        "approve",
        "runs-dir",
        "endpoint-url",
        "fail-on-regression",
    ] {
        assert!(
            stdout.contains(word),
            "{shell} script does not name `{word}`:\n{stdout}"
        );
    }
    stdout
}

/// Checks `text` with `<shell> -n` (parse only) if that shell is installed;
/// otherwise says so and skips.
fn parses_in(shell: &str, text: &str) {
    let installed = Command::new(shell)
        .args(["-c", "exit 0"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !installed {
        // Straight to stderr, past the test harness's capture, so the skip is seen.
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "skipped `{shell} -n` on the completion script: {shell} is not installed here"
        );
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join(format!("gameday.{shell}"));
    std::fs::write(&file, text).expect("write the script");
    let out = Command::new(shell)
        .arg("-n")
        .arg(Path::new(&file))
        .output()
        .expect("run the shell");
    assert!(
        out.status.success(),
        "`{shell} -n` rejects the script: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn bash_completions_name_the_commands_and_parse() {
    let text = script("bash");
    assert!(
        text.contains("complete -F"),
        "a bash completion registers a function:\n{text}"
    );
    assert!(text.contains("--approve"), "{text}");
    parses_in("bash", &text);
}

#[test]
fn zsh_completions_name_the_commands_and_parse() {
    let text = script("zsh");
    assert!(
        text.starts_with("#compdef gameday"),
        "zsh loads it by its first line:\n{text}"
    );
    assert!(text.contains("--approve"), "{text}");
    parses_in("zsh", &text);
}

#[test]
fn fish_completions_name_the_commands_and_parse() {
    let text = script("fish");
    assert!(text.contains("complete -c gameday"), "{text}");
    assert!(text.contains("-l approve"), "{text}");
    parses_in("fish", &text);
}

#[test]
fn elvish_and_powershell_completions_name_the_commands() {
    script("elvish");
    script("powershell");
}

#[test]
fn an_unknown_shell_is_a_usage_error_that_lists_the_shells() {
    let (code, stdout, stderr) = completions("tcsh");
    assert_eq!(code, 2, "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains("bash") && stderr.contains("zsh") && stderr.contains("fish"),
        "{stderr}"
    );
}

#[test]
fn completions_help_says_how_to_install_each_script() {
    let out = Command::new(env!("CARGO_BIN_EXE_gameday"))
        .args(["completions", "--help"])
        .output()
        .expect("run gameday");
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    for line in [
        "gameday completions bash > ~/.local/share/bash-completion/completions/gameday",
        "gameday completions zsh > ~/.zfunc/_gameday",
        "gameday completions fish > ~/.config/fish/completions/gameday.fish",
    ] {
        assert!(help.contains(line), "missing `{line}` in:\n{help}");
    }
}
