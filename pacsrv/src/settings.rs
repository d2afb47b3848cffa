//! What pacsrv takes from its environment: which pacman to run, where the
//! daemon answers, where to keep generated files, which include file to
//! name. Pure: a lookup function in, checked settings out.

use std::ffi::OsString;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use pacmesh_conf::DEFAULT_HTTP_PORT;

/// The program run when `PACMAN` is unset or empty.
pub const DEFAULT_PACMAN: &str = "pacman";
/// Where root keeps generated files.
pub const ROOT_CACHE_DIR: &str = "/var/cache/pacmesh/pacsrv";

/// Checked settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `PACMAN`, or `pacman` (looked up on `PATH`).
    pub pacman: OsString,
    pub daemon: Daemon,
    /// Where GENERATED (and pacsrv's own include file) live; `None` when
    /// neither `PACSRV_CACHE_DIR`, root, `XDG_CACHE_HOME` nor `HOME` gives
    /// one.
    pub cache_dir: Option<PathBuf>,
    /// `PACSRV_INCLUDE`: the include file to name instead of choosing one.
    pub include: Option<PathBuf>,
}

/// The daemon pacsrv asks, from `PACSRV_DAEMON_URL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Daemon {
    /// Where to connect (never a name to resolve: no DNS on this path).
    pub addr: SocketAddr,
    /// `http://HOST:PORT` as given, for messages and the `Host` header.
    pub base_url: String,
    /// Whether the address is pacmesh's default, so that the shipped
    /// include file (which names the default port) fits it.
    pub is_default: bool,
}

impl Daemon {
    pub fn default_local() -> Daemon {
        Daemon {
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, DEFAULT_HTTP_PORT)),
            base_url: format!("http://127.0.0.1:{DEFAULT_HTTP_PORT}"),
            is_default: true,
        }
    }
}

/// A setting that cannot be used; the message names the variable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{var}: {reason}")]
pub struct SettingsError {
    pub var: &'static str,
    pub reason: String,
}

