//! The checked configuration and the errors that name what was wrong.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;

use pacmesh_conf::DEFAULT_HTTP_PORT;

use super::mirror::{self, MirrorConfig};
use super::raw::{Merged, RawConfig};

/// Where a configuration value came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Flag,
    File(PathBuf),
    Default,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Flag => write!(f, "command line"),
            Origin::File(path) => write!(f, "{}", path.display()),
            Origin::Default => write!(f, "built-in default"),
        }
    }
}

/// A raw value and where it came from.
#[derive(Debug, Clone)]
pub struct Sourced {
    pub value: String,
    pub origin: Origin,
}

impl Sourced {
    pub fn new(value: String, origin: Origin) -> Self {
        Sourced { value, origin }
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {}: {message}", path.display())]
    Toml { path: PathBuf, message: String },
    #[error("{origin}: `{key}` = {value:?}: {reason}")]
    Invalid {
        /// The key as written, e.g. `http_listen` or `mirror.repo[0].servers[1]`.
        key: String,
        value: String,
        origin: Origin,
        reason: String,
    },
}

/// What the daemon does on a miss.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Serve the local cache, redirect misses to the real mirror.
    Local,
    /// Caching mirror for machines that do not run pacmesh: listens on the
    /// LAN, fetches every miss and keeps it, proxies the databases
    /// (docs/DESIGN.md, "Caching-mirror mode").
    Mirror,
}

/// The checked configuration the daemon runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub pacman_conf: PathBuf,
    /// True when the user named the pacman.conf: then it must exist.
    pub pacman_conf_explicit: bool,
    pub extra_cache_dirs: Vec<PathBuf>,
    pub http_listen: Vec<SocketAddr>,
    /// True when `http_listen` is the built-in default, whose IPv6 half may
    /// be missing on a host without IPv6.
    pub http_listen_is_default: bool,
    pub quic_listen: SocketAddr,
    pub state_dir: PathBuf,
    pub state_dir_is_default: bool,
    pub store_dir: PathBuf,
    pub store_dir_is_default: bool,
    pub peers: Vec<String>,
    pub mesh_key: Option<PathBuf>,
    pub mdns: bool,
    pub serve_lan: bool,
    /// pacmesh's status, metrics and page answered to other hosts too.
    pub pages_lan: bool,
    pub verified_only: bool,
    pub mode: Mode,
    /// `[mirror]`: checked whatever the mode, used in mirror mode.
    pub mirror: MirrorConfig,
}

pub const DEFAULT_PACMAN_CONF: &str = "/etc/pacman.conf";
pub const DEFAULT_STATE_DIR: &str = "/var/lib/pacmesh";
pub const DEFAULT_STORE_DIR: &str = "/var/cache/pacmesh";

impl Merged {
    pub fn validate(self) -> Result<Config, ConfigError> {
        let mode = match self.mode.as_ref().map(|s| (s, s.value.as_str())) {
            None | Some((_, "local")) => Mode::Local,
            Some((_, "mirror")) => Mode::Mirror,
            Some((s, _)) => return Err(invalid("mode", s, "expected `local` or `mirror`")),
        };
        let mirror = match &self.mirror {
            Some((raw, origin)) => mirror::validate(raw, origin)?,
            None => MirrorConfig::default(),
        };
        // A caching mirror serves the LAN, as `serve_lan` does.
        let serve_lan = self.serve_lan || mode == Mode::Mirror;
        let http_listen_is_default = self.http_listen.is_empty();
        let mut http_listen = if http_listen_is_default {
            vec![
                SocketAddr::new(Ipv4Addr::LOCALHOST.into(), DEFAULT_HTTP_PORT),
                SocketAddr::new(Ipv6Addr::LOCALHOST.into(), DEFAULT_HTTP_PORT),
            ]
        } else {
            self.http_listen
                .iter()
                .map(|s| socket_addr("http_listen", s))
                .collect::<Result<Vec<_>, _>>()?
        };
        if serve_lan {
            // One dual-stack wildcard socket covers loopback too; binding it
            // beside 127.0.0.1 on the same port would fail with EADDRINUSE.
            let port = http_listen.first().map_or(DEFAULT_HTTP_PORT, |a| a.port());
            http_listen = vec![SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port)];
        }
        let quic_listen = match &self.quic_listen {
            Some(s) => socket_addr("quic_listen", s)?,
            None => SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), DEFAULT_HTTP_PORT),
        };
        let peers = self
            .peer
            .iter()
            .map(|s| static_peer(s).map(|()| s.value.clone()))
            .collect::<Result<Vec<_>, _>>()?;
        let extra_cache_dirs = self
            .cache_dir
            .iter()
            .map(|s| absolute_path("cache_dir", s))
            .collect::<Result<Vec<_>, _>>()?;
        let path_or = |key, v: &Option<Sourced>, default: &str| match v {
            Some(s) => absolute_path(key, s).map(|p| (p, false)),
            None => Ok((PathBuf::from(default), true)),
        };
        let (pacman_conf, pacman_conf_default) =
            path_or("pacman_conf", &self.pacman_conf, DEFAULT_PACMAN_CONF)?;
        let (state_dir, state_dir_is_default) =
            path_or("state_dir", &self.state_dir, DEFAULT_STATE_DIR)?;
        let (store_dir, store_dir_is_default) =
            path_or("store_dir", &self.store_dir, DEFAULT_STORE_DIR)?;
        let mesh_key = match &self.mesh_key {
            Some(s) => Some(absolute_path("mesh_key", s)?),
            None => None,
        };
        Ok(Config {
            pacman_conf,
            pacman_conf_explicit: !pacman_conf_default,
            extra_cache_dirs,
            http_listen,
            http_listen_is_default: http_listen_is_default && !serve_lan,
            quic_listen,
            state_dir,
            state_dir_is_default,
            store_dir,
            store_dir_is_default,
            peers,
            mesh_key,
            mdns: !self.no_mdns,
            serve_lan: self.serve_lan,
            pages_lan: self.pages_lan,
            verified_only: self.verified_only,
            mode,
            mirror,
        })
    }
}

