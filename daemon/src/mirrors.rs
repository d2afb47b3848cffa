//! The real mirrors of each repository, from pacman.conf, in pacman's order
//! with pacmesh's own server left out, and how a redirect to one is written.
//! In caching-mirror mode, `[[mirror.repo]]` entries add repositories (or
//! replace pacman.conf's servers for one) with upstreams of their own: a
//! list, a mirrorlist file read again when it changes (`crate::mirrorlist`),
//! and the architectures served.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Where to send a miss when no pacman.conf is there to say (a fresh
/// Debian box): Arch's own geo-balanced mirror.
pub const DEFAULT_MIRROR: &str = "https://geo.mirror.pkgbuild.com/$repo/os/$arch";

/// Characters escaped in the repo, architecture and file name put into a
/// mirror's URL: everything but what RFC 3986 lets a path segment carry
/// as is (`pchar`: unreserved, sub-delims, `:` and `@`). So `+` and `:`
/// (epochs) stay, as Arch's mirrors serve them, and a request's `%20` or
/// `%3F` that decoded into a repo name goes back out encoded, never as a
/// space or a query.
const SEGMENT_UNSAFE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'!')
    .remove(b'$')
    .remove(b'&')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')')
    .remove(b'*')
    .remove(b'+')
    .remove(b',')
    .remove(b';')
    .remove(b'=')
    .remove(b':')
    .remove(b'@');

/// One repo's upstreams: URL templates with `$repo`/`$arch`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Upstreams {
    /// pacman.conf's `Server` lines, or a `[[mirror.repo]]`'s `servers`.
    pub servers: Vec<String>,
    /// A `[[mirror.repo]]`'s mirrorlist and the servers it listed when
    /// last read (tried after `servers`).
    pub mirrorlist: Option<PathBuf>,
    pub listed: Vec<String>,
    /// The architectures served; empty: any.
    pub archs: Vec<String>,
}

impl Upstreams {
    /// Plain servers for every architecture (pacman.conf's repos).
    pub fn servers(servers: Vec<String>) -> Upstreams {
        Upstreams {
            servers,
            ..Upstreams::default()
        }
    }

    /// Every template, in the order they are tried.
    pub fn templates(&self) -> impl Iterator<Item = &str> {
        self.servers.iter().chain(&self.listed).map(String::as_str)
    }

    fn serves_arch(&self, arch: &str) -> bool {
        self.archs.is_empty() || self.archs.iter().any(|a| a == arch)
    }
}

/// Each repo's real mirrors (`Server` URL templates with `$repo`/`$arch`).
#[derive(Debug, Clone, Default)]
pub struct MirrorTable {
    repos: HashMap<String, Upstreams>,
    /// Used for every repo when pacman.conf is absent.
    fallback: Option<String>,
}

impl MirrorTable {
    /// Repos with plain server lists (pacman.conf's).
    pub fn new(repos: impl IntoIterator<Item = (String, Vec<String>)>) -> Self {
        Self::with_upstreams(
            repos
                .into_iter()
                .map(|(name, servers)| (name, Upstreams::servers(servers))),
        )
    }

    pub fn with_upstreams(repos: impl IntoIterator<Item = (String, Upstreams)>) -> Self {
        MirrorTable {
            repos: repos.into_iter().collect(),
            fallback: None,
        }
    }

    /// No pacman.conf: every repo goes to `url`.
    pub fn fallback_only(url: &str) -> Self {
        MirrorTable {
            repos: HashMap::new(),
            fallback: Some(url.to_owned()),
        }
    }

    /// The first real mirror of `repo`, if pacman.conf knows the repo and
    /// gives it one.
    pub fn first(&self, repo: &str) -> Option<&str> {
        match self.repos.get(repo) {
            Some(up) => up.templates().next(),
            None => self.fallback.as_deref(),
        }
    }

    /// The URL of `name` at each of `repo`'s mirrors, in pacman.conf's
    /// order (empty when pacman.conf does not know the repo, or the repo
    /// is not served for `arch`).
    pub fn file_urls(&self, repo: &str, arch: &str, name: &str) -> Vec<String> {
        let templates: Vec<&str> = match self.repos.get(repo) {
            Some(up) if up.serves_arch(arch) => up.templates().collect(),
            Some(_) => Vec::new(),
            None => self.fallback.as_deref().into_iter().collect(),
        };
        templates
            .into_iter()
            .map(|t| file_url(t, repo, arch, name))
            .collect()
    }

    pub fn repo_count(&self) -> usize {
        self.repos.len()
    }

    /// Repos whose upstreams include a mirrorlist, with its path.
    pub fn mirrorlists(&self) -> Vec<(String, PathBuf)> {
        let mut lists: Vec<(String, PathBuf)> = self
            .repos
            .iter()
            .filter_map(|(name, up)| Some((name.clone(), up.mirrorlist.clone()?)))
            .collect();
        lists.sort();
        lists
    }