impl Settings {
    /// Reads the settings through `var` (the process environment in
    /// `main`); `is_root` picks the cache dir.
    pub fn from_env(
        var: impl Fn(&str) -> Option<OsString>,
        is_root: bool,
    ) -> Result<Settings, SettingsError> {
        // Empty counts as unset, as makepkg treats `PACMAN=`.
        let set = |name: &str| var(name).filter(|v| !v.is_empty());
        let daemon = match set("PACSRV_DAEMON_URL") {
            None => Daemon::default_local(),
            Some(url) => {
                parse_daemon_url(&url.to_string_lossy()).map_err(|reason| SettingsError {
                    var: "PACSRV_DAEMON_URL",
                    reason,
                })?
            }
        };
        let cache_dir = if let Some(dir) = set("PACSRV_CACHE_DIR") {
            Some(PathBuf::from(dir))
        } else if is_root {
            Some(PathBuf::from(ROOT_CACHE_DIR))
        } else {
            // XDG: a relative XDG_CACHE_HOME is invalid and must be ignored.
            set("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
                .or_else(|| set("HOME").map(|home| PathBuf::from(home).join(".cache")))
                .map(|cache| cache.join("pacmesh"))
        };
        Ok(Settings {
            pacman: set("PACMAN").unwrap_or_else(|| DEFAULT_PACMAN.into()),
            daemon,
            cache_dir,
            include: set("PACSRV_INCLUDE").map(PathBuf::from),
        })
    }
}

/// `http://HOST:PORT` with a loopback IP or `localhost` (a trailing `/` is
/// fine). Loopback only: pacsrv is for this host's own daemon, and the
/// include file it writes names `127.0.0.1`.
pub fn parse_daemon_url(url: &str) -> Result<Daemon, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url:?} does not start with http://"))?;
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains('/') {
        return Err(format!(
            "{url:?} has a path; give the daemon's base URL, e.g. http://127.0.0.1:{DEFAULT_HTTP_PORT}"
        ));
    }
    let (host, port) = authority
        .rsplit_once(':')
        .ok_or_else(|| format!("{url:?} has no port"))?;
    let port: u16 = port
        .parse()
        .ok()
        .filter(|&p| p != 0)
        .ok_or_else(|| format!("{url:?}: bad port {port:?}"))?;
    let ip = match host {
        "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
        _ => host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host)
            .parse::<IpAddr>()
            .map_err(|_| format!("{url:?}: host {host:?} is not an IP address or localhost"))?,
    };
    if !ip.is_loopback() {
        return Err(format!(
            "{url:?}: pacsrv talks to this host's pacmeshd only (a loopback address)"
        ));
    }
    let addr = SocketAddr::new(ip, port);
    Ok(Daemon {
        addr,
        base_url: format!("http://{authority}"),
        is_default: addr == Daemon::default_local().addr,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(vars: &[(&str, &str)], is_root: bool) -> Result<Settings, SettingsError> {
        let map: HashMap<String, OsString> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), OsString::from(v)))
            .collect();
        Settings::from_env(|name| map.get(name).cloned(), is_root)
    }

    #[test]
    fn defaults() {
        let s = settings(&[("HOME", "/home/u")], false).unwrap();
        assert_eq!(s.pacman, "pacman");
        assert_eq!(s.daemon, Daemon::default_local());
        assert_eq!(s.cache_dir, Some(PathBuf::from("/home/u/.cache/pacmesh")));
        assert_eq!(s.include, None);
        let s = settings(&[("PACMAN", "")], true).unwrap();
        assert_eq!(s.pacman, "pacman");
        assert_eq!(s.cache_dir, Some(PathBuf::from(ROOT_CACHE_DIR)));
    }

    #[test]
    fn cache_dir_choice() {
        for (vars, is_root, expected) in [
            (&[("PACSRV_CACHE_DIR", "/t")][..], true, Some("/t")),
            (&[("PACSRV_CACHE_DIR", "/t")], false, Some("/t")),
            (
                &[("XDG_CACHE_HOME", "/x"), ("HOME", "/h")],
                false,
                Some("/x/pacmesh"),
            ),
            (&[("XDG_CACHE_HOME", "/x")], true, Some(ROOT_CACHE_DIR)),
            (
                &[("XDG_CACHE_HOME", "rel"), ("HOME", "/h")],
                false,
                Some("/h/.cache/pacmesh"),
            ),
            (&[("XDG_CACHE_HOME", "")], false, None),
            (&[], false, None),
        ] {
            let got = settings(vars, is_root).unwrap().cache_dir;
            assert_eq!(got, expected.map(PathBuf::from), "{vars:?} root={is_root}");
        }
    }

    #[test]
    fn overrides() {
        let s = settings(
            &[
                ("PACMAN", "/opt/pacman"),
                ("PACSRV_DAEMON_URL", "http://127.0.0.1:8080/"),
                ("PACSRV_INCLUDE", "/tmp/inc"),
            ],
            false,
        )
        .unwrap();
        assert_eq!(s.pacman, "/opt/pacman");
        assert_eq!(s.daemon.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(s.daemon.base_url, "http://127.0.0.1:8080");
        assert!(!s.daemon.is_default);
        assert_eq!(s.include, Some(PathBuf::from("/tmp/inc")));
        let err = settings(&[("PACSRV_DAEMON_URL", "nope")], false).unwrap_err();
        assert_eq!(err.var, "PACSRV_DAEMON_URL");
    }

    #[test]
    fn daemon_urls() {
        for (url, ok) in [
            ("http://127.0.0.1:15680", Some("127.0.0.1:15680")),
            ("http://localhost:9/", Some("127.0.0.1:9")),
            ("http://[::1]:15680", Some("[::1]:15680")),
            ("http://127.0.0.2:1", Some("127.0.0.2:1")),
            ("https://127.0.0.1:1", None),
            ("http://10.0.0.1:15680", None),
            ("http://example.org:80", None),
            ("http://127.0.0.1", None),
            ("http://127.0.0.1:0", None),
            ("http://127.0.0.1:99999", None),
            ("http://127.0.0.1:1/_pacmesh/status", None),
        ] {
            let got = parse_daemon_url(url).ok().map(|d| d.addr);
            assert_eq!(got, ok.map(|a| a.parse().unwrap()), "{url}");
        }
        assert!(
            parse_daemon_url("http://127.0.0.1:15680")
                .unwrap()
                .is_default
        );
        assert!(
            parse_daemon_url("http://localhost:15680")
                .unwrap()
                .is_default
        );
    }
}
