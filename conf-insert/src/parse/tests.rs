//! Table-driven tests of the model: a main file plus include files in a
//! temporary directory (`{dir}` in the texts stands for it), and either the
//! repositories with their servers or the error expected.

use std::fs;
use std::net::SocketAddr;
use std::path::Path;

use super::*;
use crate::own::OwnServers;

const ARCH_STOCK: &str = include_str!("../../tests/data/arch-pacman.conf");
const MIRRORLIST: &str = "##\n## Arch Linux repository mirrorlist\n##\n\n## Worldwide\nServer = https://geo.mirror.pkgbuild.com/$repo/os/$arch\n#Server = https://mirror.rackspace.com/archlinux/$repo/os/$arch\nServer = https://mirror.leaseweb.net/archlinux/$repo/os/$arch\n";

enum Want {
    /// Each repository with its servers as `url@file:line`, `file` relative
    /// to the temporary directory (`main` for the main file).
    Repos(&'static [(&'static str, &'static [&'static str])]),
    /// An error whose message, with the directory written as `{dir}`,
    /// starts with this.
    Err(&'static str),
}

struct Case {
    name: &'static str,
    main: &'static str,
    includes: &'static [(&'static str, &'static str)],
    want: Want,
}

/// Writes the case's files and parses it.
fn load(dir: &Path, main: &str, includes: &[(&str, &str)]) -> Result<PacmanConf, ConfError> {
    let fill = |text: &str| text.replace("{dir}", &dir.display().to_string());
    for (name, text) in includes {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).expect("create include dir");
        }
        fs::write(&path, fill(text)).expect("write include");
    }
    let main_path = dir.join("main");
    fs::write(&main_path, fill(main)).expect("write main");
    PacmanConf::load(&main_path)
}

fn check(case: &Case) {
    let dir = tempfile::tempdir().expect("temp dir");
    let name = case.name;
    let result = load(dir.path(), case.main, case.includes);
    let prefix = format!("{}/", dir.path().display());
    match (&case.want, result) {
        (Want::Repos(want), Ok(conf)) => {
            let got: Vec<(String, Vec<String>)> = conf
                .repos
                .iter()
                .map(|repo| {
                    let servers = repo.servers.iter().map(|s| {
                        let file = s.source.file.display().to_string();
                        let file = file.strip_prefix(&prefix).unwrap_or(&file).to_owned();
                        format!("{}@{file}:{}", s.url, s.source.line)
                    });
                    (repo.name.clone(), servers.collect())
                })
                .collect();
            let want: Vec<(String, Vec<String>)> = want
                .iter()
                .map(|(repo, servers)| {
                    (
                        repo.to_string(),
                        servers.iter().map(|s| s.to_string()).collect(),
                    )
                })
                .collect();
            assert_eq!(got, want, "{name}");
        }
        (Want::Err(message), Err(error)) => {
            let error = error
                .to_string()
                .replace(&dir.path().display().to_string(), "{dir}");
            assert!(
                error.starts_with(message),
                "{name}: got {error:?}, want {message:?}"
            );
        }
        (Want::Repos(_), Err(error)) => panic!("{name}: unexpected error {error}"),
        (Want::Err(message), Ok(conf)) => panic!("{name}: parsed {conf:?}, want error {message:?}"),
    }
}

