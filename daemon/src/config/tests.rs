use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use super::mirror::{check_server, MirrorRepo};
use super::*;

/// Loads `toml` as the config file, with `flags` on the command line.
fn load_with(toml: &str, flags: &[&str]) -> (Result<Config, ConfigError>, PathBuf) {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    file.write_all(toml.as_bytes()).expect("write config");
    let path = file.path().to_owned();
    let mut argv = vec![
        "pacmeshd",
        "--config",
        path.to_str().expect("utf-8 temp path"),
    ];
    argv.extend_from_slice(flags);
    let raw = RawConfig::try_parse_from(argv).expect("flags parse");
    (load(raw), path)
}

/// Asserts that loading fails with a message containing every `needle`.
fn check_err(toml: &str, flags: &[&str], needles: &[&str]) {
    let (result, path) = load_with(toml, flags);
    let err = result.expect_err("config should be refused").to_string();
    for needle in needles {
        let needle = needle.replace("$FILE", &path.display().to_string());
        assert!(
            err.contains(&needle),
            "error {err:?} should contain {needle:?}"
        );
    }
}

#[test]
fn defaults_with_an_empty_file() {
    let (config, _) = load_with("", &[]);
    let config = config.expect("empty config is fine");
    assert_eq!(
        config.http_listen,
        vec![
            "127.0.0.1:15680".parse().unwrap(),
            "[::1]:15680".parse().unwrap()
        ]
    );
    assert!(config.http_listen_is_default);
    assert_eq!(config.quic_listen, "0.0.0.0:15680".parse().unwrap());
    assert_eq!(config.pacman_conf, PathBuf::from("/etc/pacman.conf"));
    assert!(!config.pacman_conf_explicit);
    assert_eq!(config.state_dir, PathBuf::from("/var/lib/pacmesh"));
    assert_eq!(config.store_dir, PathBuf::from("/var/cache/pacmesh"));
    assert!(config.mdns);
    assert_eq!(config.mode, Mode::Local);
}

#[test]
fn bad_values_name_key_and_file() {
    let table: &[(&str, &[&str], &[&str])] = &[
        (
            "http_listen = [\"localhost\"]",
            &[],
            &["$FILE", "`http_listen`", "localhost", "ADDR:PORT"],
        ),
        (
            "quic_listen = \"1.2.3.4\"",
            &[],
            &["$FILE", "`quic_listen`"],
        ),
        (
            "peers = [\"nohostport\"]",
            &[],
            &["$FILE", "`peer`", "HOST:PORT"],
        ),
        (
            "peers = [\"abc@10.0.0.2:15680\"]",
            &[],
            &["$FILE", "`peer`", "node id", "64 hex"],
        ),
        (
            "peers = [\"0000000000000000000000000000000000000000000000000000000000000000@nohostport\"]",
            &[],
            &["$FILE", "`peer`", "NODE_ID@HOST:PORT"],
        ),
        ("mode = \"turbo\"", &[], &["$FILE", "`mode`", "turbo"]),
        (
            "store_dir = \"relative/dir\"",
            &[],
            &["$FILE", "`store_dir`", "relative"],
        ),
        (
            "",
            &["--http-listen", "nope"],
            &["command line", "`http_listen`"],
        ),
        ("colour = \"blue\"", &[], &["$FILE", "colour"]),
        ("http_listen = 5", &[], &["$FILE", "http_listen"]),
        ("[broken", &[], &["$FILE"]),
    ];
    for (toml, flags, needles) in table {
        check_err(toml, flags, needles);
    }
}

#[test]
fn flags_win_over_the_file() {
    let toml =
        "http_listen = [\"127.0.0.1:1\"]\nstore_dir = \"/file/store\"\ncache_dir = [\"/a\"]\n";
    let (config, _) = load_with(
        toml,
        &["--http-listen", "127.0.0.1:2", "--store-dir", "/flag/store"],
    );
    let config = config.expect("valid");
    assert_eq!(config.http_listen, vec!["127.0.0.1:2".parse().unwrap()]);
    assert_eq!(config.store_dir, PathBuf::from("/flag/store"));
    assert!(!config.store_dir_is_default);
    assert_eq!(config.extra_cache_dirs, vec![PathBuf::from("/a")]);
}

#[test]
fn serve_lan_listens_on_the_wildcard_at_the_same_port() {
    let (config, _) = load_with("serve_lan = true\nhttp_listen = [\"127.0.0.1:9000\"]", &[]);
    assert_eq!(
        config.expect("valid").http_listen,
        vec!["[::]:9000".parse().unwrap()]
    );
}

#[test]
fn a_missing_named_config_file_is_an_error_but_the_default_may_be_absent() {
    let raw = RawConfig::try_parse_from(["pacmeshd", "--config", "/nonexistent/pacmeshd.toml"])
        .expect("parse");
    let err = load(raw).expect_err("named file must exist").to_string();
    assert!(err.contains("/nonexistent/pacmeshd.toml"), "{err}");
}

