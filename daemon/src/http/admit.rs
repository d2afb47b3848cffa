//! Which connections pacman's listener keeps when clients flood it (pure).
//!
//! Every open connection has an entry, in the order it was accepted, and
//! is either *waiting* for a complete request head (idle keep-alive, or a
//! head still arriving) or *busy* (a response being made or sent). At a
//! cap the oldest waiting connection is closed to admit the new one, so a
//! flood of half-sent requests, which holds only waiting connections,
//! cannot lock anybody out: it only closes its own oldest members.
//! Waiting connections from other hosts go before loopback ones (pacman's
//! idle keep-alives). Only when every connection is busy is a newcomer
//! from another host refused; loopback clients (pacman on this host) may
//! then go past the cap by a quarter before they are refused too, so the
//! daemon's descriptors stay within the limit the caps were fitted to.
//!
//! Clients other than loopback also have a cap each
//! ([`MAX_PER_CLIENT`]): one host cannot take every slot of a LAN
//! listener (`serve_lan`, mirror mode) and close its neighbours' waiting
//! connections; past it, its own oldest waiting connection goes. An IPv6
//! client is its /64 ([`client_of`]): one host may hold every address in
//! it.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv6Addr};

/// Connections served at once by pacman's listeners together (loopback
/// clients may exceed it by a quarter when every one of them is busy).
pub const MAX_CONNECTIONS: usize = 1024;

/// Connections one client address other than loopback may hold at once
/// (pacman opens `ParallelDownloads`, 5 in Arch's pacman.conf; a caching
/// mirror may serve a few hosts behind one NAT address).
pub const MAX_PER_CLIENT: usize = 64;

/// Descriptors the daemon needs besides its HTTP connections and the files
/// they send: downloads (a temp file and a mirror connection each, at most
/// 32), peer uploads (8 cached, 64 growing), the QUIC socket, inotify,
/// sync databases, the log and the runtime's own.
pub const OTHER_FILES: u64 = 512;

/// Fewest connections the caps are ever fitted down to.
const MIN_CONNECTIONS: usize = 16;

/// The caps of one HTTP server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// Connections at once (see [`MAX_CONNECTIONS`]).
    pub total: usize,
    /// Connections per client address other than loopback.
    pub per_client: usize,
}

impl Caps {
    pub const DEFAULT: Caps = Caps {
        total: MAX_CONNECTIONS,
        per_client: MAX_PER_CLIENT,
    };

    /// Loopback clients are refused only past this many connections.
    pub fn hard(&self) -> usize {
        self.total + self.total / 4
    }

    /// These caps lowered, if need be, so that every connection with a
    /// file open (two descriptors each, up to [`Caps::hard`]) and
    /// [`OTHER_FILES`] fit in `max_files` descriptors (`RLIMIT_NOFILE`).
    pub fn fitting(self, max_files: u64) -> Caps {
        let room = max_files.saturating_sub(OTHER_FILES) / 2;
        // hard = total * 5/4 must fit in the room.
        let fits = usize::try_from(room * 4 / 5).unwrap_or(usize::MAX);
        let total = self.total.min(fits).max(MIN_CONNECTIONS);
        Caps {
            total,
            per_client: self.per_client.min(total),
        }
    }

    /// Descriptors these caps need at most: `LimitNOFILE` must be at least
    /// this (`systemd/pacmeshd.service`).
    pub fn files_needed(&self) -> u64 {
        2 * self.hard() as u64 + OTHER_FILES
    }
}

/// A connection's number in the table, in the order of admission.
pub type Id = u64;

/// What to do with a new connection.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission<T> {
    /// Serve it as `id`; first close these (their handles).
    Admit { id: Id, evicted: Vec<T> },
    /// Close it: every slot it could have is busy.
    Refuse,
}

struct Entry<T> {
    client: IpAddr,
    waiting: bool,
    handle: T,
}

/// The open connections; `T` is what closes one (a cancellation token).
pub struct Table<T> {
    caps: Caps,
    next: Id,
    entries: BTreeMap<Id, Entry<T>>,
    per_client: HashMap<IpAddr, usize>,
}

