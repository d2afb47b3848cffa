//! Which announced addresses may be dialled (docs/DESIGN.md, "Discovery"):
//! pure. Anyone on the segment can announce anything over mDNS, including
//! addresses elsewhere: dialling those would make this host send QUIC
//! handshakes wherever a neighbour points it. So an address is dialled
//! only when it is on the subnet of the interface it was announced on
//! (any local interface when that is unknown), or is a static peer's.

use std::net::{IpAddr, Ipv4Addr};

use super::txt::SeenIp;

/// One IPv4 network this host is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalNet {
    /// The interface's index (what mDNS reports an address was seen on).
    pub if_index: u32,
    pub addr: Ipv4Addr,
    /// Prefix length, 0 to 32.
    pub prefix: u8,
}

impl LocalNet {
    /// Whether `ip` is a host address of this network: inside it, and
    /// neither its network nor its broadcast address (for prefixes under
    /// 31, where those exist).
    pub fn holds(&self, ip: Ipv4Addr) -> bool {
        let prefix = self.prefix.min(32);
        let mask = if prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(prefix))
        };
        let (net, host) = (u32::from(self.addr) & mask, u32::from(ip));
        if host & mask != net {
            return false;
        }
        prefix >= 31 || (host != net && host != net | !mask)
    }
}

/// Whether `seen` may be dialled: a static peer's address always;
/// loopback only when `loopback` (tests); IPv4 when a network of the
/// interface it was seen on holds it (any local network when the
/// interface is unknown, `scope` 0); link-local IPv6 with its interface;
/// nothing else (discovery does not use IPv6 beyond the link).
pub fn dialable_from(seen: &SeenIp, nets: &[LocalNet], statics: &[IpAddr], loopback: bool) -> bool {
    if statics.contains(&seen.ip) {
        return true;
    }
    match seen.ip {
        ip if ip.is_loopback() => loopback,
        IpAddr::V4(ip) => nets
            .iter()
            .filter(|n| seen.scope == 0 || n.if_index == seen.scope)
            .any(|n| n.holds(ip)),
        IpAddr::V6(ip) => ip.is_unicast_link_local() && seen.scope != 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(if_index: u32, addr: [u8; 4], prefix: u8) -> LocalNet {
        LocalNet {
            if_index,
            addr: addr.into(),
            prefix,
        }
    }

    fn seen(ip: &str, scope: u32) -> SeenIp {
        SeenIp {
            ip: ip.parse().expect("ip"),
            scope,
        }
    }

    #[test]
    fn host_addresses_of_a_network() {
        let lan = net(2, [192, 168, 1, 20], 24);
        let table = [
            ("192.168.1.1", true),
            ("192.168.1.254", true),
            ("192.168.1.0", false),
            ("192.168.1.255", false),
            ("192.168.2.1", false),
            ("8.8.8.8", false),
        ];
        for (ip, want) in table {
            assert_eq!(lan.holds(ip.parse().expect("ip")), want, "{ip}");
        }
        // Point-to-point and single-host prefixes have no such addresses.
        assert!(net(2, [10, 0, 0, 0], 31).holds([10, 0, 0, 1].into()));
        assert!(net(2, [10, 0, 0, 0], 31).holds([10, 0, 0, 0].into()));
        assert!(net(2, [10, 0, 0, 7], 32).holds([10, 0, 0, 7].into()));
        assert!(!net(2, [10, 0, 0, 7], 32).holds([10, 0, 0, 8].into()));
    }

    #[test]
    fn what_may_be_dialled() {
        let nets = [net(2, [192, 168, 1, 20], 24), net(3, [10, 9, 0, 1], 16)];
        let statics: [IpAddr; 1] = [[172, 16, 5, 5].into()];
        let table = [
            // On the subnet of the interface it was seen on.
            (seen("192.168.1.7", 2), true),
            (seen("10.9.200.3", 3), true),
            // On a subnet, but of another interface: a neighbour on one
            // segment pointing at hosts of another.
            (seen("10.9.200.3", 2), false),
            // Interface unknown: any local subnet.
            (seen("10.9.200.3", 0), true),
            // Off every subnet: the internet, another VLAN, broadcast.
            (seen("8.8.8.8", 2), false),
            (seen("192.168.7.1", 2), false),
            (seen("192.168.1.255", 2), false),
            // A static peer's address, wherever it is.
            (seen("172.16.5.5", 2), true),
            // Loopback only when allowed (tests); see below.
            (seen("127.0.0.1", 1), false),
            // IPv6: link-local with its interface only.
            (seen("fe80::1", 2), true),
            (seen("fe80::1", 0), false),
            (seen("2001:db8::1", 2), false),
        ];
        for (s, want) in table {
            assert_eq!(dialable_from(&s, &nets, &statics, false), want, "{s:?}");
        }
        assert!(dialable_from(&seen("127.0.0.1", 1), &nets, &statics, true));
        assert!(!dialable_from(&seen("192.168.1.7", 2), &[], &[], true));
    }
}