#[test]
fn printed_config_loads_back_to_the_same_config() {
    let pinned = format!("{}@10.0.0.3:15680", "ab".repeat(32));
    let toml = format!(
        "peers = [\"10.0.0.2:15680\", \"{pinned}\"]\nno_mdns = true\ncache_dir = [\"/srv/pkg\"]\n"
    );
    let toml = toml.as_str();
    let (config, _) = load_with(toml, &["--http-listen", "127.0.0.1:7000"]);
    let config = config.expect("valid");
    let printed = config.to_toml();
    let (again, _) = load_with(&printed, &[]);
    let again = again.expect("printed config loads");
    assert_eq!(again.http_listen, config.http_listen);
    assert_eq!(again.peers, config.peers);
    assert_eq!(config.peers, ["10.0.0.2:15680", pinned.as_str()]);
    assert_eq!(again.extra_cache_dirs, config.extra_cache_dirs);
    assert_eq!(again.mdns, config.mdns);
    assert_eq!(again.pacman_conf, config.pacman_conf);
}

#[test]
fn mirror_mode_listens_on_the_lan() {
    let (config, _) = load_with("mode = \"mirror\"", &["--http-listen", "127.0.0.1:9001"]);
    let config = config.expect("mirror mode is accepted");
    assert_eq!(config.mode, Mode::Mirror);
    assert_eq!(config.http_listen, vec!["[::]:9001".parse().unwrap()]);
    assert!(!config.http_listen_is_default);
    let (config, _) = load_with("", &["--mode", "mirror"]);
    assert_eq!(
        config.expect("valid").http_listen,
        vec!["[::]:15680".parse().unwrap()]
    );
}

const MIRROR_TOML: &str = r#"
mode = "mirror"

[mirror]
db_revalidate_s = 30
store_max_gib = 100
keep_versions = 2
refresh_interval_s = 600
prefetch_days = 14
prefetch_kib_s = 512
admin_token_file = "/etc/pacmesh/admin.token"

[[mirror.repo]]
name = "core"
arch = ["aarch64"]
servers = ["http://mirror.archlinuxarm.org/$arch/$repo"]
full = true

[[mirror.repo]]
name = "extra"
servers = ["https://a.example/$repo/os/$arch"]
mirrorlist = "/etc/pacman.d/mirrorlist"
"#;

#[test]
fn mirror_table_is_read_and_printed_back() {
    let (config, _) = load_with(MIRROR_TOML, &[]);
    let config = config.expect("valid");
    assert_eq!(config.mirror.db_revalidate, Duration::from_secs(30));
    assert_eq!(config.mirror.store_max_bytes, 100 << 30);
    assert_eq!(config.mirror.keep_versions, 2);
    assert_eq!(
        config.mirror.prefetch_window,
        Some(Duration::from_secs(14 * 24 * 3600))
    );
    assert_eq!(config.mirror.prefetch_rate, 512 << 10);
    assert_eq!(
        config.mirror.refresh_interval,
        Some(Duration::from_secs(600))
    );
    assert_eq!(
        config.mirror.admin_token_file,
        Some(PathBuf::from("/etc/pacmesh/admin.token"))
    );
    assert_eq!(
        config.mirror.repos,
        vec![
            MirrorRepo {
                name: "core".into(),
                archs: vec!["aarch64".into()],
                servers: vec!["http://mirror.archlinuxarm.org/$arch/$repo".into()],
                mirrorlist: None,
                full: true,
            },
            MirrorRepo {
                name: "extra".into(),
                archs: vec![],
                servers: vec!["https://a.example/$repo/os/$arch".into()],
                mirrorlist: Some("/etc/pacman.d/mirrorlist".into()),
                full: false,
            },
        ]
    );
    let (again, _) = load_with(&config.to_toml(), &[]);
    let again = again.expect("printed config loads");
    assert_eq!(
        (&again.mode, &again.mirror, &again.http_listen),
        (&config.mode, &config.mirror, &config.http_listen)
    );
    let (plain, _) = load_with("", &[]);
    assert_eq!(plain.expect("valid").mirror, MirrorConfig::default());
    // A cap in MiB prints back as MiB; refresh 0 is off.
    let small = "[mirror]\nstore_max_mib = 12\nrefresh_interval_s = 0\n";
    let (small, _) = load_with(small, &[]);
    let small = small.expect("valid");
    assert_eq!(small.mirror.store_max_bytes, 12 << 20);
    assert_eq!(small.mirror.refresh_interval, None);
    let (again, _) = load_with(&small.to_toml(), &[]);
    assert_eq!(again.expect("printed config loads").mirror, small.mirror);
}

