//! The real mirrors of each repository, from pacman.conf, in pacman's order
//! with pacmesh's own server left out, and how a redirect to one is written.

use std::collections::HashMap;

use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};

/// Where to send a miss when no pacman.conf is there to say (a fresh
/// Debian box): Arch's own geo-balanced mirror.
pub const DEFAULT_MIRROR: &str = "https://geo.mirror.pkgbuild.com/$repo/os/$arch";

/// Characters escaped in a redirect's file name: what a URL path cannot
/// carry as is. `+` and `:` (epochs) stay, as Arch's mirrors serve them.
const PATH_UNSAFE: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'?')
    .add(b'<')
    .add(b'>');

/// Each repo's real mirrors (`Server` URL templates with `$repo`/`$arch`).
#[derive(Debug, Clone, Default)]
pub struct MirrorTable {
    repos: HashMap<String, Vec<String>>,
    /// Used for every repo when pacman.conf is absent.
    fallback: Option<String>,
}

impl MirrorTable {
    pub fn new(repos: impl IntoIterator<Item = (String, Vec<String>)>) -> Self {
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
            Some(servers) => servers.first().map(String::as_str),
            None => self.fallback.as_deref(),
        }
    }

    /// The URL of `name` at each of `repo`'s mirrors, in pacman.conf's
    /// order (empty when pacman.conf does not know the repo).
    pub fn file_urls(&self, repo: &str, arch: &str, name: &str) -> Vec<String> {
        let templates: Vec<&str> = match self.repos.get(repo) {
            Some(servers) => servers.iter().map(String::as_str).collect(),
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
}

/// The URL of `name` under a `Server` template, as pacman would build it.
pub fn file_url(template: &str, repo: &str, arch: &str, name: &str) -> String {
    let base = template.replace("$repo", repo).replace("$arch", arch);
    let name = utf8_percent_encode(name, PATH_UNSAFE);
    format!("{}/{name}", base.trim_end_matches('/'))
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
}
