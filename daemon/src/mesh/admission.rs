//! Which incoming QUIC connections to take on before they proved anything
//! (docs/DESIGN.md, "Before the first exchange"): pure, so every rule is a
//! plain `#[test]`.
//!
//! A connection is *pending* from the moment it is accepted until its
//! `Hello` checked (or it failed). Until then it has cost a handshake and
//! its buffers and proved nothing, not even that its source address is
//! real. So pending connections are bounded in all and per source address,
//! and past a few at once a source must prove its address first (a QUIC
//! Retry: one round trip, which a spoofed address cannot answer).

use std::collections::HashMap;
use std::net::IpAddr;

/// Connections between accept and a checked `Hello`, all sources together.
/// Each costs at most the pre-`Hello` receive window plus quinn's and
/// rustls's state (tens of KiB).
pub const MAX_PENDING_HELLOS: usize = 64;

/// Pending connections from one source address. A host dials a peer once
/// at a time; two hosts behind one address (NAT, containers) a few.
pub const MAX_PENDING_PER_ADDR: usize = 4;

/// Past this many pending connections, a source that has not proved its
/// address is sent a Retry first.
pub const RETRY_ABOVE: usize = 16;

/// What to do with one incoming connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    Accept,
    /// Ask the source to prove its address (QUIC Retry).
    Retry,
    Refuse(Full),
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// [`MAX_PENDING_HELLOS`] are pending.
    All,
    /// [`MAX_PENDING_PER_ADDR`] from this address are pending.
    Addr,
}

/// The pending connections, counted.
#[derive(Debug, Default)]
pub struct Admission {
    total: usize,
    by_addr: HashMap<IpAddr, usize>,
}

impl Admission {
    /// `validated`: the source answered a Retry (its address is real).
    /// A source that already has a connection pending must prove its
    /// address for the next one, so spoofed packets cannot use up a real
    /// host's share.
    pub fn decide(&self, addr: IpAddr, validated: bool) -> Admit {
        let from_addr = self.pending_from(addr);
        if self.total >= MAX_PENDING_HELLOS {
            return Admit::Refuse(Full::All);
        }
        if from_addr >= MAX_PENDING_PER_ADDR {
            return Admit::Refuse(Full::Addr);
        }
        if !validated && (self.total >= RETRY_ABOVE || from_addr > 0) {
            return Admit::Retry;
        }
        Admit::Accept
    }

    /// A connection from `addr` was accepted.
    pub fn enter(&mut self, addr: IpAddr) {
        self.total += 1;
        *self.by_addr.entry(addr).or_default() += 1;
    }

    /// A connection from `addr` finished its first exchange or failed.
    pub fn leave(&mut self, addr: IpAddr) {
        self.total = self.total.saturating_sub(1);
        if let Some(n) = self.by_addr.get_mut(&addr) {
            *n -= 1;
            if *n == 0 {
                self.by_addr.remove(&addr);
            }
        }
    }

    pub fn pending(&self) -> usize {
        self.total
    }

    pub fn pending_from(&self, addr: IpAddr) -> usize {
        self.by_addr.get(&addr).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn decisions() {
        let mut a = Admission::default();
        // Quiet: a first connection from anyone is accepted unproved.
        assert_eq!(a.decide(ip(1), false), Admit::Accept);
        a.enter(ip(1));
        // A second one from the same address proves it first.
        assert_eq!(a.decide(ip(1), false), Admit::Retry);
        assert_eq!(a.decide(ip(1), true), Admit::Accept);
        for _ in 1..MAX_PENDING_PER_ADDR {
            a.enter(ip(1));
        }
        assert_eq!(a.decide(ip(1), true), Admit::Refuse(Full::Addr));
        assert_eq!(a.decide(ip(2), false), Admit::Accept);

        // Under load every unproved source gets a Retry.
        let mut b = Admission::default();
        for i in 0..RETRY_ABOVE {
            b.enter(ip(i as u8));
        }
        assert_eq!(b.decide(ip(200), false), Admit::Retry);
        assert_eq!(b.decide(ip(200), true), Admit::Accept);
        for i in RETRY_ABOVE..MAX_PENDING_HELLOS {
            b.enter(IpAddr::from([10, 0, 1, i as u8]));
        }
        assert_eq!(b.pending(), MAX_PENDING_HELLOS);
        assert_eq!(b.decide(ip(200), true), Admit::Refuse(Full::All));
    }

    #[test]
    fn leaving_frees_the_slots() {
        let mut a = Admission::default();
        for _ in 0..MAX_PENDING_PER_ADDR {
            a.enter(ip(1));
        }
        assert_eq!(a.decide(ip(1), true), Admit::Refuse(Full::Addr));
        for _ in 0..MAX_PENDING_PER_ADDR {
            a.leave(ip(1));
        }
        assert_eq!((a.pending(), a.pending_from(ip(1))), (0, 0));
        assert!(a.by_addr.is_empty(), "no entry kept for a gone address");
        assert_eq!(a.decide(ip(1), false), Admit::Accept);
        // Leaving more than entered does not underflow.
        a.leave(ip(9));
        assert_eq!(a.pending(), 0);
    }
}
