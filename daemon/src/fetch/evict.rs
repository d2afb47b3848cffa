//! Which kept files to remove (pure; docs/DESIGN.md, "The store's space
//! policy"). Applied by `fetch::store` every minute, after each file is
//! kept, and before a download that will be kept starts (room made ahead
//! for its size).
//!
//! In order:
//! 1. A file a response is sending now, or one a full-mirror repo's
//!    database lists (`pinned`), is never removed here.
//! 2. A file one of pacman's cache dirs also holds goes (local mode: the
//!    network still has it); so does one unused for longer than `max_age`,
//!    unless a current database lists it.
//! 3. Keep-N: of each package (name and architecture), the
//!    `keep_versions` newest versions stay (pacman's version order, as
//!    `paccache -rk N`); older ones go unless a current database lists
//!    them. 0 turns the rule off.
//! 4. The cap: while the files left plus `reserve` (downloads arriving to
//!    be kept) exceed `cap`, the least recently used go first, files no
//!    database lists before listed ones.

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use super::vercmp::{package_arch, split_package, vercmp};

/// One kept file as the policy sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreFile {
    pub name: String,
    pub size: u64,
    /// Since it was last served (or kept, if never served since).
    pub idle: Duration,
    /// A current database of the mirror lists it.
    pub listed: bool,
    /// A full-mirror repo's database lists it (the one served, or the one
    /// being switched to): only that repo's sync removes it.
    pub pinned: bool,
    /// A response is sending it now.
    pub in_use: bool,
    /// One of pacman's cache dirs holds the same name.
    pub elsewhere: bool,
}

/// The limits the policy applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub max_age: Duration,
    pub cap: u64,
    /// Versions kept per package; 0: no such rule.
    pub keep_versions: usize,
}

/// What [`evict`] decided.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Eviction {
    /// The files to remove, in the order chosen.
    pub gone: Vec<String>,
    /// Whether what is left plus the reserve fits under the cap.
    pub fits: bool,
}

/// Decides which of `files` to remove so that they and `reserve` more
/// bytes fit under the cap.
pub fn evict(files: &[StoreFile], policy: &Policy, reserve: u64) -> Eviction {
    let removable = |f: &StoreFile| !f.in_use && !f.pinned;
    // Looked up by name for every file: a set, as a full mirror's store
    // holds tens of thousands.
    let old = match policy.keep_versions {
        0 => HashSet::new(),
        keep => old_versions(files, keep),
    };
    let early = |f: &StoreFile| {
        removable(f)
            && (f.elsewhere
                || (f.idle > policy.max_age && !f.listed)
                || (!f.listed && old.contains(f.name.as_str())))
    };
    let (early_gone, mut left): (Vec<&StoreFile>, Vec<&StoreFile>) =
        files.iter().partition(|f| early(f));
    let mut gone: Vec<String> = early_gone.iter().map(|f| f.name.clone()).collect();
    let mut total: u64 = left.iter().map(|f| f.size).sum::<u64>() + reserve;
    // Unlisted before listed, then least recently used first.
    left.sort_by_key(|f| (f.listed, Reverse(f.idle)));
    for f in left {
        if total <= policy.cap {
            break;
        }
        if removable(f) {
            total -= f.size;
            gone.push(f.name.clone());
        }
    }
    Eviction {
        gone,
        fits: total <= policy.cap,
    }
}

/// A package file's package (name and architecture, as `paccache`
/// counts them) and version.
fn package_version(file_name: &str) -> Option<((&str, &str), &str)> {
    let (name, version) = split_package(file_name)?;
    Some(((name, package_arch(file_name)?), version))
}

