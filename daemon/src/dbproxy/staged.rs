//! The databases of repos mirrored whole (`[[mirror.repo]] full = true`,
//! docs/DESIGN.md, "Full mirrors"): a client's request never refreshes
//! them. Their sync (`fullsync`) stages a new pair — fetched, parsed, not
//! served — and installs it only once every package it lists is kept, so
//! clients never see a database naming a file the mirror lacks. A staged
//! pair not installed (a failed or killed run) is thrown away; the next
//! run fetches it again.

use std::collections::HashMap;

use tracing::warn;

use super::store::Pending;
use super::upstream::{self, Failure, Fetched, NewPair, RefreshError};
use super::{DbAnswer, DbKey, DbProxy};
use crate::syncdb::DbEntry;

/// A new pair of a full mirror's database, fetched but not served.
#[derive(Debug)]
pub struct Staged {
    key: DbKey,
    pending: Pending,
    pair: NewPair,
}

impl Staged {
    /// What the new database lists.
    pub fn entries(&self) -> &HashMap<Box<str>, DbEntry> {
        &self.pair.parsed.entries
    }
}

impl DbProxy {
    /// Whether `key` is a full mirror's package list: `{repo}.db`, the
    /// name pacman asks for and the sync switches (`{repo}.db.tar.gz` is
    /// proxied as usual; a miss it names is fetched like any other).
    pub fn is_staged(&self, key: &DbKey) -> bool {
        self.full.contains(&key.repo) && key.name == format!("{}.db", key.repo)
    }

    /// A client's request for a full mirror's database: the current pair,
    /// never a check upstream.
    pub(super) fn answer_staged(&self, key: &DbKey, sig: bool) -> DbAnswer {
        if self.current(key).is_none() {
            return DbAnswer::Fail(
                "this repository is mirrored whole and its first sync has not finished",
            );
        }
        self.open_copy(key, sig, None)
    }

    /// Fetches `key`'s database from `urls` if it is newer than the one
    /// served (`None`: it is not).
    pub async fn stage(
        &self,
        key: &DbKey,
        urls: &[String],
    ) -> Result<Option<Staged>, RefreshError> {
        let since = self.current(key).map(|g| g.modified);
        let pending = self.store.pending().map_err(|e| RefreshError {
            tried: vec![("the store".into(), Failure::Unreachable(e.to_string()))],
        })?;
        match upstream::fetch_pair(&self.client, urls, &key.name, since, &pending).await? {
            Fetched::NotModified { .. } => Ok(None),
            Fetched::New(pair) => Ok(Some(Staged {
                key: key.clone(),
                pending,
                pair,
            })),
        }
    }

    /// What the database served for `key` lists (parsed again from its
    /// file); `None` if none is kept or it no longer parses.
    pub fn current_entries(&self, key: &DbKey) -> Option<HashMap<Box<str>, DbEntry>> {
        let generation = self.current(key)?;
        match upstream::parse_kept(&key.name, generation.db()) {
            Ok(parsed) => Some(parsed.entries),
            Err(why) => {
                warn!(db = %generation.db().display(), why, "kept database does not parse");
                None
            }
        }
    }

    /// Serves `staged` from now on (every package it lists is kept).
    pub async fn install(&self, staged: Staged) -> std::io::Result<()> {
        self.put(&staged.key, staged.pending, staged.pair).await
    }
}
