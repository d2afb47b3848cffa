//! The Arch package: `makepkg` builds `packaging/PKGBUILD` from this checkout, and the
//! `.pkg.tar.zst` holds every file the package promises (binaries under their installed names,
//! units, sysusers/tmpfiles, config with `backup=`, the Include file and the pacman hook that
//! rewrites it, man pages, completions, licence), each with the right content: the Include
//! file is what the packaged `pacmeshd --print-include` prints, the config, units and hook are
//! the repository's own files. The hook's script is also run on its own, without makepkg.
//!
//! makepkg refuses to run as root, and root's toolchain and registry cache (under /root, mode
//! 0700) are unreadable to any other user. So makepkg runs as root inside a user namespace
//! (`unshare --user --map-user=1000`): inside, the uid is 1000 and makepkg's EUID check
//! passes; outside, the kernel still sees root's uid, so owner-permission checks on /root and
//! on the checkout pass. No permission of any file is changed. fakeroot works unchanged inside.
//!
//! The PKGBUILD builds into the suite's own target dir with the suite's profile (see
//! `PACMESH_TARGET_DIR` in it), so this costs no second compilation of the workspace; the
//! crates are fetched first (online if needed) so the build itself runs offline.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use pacmesh_tests::prereq;
use pacmesh_tests::process::{describe, run, run_ok};

const PKGNAME: &str = "pacmesh";
const PKGEXT: &str = ".pkg.tar.zst";
/// Any non-zero uid: only makepkg's `EUID == 0` check sees it.
const INNER_ID: &str = "1000";

const BINARIES: &[&str] = &["pacmeshd", "pacsrv", "pacman.conf-insert"];

/// Installed path → the repository file it must be a byte-for-byte copy of.
const COPIES: &[(&str, &str)] = &[
    ("usr/lib/pacmesh/pacmesh-ports", "systemd/pacmesh-ports"),
    (
        "usr/lib/systemd/system/pacmeshd.service",
        "systemd/pacmeshd.service",
    ),
    (
        "usr/lib/systemd/system/pacmesh-ports.service",
        "systemd/pacmesh-ports.service",
    ),
    (
        "usr/lib/sysusers.d/pacmesh.conf",
        "systemd/pacmesh.sysusers",
    ),
    (
        "usr/lib/tmpfiles.d/pacmesh.conf",
        "systemd/pacmesh.tmpfiles",
    ),
    ("etc/pacmesh/pacmeshd.toml", "systemd/pacmeshd.toml"),
    ("etc/conf.d/pacmesh", "systemd/pacmesh.conf.d"),
    ("usr/share/licenses/pacmesh/LICENSE", "LICENSE"),
    (HOOK, "packaging/pacmesh-include.hook"),
];

/// The pacman hook that rewrites the Include file for the installed pacman.
const HOOK: &str = "usr/share/libalpm/hooks/pacmesh-include.hook";

const INCLUDE: &str = "etc/pacman.d/pacmesh";
const BACKUP: &[&str] = &["etc/pacmesh/pacmeshd.toml", "etc/conf.d/pacmesh"];

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent: the workspace")
        .to_path_buf()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// `[workspace.package] version` of the root Cargo.toml.
fn workspace_version(root: &Path) -> String {
    let text = read(&root.join("Cargo.toml"));
    let mut section = "";
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line;
        } else if section == "[workspace.package]" {
            if let Some(v) = line.strip_prefix("version") {
                let v = v.trim_start().trim_start_matches('=').trim();
                return v.trim_matches('"').to_string();
            }
        }
    }
    panic!("no [workspace.package] version in Cargo.toml");
}

/// A plain `name=value` assignment of the PKGBUILD, quotes removed.
fn pkgbuild_var(root: &Path, name: &str) -> String {
    let text = read(&root.join("packaging/PKGBUILD"));
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}=")))
        .map(|v| v.trim_matches(['\'', '"']).to_string())
        .unwrap_or_else(|| panic!("packaging/PKGBUILD has no {name}="))
}

