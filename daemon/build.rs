//! Link options for the `pacmeshd` binary.

fn main() {
    // RELR: the binary's relative relocations packed into a bitmap
    // (glibc ≥ 2.36, binutils ≥ 2.38). As `RELA` they were 440 KB read at
    // every start and resident for the process's life (bench/README.md,
    // "Where the memory goes").
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux")
        && std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu")
    {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
