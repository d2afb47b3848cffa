//! Which source serves a file request (pure): the whole request ladder
//! (local cache → a download under way → peers holding it → a peer
//! fetching it → this daemon fetching it → the mirror's redirect → 404;
//! docs/DESIGN.md, "The ladder"), for one host, in one place. The HTTP
//! layer only matches on the answer. In caching-mirror mode the daemon
//! fetches every miss itself, peer or not (docs/DESIGN.md,
//! "Caching-mirror mode").

use std::path::PathBuf;

use pacmesh_proto::{FileKind, NodeId};

use crate::fetch::claim::winner_among;
use crate::fetch::machine::SourceId;
use crate::fetch::Kind;
use crate::http::target::FileTarget;

/// Peers holding a file that one download tries before the mirrors.
pub const MAX_HOLDERS: usize = 3;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// A complete copy is in a local cache dir.
    Local(PathBuf),
    /// A download of the file runs already: answer from it.
    Running,
    /// Start a download from these sources, in order.
    Download { kind: Kind, order: Vec<SourceId> },
    /// Caching-mirror mode: a database or its signature, proxied
    /// (`crate::dbproxy`).
    Database,
    /// 307 to the real mirror.
    Redirect(String),
    /// 404 so pacman moves on to its next `Server` at once.
    NotFound(&'static str),
}

/// What the daemon knows about one request, gathered by the caller.
#[derive(Debug, Clone, Default)]
pub struct Facts<'a> {
    /// A GET (a HEAD is answered from the cache or by the mirror).
    pub get: bool,
    /// Where the cache index has a complete copy.
    pub local: Option<PathBuf>,
    /// A download of this file runs here now.
    pub running: bool,
    /// Linked peers whose digests list it, best first.
    pub holders: &'a [NodeId],
    /// Linked peers fetching it from their mirror right now.
    pub fetchers: &'a [NodeId],
    /// At least one peer is linked.
    pub linked: bool,
    /// Caching-mirror mode: every miss is fetched here (and kept), with or
    /// without a peer.
    pub fetch_misses: bool,
    /// The sync databases know its size and checksum, or files they
    /// cannot verify may come from peers anyway.
    pub peers_allowed: bool,
    /// The file's URL at each of the repo's mirrors (pacman.conf's, in
    /// `mirror_health`'s order, pacmesh's own server left out); empty when
    /// the repo is unknown.
    pub mirror_urls: &'a [String],
}

/// Decides where `file` comes from.
pub fn plan(file: &FileTarget, facts: &Facts<'_>) -> Plan {
    let cacheable = file.kind.is_cacheable();
    if cacheable {
        if let Some(path) = &facts.local {
            return Plan::Local(path.clone());
        }
    }
    let fallback = || match facts.mirror_urls.first() {
        Some(url) => Plan::Redirect(url.clone()),
        None if file.repo.is_none() => {
            Plan::NotFound("not cached here, and a flat path names no repo")
        }
        None => Plan::NotFound("repo unknown to pacman.conf or without a mirror"),
    };
    // A caching mirror proxies the databases its clients sync from.
    if facts.fetch_misses && matches!(file.kind, FileKind::Database | FileKind::DatabaseSig) {
        return match facts.mirror_urls {
            [] => fallback(),
            _ => Plan::Database,
        };
    }
    // Databases are never served from a cache or a peer: they are what
    // packages are verified against.
    if !cacheable || !facts.get {
        return fallback();
    }
    if facts.running {
        return Plan::Running;
    }
    let mirrors = (0..facts.mirror_urls.len()).map(SourceId::Mirror);
    if facts.peers_allowed && !facts.holders.is_empty() {
        let holders = facts.holders.iter().take(MAX_HOLDERS);
        let order = holders
            .map(|&p| SourceId::Holder(p))
            .chain(mirrors)
            .collect();
        return Plan::Download {
            kind: Kind::Holders,
            order,
        };
    }
    if facts.peers_allowed && !facts.fetchers.is_empty() {
        let fetcher = SourceId::Fetcher(winner_among(facts.fetchers, &file.name));
        let order = std::iter::once(fetcher).chain(mirrors).collect();
        return Plan::Download {
            kind: Kind::Join,
            order,
        };
    }
    if (facts.linked || facts.fetch_misses) && !facts.mirror_urls.is_empty() {
        return Plan::Download {
            kind: Kind::Fetch,
            order: mirrors.collect(),
        };
    }
    fallback()
}

#[cfg(test)]
mod tests {
    use super::*;
    use pacmesh_proto::classify;

    const PKG: &str = "a-1-1-any.pkg.tar.zst";

    fn target(repo: Option<&str>, name: &str) -> FileTarget {
        FileTarget {
            repo: repo.map(Into::into),
            arch: repo.map(|_| "x86_64".into()),
            name: name.into(),
            kind: classify(name),
        }
    }

