//! Link options for the `pacmeshd` binary.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The functions a serving daemon runs, in the order the release link
/// places them (written by `bench/symbol-order.sh`).
const SYMBOL_ORDER: &str = "symbol-order.txt";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed={SYMBOL_ORDER}");
    println!("cargo:rerun-if-changed=../Cargo.lock");
    // What decides which linker runs and with what: cargo does not run a
    // build script again when only these change, and a decision made for
    // one linker would break the link with another.
    let target = env("TARGET").to_uppercase().replace('-', "_");
    for name in [
        "RUSTFLAGS".to_owned(),
        "CARGO_ENCODED_RUSTFLAGS".to_owned(),
        "RUSTC_LINKER".to_owned(),
        "RUSTC_WRAPPER".to_owned(),
        "RUSTC_WORKSPACE_WRAPPER".to_owned(),
        format!("CARGO_TARGET_{target}_LINKER"),
        format!("CARGO_TARGET_{target}_RUSTFLAGS"),
    ] {
        println!("cargo:rerun-if-env-changed={name}");
    }
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

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_default()
}

/// Places the functions of `SYMBOL_ORDER` side by side at the front of the
/// code. The kernel maps a binary's code 64 KiB around each page a process
/// touches, so functions run once at start-up, scattered through 8 MB of
/// code, kept 6 MiB of it resident; packed, they keep under 3 MiB
/// (bench/README.md). Only LLD knows the option (rustc links with it by
/// default on x86_64 Linux since 1.90), so a test link decides. The names
/// carry hashes of the compiler, the crates' versions and (for some) the
/// code itself: a list made by another compiler, for another target or
/// before Cargo.lock changed orders little or nothing, and the build says
/// so.
fn order_symbols() {
    let manifest = PathBuf::from(env("CARGO_MANIFEST_DIR"));
    let order = manifest.join(SYMBOL_ORDER);
    let Ok(text) = std::fs::read_to_string(&order) else {
        return;
    };
    let made_for = |key: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix("# ")?.strip_prefix(key))
            .map(str::trim)
    };
    // Another target's functions are other functions.
    if made_for("target:").is_some_and(|made| made != env("TARGET")) {
        return;
    }
    let args = [
        format!("-Wl,--symbol-ordering-file={}", order.display()),
        "-Wl,--no-warn-symbol-ordering".to_owned(),
    ];
    if let Err(why) = test_link(&args) {
        println!(
            "cargo:warning=a test link with --symbol-ordering-file failed ({why}): \
             pacmeshd's code is laid out unordered and keeps more memory resident"
        );
        return;
    }
    for arg in &args {
        println!("cargo:rustc-link-arg-bins={arg}");
    }
    let stale = |what: &str| {
        println!(
            "cargo:warning={SYMBOL_ORDER} was made {what}: \
             run bench/symbol-order.sh to lay pacmeshd's code out again"
        );
    };
    let rustc = Command::new(rustc()).arg("-V").output();
    let rustc = rustc.map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned());
    if let Ok(rustc) = rustc {
        if made_for("rustc:") != Some(rustc.as_str()) {
            stale(&format!("by another compiler than {rustc}"));
        }
    }
    let lock = std::fs::read(manifest.join("../Cargo.lock")).map(|bytes| fnv1a(&bytes));
    if let Ok(lock) = lock {
        if made_for("Cargo.lock:") != Some(format!("{lock:016x}").as_str()) {
            stale("before Cargo.lock last changed");
        }
    }
}

/// FNV-1a, 64 bits: `bench/symbol-order.sh` writes the same of Cargo.lock.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn rustc() -> String {
    std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into())
}

/// Links an empty program with `args` added, as cargo would link this
/// crate's binary: through the same wrappers, for the same target, with
/// the same linker and flags. The error is the first line rustc printed.
fn test_link(args: &[String]) -> Result<(), String> {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").ok_or("no OUT_DIR")?);
    let probe = out.join("link-probe.rs");
    std::fs::write(&probe, "fn main() {}\n").map_err(|e| e.to_string())?;
    let binary = out.join("link-probe");
    let wrappers = ["RUSTC_WRAPPER", "RUSTC_WORKSPACE_WRAPPER"]
        .map(env)
        .into_iter()
        .filter(|wrapper| !wrapper.is_empty());
    let mut program: Vec<String> = wrappers.collect();
    program.push(rustc());
    let mut command = Command::new(&program[0]);
    command
        .args(&program[1..])
        .arg("--crate-name=link_probe")
        .arg("--cap-lints=allow")
        .arg("-o")
        .arg(&binary)
        .arg(&probe)
        .arg("--target")
        .arg(env("TARGET"));
    if let Ok(linker) = std::env::var("RUSTC_LINKER") {
        command.arg(format!("-Clinker={linker}"));
    }
    // The build's own flags (a `-Clink-arg=-fuse-ld=bfd`, say).
    let flags = env("CARGO_ENCODED_RUSTFLAGS");
    command.args(flags.split('\x1f').filter(|flag| !flag.is_empty()));
    for arg in args {
        command.arg(format!("-Clink-arg={arg}"));
    }
    linked(&mut command, &binary)
}

fn linked(command: &mut Command, binary: &Path) -> Result<(), String> {
    let out = command.output().map_err(|e| e.to_string())?;
    if out.status.success() && binary.exists() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let first = stderr.lines().find(|line| !line.trim().is_empty());
    Err(first.unwrap_or("no message").trim().to_owned())
}