fn home_dir(var: &str, fallback: &str) -> Option<OsString> {
    std::env::var_os(var).or_else(|| {
        let path = Path::new(&std::env::var_os("HOME")?).join(fallback);
        path.is_dir().then(|| path.into_os_string())
    })
}

/// The cargo profile this suite was built with (`dev` for target/debug).
fn suite_profile() -> String {
    let dir = pacmesh_tests::workspace::profile_dir();
    match dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => "dev".to_string(),
        Some(other) => other.to_string(),
    }
}

/// Runs makepkg on packaging/PKGBUILD with every output dir under `work`; returns the package.
fn makepkg(root: &Path, work: &Path, version: &str) -> PathBuf {
    // Fill the registry cache now (the network is used only if a crate is missing), so that
    // makepkg's own `cargo fetch` and build can run offline.
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    run_ok(
        Command::new(cargo)
            .args(["fetch", "--locked"])
            .current_dir(root),
    );

    let dir = |name: &str| {
        let d = work.join(name);
        std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("creating {}: {e}", d.display()));
        d
    };
    let pkgdest = dir("pkgdest");
    let mut cmd = Command::new("unshare");
    cmd.args([
        "--user",
        "--map-user",
        INNER_ID,
        "--map-group",
        INNER_ID,
        "--",
    ])
    .args([
        "makepkg",
        "--nodeps",
        "--clean",
        "--noconfirm",
        "--nocolor",
        "--noprogressbar",
    ])
    .current_dir(root.join("packaging"))
    // Debian's makepkg.conf says .pkg.tar.gz; Arch uses zstd.
    .env("PKGEXT", PKGEXT)
    .env("BUILDDIR", dir("build"))
    .env("PKGDEST", &pkgdest)
    .env("SRCDEST", dir("srcdest"))
    .env("SRCPKGDEST", dir("srcpkgdest"))
    .env("LOGDEST", dir("logdest"))
    .env("PACKAGER", "pacmesh tests <tests@pacmesh.invalid>")
    .env("CARGO_NET_OFFLINE", "true")
    .env_remove("CARGO_TARGET_DIR")
    // Build into the suite's own target dir with its profile: the workspace is compiled
    // already, so the packaging is checked without a second (release) build from cold. The
    // PKGBUILD's default, a release build in $srcdir/target, is what users get.
    .env("PACMESH_TARGET_DIR", pacmesh_tests::workspace::target_dir())
    .env("PACMESH_CARGO_PROFILE", suite_profile());
    // Inside the namespace HOME is still root's, but say where the toolchain and the registry
    // cache are in case they were moved.
    for (var, fallback) in [("CARGO_HOME", ".cargo"), ("RUSTUP_HOME", ".rustup")] {
        if let Some(path) = home_dir(var, fallback) {
            cmd.env(var, path);
        }
    }
    run_ok(&mut cmd);

    let prefix = format!("{PKGNAME}-{version}-");
    let built: Vec<PathBuf> = std::fs::read_dir(&pkgdest)
        .expect("listing PKGDEST")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            name.starts_with(&prefix) && name.ends_with(PKGEXT)
        })
        .collect();
    let [package] = built.as_slice() else {
        panic!("makepkg made {built:?} in PKGDEST, expected one {prefix}*{PKGEXT}");
    };
    package.clone()
}

/// Every path the package holds, as `pacman -Qlp` lists it.
fn pacman_list(package: &Path) -> BTreeSet<String> {
    let out = run_ok(Command::new("pacman").arg("-Qlp").arg(package));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| {
            let (name, path) = line
                .split_once(' ')
                .unwrap_or_else(|| panic!("pacman -Qlp printed {line:?}"));
            assert_eq!(name, PKGNAME, "pacman -Qlp line {line:?}");
            path.to_string()
        })
        .collect()
}

