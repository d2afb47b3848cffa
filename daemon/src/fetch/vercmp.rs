//! Package versions as pacman orders them (`vercmp`, libalpm's
//! `alpm_pkg_vercmp`): `[epoch:]pkgver[-pkgrel]`, epoch numerically, then
//! pkgver and pkgrel segment by segment (digits against digits as
//! numbers, letters against letters as strings, a number newer than
//! letters). And the parts of a package file's name, for the store's
//! keep-N-versions rule (`fetch::evict`).

use std::cmp::Ordering;

/// A package file's name split: `name-1:2.0-3-x86_64.pkg.tar.zst` (or its
/// `.sig`) → (`name`, `1:2.0-3`). `None` for anything else.
pub fn split_package(file_name: &str) -> Option<(&str, &str)> {
    let base = file_name.strip_suffix(".sig").unwrap_or(file_name);
    let (stem, _) = base.split_once(".pkg.tar")?;
    let mut parts = stem.rsplitn(4, '-');
    let (_arch, rel, ver, name) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if name.is_empty() || ver.is_empty() || rel.is_empty() {
        return None;
    }
    // The version is what lies between the name and the arch.
    let start = name.len() + 1;
    Some((name, &stem[start..start + ver.len() + 1 + rel.len()]))
}

/// A package file's architecture: `name-1.0-1-x86_64.pkg.tar.zst` →
/// `x86_64`.
pub fn package_arch(file_name: &str) -> Option<&str> {
    split_package(file_name)?;
    let base = file_name.strip_suffix(".sig").unwrap_or(file_name);
    let (stem, _) = base.split_once(".pkg.tar")?;
    stem.rsplit_once('-').map(|(_, arch)| arch)
}

/// Orders two full versions as pacman does.
pub fn vercmp(a: &str, b: &str) -> Ordering {
    if a == b {
        return Ordering::Equal;
    }
    let (ea, va, ra) = parts(a);
    let (eb, vb, rb) = parts(b);
    let epoch = |e: &str| e.parse::<u64>().unwrap_or(0);
    epoch(ea)
        .cmp(&epoch(eb))
        .then_with(|| segments(va, vb))
        .then_with(|| match (ra, rb) {
            (Some(ra), Some(rb)) => segments(ra, rb),
            _ => Ordering::Equal,
        })
}

/// `[epoch:]pkgver[-pkgrel]` → (epoch or "0", pkgver, pkgrel).
fn parts(v: &str) -> (&str, &str, Option<&str>) {
    let (epoch, rest) = match v.split_once(':') {
        Some((e, rest)) if !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit()) => (e, rest),
        _ => ("0", v),
    };
    match rest.rsplit_once('-') {
        Some((ver, rel)) => (epoch, ver, Some(rel)),
        None => (epoch, rest, None),
    }
}

/// rpm's segment comparison, as libalpm's `rpmvercmp`.
fn segments(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    loop {
        let skip = |s: &[u8]| s.iter().take_while(|c| !c.is_ascii_alphanumeric()).count();
        let (sa, sb) = (skip(a), skip(b));
        a = &a[sa..];
        b = &b[sb..];
        if a.is_empty() || b.is_empty() {
            break;
        }
        // More separators before a segment: newer (libalpm's rule).
        if sa != sb {
            return sa.cmp(&sb);
        }
        let numeric = a[0].is_ascii_digit();
        let take = |s: &[u8]| {
            s.iter()
                .take_while(|c| {
                    if numeric {
                        c.is_ascii_digit()
                    } else {
                        c.is_ascii_alphabetic()
                    }
                })
                .count()
        };
        let (na, nb) = (take(a), take(b));
        if nb == 0 {
            // A number against letters: the number is newer.
            return if numeric {
                Ordering::Greater
            } else {
                Ordering::Less
            };
        }
        let (seg_a, seg_b) = (&a[..na], &b[..nb]);
        let order = if numeric {
            let trim = |s: &[u8]| s.iter().skip_while(|&&c| c == b'0').count();
            let (ta, tb) = (trim(seg_a), trim(seg_b));
            ta.cmp(&tb)
                .then_with(|| seg_a[na - ta..].cmp(&seg_b[nb - tb..]))
        } else {
            seg_a.cmp(seg_b)
        };
        if order != Ordering::Equal {
            return order;
        }
        a = &a[na..];
        b = &b[nb..];
    }
    match (a.is_empty(), b.is_empty()) {
        (true, true) => Ordering::Equal,
        // What remains wins, unless it is letters ("1.0a" < "1.0").
        (true, false) if b[0].is_ascii_alphabetic() => Ordering::Greater,
        (true, false) => Ordering::Less,
        (false, _) if a[0].is_ascii_alphabetic() => Ordering::Less,
        (false, _) => Ordering::Greater,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::{Equal, Greater, Less};

    #[test]
    fn as_pacman_orders_them() {
        // Cases from pacman's own test/util/vercmptest.sh.
        let table = [
            ("1.5.0", "1.5.0", Equal),
            ("1.5.1", "1.5.0", Greater),
            ("1.5.1", "1.5", Greater),
            ("1.5.0", "1.5", Greater),
            ("1.0a", "1.0", Less),
            ("1.0alpha", "1.0", Less),
            ("1.0", "1.0.a", Greater),
            ("1.0.1", "1.0.a", Greater),
            ("1.0a", "1.0b", Less),
            ("1.0b", "1.0beta", Less),
            ("1.5-1", "1.5-2", Less),
            ("1.5-2", "1.5.1-1", Less),
            ("1.5", "1.5-1", Equal),
            ("1:1.0-1", "2.0-1", Greater),
            ("1.0-1", "1:0.5-1", Less),
            ("10-1", "9-1", Greater),
            ("1.010", "1.9", Greater),
            ("1.001", "1.1", Equal),
            ("1.0", "1..0", Less),
            ("1.0.1", "1.0r1", Greater),
        ];
        for (a, b, want) in table {
            assert_eq!(vercmp(a, b), want, "vercmp({a}, {b})");
            assert_eq!(vercmp(b, a), want.reverse(), "vercmp({b}, {a})");
        }
    }

    #[test]
    fn package_names() {
        let table = [
            ("glibc-2.40-1-x86_64.pkg.tar.zst", Some(("glibc", "2.40-1"))),
            (
                "lib32-gcc-libs-1:14.2.1-2-x86_64.pkg.tar.zst.sig",
                Some(("lib32-gcc-libs", "1:14.2.1-2")),
            ),
            ("a-1-1-any.pkg.tar.xz", Some(("a", "1-1"))),
            ("core.db", None),
            ("1-1-any.pkg.tar.zst", None),
            ("noversion.pkg.tar.zst", None),
        ];
        for (file, want) in table {
            assert_eq!(split_package(file), want, "{file}");
        }
        assert_eq!(package_arch("a-1-1-any.pkg.tar.xz"), Some("any"));
        assert_eq!(package_arch("g-2-1-x86_64.pkg.tar.zst.sig"), Some("x86_64"));
        assert_eq!(package_arch("core.db"), None);
    }
}
