//! pacman mirrorlist files named by `[[mirror.repo]] mirrorlist`: parsed
//! (pure: `Server = URL` lines, `#` comments), read at start, and read
//! again when they change ([`follow`] looks every [`POLL_EVERY`]; a file
//! that became unreadable or lists no usable server keeps its previous
//! servers, with a warning).

use parking_lot::RwLock;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use pacmesh_conf::OwnServers;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::mirror::check_server;
use crate::mirrors::MirrorTable;

/// How often mirrorlist files are looked at for changes: one `stat` each.
pub const POLL_EVERY: Duration = Duration::from_secs(5);

/// What a mirrorlist lists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listed {
    /// `Server` URL templates, in the file's order.
    pub servers: Vec<String>,
    /// (line number, why) of the lines left out.
    pub skipped: Vec<(usize, String)>,
}

/// Parses a mirrorlist as pacman does for its `Include`d files: `#`
/// starts a comment anywhere on a line, `Server = URL` lines count, and
/// any other directive is left out (it means nothing in a mirrorlist).
pub fn parse(text: &str) -> Listed {
    let mut listed = Listed::default();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            listed
                .skipped
                .push((i + 1, format!("not a `Server = URL` line: {line:?}")));
            continue;
        };
        if key.trim() != "Server" {
            listed
                .skipped
                .push((i + 1, format!("`{}` ignored", key.trim())));
            continue;
        }
        let url = value.trim();
        match check_server(url) {
            Ok(()) => listed.servers.push(url.to_owned()),
            Err(why) => listed.skipped.push((i + 1, format!("{url}: {why}"))),
        }
    }
    listed
}

/// Why a mirrorlist could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MirrorlistError {
    #[error("cannot read mirrorlist {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("mirrorlist {} lists no usable server", path.display())]
    Empty { path: PathBuf },
}

/// Reads the mirrorlist at `path`: its servers minus pacmesh's own (a
/// mirror must never fetch from itself). Skipped lines are logged.
pub fn read(path: &Path, own: &OwnServers) -> Result<Vec<String>, MirrorlistError> {
    let text = std::fs::read_to_string(path).map_err(|source| MirrorlistError::Read {
        path: path.to_owned(),
        source,
    })?;
    let listed = parse(&text);
    for (line, why) in &listed.skipped {
        warn!(mirrorlist = %path.display(), line, why, "mirrorlist line left out");
    }
    let servers: Vec<String> = listed
        .servers
        .into_iter()
        .filter(|url| !own.is_own_url(url))
        .collect();
    if servers.is_empty() {
        return Err(MirrorlistError::Empty {
            path: path.to_owned(),
        });
    }
    Ok(servers)
}

/// What identifies one version of a file without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt as _;
    let meta = std::fs::metadata(path).ok()?;
    Some(Stamp {
        modified: meta.modified().ok(),
        len: meta.len(),
        inode: meta.ino(),
    })
}

/// Keeps the mirrorlists of `table` current until `shutdown`: a file whose
/// stamp changed is read again and its servers swapped into the table.
pub async fn follow(
    table: Arc<RwLock<Arc<MirrorTable>>>,
    own: OwnServers,
    shutdown: CancellationToken,
) {
    let current = || table.read().clone();
    let mut seen: Vec<(PathBuf, Option<Stamp>)> = Vec::new();
    loop {
        let mut paths: Vec<PathBuf> = current()
            .mirrorlists()
            .into_iter()
            .map(|(_, p)| p)
            .collect();
        paths.sort();
        paths.dedup();
        for path in paths {
            let now = stamp(&path);
            match seen.iter_mut().find(|(p, _)| *p == path) {
                Some((_, was)) if *was == now => continue,
                // First look: setup has just read it.
                None => {
                    seen.push((path, now));
                    continue;
                }
                Some((_, was)) => *was = now,
            }
            match read(&path, &own) {
                Ok(servers) => {
                    info!(mirrorlist = %path.display(), servers = servers.len(), "mirrorlist read again");
                    let mut guard = table.write();
                    *guard = Arc::new(guard.with_listed(&path, &servers));
                }
                Err(e) => {
                    warn!(error = %e, "mirrorlist changed but not usable; keeping its previous servers")
                }
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(POLL_EVERY) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_mirrorlist() {
        let text = "\
## Arch Linux repository mirrorlist
## Generated on 2025-01-01

## Germany
#Server = https://commented.example/$repo/os/$arch
Server = https://a.example/$repo/os/$arch
Server=http://b.example/archlinux/$repo/os/$arch   # trailing comment
  Server = ftp://c.example/$repo
Include = /etc/other
garbage line
Server = https://d.example/$repo/os/$carch
";
        assert_eq!(
            parse(text),
            Listed {
                servers: vec![
                    "https://a.example/$repo/os/$arch".into(),
                    "http://b.example/archlinux/$repo/os/$arch".into(),
                ],
                skipped: vec![
                    (
                        8,
                        "ftp://c.example/$repo: an upstream is an http:// or https:// URL".into()
                    ),
                    (9, "`Include` ignored".into()),
                    (10, "not a `Server = URL` line: \"garbage line\"".into()),
                    (
                        11,
                        "https://d.example/$repo/os/$carch: only $repo and $arch are expanded"
                            .into()
                    ),
                ],
            }
        );
        assert_eq!(parse(""), Listed::default());
    }

    #[test]
    fn reading_leaves_out_our_own_server_and_refuses_an_empty_list() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mirrorlist");
        let own = OwnServers::new(&["[::]:15680".parse().unwrap()]);
        std::fs::write(
            &path,
            "Server = http://localhost:15680/$repo/os/$arch\nServer = http://m/$repo\n",
        )
        .unwrap();
        assert_eq!(
            read(&path, &own).unwrap(),
            vec!["http://m/$repo".to_string()]
        );
        std::fs::write(&path, "Server = http://127.0.0.1:15680/$repo/os/$arch\n").unwrap();
        assert!(matches!(
            read(&path, &own),
            Err(MirrorlistError::Empty { .. })
        ));
        assert!(matches!(
            read(&dir.path().join("gone"), &own),
            Err(MirrorlistError::Read { .. })
        ));
    }
}