fn invalid(key: &'static str, s: &Sourced, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_owned(),
        value: s.value.clone(),
        origin: s.origin.clone(),
        reason: reason.into(),
    }
}

fn socket_addr(key: &'static str, s: &Sourced) -> Result<SocketAddr, ConfigError> {
    s.value.parse().map_err(|_| {
        invalid(
            key,
            s,
            "expected ADDR:PORT, e.g. 127.0.0.1:15680 or [::1]:15680",
        )
    })
}

fn is_host_port(value: &str) -> bool {
    match value.rsplit_once(':') {
        Some((host, port)) => !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0),
        None => false,
    }
}

/// `HOST:PORT`, or `ID@HOST:PORT` pinning the peer's node id.
fn static_peer(s: &Sourced) -> Result<(), ConfigError> {
    const SHAPE: &str = "expected HOST:PORT or NODE_ID@HOST:PORT, e.g. 10.0.0.2:15680";
    match crate::mesh::split_static_peer(&s.value) {
        Err(_) => Err(invalid(
            "peer",
            s,
            "the part before @ must be a node id (64 hex digits)",
        )),
        Ok((_, host_port)) if is_host_port(host_port) => Ok(()),
        Ok(_) => Err(invalid("peer", s, SHAPE)),
    }
}

fn absolute_path(key: &'static str, s: &Sourced) -> Result<PathBuf, ConfigError> {
    let path = PathBuf::from(&s.value);
    if s.value.is_empty() {
        return Err(invalid(key, s, "empty path"));
    }
    // A relative path in the config file would depend on the daemon's
    // working directory, which systemd sets to `/`: refuse it there.
    if path.is_relative() && matches!(s.origin, Origin::File(_)) {
        return Err(invalid(
            key,
            s,
            "relative paths are not allowed in the config file",
        ));
    }
    Ok(std::path::absolute(&path).unwrap_or(path))
}

impl Config {
    /// The keys whose value differs in `new` and that a reload (SIGHUP)
    /// does not apply: every key but `pacman_conf`, whose mirrors are taken
    /// up at once (its cache dirs are not: `reload` checks those).
    pub fn changes_needing_restart(&self, new: &Config) -> Vec<&'static str> {
        // Destructured, so that a key added to `Config` must be placed here.
        let Config {
            pacman_conf: _,
            pacman_conf_explicit: _,
            extra_cache_dirs,
            http_listen,
            http_listen_is_default: _,
            quic_listen,
            state_dir,
            state_dir_is_default: _,
            store_dir,
            store_dir_is_default: _,
            peers,
            mesh_key,
            mdns,
            serve_lan,
            pages_lan,
            verified_only,
            mode,
            mirror,
        } = self;
        [
            ("cache_dir", *extra_cache_dirs != new.extra_cache_dirs),
            ("http_listen", *http_listen != new.http_listen),
            ("quic_listen", *quic_listen != new.quic_listen),
            ("state_dir", *state_dir != new.state_dir),
            ("store_dir", *store_dir != new.store_dir),
            ("peer", *peers != new.peers),
            ("mesh_key", *mesh_key != new.mesh_key),
            ("no_mdns", *mdns != new.mdns),
            ("serve_lan", *serve_lan != new.serve_lan),
            ("pages_lan", *pages_lan != new.pages_lan),
            ("verified_only", *verified_only != new.verified_only),
            ("mode", *mode != new.mode),
            ("mirror", *mirror != new.mirror),
        ]
        .into_iter()
        .filter_map(|(key, changed)| changed.then_some(key))
        .collect()
    }

    /// The effective configuration as a TOML document that `--config`
    /// accepts back.
    pub fn to_toml(&self) -> String {
        let raw = RawConfig {
            pacman_conf: Some(self.pacman_conf.clone()),
            cache_dir: self.extra_cache_dirs.clone(),
            http_listen: self.http_listen.iter().map(|a| a.to_string()).collect(),
            quic_listen: Some(self.quic_listen.to_string()),
            state_dir: Some(self.state_dir.clone()),
            store_dir: Some(self.store_dir.clone()),
            peer: self.peers.clone(),
            mesh_key: self.mesh_key.clone(),
            no_mdns: !self.mdns,
            serve_lan: self.serve_lan,
            pages_lan: self.pages_lan,
            verified_only: self.verified_only,
            mode: Some(match self.mode {
                Mode::Local => "local".into(),
                Mode::Mirror => "mirror".into(),
            }),
            mirror: Some(self.mirror.to_raw()),
            ..RawConfig::default()
        };
        toml::to_string(&raw).unwrap_or_else(|e| format!("# cannot print config: {e}\n"))
    }
}
