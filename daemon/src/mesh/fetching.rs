//! Downloads from the WAN that hosts announce on their links
//! (docs/DESIGN.md, "A peer fetching it now"), as pure state: this host's
//! own set ([`OwnFetches`]), what one link was told of it
//! ([`SentFetches`]), and what one peer told us ([`PeerFetches`]). The
//! link code keeps them under locks and moves the messages; nothing here
//! touches a socket or reads the clock.
//!
//! A link is sent the difference between what it was told and the set
//! now, never a log of announcements: a link that fell behind, or that
//! came up after the announcements, catches up with one comparison, and
//! a download that started and ended in between is never mentioned.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Instant;

use pacmesh_proto::{validate_name, FetchEnded, Fetching, Message, NodeId, FETCHING_MIN_VERSION};

use super::inflight::Announcement;

/// Most downloads one peer may announce at once. A peer past it is broken
/// or hostile: its link is closed as a protocol violation. This host never
/// announces more of its own (the rest go unannounced).
pub const MAX_PEER_FETCHING: usize = 256;

/// How many recent ends [`OwnFetches`] remembers, so a link that catches
/// up after several changes still says how each of them ended.
const ENDS_KEPT: usize = 64;

/// A peer that announced it is downloading a file from the WAN now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fetcher {
    pub node: NodeId,
    /// The whole file's size, 0 while the peer does not know it yet.
    pub size: u64,
    /// When this host first heard of the download on the current link.
    pub since: Instant,
}

/// Whether a peer whose `Hello` said `version` may be sent `Fetching` and
/// `FetchEnded` (a version 1 peer closes the link on their tags).
pub fn announces_to(version: u32) -> bool {
    version >= FETCHING_MIN_VERSION
}

/// What [`OwnFetches::apply`] did with an announcement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The set changed: links have something to send.
    Changed,
    /// Already so (the same size again, or the end of a download never
    /// announced).
    Unchanged,
    /// Not announced, for the reason given.
    Refused(&'static str),
}

/// This host's downloads from the WAN as its peers are told of them:
/// name → size, and how the latest ones ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnFetches {
    fetching: BTreeMap<String, u64>,
    /// Newest last, at most [`ENDS_KEPT`].
    ended: VecDeque<(String, bool)>,
}

impl OwnFetches {
    pub fn apply(&mut self, announcement: &Announcement) -> Applied {
        match announcement {
            Announcement::Fetching { name, size } => {
                if self.fetching.get(name) == Some(size) {
                    return Applied::Unchanged;
                }
                if validate_name(name).is_err() {
                    // It would fail to encode and end every link.
                    return Applied::Refused("not a plain file name");
                }
                if !self.fetching.contains_key(name) && self.fetching.len() >= MAX_PEER_FETCHING {
                    return Applied::Refused("already announcing MAX_PEER_FETCHING downloads");
                }
                self.fetching.insert(name.clone(), *size);
                self.ended.retain(|(n, _)| n != name);
                Applied::Changed
            }
            Announcement::Ended { name, complete } => {
                if self.fetching.remove(name).is_none() {
                    return Applied::Unchanged;
                }
                if self.ended.len() == ENDS_KEPT {
                    self.ended.pop_front();
                }
                self.ended.push_back((name.clone(), *complete));
                Applied::Changed
            }
        }
    }

    /// The downloads announced now, by name.
    pub fn fetching(&self) -> &BTreeMap<String, u64> {
        &self.fetching
    }

    /// Whether the download of `name` ended complete; false when that is
    /// no longer remembered (the peer only needs to drop it).
    fn ended_complete(&self, name: &str) -> bool {
        self.ended
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .is_some_and(|(_, complete)| *complete)
    }
}

/// What one link was told of this host's downloads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SentFetches {
    sent: BTreeMap<String, u64>,
}