impl<T> Table<T> {
    pub fn new(caps: Caps) -> Self {
        Table {
            caps,
            next: 0,
            entries: BTreeMap::new(),
            per_client: HashMap::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Decides on a connection from `client`, closed by `handle`. It is
    /// admitted as waiting for its first head.
    pub fn admit(&mut self, client: IpAddr, handle: T) -> Admission<T> {
        let client = client_of(client);
        let local = client.is_loopback();
        let mut evicted = Vec::new();
        if !local && self.count(client) >= self.caps.per_client {
            match self.oldest_waiting(|e| e.client == client) {
                Some(id) => evicted.extend(self.remove(id)),
                None => return Admission::Refuse,
            }
        }
        // A newcomer that closed its host's own waiting connection takes
        // that slot: the count does not grow.
        if evicted.is_empty() && self.entries.len() >= self.caps.total {
            let oldest = self
                .oldest_waiting(|e| !e.client.is_loopback())
                .or_else(|| self.oldest_waiting(|_| true));
            match oldest {
                Some(id) => evicted.extend(self.remove(id)),
                None if local && self.entries.len() < self.caps.hard() => {}
                None => return Admission::Refuse,
            }
        }
        let id = self.next;
        self.next += 1;
        self.entries.insert(
            id,
            Entry {
                client,
                waiting: true,
                handle,
            },
        );
        *self.per_client.entry(client).or_default() += 1;
        Admission::Admit { id, evicted }
    }

    /// Marks connection `id` as waiting for a head (`true`) or busy.
    /// Marks connection `id` as waiting for a head or not; `false` when it
    /// is no longer in the table (it was evicted).
    #[must_use = "an evicted connection must close"]
    pub fn set_waiting(&mut self, id: Id, waiting: bool) -> bool {
        match self.entries.get_mut(&id) {
            Some(entry) => {
                entry.waiting = waiting;
                true
            }
            None => false,
        }
    }

    /// Forgets connection `id` (it ended, or is being evicted); its handle.
    pub fn remove(&mut self, id: Id) -> Option<T> {
        let entry = self.entries.remove(&id)?;
        if let Some(n) = self.per_client.get_mut(&entry.client) {
            *n -= 1;
            if *n == 0 {
                self.per_client.remove(&entry.client);
            }
        }
        Some(entry.handle)
    }

    fn count(&self, client: IpAddr) -> usize {
        self.per_client.get(&client).copied().unwrap_or(0)
    }

    fn oldest_waiting(&self, which: impl Fn(&Entry<T>) -> bool) -> Option<Id> {
        self.entries
            .iter()
            .find(|(_, e)| e.waiting && which(e))
            .map(|(id, _)| *id)
    }
}

/// The client `addr` counts as: itself (IPv4, loopback), or for IPv6 its
/// /64, the network one host's addresses (SLAAC, temporary addresses)
/// come from, so that it cannot pass the per-client cap by using more.
pub fn client_of(addr: IpAddr) -> IpAddr {
    match addr.to_canonical() {
        IpAddr::V6(v6) if !v6.is_loopback() => {
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !(u128::from(u64::MAX))))
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LO: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    fn lan(n: u8) -> IpAddr {
        IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, n))
    }

