//! What a request path names (pure): a file, pacmesh's own pages, or
//! nothing we serve. Every segment is percent-decoded and checked before it
//! is used, so `%2e%2e`, `%2f` and friends are refused like their plain
//! forms.

use std::borrow::Cow;

use pacmesh_proto::{classify, validate_name, FileKind, NameError};
use percent_encoding::percent_decode_str;

/// Paths longer than this are refused with 414 before anything else.
pub const MAX_PATH_LEN: usize = 4096;

/// A file request: `/{repo}/os/{arch}/{name}` or flat `/{name}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileTarget {
    pub repo: Option<String>,
    pub arch: Option<String>,
    pub name: String,
    pub kind: FileKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Status,
    Metrics,
    /// The human page, `/_pacmesh/`.
    Page,
    /// `/_pacmesh/admin/{action}`: a caching mirror's admin action (the
    /// action's name, checked by `crate::admin`).
    Admin(String),
    File(FileTarget),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetError {
    /// 400: a segment that is not a safe name.
    BadName(NameError),
    /// 400: percent-encoding that does not decode to UTF-8.
    BadEncoding,
    /// 414.
    TooLong(usize),
    /// 404: a well-formed path of a shape we do not serve.
    NotFound,
}

impl std::fmt::Display for TargetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TargetError::BadName(e) => write!(f, "bad path segment: {e}"),
            TargetError::BadEncoding => write!(f, "bad percent-encoding in path"),
            TargetError::TooLong(n) => write!(f, "path of {n} bytes is longer than {MAX_PATH_LEN}"),
            TargetError::NotFound => write!(f, "no such path"),
        }
    }
}

/// Parses the (still percent-encoded) path of a request URI.
pub fn parse_target(path: &str) -> Result<Target, TargetError> {
    if path.len() > MAX_PATH_LEN {
        return Err(TargetError::TooLong(path.len()));
    }
    let Some(rest) = path.strip_prefix('/') else {
        return Err(TargetError::NotFound);
    };
    // The shapes served have at most four segments: decoded into place,
    // without a `Vec` per request (every segment is decoded first, so bad
    // encoding anywhere is a 400 whatever the shape).
    let mut segments: [Cow<'_, str>; MAX_SEGMENTS] = Default::default();
    let mut count = 0;
    for segment in rest.split('/') {
        let decoded = decode(segment)?;
        if let Some(slot) = segments.get_mut(count) {
            *slot = decoded;
        }
        count += 1;
    }
    if count > MAX_SEGMENTS {
        return unserved(rest);
    }
    let segs: [&str; MAX_SEGMENTS] = std::array::from_fn(|i| segments[i].as_ref());
    match &segs[..count] {
        ["_pacmesh", "status"] => Ok(Target::Status),
        ["_pacmesh", "metrics"] => Ok(Target::Metrics),
        ["_pacmesh"] | ["_pacmesh", ""] => Ok(Target::Page),
        ["_pacmesh", "admin", action] => Ok(Target::Admin((*action).to_owned())),
        ["_pacmesh", ..] => Err(TargetError::NotFound),
        [name] => file(None, None, name),
        [repo, "os", arch, name] => {
            validate_name(repo).map_err(TargetError::BadName)?;
            validate_name(arch).map_err(TargetError::BadName)?;
            file(Some(repo), Some(arch), name)
        }
        _ => unserved(rest),
    }
}

/// Segments of the longest path served (`/{repo}/os/{arch}/{name}`).
const MAX_SEGMENTS: usize = 4;

/// A path of a shape not served (its segments all decode): 404, or 400
/// for a segment that is not a safe name, so a traversal probe is counted
/// and logged as what it is.
fn unserved(rest: &str) -> Result<Target, TargetError> {
    let mut segments = rest.split('/');
    if segments.next().map(decode).transpose()?.as_deref() == Some("_pacmesh") {
        return Err(TargetError::NotFound);
    }
    for segment in rest.split('/') {
        validate_name(&decode(segment)?).map_err(TargetError::BadName)?;
    }
    Err(TargetError::NotFound)
}

fn decode(segment: &str) -> Result<Cow<'_, str>, TargetError> {
    // Nothing to decode (pacman's paths): the segment as it is, without
    // the decoder's walk over every byte.
    if !segment.contains('%') {
        return Ok(Cow::Borrowed(segment));
    }
    percent_decode_str(segment)
        .decode_utf8()
        .map_err(|_| TargetError::BadEncoding)
}

