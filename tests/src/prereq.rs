//! Skipping (or, under CI, failing) whole-system tests when root or a tool is missing.

use std::path::Path;

/// Everything the whole-system tests use: pacman, the makepkg/repo-add toolchain, nginx, zstd.
pub const WHOLE_SYSTEM_TOOLS: &[&str] = &[
    "pacman", "makepkg", "repo-add", "bsdtar", "fakeroot", "nginx", "zstd", "runuser", "useradd",
];

const INSTALL_HINT: &str = "apt-get install pacman-package-manager makepkg libarchive-tools \
     fakeroot nginx-light zstd curl wget aria2";

/// True when the test may run: it is root and every tool is on `PATH`.
///
/// Otherwise, with `CI=true` it panics naming what is missing; without, it
/// prints a loud `SKIPPED` line and returns false so the test can return early.
pub fn require(tools: &[&str]) -> bool {
    check(tools, true)
}

/// Like [`require`] but without the root check.
pub fn require_tools(tools: &[&str]) -> bool {
    check(tools, false)
}

/// Whether this process runs as root (effective uid 0).
pub fn is_root() -> bool {
    rustix::process::geteuid().as_raw() == 0
}

/// Whether `tool` is an executable file in one of `PATH`'s directories.
pub fn on_path(tool: &str) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    let Some(path) = std::env::var_os("PATH") else {
        return false;
    };
    std::env::split_paths(&path).any(|dir| {
        Path::new(&dir)
            .join(tool)
            .metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

fn check(tools: &[&str], need_root: bool) -> bool {
    let mut missing = Vec::new();
    if need_root && !is_root() {
        missing.push("root (the tests run pacman -S and create a build user)".to_string());
    }
    missing.extend(
        tools
            .iter()
            .filter(|t| !on_path(t))
            .map(|t| format!("`{t}` on PATH")),
    );
    if missing.is_empty() {
        return true;
    }
    let test = std::thread::current()
        .name()
        .unwrap_or("this test")
        .to_string();
    let msg = format!("{test} needs {} (hint: {INSTALL_HINT})", missing.join(", "));
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("CI=true and {msg}");
    }
    // Straight to the stderr handle: libtest captures `eprintln!` of passing tests,
    // and a skip must be seen.
    use std::io::Write as _;
    let _ = writeln!(
        std::io::stderr(),
        "\n**********\nSKIPPED: {msg}\n**********\n"
    );
    note_skip(&msg);
    false
}

/// Appends `line` to the file `$PACMESH_SKIP_LOG` names, if any: `scripts/test.sh` sets it
/// and lists every skipped test, with why, at the end of the run.
pub fn note_skip(line: &str) {
    use std::io::Write as _;
    let Some(path) = std::env::var_os("PACMESH_SKIP_LOG") else {
        return;
    };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path);
    if let Ok(mut file) = file {
        let _ = writeln!(file, "{line}");
    }
}
