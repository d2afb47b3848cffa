//! Asking the upstreams for a database and its signature, as a pair: the
//! first upstream that answers is asked `If-Modified-Since` the copy's
//! date; a new database must parse as a sync database, and its `.sig` is
//! fetched right after from the server that sent the database (where the
//! upstream's redirects led: two mirrors of a redirector may be at two
//! versions). An absent `.sig` is fine (Arch's databases are not signed);
//! an error is not. A database that does not parse, or whose signature
//! could not be had, is not kept, and the next upstream is asked; so is
//! one that takes longer than [`UPSTREAM_DEADLINE`] in all.

use std::io::Write as _;
use std::path::Path;
use std::time::SystemTime;

use http::StatusCode;
use tracing::{info, warn};

use super::fresh::Check;
use super::store::Pending;
use crate::fetch::store::on_blocking_pool;
use crate::mirror_client::{Conditional, MirrorBody, MirrorClient, MirrorError};
use crate::syncdb::{parse_db, ParsedDb};

/// The largest database accepted (Arch's biggest, `extra.files`, is about
/// 60 MB): the sync database reader's own limit, since a larger one could
/// not be parsed (it is held in memory to be) and would never be kept.
pub const MAX_DB_BYTES: u64 = crate::syncdb::bounds::MAX_DB_FILE;

/// The largest database signature accepted (a detached OpenPGP signature
/// is a few hundred bytes).
pub const MAX_SIG_BYTES: u64 = 64 << 10;

/// The longest one upstream may take to give a database and its
/// signature (each read also has the mirror client's stall limit): an
/// upstream that sends a byte now and then would otherwise hold the
/// refresh, and every client waiting on it, for good.
pub const UPSTREAM_DEADLINE: std::time::Duration = std::time::Duration::from_secs(600);

/// A new pair written into a [`Pending`] directory.
#[derive(Debug)]
pub struct NewPair {
    /// The upstream's `Last-Modified` (else when it was fetched).
    pub modified: SystemTime,
    pub has_sig: bool,
    /// What the database lists (for the verification table).
    pub parsed: ParsedDb,
    /// Body bytes fetched, signature included.
    pub bytes: u64,
    /// The upstream it came from.
    pub url: String,
}

/// What asking the upstreams gave.
#[derive(Debug)]
pub enum Fetched {
    /// The copy is current (an upstream answered 304).
    NotModified {
        url: String,
    },
    New(NewPair),
}

/// Why no upstream gave the database.
#[derive(Debug, thiserror::Error)]
#[error("{}", describe(.tried))]
pub struct RefreshError {
    /// Each upstream tried and why it failed.
    pub tried: Vec<(String, Failure)>,
}

/// How one upstream failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// No answer, an HTTP error, a 404.
    Unreachable(String),
    /// It sent something that is not a database, or no usable signature.
    Unusable(String),
}

impl RefreshError {
    /// What the client is told: unusable when any upstream answered with
    /// a bad database, unreachable otherwise.
    pub fn check(&self) -> Check {
        if self
            .tried
            .iter()
            .any(|(_, f)| matches!(f, Failure::Unusable(_)))
        {
            Check::Unusable
        } else {
            Check::Unreachable
        }
    }
}

fn describe(tried: &[(String, Failure)]) -> String {
    if tried.is_empty() {
        return "no upstream for this repository and architecture".into();
    }
    let each: Vec<String> = tried
        .iter()
        .map(|(url, f)| match f {
            Failure::Unreachable(why) => format!("{url}: {why}"),
            Failure::Unusable(why) => format!("{url}: unusable: {why}"),
        })
        .collect();
    each.join("; ")
}

/// Asks `urls` (the database's URL at each upstream, in order) for the
/// database named `name`, newer than `since` when a copy is kept, writing
/// a new pair into `pending`.
pub async fn fetch_pair(
    client: &MirrorClient,
    urls: &[String],
    name: &str,
    since: Option<SystemTime>,
    pending: &Pending,
) -> Result<Fetched, RefreshError> {
    let mut tried = Vec::new();
    for url in urls {
        let fetched = tokio::time::timeout(
            UPSTREAM_DEADLINE,
            fetch_from(client, url, name, since, pending.dir()),
        );
        let fetched = fetched.await.unwrap_or_else(|_| {
            let limit = UPSTREAM_DEADLINE.as_secs();
            Err(Failure::Unreachable(format!("took longer than {limit} s")))
        });
        match fetched {
            Ok(fetched) => return Ok(fetched),
            Err(failure) => {
                warn!(url, ?failure, "upstream did not give the database");
                tried.push((url.clone(), failure));
            }
        }
    }
    Err(RefreshError { tried })
}

