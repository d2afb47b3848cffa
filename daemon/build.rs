//! Link options for the `pacmeshd` binary.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The functions a serving daemon runs, in the order the release link
/// places them (written by `bench/symbol-order.sh`).
const SYMBOL_ORDER: &str = "symbol-order.txt";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed={SYMBOL_ORDER}");
    let env = |name: &str| std::env::var(name).unwrap_or_default();
    if env("CARGO_CFG_TARGET_OS") != "linux" || env("CARGO_CFG_TARGET_ENV") != "gnu" {
        return;
    }
    // RELR: the binary's relative relocations packed into a bitmap
    // (glibc ≥ 2.36, binutils ≥ 2.38). As `RELA` they were 440 KB read at
    // every start and resident for the process's life (bench/README.md,
    // "Where the memory goes").
    println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    if env("PROFILE") == "release" {
        order_symbols();
    }
}

/// Places the functions of `SYMBOL_ORDER` side by side at the front of the
/// code. The kernel maps a binary's code 64 KiB around each page a process
/// touches, so functions run once at start-up, scattered through 8 MB of
/// code, kept 6 MiB of it resident; packed, they keep about 2 MiB
/// (bench/README.md). Only LLD knows the option (rustc links with it by
/// default on x86_64 Linux since 1.90), so a test link decides; the names
/// carry the compiler's hashes, so a file made by another compiler orders
/// nothing and is said so.
fn order_symbols() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let order = manifest.join(SYMBOL_ORDER);
    let Ok(text) = std::fs::read_to_string(&order) else {
        return;
    };
    let args = [
        format!("-Wl,--symbol-ordering-file={}", order.display()),
        "-Wl,--no-warn-symbol-ordering".to_owned(),
    ];
    if !linker_takes(&args) {
        println!(
            "cargo:warning=the linker does not take --symbol-ordering-file (not LLD): \
             pacmeshd's code is laid out unordered and keeps more memory resident"
        );
        return;
    }
    for arg in &args {
        println!("cargo:rustc-link-arg-bins={arg}");
    }
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let version = Command::new(&rustc).arg("-V").output();
    let version = version.map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned());
    if let Ok(version) = version {
        if !text.lines().any(|line| line == format!("# {version}")) {
            println!(
                "cargo:warning={SYMBOL_ORDER} was made by another compiler than {version}: \
                 run bench/symbol-order.sh to lay pacmeshd's code out again"
            );
        }
    }
}

/// Whether a program links with `args` added, by the linker rustc uses
/// for this target (and the one the build names, if any).
fn linker_takes(args: &[String]) -> bool {
    let Some(out) = std::env::var_os("OUT_DIR").map(PathBuf::from) else {
        return false;
    };
    let probe = out.join("link-probe.rs");
    if std::fs::write(&probe, "fn main() {}\n").is_err() {
        return false;
    }
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let mut command = Command::new(rustc);
    command
        .arg("--crate-name=link_probe")
        .arg("--edition=2021")
        .arg("-o")
        .arg(out.join("link-probe"))
        .arg(&probe);
    if let Ok(target) = std::env::var("TARGET") {
        command.arg("--target").arg(target);
    }
    if let Ok(linker) = std::env::var("RUSTC_LINKER") {
        command.arg(format!("-Clinker={linker}"));
    }
    // The build's own flags (a `-Clink-arg=-fuse-ld=bfd`, say).
    let flags = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    command.args(flags.split('\x1f').filter(|flag| !flag.is_empty()));
    for arg in args {
        command.arg(format!("-Clink-arg={arg}"));
    }
    linked(&mut command, &out.join("link-probe"))
}

fn linked(command: &mut Command, binary: &Path) -> bool {
    let status = command.output().map(|out| out.status.success());
    status.unwrap_or(false) && binary.exists()
}
