//! Where the build lives: the cargo target dir and the binaries in it, found from the running test executable.

use std::path::PathBuf;

/// The profile dir holding the workspace's binaries, e.g. `target/debug`.
///
/// Integration tests run from `target/debug/deps/<test>-<hash>`, so it is the
/// executable's grandparent; this also follows `CARGO_TARGET_DIR`.
pub fn profile_dir() -> PathBuf {
    let exe =
        std::env::current_exe().expect("the test executable's path is needed to find target/");
    let deps = exe
        .parent()
        .expect("the test executable lives in a directory");
    let dir = if deps.file_name().is_some_and(|n| n == "deps") {
        deps.parent().expect("target/<profile>/deps has a parent")
    } else {
        deps
    };
    dir.to_path_buf()
}

/// The cargo target dir (`target/`), parent of [`profile_dir`].
pub fn target_dir() -> PathBuf {
    profile_dir()
        .parent()
        .expect("target/<profile> has a parent")
        .to_path_buf()
}

/// Path of a workspace binary (`target/<profile>/<name>`); it may not exist yet.
pub fn bin_path(name: &str) -> PathBuf {
    profile_dir().join(name)
}