const GEO: &str = "https://geo.mirror.pkgbuild.com/$repo/os/$arch@mirrorlist:6";
const LEASEWEB: &str = "https://mirror.leaseweb.net/archlinux/$repo/os/$arch@mirrorlist:8";

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "Include and Server in pacman's order",
            main: "[options]\n[core]\nServer = https://first@x\nInclude = {dir}/mirrorlist\nServer = https://last\n",
            includes: &[("mirrorlist", MIRRORLIST)],
            want: Want::Repos(&[(
                "core",
                &["https://first@x@main:3", GEO, LEASEWEB, "https://last@main:5"],
            )]),
        },
        Case {
            name: "pacmesh include first",
            main: "[core]\nInclude = {dir}/pacmesh\nInclude={dir}/mirrorlist\n[extra]\nInclude = {dir}/pacmesh\n",
            includes: &[
                ("mirrorlist", MIRRORLIST),
                ("pacmesh", "# ours\nServer = http://127.0.0.1:15680/$repo/os/$arch\n"),
            ],
            want: Want::Repos(&[
                (
                    "core",
                    &["http://127.0.0.1:15680/$repo/os/$arch@pacmesh:2", GEO, LEASEWEB],
                ),
                ("extra", &["http://127.0.0.1:15680/$repo/os/$arch@pacmesh:2"]),
            ]),
        },
        Case {
            name: "glob in sorted order, dot files skipped, directories read as empty",
            main: "[core]\nInclude = {dir}/m.d/*\n",
            includes: &[
                ("m.d/b.list", "Server = https://b\n"),
                ("m.d/a.list", "Server = https://a\n"),
                ("m.d/.hidden", "Server = https://hidden\n"),
                ("m.d/sub/x", "Server = https://sub\n"),
            ],
            want: Want::Repos(&[("core", &["https://a@m.d/a.list:1", "https://b@m.d/b.list:1"])]),
        },
        Case {
            // Found by fuzzing: `/**/` walked the whole file system.
            name: "** is * as in glob(3): one level, never recursive",
            main: "[core]\nInclude = {dir}/m.d/**/x.list\n",
            includes: &[
                ("m.d/a/x.list", "Server = https://a\n"),
                ("m.d/a/b/x.list", "Server = https://deep\n"),
            ],
            want: Want::Repos(&[("core", &["https://a@m.d/a/x.list:1"])]),
        },
        Case {
            name: "a header inside an include switches the section for the includer",
            main: "[core]\nInclude = {dir}/repos\nServer = https://after\n",
            includes: &[("repos", "Server = https://in-core\n[other]\nServer = https://o\n")],
            want: Want::Repos(&[
                ("core", &["https://in-core@repos:1"]),
                ("other", &["https://o@repos:3", "https://after@main:3"]),
            ]),
        },
        Case {
            name: "Include before any section may hold sections",
            main: "Include = {dir}/repos\n",
            includes: &[("repos", "# repos\n[core]\nServer = https://c\n")],
            want: Want::Repos(&[("core", &["https://c@repos:3"])]),
        },
        Case {
            name: "Server lines included into options are ignored",
            main: "[options]\nInclude = {dir}/mirrorlist\n[core]\n",
            includes: &[("mirrorlist", MIRRORLIST)],
            want: Want::Repos(&[("core", &[])]),
        },
        Case {
            name: "tabs, CRLF, hash in URL, empty and unknown directives",
            main: "[options]\r\n\tCacheDir\t=\t/c\r\n[core]\r\n\tServer\t=\thttps://m/#x\t\r\nServer =\r\nserver = https://lower\r\nUsage = All\r\n",
            includes: &[],
            want: Want::Repos(&[("core", &["https://m/#x@main:4"])]),
        },
        Case {
            name: "repeated section kept twice as pacman-conf lists it",
            main: "[a]\nServer = https://1\n[b]\n[a]\nServer = https://2",
            includes: &[],
            want: Want::Repos(&[("a", &["https://1@main:2"]), ("b", &[]), ("a", &["https://2@main:5"])]),
        },
        Case {
            name: "missing include",
            main: "[options]\n[core]\nInclude = {dir}/nope\n",
            includes: &[],
            want: Want::Err("{dir}/main:3: unreadable include {dir}/nope: No such file or directory"),
        },
        Case {
            name: "glob matching nothing fails as in pacman",
            main: "[core]\nInclude = {dir}/*.list\n",
            includes: &[],
            want: Want::Err("{dir}/main:2: unreadable include {dir}/*.list: No such file or directory"),
        },
        Case {
            name: "error inside an include names the include",
            main: "[core]\nInclude = {dir}/mirrorlist\n",
            includes: &[("mirrorlist", "Server = https://a\nServer\n")],
            want: Want::Err("{dir}/mirrorlist:2: directive `Server` needs a value"),
        },
        Case {
            name: "Server in an include before any section",
            main: "Include = {dir}/mirrorlist\n[core]\n",
            includes: &[("mirrorlist", MIRRORLIST)],
            want: Want::Err("{dir}/mirrorlist:6: directive `Server` outside any section"),
        },
        Case {
            name: "include that includes itself",
            main: "[core]\nInclude = {dir}/loop\n",
            includes: &[("loop", "Include = {dir}/loop\n")],
            want: Want::Err("{dir}/loop:1: includes nested more than 10 deep at {dir}/loop"),
        },
        Case {
            name: "header with a trailing comment",
            main: "[options]\n[core]  # main\n",
            includes: &[],
            want: Want::Err("{dir}/main:2: malformed section header `[core]  # main`"),
        },
        Case {
            name: "bare Include",
            main: "[core]\n\nInclude\n",
            includes: &[],
            want: Want::Err("{dir}/main:3: directive `Include` needs a value"),
        },
        Case {
            name: "non-ASCII comment",
            main: "[core]\n# caf\u{e9}\nServer = https://m\n",
            includes: &[],
            want: Want::Repos(&[("core", &["https://m@main:3"])]),
        },
    ]
}

