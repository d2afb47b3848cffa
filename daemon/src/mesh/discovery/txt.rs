//! What a pacmesh announcement says (its TXT record) and the decision
//! whether a resolved announcement is a peer of ours: pure functions, no
//! mdns-sd types, so the memory LAN and the real one decide alike.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr, SocketAddrV6};

use super::super::link::MIN_PROTOCOL_VERSION;
use super::super::{Announce, NodeId, PeerAd};

/// TXT keys, short because the whole record travels in every response.
pub const KEY_ID: &str = "id";
pub const KEY_VERSION: &str = "v";
pub const KEY_ARCH: &str = "arch";
pub const KEY_PORT: &str = "port";
pub const KEY_MESH: &str = "mesh";

/// The TXT record announcing `me`, as (key, value) pairs.
pub fn encode(me: &Announce) -> Vec<(&'static str, String)> {
    vec![
        (KEY_ID, me.node_id.to_string()),
        (KEY_VERSION, me.protocol_version.to_string()),
        (KEY_ARCH, me.archs.join(",")),
        (KEY_PORT, me.quic_port.to_string()),
        (KEY_MESH, me.mesh_tag.clone()),
    ]
}

/// An address an announcement was seen with. `scope` is the interface
/// index the address was learnt on (0 when unknown): link-local IPv6
/// cannot be dialled without it, and an IPv4 address is dialled only on
/// that interface's subnet (`super::scope`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeenIp {
    pub ip: IpAddr,
    pub scope: u32,
}

/// A resolved announcement of someone (possibly this host itself).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolved {
    /// TXT keys (lower case) and values; a key without value maps to "".
    pub txt: HashMap<String, String>,
    pub ips: Vec<SeenIp>,
    /// Addresses left out as off this host's subnets
    /// ([`Resolved::keep_dialable`]).
    pub off_subnet: Vec<IpAddr>,
}

impl Resolved {
    pub fn new<'a>(txt: impl IntoIterator<Item = (&'a str, &'a str)>, ips: Vec<SeenIp>) -> Self {
        let txt = txt
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
            .collect();
        Resolved {
            txt,
            ips,
            off_subnet: Vec::new(),
        }
    }

    /// Keeps the addresses `dialable` accepts; the others are remembered
    /// in `off_subnet`, for the reason an announcement is ignored.
    pub fn keep_dialable(&mut self, dialable: impl Fn(&SeenIp) -> bool) {
        let (keep, drop): (Vec<SeenIp>, Vec<SeenIp>) = self.ips.iter().partition(|s| dialable(s));
        self.ips = keep;
        self.off_subnet.extend(drop.iter().map(|s| s.ip));
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.txt.get(key).map(String::as_str)
    }

    /// The announced node id as written, for log fields (even when malformed).
    pub fn raw_id(&self) -> &str {
        self.get(KEY_ID).unwrap_or("-")
    }
}

/// Why an announcement is not a peer of ours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ignored {
    /// This host's own announcement (mDNS reports it back).
    Myself,
    /// Another mesh (its tag); never linked, not even tried.
    OtherMesh(String),
    /// A protocol version older than this host links with.
    Version(u32),
    /// None of its architectures is one of ours.
    NoCommonArch,
    /// A TXT field missing or unreadable, or no address that can be dialled.
    Malformed(&'static str),
    /// Its only addresses are off this host's subnets (the first shown).
    OffSubnet(IpAddr),
    /// More announcements than are tracked (`tracker::MAX_ANNOUNCEMENTS`).
    TooMany,
}

impl fmt::Display for Ignored {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ignored::Myself => write!(f, "myself"),
            Ignored::OtherMesh(tag) => write!(f, "other mesh {tag:?}"),
            Ignored::Version(v) => write!(f, "protocol version {v}"),
            Ignored::NoCommonArch => write!(f, "no common architecture"),
            Ignored::Malformed(what) => write!(f, "malformed announcement ({what})"),
            Ignored::OffSubnet(ip) => write!(f, "address {ip} is off this host's subnets"),
            Ignored::TooMany => write!(f, "too many announcements tracked"),
        }
    }
}

