//! Runs the built `pacman.conf-insert` and checks its output with pacman's
//! own `pacman-conf`: the same repositories, each with pacmesh's server
//! first and then the original servers in their original order. pacmesh's
//! server is a `CacheServer` or a `Server`, whichever the installed pacman
//! reads, and the real `pacman` takes the include file without a warning.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use pacmesh_conf::ServerDirective;

const BIN: &str = env!("CARGO_BIN_EXE_pacman-conf-insert");
const ARCH_STOCK: &str = include_str!("data/arch-pacman.conf");
const MIRRORLIST: &str = "## Worldwide\nServer = https://geo.mirror.pkgbuild.com/$repo/os/$arch\n#Server = https://disabled/$repo/os/$arch\nServer = https://mirror.leaseweb.net/archlinux/$repo/os/$arch\n";
const PACMESH_SERVER: &str = "http://127.0.0.1:15680";

/// Whether the real pacman-conf can be run. Missing it fails the test under
/// CI, where it must be installed, and skips the pacman checks elsewhere.
fn have_pacman_conf() -> bool {
    let works = Command::new("pacman-conf")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !works {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "pacman-conf is required when CI=true (Debian: apt-get install pacman-package-manager)"
        );
        eprintln!("notice: pacman-conf not found; skipping the checks against real pacman");
    }
    works
}

/// The directive the installed pacman gets (`Server` without one).
fn installed_directive() -> ServerDirective {
    let version = pacmesh_conf::installed_pacman_version("pacman".as_ref()).ok();
    pacmesh_conf::include_directive(version)
}

/// A temporary directory holding the files pacman-conf must be able to
/// read: mirror lists and pacmesh's include file.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let fixture = Fixture { dir };
        fixture.write("mirrorlist", MIRRORLIST);
        fixture.write(
            "mirrors.d/b.list",
            "Server = https://b.example/$repo/os/$arch\n",
        );
        fixture.write(
            "mirrors.d/a.list",
            "Server = https://a.example/$repo/os/$arch\n",
        );
        fixture.write(
            "pacmesh",
            &pacmesh_conf::include_file_contents(15680, installed_directive()),
        );
        fixture
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes `text` with `{dir}` replaced by the fixture directory.
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create dir");
        }
        let text = text.replace("{dir}", &self.dir.path().display().to_string());
        std::fs::write(&path, text).expect("write file");
        path
    }
}

fn run(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run pacman.conf-insert");
    if let Some(mut pipe) = child.stdin.take() {
        pipe.write_all(stdin.unwrap_or_default().as_bytes())
            .expect("write stdin");
    }
    child
        .wait_with_output()
        .expect("wait for pacman.conf-insert")
}