#[test]
fn table() {
    let cases = cases();
    for case in &cases {
        check(case);
    }
    assert!(cases.len() >= 15);
}

#[test]
fn arch_stock_file_with_its_mirrorlist() {
    let dir = tempfile::tempdir().expect("temp dir");
    let main = ARCH_STOCK.replace("/etc/pacman.d/mirrorlist", "{dir}/mirrorlist");
    let conf = load(dir.path(), &main, &[("mirrorlist", MIRRORLIST)]).expect("parses");
    let names: Vec<&str> = conf.repos.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["core", "extra"]);
    for repo in &conf.repos {
        let urls: Vec<&str> = repo.servers.iter().map(|s| s.url.as_str()).collect();
        assert_eq!(
            urls,
            [
                "https://geo.mirror.pkgbuild.com/$repo/os/$arch",
                "https://mirror.leaseweb.net/archlinux/$repo/os/$arch"
            ]
        );
    }
    let options = &conf.options;
    assert_eq!(options.cache_dirs, [Path::new(DEFAULT_CACHE_DIR)]);
    assert_eq!(options.db_path, Path::new("/var/lib/pacman/"));
    assert_eq!(options.sync_dir(), Path::new("/var/lib/pacman/sync"));
    assert_eq!(options.architectures, [std::env::consts::ARCH]);
    assert_eq!(options.root_dir, None);
    assert_eq!(
        conf.files,
        [dir.path().join("main"), dir.path().join("mirrorlist")]
    );
}

fn options(text: &str) -> Options {
    PacmanConf::parse(text, "t.conf").expect("parses").options
}

#[test]
fn options_follow_pacman() {
    let o = options("[options]\nCacheDir = /a/\nCacheDir = /b /c\nCacheDir\nCacheDir =\nDBPath = /d/\nDBPath = /e/\nArchitecture = i686 auto\nArchitecture = auto pentium4\n");
    assert_eq!(
        o.cache_dirs,
        [Path::new("/a/"), Path::new("/b"), Path::new("/c")]
    );
    assert_eq!(o.db_path, Path::new("/d/"));
    assert_eq!(
        o.architectures,
        ["i686", std::env::consts::ARCH, "pentium4"]
    );
    assert_eq!(o.arch(), "i686");

    let o = options("[options]\nRootDir = /mnt\nRootDir = /other\n");
    assert_eq!(o.root_dir.as_deref(), Some(Path::new("/mnt")));
    assert_eq!(o.db_path, Path::new("/mnt/var/lib/pacman/"));
    assert_eq!(o.sync_dir(), Path::new("/mnt/var/lib/pacman/sync"));
    assert_eq!(o.cache_dirs, [Path::new("/var/cache/pacman/pkg/")]);

    let o =
        options("[options]\nRootDir = /mnt\nDBPath = /db\n[core]\nCacheDir = /ignored-in-repo\n");
    assert_eq!(o.db_path, Path::new("/db"));
    assert_eq!(o.cache_dirs, [Path::new(DEFAULT_CACHE_DIR)]);
    assert_eq!(o.architectures, [std::env::consts::ARCH]);
}

