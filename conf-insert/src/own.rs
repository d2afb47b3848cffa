//! Which `Server` lines point at pacmesh itself. The daemon redirects
//! clients to a repository's servers and must skip its own, or pacman would
//! be sent round in a loop.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use crate::defaults::DEFAULT_INCLUDE_PATH;
use crate::model::Server;

/// pacmesh's own servers: anything read from its include file, and any URL
/// whose host and port are one of the daemon's HTTP addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnServers {
    include_path: PathBuf,
    http_addrs: Vec<SocketAddr>,
}

impl OwnServers {
    /// The daemon listening on `http_addrs`, with its include file at the
    /// default [`DEFAULT_INCLUDE_PATH`].
    pub fn new(http_addrs: &[SocketAddr]) -> Self {
        OwnServers {
            include_path: PathBuf::from(DEFAULT_INCLUDE_PATH),
            http_addrs: http_addrs.to_vec(),
        }
    }

    /// The include file pacman.conf-insert was pointed at, if not the default.
    pub fn with_include_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.include_path = path.into();
        self
    }

    pub fn is_own(&self, server: &Server) -> bool {
        // `Path` equality compares components, so `/etc//pacman.d/pacmesh`
        // and `/etc/pacman.d/./pacmesh` match too.
        server.source.file == self.include_path || self.is_own_url(&server.url)
    }

    /// Whether `url` reaches one of our HTTP addresses. Every loopback name
    /// counts as the same host (the daemon listens on 127.0.0.1 and ::1 by
    /// default), and an address bound to all interfaces (`0.0.0.0`, `[::]`)
    /// is reached through loopback. Other host names are not resolved: this
    /// is a pure function and DNS is not.
    pub fn is_own_url(&self, url: &str) -> bool {
        let Some((host, port)) = host_and_port(url) else {
            return false;
        };
        let url_is_local = host.is_local();
        self.http_addrs.iter().any(|own| {
            let own_ip = own.ip().to_canonical();
            own.port() == port
                && if own_ip.is_loopback() || own_ip.is_unspecified() {
                    url_is_local
                } else {
                    host == Host::Ip(own_ip)
                }
        })
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Host {
    Ip(IpAddr),
    Name(String),
}

impl Host {
    /// Loopback, or the unspecified address (which Linux connects to
    /// loopback).
    fn is_local(&self) -> bool {
        match self {
            Host::Ip(ip) => ip.is_loopback() || ip.is_unspecified(),
            Host::Name(name) => name == "localhost",
        }
    }
}

/// The host and port of a URL, the port defaulted from the scheme; `None`
/// for URLs without a network host (`file://`) or that do not parse.
fn host_and_port(url: &str) -> Option<(Host, u16)> {
    let (scheme, rest) = url.split_once("://")?;
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "http" => 80,
        "https" => 443,
        "ftp" => 21,
        _ => return None,
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    let (host, port) = if let Some(bracketed) = host_port.strip_prefix('[') {
        let (host, after) = bracketed.split_once(']')?;
        (host, after.strip_prefix(':'))
    } else {
        match host_port.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        }
    };
    let port = match port {
        None | Some("") => default_port,
        Some(port) => port.parse().ok()?,
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let host = match host.parse::<IpAddr>() {
        Ok(ip) => Host::Ip(ip.to_canonical()),
        Err(_) if host.is_empty() => return None,
        Err(_) => Host::Name(host),
    };
    Some((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Source;

    fn server(url: &str, file: &str) -> Server {
        Server {
            url: url.to_owned(),
            source: Source {
                file: PathBuf::from(file),
                line: 1,
            },
        }
    }

    fn check(own_addrs: &[&str], url: &str, expected: bool) {
        let addrs: Vec<SocketAddr> = own_addrs
            .iter()
            .map(|a| a.parse().expect("test address"))
            .collect();
        let own = OwnServers::new(&addrs);
        assert_eq!(own.is_own_url(url), expected, "{own_addrs:?} {url}");
    }

    #[test]
    fn own_urls() {
        let default = ["127.0.0.1:15680", "[::1]:15680"];
        for (own, url, expected) in [
            (&default[..], "http://127.0.0.1:15680/$repo/os/$arch", true),
            (&default[..], "http://localhost:15680/core/os/x86_64", true),
            (&default[..], "http://LOCALHOST.:15680/", true),
            (&default[..], "http://[::1]:15680", true),
            (&default[..], "http://127.0.0.2:15680/x", true),
            (&default[..], "http://user:pw@127.0.0.1:15680/x", true),
            (&default[..], "http://[::ffff:127.0.0.1]:15680/x", true),
            (&default[..], "http://127.0.0.1:15681/x", false),
            (&default[..], "http://127.0.0.1/x", false),
            (
                &default[..],
                "https://geo.mirror.pkgbuild.com/$repo/os/$arch",
                false,
            ),
            (&default[..], "http://10.0.0.2:15680/x", false),
            (&default[..], "file:///srv/repo", false),
            (&default[..], "http://127.0.0.1:notaport/x", false),
            (&["0.0.0.0:15680"][..], "http://[::1]:15680/x", true),
            (&["[::]:15680"][..], "http://localhost:15680/x", true),
            (&["[::]:15680"][..], "http://10.0.0.2:15680/x", false),
            (&["10.0.0.2:15680"][..], "http://10.0.0.2:15680/x", true),
            (&["10.0.0.2:15680"][..], "http://127.0.0.1:15680/x", false),
            (&["127.0.0.1:80"][..], "http://localhost/x", true),
            (&["127.0.0.1:443"][..], "https://localhost/x", true),
            (&[][..], "http://127.0.0.1:15680/x", false),
        ] {
            check(own, url, expected);
        }
    }

    #[test]
    fn servers_from_the_include_file_are_own_whatever_their_url() {
        let own = OwnServers::new(&[]);
        assert!(own.is_own(&server("http://10.1.1.1/x", "/etc/pacman.d/pacmesh")));
        assert!(own.is_own(&server("http://10.1.1.1/x", "/etc//pacman.d/./pacmesh")));
        assert!(!own.is_own(&server("http://10.1.1.1/x", "/etc/pacman.d/mirrorlist")));
        let own = own.with_include_path("/tmp/inc");
        assert!(own.is_own(&server("http://10.1.1.1/x", "/tmp/inc")));
        assert!(!own.is_own(&server("http://10.1.1.1/x", "/etc/pacman.d/pacmesh")));
    }
}
