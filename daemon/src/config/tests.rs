use std::io::Write;
use std::path::PathBuf;

use clap::Parser;

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
        ("mode = \"mirror\"", &[], &["`mode`", "not available"]),
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