#[test]
fn real_mirrors_skip_pacmesh() {
    let dir = tempfile::tempdir().expect("temp dir");
    let main = "[core]\nInclude = {dir}/pacmesh\nServer = http://localhost:15680/$repo\nServer = http://10.0.0.9:15680/$repo\nInclude = {dir}/mirrorlist\n[custom]\nInclude = {dir}/pacmesh\n";
    let includes = [
        ("mirrorlist", MIRRORLIST),
        (
            "pacmesh",
            "Server = http://127.0.0.1:15680/$repo/os/$arch\n",
        ),
    ];
    let conf = load(dir.path(), main, &includes).expect("parses");
    let addrs: Vec<SocketAddr> = vec!["127.0.0.1:15680".parse().expect("addr")];
    let own = OwnServers::new(&addrs).with_include_path(dir.path().join("pacmesh"));
    let urls = |repo: &str| -> Vec<String> {
        conf.real_mirrors(repo, &own)
            .iter()
            .map(|s| crate::expand_server(&s.url, repo, conf.options.arch()))
            .collect()
    };
    let arch = std::env::consts::ARCH;
    assert_eq!(
        urls("core"),
        [
            "http://10.0.0.9:15680/core".to_owned(),
            format!("https://geo.mirror.pkgbuild.com/core/os/{arch}"),
            format!("https://mirror.leaseweb.net/archlinux/core/os/{arch}"),
        ]
    );
    assert!(urls("custom").is_empty());
    assert!(urls("unknown").is_empty());
    // With the default include path, the file here is not recognised, but
    // its URL still is.
    let by_url = OwnServers::new(&addrs);
    assert_eq!(conf.real_mirrors("core", &by_url).len(), 3);
    assert_eq!(conf.real_mirrors("custom", &by_url).len(), 0);
}

/// pacmesh's include in both of its forms, and another cache's
/// `CacheServer`: only `Server` lines that are not pacmesh's own are
/// redirect targets.
#[test]
fn cache_servers_are_never_mirrors() {
    let dir = tempfile::tempdir().expect("temp dir");
    let main = "[core]\nInclude = {dir}/pacmesh\nCacheServer = http://10.0.0.7:9129/repo/archlinux/$repo/os/$arch\nInclude = {dir}/mirrorlist\n[extra]\nInclude = {dir}/pacmesh-old\nServer = https://m/$repo\n[own-by-url]\nCacheServer = http://localhost:15680/$repo\nServer = http://127.0.0.1:15680/$repo\n";
    let cache_server = crate::include_file_contents(15680, crate::ServerDirective::CacheServer);
    let server = crate::include_file_contents(15680, crate::ServerDirective::Server);
    let includes = [
        ("mirrorlist", MIRRORLIST),
        ("pacmesh", cache_server.as_str()),
        ("pacmesh-old", server.as_str()),
    ];
    let conf = load(dir.path(), main, &includes).expect("parses");
    let addrs: Vec<SocketAddr> = vec!["127.0.0.1:15680".parse().expect("addr")];
    let own = OwnServers::new(&addrs);
    let urls = |repo: &str| -> Vec<&str> {
        conf.real_mirrors(repo, &own)
            .iter()
            .map(|s| s.url.as_str())
            .collect()
    };
    assert_eq!(
        urls("core"),
        [
            "https://geo.mirror.pkgbuild.com/$repo/os/$arch",
            "https://mirror.leaseweb.net/archlinux/$repo/os/$arch",
        ]
    );
    assert_eq!(urls("extra"), ["https://m/$repo"]);
    assert!(urls("own-by-url").is_empty());
}

#[test]
fn unreadable_files_name_the_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let main = dir.path().join("main");
    fs::write(&main, b"[core]\n# ok\n# caf\xe9\n").expect("write");
    let error = PacmanConf::load(&main).expect_err("not UTF-8").to_string();
    assert_eq!(error, format!("{}:3: not valid UTF-8", main.display()));

    let missing = dir.path().join("missing");
    let error = PacmanConf::load(&missing).expect_err("missing").to_string();
    assert_eq!(
        error,
        format!(
            "{}: cannot read: No such file or directory",
            missing.display()
        )
    );
}