/// `.PKGINFO` as key → values.
fn pkginfo(package: &Path) -> BTreeMap<String, Vec<String>> {
    let out = run_ok(
        Command::new("bsdtar")
            .arg("-xOf")
            .arg(package)
            .arg(".PKGINFO"),
    );
    let mut info: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if let Some((k, v)) = line.split_once(" = ") {
            info.entry(k.to_string()).or_default().push(v.to_string());
        }
    }
    info
}

/// A man page's text, decompressed if makepkg's `zipman` gzipped it.
fn man_page(tree: &Path, name: &str) -> Option<String> {
    let plain = tree.join(format!("usr/share/man/man8/{name}.8"));
    let gz = plain.with_extension("8.gz");
    if gz.is_file() {
        let out = run_ok(Command::new("gzip").arg("-dc").arg(&gz));
        Some(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        std::fs::read_to_string(&plain).ok()
    }
}

fn stdout_of(cmd: &mut Command) -> String {
    String::from_utf8_lossy(&run_ok(cmd).stdout).into_owned()
}

#[test]
fn makepkg_builds_a_package_with_every_file() {
    if !prereq::require(&["makepkg", "pacman", "bsdtar", "fakeroot", "unshare"]) {
        return;
    }
    let root = workspace_root();
    let version = workspace_version(&root);
    // Checked before the long build: makepkg would name the package after a stale pkgver.
    assert_eq!(
        pkgbuild_var(&root, "pkgver"),
        version,
        "packaging/PKGBUILD's pkgver must be the workspace version"
    );
    let work = tempfile::Builder::new()
        .prefix("pacmesh-package-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("creating a work dir");
    let started = std::time::Instant::now();
    let package = makepkg(&root, work.path(), &version);
    eprintln!(
        "makepkg built {} in {:.0?}",
        package.display(),
        started.elapsed()
    );

    // ---- the file list
    let listed = pacman_list(&package);
    let has = |path: &str| listed.contains(path);
    let mut missing = Vec::new();
    let mut want = |path: String, ok: bool| {
        if !ok {
            missing.push(path);
        }
    };
    for bin in BINARIES {
        want(format!("/usr/bin/{bin}"), has(&format!("/usr/bin/{bin}")));
        // makepkg's `zipman` gzips man pages (Arch's and Debian's makepkg.conf both have it).
        let man = format!("/usr/share/man/man8/{bin}.8");
        want(
            format!("{man}[.gz]"),
            has(&man) || has(&format!("{man}.gz")),
        );
        for completion in [
            format!("/usr/share/bash-completion/completions/{bin}"),
            format!("/usr/share/zsh/site-functions/_{bin}"),
            format!("/usr/share/fish/vendor_completions.d/{bin}.fish"),
        ] {
            let ok = has(&completion);
            want(completion, ok);
        }
    }
    for path in COPIES.iter().map(|(p, _)| *p).chain([INCLUDE]) {
        want(format!("/{path}"), has(&format!("/{path}")));
    }
    assert!(
        missing.is_empty(),
        "the package lacks {missing:#?}\npacman -Qlp lists {listed:#?}"
    );
    let stray: Vec<&String> = listed
        .iter()
        .filter(|p| !(p.starts_with("/usr/") || p.starts_with("/etc/")))
        .chain(listed.iter().filter(|p| p.contains("pacman-conf-insert")))
        .collect();
    assert!(
        stray.is_empty(),
        "unexpected files in the package: {stray:?}"
    );

    // ---- metadata
    let info = pkginfo(&package);
    let one = |key: &str| info.get(key).map(|v| v.join(" ")).unwrap_or_default();
    assert_eq!(one("pkgname"), PKGNAME, "{info:#?}");
    assert_eq!(
        one("pkgver"),
        format!("{version}-{}", pkgbuild_var(&root, "pkgrel"))
    );
    assert_eq!(one("license"), "GPL-3.0-or-later");
    let backup: BTreeSet<&str> = info
        .get("backup")
        .map(|v| v.iter().map(String::as_str).collect())
        .unwrap_or_default();
    assert_eq!(backup, BACKUP.iter().copied().collect(), "backup= entries");

    // ---- contents
    let tree = work.path().join("tree");
    std::fs::create_dir_all(&tree).expect("creating the extraction dir");
    run_ok(
        Command::new("bsdtar")
            .arg("-xpf")
            .arg(&package)
            .arg("-C")
            .arg(&tree),
    );
    for (installed, source) in COPIES {
        assert!(
            read(&tree.join(installed)) == read(&root.join(source)),
            "/{installed} is not a copy of {source}"
        );
    }
    for exe in [
        "usr/bin/pacmeshd",
        "usr/bin/pacsrv",
        "usr/bin/pacman.conf-insert",
    ]
    .into_iter()
    .chain(["usr/lib/pacmesh/pacmesh-ports"])
    {
        let mode = std::fs::metadata(tree.join(exe))
            .expect("an extracted file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755, "/{exe} has mode {mode:o}");
    }
    let bin = |name: &str| tree.join("usr/bin").join(name);
    let include = stdout_of(Command::new(bin("pacmeshd")).arg("--print-include"));
    assert_eq!(
        read(&tree.join(INCLUDE)),
        include,
        "/{INCLUDE} differs from the packaged `pacmeshd --print-include`"
    );
    // `CacheServer` or `Server`, whichever this machine's pacman reads.
    let directive = pacmesh_conf::include_directive(
        pacmesh_conf::installed_pacman_version("pacman".as_ref()).ok(),
    );
    assert_eq!(
        include
            .lines()
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>(),
        [format!(
            "{} = http://127.0.0.1:15680/$repo/os/$arch",
            directive.key()
        )],
        "{include}"
    );
    for name in ["pacmeshd", "pacman.conf-insert"] {
        let out = stdout_of(Command::new(bin(name)).arg("--version"));
        assert_eq!(out.trim(), format!("{name} {version}"));
    }
    let help = stdout_of(Command::new(bin("pacsrv")).arg("--help"));
    assert!(help.starts_with(&format!("pacsrv {version}: ")), "{help}");

    // ---- man pages and completions
    for name in BINARIES {
        let page = man_page(&tree, name).unwrap_or_else(|| panic!("no man page for {name}"));
        let title = format!(".TH {} 8 ", name.to_uppercase());
        assert!(
            page.lines()
                .any(|l| l.replace("\\-", "-").starts_with(&title)),
            "{name}.8 has no {title:?}:\n{page}"
        );
        assert!(page.contains(".SH \"SEE ALSO\""), "{name}.8:\n{page}");
        if prereq::on_path("groff") {
            let out = run(Command::new("groff")
                .args(["-man", "-Tutf8", "-ww", "-z"])
                .arg(man_path(&tree, name)));
            assert!(
                out.status.success() && out.stderr.is_empty(),
                "{}",
                describe(&out, &format!("groff on {name}.8"))
            );
        }
        let bash = tree.join(format!("usr/share/bash-completion/completions/{name}"));
        run_ok(Command::new("bash").arg("-n").arg(&bash));
    }
    // The pacsrv page is made from its --help: every section of it is there.
    let pacsrv = man_page(&tree, "pacsrv").expect("pacsrv.8");
    for needle in [
        "PACSRV_DAEMON_URL",
        "\\-\\-pacsrv\\-help",
        ".SH \"ENVIRONMENT\"",
    ] {
        assert!(
            pacsrv.contains(needle),
            "pacsrv.8 lacks {needle:?}:\n{pacsrv}"
        );
    }
    let pacmeshd = man_page(&tree, "pacmeshd").expect("pacmeshd.8");
    for flag in [
        "\\-\\-print\\-include",
        "\\-\\-http\\-listen",
        "\\-\\-mesh\\-key",
    ] {
        assert!(pacmeshd.contains(flag), "pacmeshd.8 lacks {flag}");
    }

    // ---- namcap, where it exists (Arch)
    if prereq::on_path("namcap") {
        let out = run(Command::new("namcap").arg(&package));
        let text = String::from_utf8_lossy(&out.stdout);
        let errors: Vec<&str> = text.lines().filter(|l| l.contains(" E: ")).collect();
        assert!(errors.is_empty(), "{}", describe(&out, "namcap"));
    }
}

/// The man page file as extracted (gzipped or not), for groff.
fn man_path(tree: &Path, name: &str) -> PathBuf {
    let plain = tree.join(format!("usr/share/man/man8/{name}.8"));
    if plain.is_file() {
        plain
    } else {
        // groff reads gzip only through a preprocessor; hand it the decompressed text.
        let text = man_page(tree, name).expect("a man page");
        let out = tree.join(format!("{name}.8"));
        std::fs::write(&out, text).expect("writing the decompressed man page");
        out
    }
}

/// The hook's `Exec`, checked without a package or a pacman transaction: its shell script
/// run with the debug `pacmeshd` and a temporary file in place of the installed ones. It
/// writes exactly what `pacmeshd --print-include` prints, leaves an unchanged file alone
/// (same inode and mtime: `pacman -Qkk` stays quiet), replaces a stale one through a
/// rename, and keeps the old file when pacmeshd cannot run.
#[test]
fn include_hook_writes_the_include_for_the_installed_pacman() {
    let root = workspace_root();
    let hook = read(&root.join("packaging/pacmesh-include.hook"));
    let value = |key: &str| -> Vec<&str> {
        hook.lines()
            .filter_map(|l| l.strip_prefix(key)?.trim_start().strip_prefix('='))
            .map(str::trim)
            .collect()
    };
    assert_eq!(value("Target"), ["pacman", "pacmesh"]);
    assert_eq!(value("Operation"), ["Install", "Upgrade"]);
    assert_eq!(value("When"), ["PostTransaction"]);
    let [exec] = value("Exec")[..] else {
        panic!("one Exec line: {hook}");
    };
    // libalpm splits Exec into words; within single quotes only \' is special.
    let script = exec
        .strip_prefix("/usr/bin/sh -c '")
        .and_then(|s| s.strip_suffix('\''))
        .filter(|s| !s.contains('\''))
        .unwrap_or_else(|| panic!("Exec is not /usr/bin/sh -c '...': {exec}"));
    assert!(
        script.contains("/usr/bin/pacmeshd --print-include"),
        "{script}"
    );

    let dir = tempfile::tempdir().expect("temp dir");
    let include = dir.path().join("pacmesh");
    let pacmeshd = pacmesh_tests::daemon::Daemon::binary();
    let with = |pacmeshd: &Path| {
        script
            .replace("/etc/pacman.d/pacmesh", &include.display().to_string())
            .replace("/usr/bin/pacmeshd", &pacmeshd.display().to_string())
    };
    let run_hook = |script: &str| run(Command::new("/usr/bin/sh").arg("-c").arg(script));
    let expected = stdout_of(Command::new(&pacmeshd).arg("--print-include"));
    let stamp = |path: &Path| {
        let meta = std::fs::metadata(path).expect("the include file");
        (
            std::os::unix::fs::MetadataExt::ino(&meta),
            meta.modified().expect("mtime"),
        )
    };

    let out = run_hook(&with(&pacmeshd));
    assert!(out.status.success(), "{}", describe(&out, "hook"));
    assert_eq!(read(&include), expected);
    let first = stamp(&include);
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert!(run_hook(&with(&pacmeshd)).status.success());
    assert_eq!(stamp(&include), first, "an unchanged include was rewritten");

    std::fs::write(&include, "CacheServer = http://127.0.0.1:1/$repo\n").expect("write");
    assert!(run_hook(&with(&pacmeshd)).status.success());
    assert_eq!(read(&include), expected);

    std::fs::write(&include, "old\n").expect("write");
    let out = run_hook(&with(&dir.path().join("no-pacmeshd")));
    assert!(!out.status.success(), "{}", describe(&out, "hook"));
    assert_eq!(read(&include), "old\n", "a failed hook must keep the file");
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .expect("read dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names, ["pacmesh"], "files left behind");
}