    fn small() -> Table<&'static str> {
        Table::new(Caps {
            total: 4,
            per_client: 2,
        })
    }

    fn admitted(a: Admission<&'static str>) -> (Id, Vec<&'static str>) {
        match a {
            Admission::Admit { id, evicted } => (id, evicted),
            Admission::Refuse => panic!("refused"),
        }
    }

    /// The addresses of one IPv6 /64 are one client; another /64 is not.
    #[test]
    fn an_ipv6_client_is_its_slash_64() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let mut t = small();
        admitted(t.admit(ip("2001:db8:1:2::a"), "a"));
        admitted(t.admit(ip("2001:db8:1:2:ffff::b"), "b"));
        // The third address of that /64 closes its own oldest waiting one.
        assert_eq!(admitted(t.admit(ip("2001:db8:1:2::c"), "c")).1, vec!["a"]);
        assert_eq!(
            admitted(t.admit(ip("2001:db8:1:3::a"), "d")).1,
            Vec::<&str>::new()
        );
        assert_eq!(client_of(ip("::1")), ip("::1"));
        assert_eq!(client_of(ip("::ffff:10.0.0.1")), lan(1));
    }

    #[test]
    fn under_the_cap_everyone_is_admitted() {
        let mut t = small();
        for (i, ip) in [LO, lan(1), lan(2), lan(1)].into_iter().enumerate() {
            assert_eq!(admitted(t.admit(ip, "x")), (i as Id, vec![]));
        }
        assert_eq!(t.len(), 4);
    }

    #[test]
    fn at_the_cap_the_oldest_waiting_connection_goes() {
        let mut t = small();
        let a = admitted(t.admit(LO, "a")).0;
        admitted(t.admit(LO, "b"));
        admitted(t.admit(LO, "c"));
        admitted(t.admit(LO, "d"));
        assert!(t.set_waiting(a, false));
        // "a" is busy: "b" is the oldest waiting.
        assert_eq!(admitted(t.admit(LO, "e")).1, vec!["b"]);
        assert_eq!(admitted(t.admit(lan(1), "f")).1, vec!["c"]);
        // An evicted connection hears so when it next marks itself.
        assert!(!t.set_waiting(1, false), "b was evicted");
        assert_eq!(t.len(), 4);
    }

    #[test]
    fn waiting_connections_of_other_hosts_go_before_loopback_ones() {
        let mut t = small();
        admitted(t.admit(LO, "pacman"));
        admitted(t.admit(lan(1), "n1"));
        admitted(t.admit(lan(2), "n2"));
        admitted(t.admit(LO, "pacman2"));
        assert_eq!(admitted(t.admit(LO, "new")).1, vec!["n1"]);
        assert_eq!(admitted(t.admit(lan(3), "new")).1, vec!["n2"]);
        assert_eq!(admitted(t.admit(lan(4), "new")).1, vec!["new"]);
    }

    #[test]
    fn when_all_are_busy_other_hosts_are_refused_and_loopback_goes_a_quarter_past() {
        let mut t = Table::new(Caps {
            total: 8,
            per_client: 8,
        });
        for i in 0..8 {
            let id = admitted(t.admit(lan(i), "busy")).0;
            assert!(t.set_waiting(id, false));
        }
        assert_eq!(t.admit(lan(20), "x"), Admission::Refuse);
        for _ in 0..2 {
            let id = admitted(t.admit(LO, "pacman")).0;
            assert!(t.set_waiting(id, false));
        }
        assert_eq!(t.len(), 10);
        assert_eq!(t.admit(LO, "pacman"), Admission::Refuse);
    }

    #[test]
    fn one_host_past_its_share_closes_its_own_oldest_waiting_connection() {
        let mut t = small();
        let first = admitted(t.admit(lan(1), "a")).0;
        admitted(t.admit(lan(1), "b"));
        assert_eq!(admitted(t.admit(lan(1), "c")).1, vec!["a"]);
        // Busy, both: the host gets no more.
        assert!(t.set_waiting(first + 1, false));
        assert!(t.set_waiting(first + 2, false));
        assert_eq!(t.admit(lan(1), "d"), Admission::Refuse);
        // Others, and loopback (no per-client cap), still get in.
        admitted(t.admit(lan(2), "e"));
        admitted(t.admit(LO, "f"));
        admitted(t.admit(LO, "g"));
        admitted(t.admit(LO, "h"));
    }

    #[test]
    fn a_host_at_its_share_replaces_its_waiting_connection_when_loopback_went_past() {
        let mut t = small();
        let a = admitted(t.admit(lan(1), "a")).0;
        let b = admitted(t.admit(lan(1), "b")).0;
        assert!(t.set_waiting(a, false));
        assert!(t.set_waiting(b, false));
        for _ in 0..3 {
            // Two at the cap, the third a quarter past it.
            let id = admitted(t.admit(LO, "pacman")).0;
            assert!(t.set_waiting(id, false));
        }
        assert_eq!(t.len(), 5);
        // "a" answered and waits for its next head: not every connection
        // is busy, and the host's newcomer takes its own waiting slot.
        assert!(t.set_waiting(a, true));
        assert_eq!(admitted(t.admit(lan(1), "c")).1, vec!["a"]);
        assert_eq!(t.len(), 5);
    }

    #[test]
    fn ipv4_mapped_loopback_is_loopback() {
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        let mut t = Table::new(Caps {
            total: 4,
            per_client: 1,
        });
        // No per-client cap, and a quarter past the total when all are busy.
        for _ in 0..5 {
            let id = admitted(t.admit(mapped, "pacman")).0;
            assert!(t.set_waiting(id, false));
        }
        let lan_mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(t.admit(lan_mapped, "c"), Admission::Refuse);
    }

    #[test]
    fn ended_connections_free_their_slots() {
        let mut t = small();
        let a = admitted(t.admit(lan(1), "a")).0;
        let b = admitted(t.admit(lan(1), "b")).0;
        assert!(t.set_waiting(a, false));
        assert!(t.set_waiting(b, false));
        assert_eq!(t.remove(a), Some("a"));
        assert_eq!(t.remove(a), None);
        assert_eq!(admitted(t.admit(lan(1), "c")).1, Vec::<&str>::new());
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn caps_fit_the_descriptor_limit() {
        let caps = Caps::DEFAULT;
        // The unit's LimitNOFILE holds the default caps whole.
        let unit = include_str!("../../../systemd/pacmeshd.service");
        let limit: u64 = unit
            .lines()
            .find_map(|l| l.strip_prefix("LimitNOFILE="))
            .expect("LimitNOFILE in the unit")
            .parse()
            .unwrap();
        assert!(caps.files_needed() <= limit, "{}", caps.files_needed());
        assert_eq!(caps.fitting(limit), caps);
        let low = caps.fitting(1024);
        assert!(low.files_needed() <= 1024, "{low:?}");
        assert!(low.total >= MIN_CONNECTIONS && low.per_client <= low.total);
        assert_eq!(caps.fitting(0).total, MIN_CONNECTIONS);
    }
}