#[test]
fn bad_mirror_tables_name_key_and_file() {
    let repo = |body: &str| format!("[[mirror.repo]]\n{body}\n");
    let table: Vec<(String, Vec<&str>)> = vec![
        (
            "[mirror]\ndb_revalidate_s = 999999".into(),
            vec!["$FILE", "`mirror.db_revalidate_s`", "at most"],
        ),
        (
            "[mirror]\ndb_revalidate_s = -1".into(),
            vec!["$FILE", "db_revalidate_s"],
        ),
        ("[mirror]\ncolour = 1".into(), vec!["$FILE", "colour"]),
        (
            "[mirror]\nadmin_token_file = \"admin.token\"".into(),
            vec!["$FILE", "`mirror.admin_token_file`", "absolute"],
        ),
        (
            "[mirror]\nstore_max_gib = 0".into(),
            vec!["$FILE", "`mirror.store_max_gib`", "from 1"],
        ),
        (
            "[mirror]\nstore_max_gib = 1\nstore_max_mib = 5".into(),
            vec!["$FILE", "`mirror.store_max_mib`", "not both"],
        ),
        (
            "[mirror]\nprefetch_days = 400".into(),
            vec!["$FILE", "`mirror.prefetch_days`", "from 0"],
        ),
        (
            "[mirror]\nkeep_versions = 5000".into(),
            vec!["$FILE", "`mirror.keep_versions`", "from 0"],
        ),
        (
            "[mirror]\nrefresh_interval_s = 9999999".into(),
            vec!["$FILE", "`mirror.refresh_interval_s`", "seconds"],
        ),
        (
            repo("name = \"core\"\nservers = [\"http://m/$repo\"]\nfull = true"),
            vec!["$FILE", "`mirror.repo[0].arch`", "architectures"],
        ),
        (
            repo("servers = [\"http://m/$repo\"]"),
            vec!["$FILE", "name"],
        ),
        (
            repo("name = \"a/core\"\nservers = [\"http://m/$repo\"]"),
            vec!["$FILE", "`mirror.repo[0].name`", "`/`"],
        ),
        (
            repo("name = \"core\""),
            vec!["$FILE", "`mirror.repo[0].servers`", "mirrorlist"],
        ),
        (
            repo("name = \"core\"\nservers = [\"http://m/$repo\", \"ftp://m/$repo\"]"),
            vec![
                "$FILE",
                "`mirror.repo[0].servers[1]`",
                "ftp://m/$repo",
                "http://",
            ],
        ),
        (
            repo("name = \"core\"\nservers = [\"http://m/$repo/$carch\"]"),
            vec!["$FILE", "`mirror.repo[0].servers[0]`", "$repo and $arch"],
        ),
        (
            repo("name = \"core\"\narch = [\"arm/v7\"]\nservers = [\"http://m/$repo\"]"),
            vec!["$FILE", "`mirror.repo[0].arch[0]`", "arm/v7"],
        ),
        (
            repo("name = \"core\"\nmirrorlist = \"mirrorlist\""),
            vec!["$FILE", "`mirror.repo[0].mirrorlist`", "absolute"],
        ),
        (
            repo("name = \"core\"\nservers = [\"http://m/$repo\"]")
                + &repo("name = \"core\"\nservers = [\"http://n/$repo\"]"),
            vec!["$FILE", "`mirror.repo[1].name`", "once"],
        ),
        (
            repo("name = \"core\"\nserver = [\"http://m/$repo\"]"),
            vec!["$FILE", "server"],
        ),
    ];
    for (toml, needles) in &table {
        check_err(toml, &[], needles);
    }
}

// `config::mirror`'s own pure checks.
#[test]
fn server_urls() {
    let table: &[(&str, bool)] = &[
        ("https://geo.mirror.pkgbuild.com/$repo/os/$arch", true),
        ("http://mirror.archlinuxarm.org/$arch/$repo", true),
        ("HTTP://10.0.0.1:8080/arch/$repo/os/$arch/", true),
        ("ftp://m/$repo", false),
        ("file:///srv/repo", false),
        ("/srv/repo", false),
        ("https://m/$repo/os/$carch", false),
        ("https:///$repo", false),
        ("https://m/a b", false),
    ];
    for (url, ok) in table {
        assert_eq!(
            check_server(url).is_ok(),
            *ok,
            "{url}: {:?}",
            check_server(url)
        );
    }
}

#[test]
fn arch_filter() {
    let repo = |archs: &[&str]| MirrorRepo {
        name: "core".into(),
        archs: archs.iter().map(|a| a.to_string()).collect(),
        servers: vec!["http://m/$repo".into()],
        mirrorlist: None,
        full: false,
    };
    assert!(repo(&[]).serves_arch("riscv64"));
    assert!(repo(&["aarch64", "armv7h"]).serves_arch("armv7h"));
    assert!(!repo(&["aarch64"]).serves_arch("x86_64"));
}

/// A reload names the keys only a restart applies, and not `pacman_conf`,
/// whose mirrors it takes up.
#[test]
fn a_reload_names_the_keys_waiting_for_a_restart() {
    let config = |toml: &str| load_with(toml, &[]).0.expect("config loads");
    let running = config("pacman_conf = \"/etc/pacman.conf\"\n");
    assert_eq!(
        running.changes_needing_restart(&running.clone()),
        Vec::<&str>::new()
    );
    let reloaded = config(
        "pacman_conf = \"/tmp/other-pacman.conf\"\nhttp_listen = [\"127.0.0.1:15999\"]\n\
         pages_lan = true\n[mirror]\nrefresh_interval_s = 60\n",
    );
    assert_eq!(
        running.changes_needing_restart(&reloaded),
        vec!["http_listen", "pages_lan", "mirror"]
    );
}