impl SentFetches {
    /// The messages that bring the peer from what it was told to `now`,
    /// ends first, so the peer never holds more than `now` does.
    pub fn sync(&mut self, now: &OwnFetches) -> Vec<Message> {
        let mut out = Vec::new();
        self.sent.retain(|name, _| {
            let still = now.fetching.contains_key(name);
            if !still {
                out.push(Message::FetchEnded(FetchEnded {
                    file_name: name.clone(),
                    complete: now.ended_complete(name),
                }));
            }
            still
        });
        for (name, size) in &now.fetching {
            if self.sent.get(name) != Some(size) {
                self.sent.insert(name.clone(), *size);
                out.push(Message::Fetching(Fetching {
                    file_name: name.clone(),
                    size: *size,
                }));
            }
        }
        out
    }
}

/// A peer announced more downloads than [`MAX_PEER_FETCHING`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("peer announced more than {MAX_PEER_FETCHING} downloads at once")]
pub struct TooManyFetches;

/// What one peer announced on its current link: name → (size, since).
#[derive(Debug, Clone, Default)]
pub struct PeerFetches {
    fetching: HashMap<String, (u64, Instant)>,
}

impl PeerFetches {
    /// A `Fetching` heard at `now`; true when it changed the set. A known
    /// name keeps its first `since` (a size update is the same download).
    pub fn on_fetching(&mut self, f: Fetching, now: Instant) -> Result<bool, TooManyFetches> {
        if let Some((size, _)) = self.fetching.get_mut(&f.file_name) {
            let changed = *size != f.size;
            *size = f.size;
            return Ok(changed);
        }
        if self.fetching.len() >= MAX_PEER_FETCHING {
            return Err(TooManyFetches);
        }
        self.fetching.insert(f.file_name, (f.size, now));
        Ok(true)
    }

    /// A `FetchEnded`; true when the download was known.
    pub fn on_ended(&mut self, name: &str) -> bool {
        self.fetching.remove(name).is_some()
    }

    /// The size and first-heard time of the peer's download of `name`.
    pub fn get(&self, name: &str) -> Option<(u64, Instant)> {
        self.fetching.get(name).copied()
    }

