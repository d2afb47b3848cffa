//! The configuration exactly as written: one struct serves as both the
//! command line (clap) and the TOML file (serde), so a flag `--foo-bar` and
//! a key `foo_bar` can never drift apart.

use std::path::{Path, PathBuf};

use clap::Parser;
use serde::{Deserialize, Serialize};

use super::mirror::RawMirror;
use super::validate::{Origin, Sourced};

/// pacmeshd shares this host's pacman cache with pacman and its neighbours.
///
/// Every option is also a key of the TOML config file (snake_case); flags
/// win over the file.
#[derive(Debug, Default, Clone, Parser, Deserialize, Serialize)]
#[command(name = "pacmeshd", version, about, max_term_width = 100)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// TOML config file [default: /etc/pacmesh/pacmeshd.toml, which may be absent]
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,

    /// pacman.conf to read repos, mirrors, CacheDir, DBPath, Architecture from
    /// [default: /etc/pacman.conf]
    #[arg(long, value_name = "FILE")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pacman_conf: Option<PathBuf>,

    /// Extra cache dir to share (repeatable; added to pacman.conf's)
    #[arg(long, value_name = "DIR")]
    #[serde(default)]
    pub cache_dir: Vec<PathBuf>,

    /// HTTP address for pacman (repeatable) [default: 127.0.0.1:15680, [::1]:15680]
    #[arg(long, value_name = "ADDR:PORT")]
    #[serde(default)]
    pub http_listen: Vec<String>,

    /// UDP address for QUIC peer links [default: 0.0.0.0:15680]
    #[arg(long, value_name = "ADDR:PORT")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quic_listen: Option<String>,

    /// The identity key [default: /var/lib/pacmesh]
    #[arg(long, value_name = "DIR")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_dir: Option<PathBuf>,

    /// The daemon's own package store [default: /var/cache/pacmesh]
    #[arg(long, value_name = "DIR")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_dir: Option<PathBuf>,

    /// Static peer (repeatable); NODE_ID@ accepts only the key with that
    /// node id (else the one its first link had)
    #[arg(long, value_name = "[NODE_ID@]HOST:PORT")]
    #[serde(default, alias = "peers")]
    pub peer: Vec<String>,

    /// Shared secret that mesh members must hold
    #[arg(long, value_name = "FILE")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mesh_key: Option<PathBuf>,

    /// No mDNS announcing or browsing (static peers only)
    #[arg(long)]
    #[serde(default)]
    pub no_mdns: bool,

    /// Also serve HTTP on all addresses, for hosts without pacmesh
    #[arg(long)]
    #[serde(default)]
    pub serve_lan: bool,

    /// Answer pacmesh's status, metrics and page to other hosts too (with
    /// serve_lan or mirror mode); off: loopback only, others get 403
    #[arg(long)]
    #[serde(default)]
    pub pages_lan: bool,

    /// Take from peers only files this host's sync databases can verify
    /// (older versions, for downgrades, are otherwise fetched unverified;
    /// pacman still checks their signatures)
    #[arg(long)]
    #[serde(default)]
    pub verified_only: bool,

    /// `local`, or `mirror` for caching-mirror mode (serves other
    /// machines on the LAN, fetching and keeping what they ask for)
    #[arg(long, value_name = "local|mirror")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,

    /// Caching-mirror mode's repositories and upstreams (`[mirror]`; the
    /// config file only)
    #[arg(skip)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<RawMirror>,

    /// Print the effective configuration as TOML and exit
    #[arg(long)]
    #[serde(skip)]
    pub print_config: bool,

    /// Write a new mesh key to FILE (32 random bytes as hex, mode 0600;
    /// never over an existing file) and exit. Copy it to every member; for
    /// the packaged service make it owner root, group pacmesh, mode 0640
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    pub gen_mesh_key: Option<PathBuf>,

    /// Caching-mirror mode: sync every full-mirror repo once (a progress
    /// bar and a summary), then exit; 1 if any is incomplete. Not while
    /// the daemon runs on the same store (it syncs them on its timer)
    #[arg(long)]
    #[serde(skip)]
    pub sync_once: bool,

    /// Print the contents of /etc/pacman.d/pacmesh (the Include that
    /// pacman.conf-insert adds) for the installed pacman and exit
    /// (CacheServer from pacman 6.1 on, Server before)
    #[arg(long)]
    #[serde(skip)]
    pub print_include: bool,
}

impl RawConfig {
    /// Merges these flags over the file's values: a flag given wins, a list
    /// given on the command line replaces the file's list, and a switch is on
    /// when either turns it on. Every value remembers where it came from.
    pub fn merge_over(self, file: Option<RawConfig>, file_path: &Path) -> Merged {
        let file = file.unwrap_or_default();
        let from_file = Origin::File(file_path.to_owned());
        let one = |flag: Option<String>, file: Option<String>| match (flag, file) {
            (Some(v), _) => Some(Sourced::new(v, Origin::Flag)),
            (None, Some(v)) => Some(Sourced::new(v, from_file.clone())),
            (None, None) => None,
        };
        let list = |flag: Vec<String>, file: Vec<String>| {
            if flag.is_empty() {
                file.into_iter()
                    .map(|v| Sourced::new(v, from_file.clone()))
                    .collect()
            } else {
                flag.into_iter()
                    .map(|v| Sourced::new(v, Origin::Flag))
                    .collect()
            }
        };
        let path = |p: Option<PathBuf>| p.map(|p| p.to_string_lossy().into_owned());
        let paths = |ps: Vec<PathBuf>| -> Vec<String> {
            ps.into_iter()
                .map(|p| p.to_string_lossy().into_owned())
                .collect()
        };
        Merged {
            pacman_conf: one(path(self.pacman_conf), path(file.pacman_conf)),
            cache_dir: list(paths(self.cache_dir), paths(file.cache_dir)),
            http_listen: list(self.http_listen, file.http_listen),
            quic_listen: one(self.quic_listen, file.quic_listen),
            state_dir: one(path(self.state_dir), path(file.state_dir)),
            store_dir: one(path(self.store_dir), path(file.store_dir)),
            peer: list(self.peer, file.peer),
            mesh_key: one(path(self.mesh_key), path(file.mesh_key)),
            no_mdns: self.no_mdns || file.no_mdns,
            serve_lan: self.serve_lan || file.serve_lan,
            pages_lan: self.pages_lan || file.pages_lan,
            verified_only: self.verified_only || file.verified_only,
            mode: one(self.mode, file.mode),
            mirror: file.mirror.map(|m| (m, from_file.clone())),
        }
    }
}

/// Flags merged over the file, each value with its origin, not yet checked.
#[derive(Debug)]
pub struct Merged {
    pub pacman_conf: Option<Sourced>,
    pub cache_dir: Vec<Sourced>,
    pub http_listen: Vec<Sourced>,
    pub quic_listen: Option<Sourced>,
    pub state_dir: Option<Sourced>,
    pub store_dir: Option<Sourced>,
    pub peer: Vec<Sourced>,
    pub mesh_key: Option<Sourced>,
    pub no_mdns: bool,
    pub serve_lan: bool,
    pub pages_lan: bool,
    pub verified_only: bool,
    pub mode: Option<Sourced>,
    /// `[mirror]`, from the file only.
    pub mirror: Option<(RawMirror, Origin)>,
}