    /// This table with the servers listed by the mirrorlist at `path`
    /// replaced by `listed`, in every repo that uses it.
    pub fn with_listed(&self, path: &Path, listed: &[String]) -> MirrorTable {
        let mut next = self.clone();
        for up in next.repos.values_mut() {
            if up.mirrorlist.as_deref() == Some(path) {
                up.listed = listed.to_vec();
            }
        }
        next
    }
}

/// The URL of `name` under a `Server` template, as pacman would build it,
/// with `repo`, `arch` and `name` (decoded from a request) encoded as
/// path segments again.
pub fn file_url(template: &str, repo: &str, arch: &str, name: &str) -> String {
    let segment = |s| utf8_percent_encode(s, SEGMENT_UNSAFE).to_string();
    let base = template
        .replace("$repo", &segment(repo))
        .replace("$arch", &segment(arch));
    format!("{}/{}", base.trim_end_matches('/'), segment(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let table = [
            (
                "http://m/$repo/os/$arch",
                "core",
                "x86_64",
                "a-1-1-any.pkg.tar.zst",
                "http://m/core/os/x86_64/a-1-1-any.pkg.tar.zst",
            ),
            (
                "http://m/$repo/os/$arch/",
                "core",
                "x86_64",
                "core.db",
                "http://m/core/os/x86_64/core.db",
            ),
            (
                "https://m/arch/$arch/$repo",
                "extra",
                "aarch64",
                "gtk+-1:2-1-any.pkg.tar.zst",
                "https://m/arch/aarch64/extra/gtk+-1:2-1-any.pkg.tar.zst",
            ),
            (
                "http://m/static",
                "x",
                "y",
                "a b#c%",
                "http://m/static/a%20b%23c%25",
            ),
            (
                "http://m/$repo/os/$arch",
                "my repo#1?",
                "x86/64%",
                "d\u{e9}p\u{f4}t[1]-1-1-any.pkg.tar.zst",
                "http://m/my%20repo%231%3F/os/x86%2F64%25/d%C3%A9p%C3%B4t%5B1%5D-1-1-any.pkg.tar.zst",
            ),
            (
                "http://m/$repo/$arch",
                "a@b:c+d=e",
                "\r\n",
                "f",
                "http://m/a@b:c+d=e/%0D%0A/f",
            ),
        ];
        for (template, repo, arch, name, want) in table {
            assert_eq!(file_url(template, repo, arch, name), want);
        }
    }

    #[test]
    fn lookup() {
        let table = MirrorTable::new([
            (
                "core".to_string(),
                vec!["http://a/$repo".to_string(), "http://b/$repo".to_string()],
            ),
            ("local".to_string(), vec![]),
        ]);
        assert_eq!(table.first("core"), Some("http://a/$repo"));
        assert_eq!(table.first("local"), None);
        assert_eq!(table.first("unknown"), None);
        let fallback = MirrorTable::fallback_only(DEFAULT_MIRROR);
        assert_eq!(fallback.first("anything"), Some(DEFAULT_MIRROR));
    }

    #[test]
    fn upstreams_of_a_caching_mirror() {
        let list = PathBuf::from("/etc/pacman.d/mirrorlist");
        let table = MirrorTable::with_upstreams([
            (
                "alarm".to_string(),
                Upstreams {
                    servers: vec!["http://a/$arch/$repo".into()],
                    mirrorlist: Some(list.clone()),
                    listed: vec!["http://b/$repo/os/$arch".into()],
                    archs: vec!["aarch64".into()],
                },
            ),
            (
                "core".to_string(),
                Upstreams {
                    mirrorlist: Some(list.clone()),
                    ..Upstreams::default()
                },
            ),
        ]);
        let check = |t: &MirrorTable, repo, arch, want: &[&str]| {
            assert_eq!(t.file_urls(repo, arch, "f"), want, "{repo}/{arch}");
        };
        check(
            &table,
            "alarm",
            "aarch64",
            &["http://a/aarch64/alarm/f", "http://b/alarm/os/aarch64/f"],
        );
        // Not served for this architecture; unknown repo.
        check(&table, "alarm", "x86_64", &[]);
        check(&table, "extra", "x86_64", &[]);
        check(&table, "core", "x86_64", &[]);
        assert_eq!(
            table.mirrorlists(),
            vec![
                ("alarm".into(), list.clone()),
                ("core".into(), list.clone())
            ]
        );
        let table = table.with_listed(&list, &["http://c/$repo/os/$arch".into()]);
        check(
            &table,
            "alarm",
            "aarch64",
            &["http://a/aarch64/alarm/f", "http://c/alarm/os/aarch64/f"],
        );
        check(&table, "core", "x86_64", &["http://c/core/os/x86_64/f"]);
    }
}