    pub fn len(&self) -> usize {
        self.fetching.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fetching.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn fetching(name: &str, size: u64) -> Announcement {
        Announcement::Fetching {
            name: name.into(),
            size,
        }
    }

    fn ended(name: &str, complete: bool) -> Announcement {
        Announcement::Ended {
            name: name.into(),
            complete,
        }
    }

    fn msg_fetching(name: &str, size: u64) -> Message {
        Message::Fetching(Fetching {
            file_name: name.into(),
            size,
        })
    }

    fn msg_ended(name: &str, complete: bool) -> Message {
        Message::FetchEnded(FetchEnded {
            file_name: name.into(),
            complete,
        })
    }

    fn pkg(i: usize) -> String {
        format!("p{i}-1-1-any.pkg.tar.zst")
    }

    #[test]
    fn only_version_2_and_later_peers_are_told() {
        for (version, want) in [(0, false), (1, false), (2, true), (3, true)] {
            assert_eq!(announces_to(version), want, "version {version}");
        }
        assert!(announces_to(pacmesh_proto::PROTOCOL_VERSION));
    }

    /// An announcement, what it does, and the set after it.
    type Step = (Announcement, Applied, Vec<(&'static str, u64)>);

    #[test]
    fn own_set_table() {
        use Applied::*;
        let steps: Vec<Step> = vec![
            (fetching("a", 0), Changed, vec![("a", 0)]),
            (fetching("a", 0), Unchanged, vec![("a", 0)]),
            // The size became known.
            (fetching("a", 10), Changed, vec![("a", 10)]),
            (fetching("b", 5), Changed, vec![("a", 10), ("b", 5)]),
            (ended("a", true), Changed, vec![("b", 5)]),
            (ended("a", true), Unchanged, vec![("b", 5)]),
            (ended("never", false), Unchanged, vec![("b", 5)]),
            (
                fetching("../x", 1),
                Refused("not a plain file name"),
                vec![("b", 5)],
            ),
        ];
        let mut own = OwnFetches::default();
        for (i, (a, want, set)) in steps.into_iter().enumerate() {
            assert_eq!(own.apply(&a), want, "step {i}: {a:?}");
            let got: Vec<(&str, u64)> = own
                .fetching()
                .iter()
                .map(|(n, s)| (n.as_str(), *s))
                .collect();
            assert_eq!(got, set, "step {i}");
        }
    }

    #[test]
    fn own_set_stops_at_the_cap_a_peer_accepts() {
        let mut own = OwnFetches::default();
        for i in 0..MAX_PEER_FETCHING {
            assert_eq!(own.apply(&fetching(&pkg(i), 1)), Applied::Changed);
        }
        let over = own.apply(&fetching(&pkg(MAX_PEER_FETCHING), 1));
        assert!(matches!(over, Applied::Refused(_)), "{over:?}");
        // Known downloads still update, and an end makes room.
        assert_eq!(own.apply(&fetching(&pkg(0), 2)), Applied::Changed);
        assert_eq!(own.apply(&ended(&pkg(1), false)), Applied::Changed);
        let room = own.apply(&fetching(&pkg(MAX_PEER_FETCHING), 1));
        assert_eq!(room, Applied::Changed);
    }

    #[test]
    fn a_link_is_sent_the_difference_ends_first() {
        let mut own = OwnFetches::default();
        let mut link = SentFetches::default();
        assert_eq!(link.sync(&own), vec![]);
        own.apply(&fetching("a", 0));
        assert_eq!(link.sync(&own), vec![msg_fetching("a", 0)]);
        assert_eq!(link.sync(&own), vec![], "nothing new");
        // Several changes before the link looks: one comparison.
        own.apply(&fetching("a", 7));
        own.apply(&fetching("b", 1));
        own.apply(&ended("b", false));
        own.apply(&fetching("c", 3));
        own.apply(&ended("a", true));
        assert_eq!(
            link.sync(&own),
            vec![msg_ended("a", true), msg_fetching("c", 3)],
            "b started and ended unseen: never mentioned"
        );
        // A link that comes up later is told the set as it is.
        let mut late = SentFetches::default();
        assert_eq!(late.sync(&own), vec![msg_fetching("c", 3)]);
        // An end no longer remembered is sent as not complete.
        for i in 0..ENDS_KEPT {
            own.apply(&fetching(&pkg(i), 1));
            own.apply(&ended(&pkg(i), true));
        }
        own.apply(&ended("c", true));
        for i in 0..ENDS_KEPT {
            own.apply(&fetching(&pkg(i + ENDS_KEPT), 1));
            own.apply(&ended(&pkg(i + ENDS_KEPT), true));
        }
        assert_eq!(late.sync(&own), vec![msg_ended("c", false)]);
    }

    #[test]
    fn a_peer_set_keeps_its_first_time_and_refuses_past_the_cap() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(1);
        let mut peer = PeerFetches::default();
        let f = |name: &str, size| Fetching {
            file_name: name.into(),
            size,
        };
        assert_eq!(peer.on_fetching(f("a", 0), t0), Ok(true));
        assert_eq!(peer.on_fetching(f("a", 0), t1), Ok(false));
        assert_eq!(peer.on_fetching(f("a", 9), t1), Ok(true));
        assert_eq!(peer.get("a"), Some((9, t0)));
        assert!(peer.on_ended("a"));
        assert!(!peer.on_ended("a"));
        assert_eq!(peer.get("a"), None);
        for i in 0..MAX_PEER_FETCHING {
            assert_eq!(peer.on_fetching(f(&pkg(i), 1), t0), Ok(true));
        }
        assert_eq!(peer.on_fetching(f("one-more", 1), t0), Err(TooManyFetches));
        // Updating a known one is still fine at the cap.
        assert_eq!(peer.on_fetching(f(&pkg(0), 2), t1), Ok(true));
        assert_eq!(peer.len(), MAX_PEER_FETCHING);
    }
}
