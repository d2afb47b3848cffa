//! Running commands and showing their output readably when they fail.

use std::fmt::Write as _;
use std::process::{Command, Output};

/// Runs `cmd` to completion, capturing stdout and stderr; panics only if it cannot be started.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("could not start {}: {e}", show_command(cmd)))
}

/// Runs `cmd` and panics with its full output unless it exits 0.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = run(cmd);
    expect_success(&out, &show_command(cmd));
    out
}

/// Panics with `what`, the exit status, stdout and stderr unless `out` is a success.
pub fn expect_success(out: &Output, what: &str) {
    if !out.status.success() {
        panic!("{}", describe(out, &format!("{what} failed")));
    }
}

/// A multi-line report of a finished command: a title, its status, stdout and stderr.
pub fn describe(out: &Output, title: &str) -> String {
    let mut s = format!("\n===== {title}: {} =====\n", out.status);
    for (name, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        let text = String::from_utf8_lossy(bytes);
        let _ = writeln!(s, "----- {name} ({} bytes) -----", bytes.len());
        s.push_str(text.trim_end());
        s.push('\n');
    }
    s.push_str("===== end =====\n");
    s
}

/// The command line as one string, for messages.
pub fn show_command(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        s.push(' ');
        s.push_str(&arg.to_string_lossy());
    }
    s
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
