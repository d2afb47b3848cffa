//! The mesh side of "one WAN transfer per package for the whole network":
//! this host's own downloads told to its peers ([`Mesh::announce`]), and
//! the peers' downloads as they told us ([`Mesh::fetchers`],
//! [`Mesh::fetchers_changed`]). The messages themselves move in
//! `control`; the state is `mesh::fetching`'s.

use std::time::Instant;

use tokio::sync::watch;

use super::{Mesh, TARGET};
use crate::mesh::fetching::{Applied, Fetcher};
use crate::mesh::inflight::Announcement;
use crate::mesh::peers::{self, LinkFacts};

impl Mesh {
    /// Tells every peer that can hear it (`Hello.version` 2 or later) that
    /// this host started, sized or ended a download from the WAN; a link
    /// that comes up later is told of every download still under way,
    /// right after its digest. Never waits: the links send it in their own
    /// time, and a link that fell behind is sent only the difference from
    /// the set as it is then.
    pub fn announce(&self, announcement: Announcement) {
        let mut refused = None;
        self.inner.own_fetches.send_if_modified(|own| {
            match own.apply(&announcement) {
                Applied::Changed => return true,
                Applied::Unchanged => {}
                Applied::Refused(why) => refused = Some(why),
            }
            false
        });
        if let Some(why) = refused {
            tracing::debug!(target: TARGET, ?announcement, why, "download not announced");
        }
    }

    /// The linked peers (heard from within the idle timeout, as in
    /// [`Mesh::who_has`]) that announced they are downloading `file_name`
    /// from the WAN, the earliest heard first.
    pub fn fetchers(&self, file_name: &str) -> Vec<Fetcher> {
        let now = Instant::now();
        let idle = self.inner.idle_timeout;
        let mut out: Vec<Fetcher> = self
            .inner
            .table
            .read()
            .values()
            .filter(|link| peers::is_alive(link.last_heard(), now, idle))
            .filter_map(|link| {
                let (size, since) = link.fetches().get(file_name)?;
                Some(Fetcher {
                    node: link.peer,
                    size,
                    since,
                })
            })
            .collect();
        out.sort_by_key(|f| (f.since, f.node));
        out
    }

    /// Whether at least one peer is linked (its digest received, heard
    /// from within the idle timeout). Cheap enough for every cache miss.
    pub fn has_links(&self) -> bool {
        let now = Instant::now();
        let idle = self.inner.idle_timeout;
        self.inner.table.read().values().any(|link| {
            let facts = LinkFacts {
                has_digest: link.read_digest().seq().is_some(),
                last_heard: link.last_heard(),
            };
            peers::counts_as_linked(&facts, now, idle)
        })
    }

    /// Whether a mesh key is configured (a closed mesh).
    pub fn is_keyed(&self) -> bool {
        self.inner.mesh_key.is_some()
    }

    /// A receiver whose value is bumped whenever a peer's announced
    /// downloads change or a link comes or goes: wait on `changed()`, then
    /// ask [`Mesh::fetchers`] again.
    pub fn fetchers_changed(&self) -> watch::Receiver<u64> {
        self.inner.fetchers_changed.subscribe()
    }
}