/// `pacman-conf --config CONFIG ARGS…`, one output line per entry.
fn pacman_conf(config: &Path, args: &[&str]) -> Vec<String> {
    let output = Command::new("pacman-conf")
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .expect("run pacman-conf");
    assert!(
        output.status.success(),
        "pacman-conf --config {} {args:?}: {}",
        config.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Inserts into `input` and checks the result with pacman-conf; returns the
/// repository names.
fn check_with_pacman(name: &str, input: &str) -> Vec<String> {
    let fixture = Fixture::new();
    let input_path = fixture.write("in.conf", input);
    let include = fixture.path("pacmesh");
    let include = include.to_str().expect("UTF-8 temp path");
    let output = run(
        &["--include", include, input_path.to_str().expect("UTF-8")],
        None,
    );
    assert!(
        output.status.success(),
        "{name}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.stderr.is_empty(), "{name}: unexpected stderr");
    let out_path = fixture.path("out.conf");
    std::fs::write(&out_path, &output.stdout).expect("write output");

    let repos = pacman_conf(&input_path, &["--repo-list"]);
    assert_eq!(
        pacman_conf(&out_path, &["--repo-list"]),
        repos,
        "{name}: repo list"
    );
    let arch = pacman_conf(&input_path, &["Architecture"]);
    let arch = arch.first().expect("an Architecture");
    for repo in &repos {
        let pacmesh = format!("{PACMESH_SERVER}/{repo}/os/{arch}");
        let original = pacman_conf(&input_path, &["--repo", repo, "Server"]);
        let mut expected = Vec::new();
        match installed_directive() {
            ServerDirective::Server => expected.push(pacmesh),
            ServerDirective::CacheServer => assert_eq!(
                pacman_conf(&out_path, &["--repo", repo, "CacheServer"]),
                [pacmesh],
                "{name}: cache servers of [{repo}]"
            ),
        }
        expected.extend(original.iter().cloned());
        assert_eq!(
            pacman_conf(&out_path, &["--repo", repo, "Server"]),
            expected,
            "{name}: servers of [{repo}]"
        );
    }

    // And back: --remove restores the input byte for byte.
    let removed = run(
        &["--remove", "--include", include, "-"],
        Some(&String::from_utf8_lossy(&output.stdout)),
    );
    assert!(removed.status.success(), "{name}: --remove failed");
    let original = std::fs::read(&input_path).expect("read input");
    assert_eq!(
        removed.stdout, original,
        "{name}: --remove is not the inverse"
    );
    repos
}

#[test]
fn output_parses_with_pacman_conf_and_puts_pacmesh_first() {
    if !have_pacman_conf() {
        return;
    }
    let stock = ARCH_STOCK.replace("/etc/pacman.d/mirrorlist", "{dir}/mirrorlist");
    let multilib = stock.replace("#[multilib]\n#Include", "[multilib]\nInclude");
    let options = "[options]\nArchitecture = auto\n";
    let cases: Vec<(&str, String, &[&str])> = vec![
        ("arch stock", stock.clone(), &["core", "extra"]),
        ("arch stock with multilib", multilib, &["core", "extra", "multilib"]),
        (
            "custom repos with Server only",
            format!("{options}[mine]\nSigLevel = Optional TrustAll\nServer = file:///srv/$repo\n[theirs]\nServer = https://x/$repo/$arch\nServer = https://y/$repo/$arch\n"),
            &["mine", "theirs"],
        ),
        (
            "Include and Server",
            format!("{options}[core]\nServer = https://first/$repo\nInclude = {{dir}}/mirrorlist\nServer = https://last/$repo\n"),
            &["core"],
        ),
        ("Include= without spaces", format!("{options}[core]\nInclude={{dir}}/mirrorlist\n"), &["core"]),
        (
            "tabs",
            format!("{options}\t[core]\t\n\tInclude\t=\t{{dir}}/mirrorlist\n"),
            &["core"],
        ),
        (
            "CRLF",
            format!("{options}[core]\nInclude = {{dir}}/mirrorlist\n[extra]\nServer = https://e/$repo\n").replace('\n', "\r\n"),
            &["core", "extra"],
        ),
        ("no trailing newline", format!("{options}[core]\nServer = https://m/$repo"), &["core"]),
        ("header on the last line", format!("{options}[core]\nServer = https://m/$repo\n[empty]"), &["core", "empty"]),
        ("Include glob", format!("{options}[core]\nInclude = {{dir}}/mirrors.d/*.list\n"), &["core"]),
        ("options only", options.to_owned(), &[]),
    ];
    for (name, input, repos) in &cases {
        let got = check_with_pacman(name, input);
        assert_eq!(&got, repos, "{name}");
    }
}

/// pacman's stderr for `pacman -T` (which parses the whole configuration
/// and needs no root, lock or database) with `config`.
fn pacman_warnings(config: &Path) -> String {
    let output = Command::new("pacman")
        .arg("--config")
        .arg(config)
        .arg("-T")
        .output()
        .expect("run pacman");
    assert!(
        output.status.success(),
        "pacman --config {} -T: {output:?}",
        config.display()
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Both forms of the include file through the real pacman. `Server` is
/// read by every pacman; `CacheServer` only where `include_directive`
/// picks it. With pacman 6.0 (Debian's 6.0.2 here) pacman warns on every
/// run that `CacheServer` is not recognised and ignores it, and pacman-conf
/// ignores it without a word, so pacmesh would never be asked.
#[test]
fn the_real_pacman_reads_the_chosen_directive() {
    if !have_pacman_conf() {
        return;
    }
    let version = pacmesh_conf::installed_pacman_version("pacman".as_ref());
    assert!(version.is_ok(), "{version:?}");
    let fixture = Fixture::new();
    let db = fixture.path("db");
    std::fs::create_dir_all(&db).expect("create db dir");
    let pacmesh = format!("{PACMESH_SERVER}/core/os/x86_64");
    for directive in [ServerDirective::Server, ServerDirective::CacheServer] {
        let text = pacmesh_conf::include_file_contents(15680, directive);
        let include = fixture.write(directive.key(), &text);
        let conf = fixture.write(
            "pacman.conf",
            &format!(
                "[options]\nArchitecture = x86_64\nDBPath = {}/\n[core]\nInclude = {}\nServer = https://m/$repo\n",
                db.display(),
                include.display()
            ),
        );
        let warnings = pacman_warnings(&conf);
        let about_include: Vec<&str> = warnings
            .lines()
            .filter(|l| l.contains(&*include.to_string_lossy()))
            .collect();
        let servers = pacman_conf(&conf, &["--repo", "core", "Server"]);
        match directive {
            ServerDirective::Server => {
                assert_eq!(about_include, Vec::<&str>::new());
                assert_eq!(servers, [pacmesh.as_str(), "https://m/core"]);
            }
            ServerDirective::CacheServer if installed_directive() == directive => {
                assert_eq!(about_include, Vec::<&str>::new());
                assert_eq!(
                    pacman_conf(&conf, &["--repo", "core", "CacheServer"]),
                    [pacmesh.as_str()]
                );
                assert_eq!(servers, ["https://m/core"]);
            }
            ServerDirective::CacheServer => {
                let line = text
                    .lines()
                    .position(|l| l.starts_with("CacheServer"))
                    .expect("the directive's line")
                    + 1;
                assert_eq!(
                    about_include,
                    [format!(
                        "warning: config file {}, line {line}: directive 'CacheServer' in section 'core' not recognized.",
                        include.display()
                    )]
                );
                assert_eq!(servers, ["https://m/core"]);
            }
        }
    }
}

#[test]
fn already_inserted_file_is_printed_unchanged() {
    let fixture = Fixture::new();
    let input = fixture.write(
        "in.conf",
        "[options]\n[core]\nInclude = /etc/pacman.d/pacmesh\nInclude = /etc/pacman.d/mirrorlist\n",
    );
    let output = run(&[input.to_str().expect("UTF-8")], None);
    assert!(output.status.success());
    assert_eq!(output.stdout, std::fs::read(&input).expect("read input"));
}

#[test]
fn stdin_gives_the_same_output_as_a_file() {
    let fixture = Fixture::new();
    let text = "[options]\n[core]\nServer = https://m\n";
    let input = fixture.write("in.conf", text);
    let from_file = run(&[input.to_str().expect("UTF-8")], None);
    let from_stdin = run(&["-"], Some(text));
    assert!(from_file.status.success() && from_stdin.status.success());
    assert_eq!(from_file.stdout, from_stdin.stdout);
    assert_eq!(
        String::from_utf8_lossy(&from_stdin.stdout),
        "[options]\n[core]\nInclude = /etc/pacman.d/pacmesh\nServer = https://m\n"
    );
}

/// Asserts a failed run: status `code`, nothing on stdout, stderr naming `place`.
fn assert_fails(output: &Output, code: i32, place: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(code), "stderr: {stderr}");
    assert!(
        output.stdout.is_empty(),
        "stdout must stay empty on failure"
    );
    assert!(
        stderr.contains(place),
        "stderr {stderr:?} should name {place:?}"
    );
}

#[test]
fn broken_file_fails_without_output() {
    let fixture = Fixture::new();
    // The bad line is last, so a filter that printed as it went would
    // already have written the first lines.
    let input = fixture.write(
        "in.conf",
        "[options]\n[core]\nServer = https://m\n[extra] # x\n",
    );
    let output = run(&[input.to_str().expect("UTF-8")], None);
    assert_fails(
        &output,
        1,
        &format!("{}:4: malformed section header", input.display()),
    );

    let output = run(&["--remove", "-"], Some("Server = https://m\n[core]\n"));
    assert_fails(
        &output,
        1,
        "<stdin>:1: directive `Server` outside any section",
    );

    let output = run(&["-"], Some("[core]\n\u{fffd}ok\n\n"));
    assert!(
        output.status.success(),
        "replacement character is valid UTF-8"
    );
}

#[test]
fn unreadable_input_and_bad_usage() {
    let fixture = Fixture::new();
    let missing = fixture.path("missing.conf");
    let output = run(&[missing.to_str().expect("UTF-8")], None);
    assert_fails(&output, 1, &missing.display().to_string());

    let latin1 = fixture.path("latin1.conf");
    std::fs::write(&latin1, b"[core]\n# caf\xe9\n").expect("write");
    let output = run(&[latin1.to_str().expect("UTF-8")], None);
    assert_fails(
        &output,
        1,
        &format!("{}:2: not valid UTF-8", latin1.display()),
    );

    assert_fails(&run(&["--bogus"], None), 64, "--bogus");
    assert_fails(&run(&["a", "b"], None), 64, "unexpected argument");
    assert_fails(
        &run(&["--include", "", "-"], Some("[core]\n")),
        1,
        "bad include path",
    );
    let help = run(&["--help"], None);
    assert_eq!(help.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&help.stdout).contains("--remove"));
}