    fn node(b: u8) -> NodeId {
        NodeId([b; 32])
    }

    fn check(file: &FileTarget, facts: Facts<'_>, want: Plan) {
        assert_eq!(plan(file, &facts), want, "{file:?} {facts:?}");
    }

    #[test]
    fn the_ladder() {
        let urls = vec!["http://m1/a".to_string(), "http://m2/a".to_string()];
        let holders = [node(1), node(2), node(3), node(4)];
        let fetchers = [node(7)];
        let pkg = target(Some("core"), PKG);
        let base = Facts {
            get: true,
            linked: true,
            peers_allowed: true,
            mirror_urls: &urls,
            ..Facts::default()
        };
        let mirrors = [SourceId::Mirror(0), SourceId::Mirror(1)];
        // 1. Local beats everything.
        check(
            &pkg,
            Facts {
                local: Some("/c/a".into()),
                running: true,
                holders: &holders,
                ..base.clone()
            },
            Plan::Local("/c/a".into()),
        );
        // 2. A download under way is joined.
        check(
            &pkg,
            Facts {
                running: true,
                holders: &holders,
                ..base.clone()
            },
            Plan::Running,
        );
        // 3. Holders, at most MAX_HOLDERS of them, then the mirrors.
        let mut order: Vec<SourceId> = holders[..3].iter().map(|&p| SourceId::Holder(p)).collect();
        order.extend(mirrors);
        check(
            &pkg,
            Facts {
                holders: &holders,
                fetchers: &fetchers,
                ..base.clone()
            },
            Plan::Download {
                kind: Kind::Holders,
                order,
            },
        );
        // 4. A peer fetching it.
        let mut order = vec![SourceId::Fetcher(node(7))];
        order.extend(mirrors);
        check(
            &pkg,
            Facts {
                fetchers: &fetchers,
                ..base.clone()
            },
            Plan::Download {
                kind: Kind::Join,
                order,
            },
        );
        // 5. Nobody has it and a peer is linked: we fetch it.
        check(
            &pkg,
            base.clone(),
            Plan::Download {
                kind: Kind::Fetch,
                order: mirrors.to_vec(),
            },
        );
        // 6. Alone on the network: pacman goes to the mirror itself.
        check(
            &pkg,
            Facts {
                linked: false,
                ..base.clone()
            },
            Plan::Redirect("http://m1/a".into()),
        );
        // Peers not allowed (unverifiable, verified_only): skip them.
        check(
            &pkg,
            Facts {
                holders: &holders,
                peers_allowed: false,
                ..base.clone()
            },
            Plan::Download {
                kind: Kind::Fetch,
                order: mirrors.to_vec(),
            },
        );
        // A caching mirror fetches a miss with no peer linked.
        check(
            &pkg,
            Facts {
                linked: false,
                fetch_misses: true,
                ..base.clone()
            },
            Plan::Download {
                kind: Kind::Fetch,
                order: mirrors.to_vec(),
            },
        );
        check(
            &pkg,
            Facts {
                linked: false,
                fetch_misses: true,
                mirror_urls: &[],
                ..base.clone()
            },
            Plan::NotFound("repo unknown to pacman.conf or without a mirror"),
        );
        // A caching mirror proxies databases and their signatures, GET or
        // HEAD; not for a repo it has no upstream for.
        let mirror = Facts {
            fetch_misses: true,
            ..base.clone()
        };
        for name in ["core.db", "core.db.sig", "core.files.tar.gz"] {
            check(&target(Some("core"), name), mirror.clone(), Plan::Database);
        }
        check(
            &target(Some("core"), "core.db"),
            Facts {
                get: false,
                ..mirror.clone()
            },
            Plan::Database,
        );
        check(
            &target(Some("core"), "core.db"),
            Facts {
                mirror_urls: &[],
                ..mirror.clone()
            },
            Plan::NotFound("repo unknown to pacman.conf or without a mirror"),
        );
        // HEAD and databases: the mirror, even when cached.
        check(
            &pkg,
            Facts {
                get: false,
                holders: &holders,
                ..base.clone()
            },
            Plan::Redirect("http://m1/a".into()),
        );
        check(
            &target(Some("core"), "core.db"),
            Facts {
                local: Some("/c/core.db".into()),
                ..base.clone()
            },
            Plan::Redirect("http://m1/a".into()),
        );
        // No mirror known.
        check(
            &target(None, PKG),
            Facts {
                mirror_urls: &[],
                ..base.clone()
            },
            Plan::NotFound("not cached here, and a flat path names no repo"),
        );
        check(
            &pkg,
            Facts {
                mirror_urls: &[],
                ..base
            },
            Plan::NotFound("repo unknown to pacman.conf or without a mirror"),
        );
    }
}
