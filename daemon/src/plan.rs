//! Which source serves a file request (pure): DESIGN.md's request flow,
//! steps 2 to 4, for one host.

use std::path::PathBuf;

use crate::http::target::FileTarget;
use crate::mirrors::{file_url, MirrorTable};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// A complete copy is in a local cache dir.
    Local(PathBuf),
    Remote(Remote),
}

/// The answer when this host has no copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Remote {
    /// 307 to the real mirror.
    Redirect(String),
    /// 404 so pacman moves on to its next `Server` at once.
    NotFound(&'static str),
}

/// Decides where `file` comes from. `local` is the index's answer for it.
/// Databases are never served from a cache: they are what packages are
/// verified against, so they always come from the mirror.
pub fn plan(file: &FileTarget, local: Option<PathBuf>, mirrors: &MirrorTable) -> Plan {
    if file.kind.is_cacheable() {
        if let Some(path) = local {
            return Plan::Local(path);
        }
    }
    Plan::Remote(remote(file, mirrors))
}

/// Where a file this host does not have comes from.
pub fn remote(file: &FileTarget, mirrors: &MirrorTable) -> Remote {
    let (Some(repo), Some(arch)) = (&file.repo, &file.arch) else {
        return Remote::NotFound("not cached here, and a flat path names no repo");
    };
    match mirrors.first(repo) {
        Some(template) => Remote::Redirect(file_url(template, repo, arch, &file.name)),
        None => Remote::NotFound("repo unknown to pacman.conf or without a mirror"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pacmesh_proto::classify;

    fn target(repo: Option<&str>, name: &str) -> FileTarget {
        FileTarget {
            repo: repo.map(Into::into),
            arch: repo.map(|_| "x86_64".into()),
            name: name.into(),
            kind: classify(name),
        }
    }

    fn check(file: FileTarget, local: Option<&str>, want: Plan) {
        let mirrors = MirrorTable::new([
            (
                "core".to_string(),
                vec!["http://mirror/$repo/os/$arch".to_string()],
            ),
            ("nomirror".to_string(), vec![]),
        ]);
        assert_eq!(
            plan(&file, local.map(PathBuf::from), &mirrors),
            want,
            "{file:?} local={local:?}"
        );
    }

    #[test]
    fn plans() {
        let pkg = "a-1-1-any.pkg.tar.zst";
        check(
            target(Some("core"), pkg),
            Some("/c/a"),
            Plan::Local("/c/a".into()),
        );
        check(
            target(Some("core"), &format!("{pkg}.sig")),
            Some("/c/s"),
            Plan::Local("/c/s".into()),
        );
        check(
            target(Some("core"), pkg),
            None,
            Plan::Remote(Remote::Redirect(format!(
                "http://mirror/core/os/x86_64/{pkg}"
            ))),
        );
        // Even a cached database is never served locally.
        check(
            target(Some("core"), "core.db"),
            Some("/c/core.db"),
            Plan::Remote(Remote::Redirect(
                "http://mirror/core/os/x86_64/core.db".into(),
            )),
        );
        check(target(None, pkg), Some("/c/a"), Plan::Local("/c/a".into()));
        assert!(matches!(
            plan(&target(None, pkg), None, &MirrorTable::default()),
            Plan::Remote(Remote::NotFound(_))
        ));
        check(
            target(Some("nomirror"), pkg),
            None,
            Plan::Remote(Remote::NotFound(
                "repo unknown to pacman.conf or without a mirror",
            )),
        );
        check(
            target(Some("unknown"), pkg),
            None,
            Plan::Remote(Remote::NotFound(
                "repo unknown to pacman.conf or without a mirror",
            )),
        );
    }
}