async fn fetch_from(
    client: &MirrorClient,
    url: &str,
    name: &str,
    since: Option<SystemTime>,
    dir: &Path,
) -> Result<Fetched, Failure> {
    let unreachable = |e: MirrorError| Failure::Unreachable(e.to_string());
    let body = match client.get_if_modified_since(url, since).await {
        Ok(Conditional::NotModified) => {
            return Ok(Fetched::NotModified {
                url: url.to_owned(),
            })
        }
        Ok(Conditional::Body(body)) => body,
        Err(e) => return Err(unreachable(e)),
    };
    // A mirror behind the copy (nginx answers 304 only to its exact date):
    // the copy stays, or a full mirror would go back to older packages.
    if let (Some(since), Some(theirs)) = (since, body.last_modified) {
        if theirs < since {
            info!(
                url,
                "the upstream's database is older than the kept copy; keeping the copy"
            );
            return Ok(Fetched::NotModified {
                url: url.to_owned(),
            });
        }
    }
    let modified = body.last_modified.unwrap_or_else(SystemTime::now);
    let sig_url = format!("{}.sig", body.url);
    let db_path = dir.join(name);
    let sig_path = dir.join(format!("{name}.sig"));
    // A signature left by an upstream that failed before this one must
    // not be kept with this database.
    match std::fs::remove_file(&sig_path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(Failure::Unreachable(format!("{}: {e}", sig_path.display())))
        }
        _ => {}
    }
    let mut bytes = save(body, &db_path, modified, MAX_DB_BYTES).await?;
    let parsed = parse(name, &db_path).await?;
    let has_sig = match client.get_if_modified_since(&sig_url, None).await {
        Ok(Conditional::Body(sig)) => {
            let sig_modified = sig.last_modified.unwrap_or(modified);
            bytes += save(sig, &sig_path, sig_modified, MAX_SIG_BYTES).await?;
            true
        }
        Err(MirrorError::Status(StatusCode::NOT_FOUND)) => false,
        Ok(Conditional::NotModified) => {
            return Err(Failure::Unusable(format!(
                "{sig_url}: 304 to a request without a date"
            )))
        }
        Err(e) => {
            return Err(Failure::Unusable(format!(
                "{sig_url}: {e} (a database is kept only with its signature)"
            )))
        }
    };
    info!(
        url,
        bytes,
        has_sig,
        files = parsed.entries.len(),
        "database fetched"
    );
    Ok(Fetched::New(NewPair {
        modified,
        has_sig,
        parsed,
        bytes,
        url: url.to_owned(),
    }))
}

/// Writes `body` to `path` (at most `limit` bytes), synced, with mtime
/// `modified`; returns its length. Chunks are written as they come (small
/// writes to the page cache), the sync is made on the blocking pool.
async fn save(
    mut body: MirrorBody,
    path: &Path,
    modified: SystemTime,
    limit: u64,
) -> Result<u64, Failure> {
    let disk = |e: std::io::Error| Failure::Unreachable(format!("writing {}: {e}", path.display()));
    let mut file = std::fs::File::create(path).map_err(disk)?;
    let mut len = 0u64;
    loop {
        match body.next_chunk().await {
            Ok(Some(chunk)) => {
                len += chunk.len() as u64;
                if len > limit {
                    return Err(Failure::Unusable(format!("larger than {limit} bytes")));
                }
                file.write_all(&chunk).map_err(disk)?;
            }
            Ok(None) => break,
            Err(e) => return Err(Failure::Unreachable(e.to_string())),
        }
    }
    if let Some(size) = body.size {
        if size != len {
            return Err(Failure::Unreachable(format!(
                "ended after {len} of {size} bytes"
            )));
        }
    }
    // The sync (tens of MB for a files database) waits on the disk: on
    // the blocking pool.
    let synced = on_blocking_pool(move || {
        file.set_modified(modified)?;
        file.sync_all()
    });
    synced.await.map_err(disk)?;
    Ok(len)
}

/// Parses the database at `path` on the blocking pool (a large one takes
/// tens of milliseconds).
async fn parse(name: &str, path: &Path) -> Result<ParsedDb, Failure> {
    let (name, path) = (name.to_owned(), path.to_owned());
    let parsed = tokio::task::spawn_blocking(move || parse_kept(&name, &path))
        .await
        .map_err(|e| Failure::Unreachable(e.to_string()))?;
    parsed.map_err(Failure::Unusable)
}

/// Reads and parses a database on disk (a kept one at start, a fetched
/// one from `parse`).
pub fn parse_kept(name: &str, path: &Path) -> Result<ParsedDb, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    parse_db(name, &bytes).map_err(|e| e.to_string())
}