#[test]
fn a_fifo_include_without_a_writer_reads_as_empty_instead_of_blocking() {
    use rustix::fs::{mknodat, FileType, Mode, CWD};
    let dir = tempfile::tempdir().expect("temp dir");
    // No writer ever opens it: a blocking open would wait for ever.
    let fifo = dir.path().join("fifo");
    mknodat(CWD, &fifo, FileType::Fifo, Mode::RUSR | Mode::WUSR, 0).expect("mkfifo");
    let main = dir.path().join("main");
    let text = format!("[core]\nInclude = {}\nServer = https://m\n", fifo.display());
    fs::write(&main, text).expect("write");
    let conf = PacmanConf::load(&main).expect("a FIFO with no writer is empty");
    let servers: Vec<&str> = conf.repos[0]
        .servers
        .iter()
        .map(|s| s.url.as_str())
        .collect();
    assert_eq!(servers, ["https://m"]);
}

/// The error `main` and `includes` give, with the temp dir as `{dir}`.
fn error_of(main: &str, includes: &[(String, String)]) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let includes: Vec<(&str, &str)> = includes
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    let error = load(dir.path(), main, &includes).expect_err("refused");
    error
        .to_string()
        .replace(&dir.path().display().to_string(), "{dir}")
}

#[test]
fn include_fan_out_is_bounded_in_all() {
    // 20 files each including the same 20: 420 reads, none deeper than 2.
    let mut includes: Vec<(String, String)> = (0..20)
        .map(|i| (format!("a/{i:02}"), "Include = {dir}/b/*\n".to_owned()))
        .collect();
    includes.extend((0..20).map(|i| (format!("b/{i:02}"), "# leaf\n".to_owned())));
    let error = error_of("[options]\nInclude = {dir}/a/*\n", &includes);
    // 21 reads per `a` file: a/00..a/11 take 252, a/12 is the 253rd and
    // b/03 below it the 257th.
    assert_eq!(MAX_INCLUDES, 256);
    assert_eq!(
        error,
        "{dir}/a/12:1: more than 256 include files read in all, at {dir}/b/03"
    );
    // Within the bound, the same shape parses.
    includes.truncate(10);
    includes.extend((0..20).map(|i| (format!("b/{i:02}"), "# leaf\n".to_owned())));
    let dir = tempfile::tempdir().expect("temp dir");
    let refs: Vec<(&str, &str)> = includes
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    let conf = load(dir.path(), "[options]\nInclude = {dir}/a/*\n", &refs).expect("parses");
    assert_eq!(conf.files.len(), 31);
}

#[test]
fn an_include_glob_matching_too_many_files_is_refused() {
    let many: Vec<(String, String)> = (0..=MAX_GLOB_MATCHES)
        .map(|i| (format!("d/{i:03}.conf"), String::new()))
        .collect();
    let error = error_of("[options]\n# x\nInclude = {dir}/d/*.conf\n", &many);
    assert_eq!(
        error,
        format!(
            "{{dir}}/main:3: include {{dir}}/d/*.conf matches more than {MAX_GLOB_MATCHES} files"
        )
    );
    let fits = &many[..MAX_GLOB_MATCHES];
    let dir = tempfile::tempdir().expect("temp dir");
    let refs: Vec<(&str, &str)> = fits.iter().map(|(n, t)| (n.as_str(), t.as_str())).collect();
    assert!(load(dir.path(), "[options]\nInclude = {dir}/d/*.conf\n", &refs).is_ok());
}

#[test]
fn files_past_the_size_bound_are_refused_even_endless_ones() {
    let error = error_of("[options]\nInclude = /dev/zero\n", &[]);
    assert_eq!(
        error,
        format!("{{dir}}/main:2: include /dev/zero: larger than {MAX_FILE_BYTES} bytes")
    );
    let big = "#".repeat(MAX_FILE_BYTES as usize + 1);
    let error = error_of(
        "[options]\nInclude = {dir}/big\n",
        &[("big".into(), big.clone())],
    );
    assert_eq!(
        error,
        format!("{{dir}}/main:2: include {{dir}}/big: larger than {MAX_FILE_BYTES} bytes")
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let main = dir.path().join("main");
    fs::write(&main, &big).expect("write");
    let error = PacmanConf::load(&main).expect_err("too large").to_string();
    assert_eq!(
        error,
        format!("{}: larger than {MAX_FILE_BYTES} bytes", main.display())
    );
}