/// Decides whether `seen` is a peer of `me`: the same mesh tag, a protocol
/// version this host links with (any from [`MIN_PROTOCOL_VERSION`] on:
/// newer versions only add what older peers are never sent), an
/// architecture in common (`any` counts), and at least one address it can
/// be dialled at.
pub fn decode(me: &Announce, seen: &Resolved) -> Result<PeerAd, Ignored> {
    let (id, addrs) = decode_peer(me, seen)?;
    Ok(PeerAd {
        node_id: Some(id),
        addrs,
    })
}

pub(super) fn decode_peer(
    me: &Announce,
    seen: &Resolved,
) -> Result<(NodeId, Vec<SocketAddr>), Ignored> {
    let id = seen.get(KEY_ID).ok_or(Ignored::Malformed("no id"))?;
    let id = parse_node_id(id).ok_or(Ignored::Malformed("id"))?;
    // By id, not by instance name: mDNS renames a clashing name.
    if id == me.node_id {
        return Err(Ignored::Myself);
    }
    let mesh = seen
        .get(KEY_MESH)
        .ok_or(Ignored::Malformed("no mesh tag"))?;
    if mesh != me.mesh_tag {
        return Err(Ignored::OtherMesh(mesh.to_string()));
    }
    let version = seen
        .get(KEY_VERSION)
        .ok_or(Ignored::Malformed("no version"))?;
    let version: u32 = version.parse().map_err(|_| Ignored::Malformed("version"))?;
    if version < MIN_PROTOCOL_VERSION {
        return Err(Ignored::Version(version));
    }
    let port = seen.get(KEY_PORT).ok_or(Ignored::Malformed("no port"))?;
    let port = match port.parse::<u16>() {
        Ok(p) if p != 0 => p,
        _ => return Err(Ignored::Malformed("port")),
    };
    let archs = seen.get(KEY_ARCH).unwrap_or("");
    if !archs.split(',').any(|a| me.archs.iter().any(|m| m == a)) {
        return Err(Ignored::NoCommonArch);
    }
    let addrs = dialable(&seen.ips, port);
    if addrs.is_empty() {
        return Err(match seen.off_subnet.first() {
            Some(ip) => Ignored::OffSubnet(*ip),
            None => Ignored::Malformed("no usable address"),
        });
    }
    Ok((id, addrs))
}

/// The addresses to dial, best first: IPv4, then routable IPv6, then
/// link-local IPv6 with its interface, loopback last; link-local IPv6
/// without an interface is skipped. Sorted, so two resolutions with the
/// same addresses compare equal whatever order they arrived in.
pub fn dialable(ips: &[SeenIp], port: u16) -> Vec<SocketAddr> {
    let mut out: Vec<(u8, SocketAddr)> = ips
        .iter()
        .filter_map(|seen| {
            let rank = match seen.ip {
                IpAddr::V4(ip) if ip.is_unspecified() || ip.is_multicast() => return None,
                IpAddr::V6(ip) if ip.is_unspecified() || ip.is_multicast() => return None,
                ip if ip.is_loopback() => 3,
                IpAddr::V4(_) => 0,
                IpAddr::V6(ip) if ip.is_unicast_link_local() && seen.scope == 0 => return None,
                IpAddr::V6(ip) if ip.is_unicast_link_local() => {
                    let addr = SocketAddrV6::new(ip, port, 0, seen.scope);
                    return Some((2, SocketAddr::V6(addr)));
                }
                IpAddr::V6(_) => 1,
            };
            Some((rank, SocketAddr::new(seen.ip, port)))
        })
        .collect();
    out.sort_unstable_by(|a, b| {
        (a.0, a.1.ip(), scope_of(&a.1)).cmp(&(b.0, b.1.ip(), scope_of(&b.1)))
    });
    out.dedup();
    out.into_iter().map(|(_, addr)| addr).collect()
}

fn scope_of(addr: &SocketAddr) -> u32 {
    match addr {
        SocketAddr::V4(_) => 0,
        SocketAddr::V6(a) => a.scope_id(),
    }
}

/// Reads the 64 hex digits `NodeId`'s `Display` writes.
pub fn parse_node_id(hex: &str) -> Option<NodeId> {
    let hex = hex.as_bytes();
    if hex.len() != 64 {
        return None;
    }
    let mut id = [0u8; 32];
    for (byte, pair) in id.iter_mut().zip(hex.chunks_exact(2)) {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        *byte = (hi * 16 + lo) as u8;
    }
    Some(NodeId(id))
}