fn file(repo: Option<&str>, arch: Option<&str>, name: &str) -> Result<Target, TargetError> {
    let name = validate_name(name).map_err(TargetError::BadName)?;
    Ok(Target::File(FileTarget {
        repo: repo.map(str::to_owned),
        arch: arch.map(str::to_owned),
        name: name.to_owned(),
        kind: classify(name),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(path: &str, want: Result<Target, TargetError>) {
        assert_eq!(parse_target(path), want, "parse_target({path:?})");
    }

    fn file_in(repo: &str, arch: &str, name: &str, kind: FileKind) -> Result<Target, TargetError> {
        Ok(Target::File(FileTarget {
            repo: Some(repo.into()),
            arch: Some(arch.into()),
            name: name.into(),
            kind,
        }))
    }

    #[test]
    fn targets() {
        use FileKind::*;
        check("/_pacmesh/status", Ok(Target::Status));
        check("/_pacmesh/nope", Err(TargetError::NotFound));
        check("/_pacmesh/metrics", Ok(Target::Metrics));
        check("/_pacmesh/", Ok(Target::Page));
        check("/_pacmesh", Ok(Target::Page));
        check(
            "/_pacmesh/admin/refresh",
            Ok(Target::Admin("refresh".into())),
        );
        check("/_pacmesh/admin", Err(TargetError::NotFound));
        check(
            "/core/os/x86_64/a-1-1-any.pkg.tar.zst",
            file_in("core", "x86_64", "a-1-1-any.pkg.tar.zst", Package),
        );
        check(
            "/core/os/x86_64/core.db",
            file_in("core", "x86_64", "core.db", Database),
        );
        check(
            "/extra/os/x86_64/gtk%2B-1-1-any.pkg.tar.zst",
            file_in("extra", "x86_64", "gtk+-1-1-any.pkg.tar.zst", Package),
        );
        check(
            "/a-1-1-any.pkg.tar.zst.sig",
            Ok(Target::File(FileTarget {
                repo: None,
                arch: None,
                name: "a-1-1-any.pkg.tar.zst.sig".into(),
                kind: PackageSig,
            })),
        );
        check("/core/x86_64/core.db", Err(TargetError::NotFound));
        check("/", Err(TargetError::BadName(NameError::Empty)));
        check("relative", Err(TargetError::NotFound));
    }

    #[test]
    fn traversal_and_tricks_are_bad_requests() {
        let bad = [
            "/..",
            "/core/os/x86_64/..",
            "/core/os/../../etc/passwd",
            "/%2e%2e/%2e%2e/etc/passwd",
            "/core/os/x86_64/%2e%2e",
            "/core/os/x86_64/a%2fb",
            "/core/os/x86_64/a%00b",
            "/core/os/x86_64/a%0ab",
            "/core/os/%2e%2e/x",
            "/core/os/x86_64/.hidden",
            "//etc/passwd",
        ];
        for path in bad {
            assert!(
                matches!(parse_target(path), Err(TargetError::BadName(_))),
                "{path}: {:?}",
                parse_target(path)
            );
        }
        check("/core/os/x86_64/%ff", Err(TargetError::BadEncoding));
        let long = format!("/{}", "a".repeat(300));
        check(&long, Err(TargetError::BadName(NameError::TooLong(300))));
        let huge = format!("/{}", "a/".repeat(5000));
        check(&huge, Err(TargetError::TooLong(huge.len())));
    }

    /// Paths longer than any shape served: every segment decoded and
    /// checked like a served shape's, never a file.
    #[test]
    fn longer_paths_are_checked_segment_by_segment() {
        check("/a/b/c/d/e", Err(TargetError::NotFound));
        check("/_pacmesh/a/b/c/d", Err(TargetError::NotFound));
        check("/%5Fpacmesh/a/b/c/..", Err(TargetError::NotFound));
        check(
            "/a/b/c/d/..",
            Err(TargetError::BadName(NameError::DotSegment)),
        );
        check(
            "/a/%2e%2e/c/d/e",
            Err(TargetError::BadName(NameError::DotSegment)),
        );
        check("/a/../c/d/%ff", Err(TargetError::BadEncoding));
        check("/a/b/c/d/e/", Err(TargetError::BadName(NameError::Empty)));
    }
}