/// The names of files whose package has `keep` newer versions kept.
fn old_versions(files: &[StoreFile], keep: usize) -> HashSet<&str> {
    let mut by_package: BTreeMap<(&str, &str), Vec<&str>> = BTreeMap::new();
    for f in files {
        if let Some((package, version)) = package_version(&f.name) {
            let versions = by_package.entry(package).or_default();
            if !versions.contains(&version) {
                versions.push(version);
            }
        }
    }
    let mut old_set: HashSet<((&str, &str), &str)> = HashSet::new();
    for (package, mut versions) in by_package {
        versions.sort_by(|a, b| vercmp(b, a));
        old_set.extend(versions.into_iter().skip(keep).map(|v| (package, v)));
    }
    files
        .iter()
        .filter(|f| package_version(&f.name).is_some_and(|pv| old_set.contains(&pv)))
        .map(|f| f.name.as_str())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 24 * 3600;

    /// A file `name-VERSION-1-any.pkg.tar.zst` of `size`, idle `idle_s`;
    /// `flags`: l(isted), p(inned), u(sed now), e(lsewhere).
    fn file(name: &str, version: &str, size: u64, idle_s: u64, flags: &str) -> StoreFile {
        StoreFile {
            name: format!("{name}-{version}-1-any.pkg.tar.zst"),
            size,
            idle: Duration::from_secs(idle_s),
            listed: flags.contains('l'),
            pinned: flags.contains('p'),
            in_use: flags.contains('u'),
            elsewhere: flags.contains('e'),
        }
    }

    fn check(
        files: Vec<StoreFile>,
        cap: u64,
        keep: usize,
        reserve: u64,
        want: &[&str],
        fits: bool,
    ) {
        let policy = Policy {
            max_age: Duration::from_secs(30 * DAY),
            cap,
            keep_versions: keep,
        };
        let got = evict(&files, &policy, reserve);
        let short: Vec<String> = got
            .gone
            .iter()
            .map(|n| n.trim_end_matches("-1-any.pkg.tar.zst").to_string())
            .collect();
        assert_eq!(
            (short, got.fits),
            (want.iter().map(|s| s.to_string()).collect(), fits),
            "{files:#?}"
        );
    }

    #[test]
    fn age_and_elsewhere() {
        let files = vec![
            file("a", "1", 1, 10, "e"),
            file("b", "1", 1, 31 * DAY, ""),
            file("c", "1", 1, 31 * DAY, "l"),
            file("d", "1", 1, 31 * DAY, "u"),
            file("e", "1", 1, 10, "eu"),
        ];
        check(files, 100, 3, 0, &["a-1", "b-1"], true);
    }

    #[test]
    fn keep_n_versions() {
        let files = vec![
            file("p", "1.0", 1, 10, ""),
            file("p", "1.10", 1, 10, ""),
            file("p", "1.9", 1, 10, ""),
            file("p", "1:0.1", 1, 10, ""),
            file("q", "2", 1, 10, ""),
        ];
        // Newest first: 1:0.1, 1.10, 1.9, 1.0.
        check(files.clone(), 100, 2, 0, &["p-1.0", "p-1.9"], true);
        check(files.clone(), 100, 0, 0, &[], true);
        check(files, 100, 4, 0, &[], true);
    }

    #[test]
    fn keep_n_counts_versions_per_architecture() {
        // As `paccache -rk N`: a package is its name and architecture; an
        // aarch64 build is not an older version of the x86_64 one.
        let f = |version: &str, arch: &str| StoreFile {
            name: format!("p-{version}-1-{arch}.pkg.tar.zst"),
            ..file("p", version, 1, 10, "")
        };
        let files = vec![
            f("1.0", "aarch64"),
            f("2.0", "x86_64"),
            f("2.1", "x86_64"),
            f("2.2", "x86_64"),
        ];
        let policy = Policy {
            max_age: Duration::from_secs(30 * DAY),
            cap: 100,
            keep_versions: 1,
        };
        let gone = evict(&files, &policy, 0).gone;
        assert_eq!(
            gone,
            vec!["p-2.0-1-x86_64.pkg.tar.zst", "p-2.1-1-x86_64.pkg.tar.zst"]
        );
    }

    #[test]
    fn keep_n_spares_listed_and_busy_versions() {
        let files = vec![
            file("p", "1", 1, 10, "l"),
            file("p", "2", 1, 10, "u"),
            file("p", "3", 1, 10, ""),
            file("p", "4", 1, 10, ""),
            file("p", "5", 1, 10, ""),
        ];
        check(files, 100, 1, 0, &["p-3", "p-4"], true);
    }

    #[test]
    fn cap_least_recently_used_first_unlisted_before_listed() {
        let files = vec![
            file("a", "1", 40, 100, "l"),
            file("b", "1", 40, 50, ""),
            file("c", "1", 40, 300, "l"),
            file("d", "1", 40, 10, ""),
        ];
        // 160 over a cap of 100: both unlisted go (b used longer ago than d)...
        check(files.clone(), 100, 3, 0, &["b-1", "d-1"], true);
        // ...and a 30-byte download arriving needs one listed file more: c, the LRU.
        check(files, 100, 3, 30, &["b-1", "d-1", "c-1"], true);
    }

    #[test]
    fn cap_never_cuts_a_file_being_sent_or_a_pinned_one() {
        let files = vec![
            file("a", "1", 60, 500, "u"),
            file("b", "1", 60, 400, "p"),
            file("c", "1", 30, 10, ""),
        ];
        check(files.clone(), 100, 3, 0, &["c-1"], false);
        // Room for an arrival cannot be made either: it does not fit.
        let files = vec![file("a", "1", 50, 500, "u"), file("b", "1", 10, 5, "")];
        check(files, 100, 3, 60, &["b-1"], false);
    }

    #[test]
    fn an_arrival_that_fits_removes_nothing() {
        let files = vec![file("a", "1", 50, 500, ""), file("b", "1", 10, 5, "")];
        check(files, 100, 3, 40, &[], true);
    }
}
