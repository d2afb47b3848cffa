//! Running commands and showing their output readably when they fail; what
//! `/proc` says of a process's CPU time and memory, for the benches.

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

/// utime + stime of process `pid` from `/proc/PID/stat`, in clock ticks ([`clock_ticks_per_s`]).
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|e| panic!("reading /proc/{pid}/stat: {e}"));
    let rest = stat.rsplit_once(')').expect("a stat line").1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().expect("utime") + f[12].parse::<u64>().expect("stime")
}

/// `sysconf(CLK_TCK)` (from `getconf`; 100 if that fails).
pub fn clock_ticks_per_s() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// A peak or current size from `/proc/PID/status` (`VmHWM`, `VmRSS`), in MiB.
pub fn vm_mib(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("reading /proc/{pid}/status: {e}"));
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} for {pid}"));
    kib / 1024.0
}
