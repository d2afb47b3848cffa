//! What kind of file a request names, and whether the name is safe to use.
//!
//! Every path segment a client or peer supplies passes `validate_name`
//! before it is joined to a directory, so nothing outside the cache dirs can
//! ever be named.

use std::fmt;

/// The longest file name accepted, as the Linux `NAME_MAX`.
pub const MAX_NAME_LEN: usize = 255;

/// How the request flow treats a file (docs/DESIGN.md, "Classifying a request").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileKind {
    /// `*.pkg.tar` with an optional compression suffix.
    Package,
    /// A package's detached signature, `*.pkg.tar*.sig`.
    PackageSig,
    /// A sync database, `{repo}.db`, `{repo}.files` or their `.tar.*` forms.
    Database,
    /// A sync database's signature.
    DatabaseSig,
    /// Anything else: never served from a cache, only redirected.
    Other,
}

impl FileKind {
    /// Packages and their signatures are the files caches hold and share.
    pub fn is_cacheable(self) -> bool {
        matches!(self, FileKind::Package | FileKind::PackageSig)
    }
}

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NameError {
    Empty,
    TooLong(usize),
    DotSegment,
    Hidden,
    Slash,
    Backslash,
    Nul,
    Control,
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameError::Empty => write!(f, "empty file name"),
            NameError::TooLong(n) => {
                write!(f, "file name of {n} bytes is longer than {MAX_NAME_LEN}")
            }
            NameError::DotSegment => write!(f, "`.` and `..` are not file names"),
            NameError::Hidden => write!(f, "file names starting with `.` are not served"),
            NameError::Slash => write!(f, "file name contains `/`"),
            NameError::Backslash => write!(f, "file name contains `\\`"),
            NameError::Nul => write!(f, "file name contains NUL"),
            NameError::Control => write!(f, "file name contains a control character"),
        }
    }
}

impl std::error::Error for NameError {}

/// Checks a single, already percent-decoded path segment.
pub fn validate_name(name: &str) -> Result<&str, NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong(name.len()));
    }
    if name == "." || name == ".." {
        return Err(NameError::DotSegment);
    }
    if name.starts_with('.') {
        return Err(NameError::Hidden);
    }
    // By bytes, not chars: every byte a name may not hold is ASCII but the
    // C1 controls (U+0080 to U+009F, `char::is_control`'s upper half),
    // which UTF-8 writes as 0xC2 then 0x80 to 0x9F. Decoding chars cost a
    // twentieth of a cache hit.
    let bytes = name.as_bytes();
    // The usual name is printable ASCII without a slash or backslash: one
    // pass without early exits, which the compiler vectorises.
    let plain = bytes.iter().fold(true, |plain, &b| {
        plain & (b' '..=b'~').contains(&b) & (b != b'/') & (b != b'\\')
    });
    if plain {
        return Ok(name);
    }
    for (at, &b) in bytes.iter().enumerate() {
        match b {
            b'/' => return Err(NameError::Slash),
            b'\\' => return Err(NameError::Backslash),
            0 => return Err(NameError::Nul),
            0x01..=0x1f | 0x7f => return Err(NameError::Control),
            0xc2 if bytes.get(at + 1).is_some_and(|n| (0x80..=0x9f).contains(n)) => {
                return Err(NameError::Control)
            }
            _ => {}
        }
    }
    Ok(name)
}

/// Compression suffixes makepkg can give a package or repo-add a database.
const COMPRESSIONS: &[&str] = &["gz", "bz2", "xz", "zst", "lrz", "lzo", "Z", "lz4", "lz"];

/// True when `rest` is empty or a single known compression suffix such as
/// `.zst`.
fn is_compression_suffix(rest: &str) -> bool {
    rest.is_empty()
        || rest
            .strip_prefix('.')
            .is_some_and(|ext| COMPRESSIONS.contains(&ext))
}

/// Classifies a file name. Partial downloads (`.part`) and anything unknown
/// are `Other`, so they are never served from a cache.
pub fn classify(name: &str) -> FileKind {
    let (base, signed) = match name.strip_suffix(".sig") {
        Some(base) => (base, true),
        None => (name, false),
    };
    if let Some(pos) = rfind(base, ".pkg.tar") {
        if pos > 0 && is_compression_suffix(&base[pos + ".pkg.tar".len()..]) {
            return if signed {
                FileKind::PackageSig
            } else {
                FileKind::Package
            };
        }
    }
    if is_database(base) {
        return if signed {
            FileKind::DatabaseSig
        } else {
            FileKind::Database
        };
    }
    FileKind::Other
}

/// Where the last `needle` in `haystack` starts. `str::rfind` builds a
/// two-way searcher per call, which for a name's few dozen bytes cost more
/// than comparing at each place.
fn rfind(haystack: &str, needle: &str) -> Option<usize> {
    let needle = needle.as_bytes();
    haystack
        .as_bytes()
        .windows(needle.len())
        .rposition(|here| here == needle)
}

fn is_database(base: &str) -> bool {
    for suffix in [".db", ".files"] {
        if let Some(pos) = rfind(base, suffix) {
            let rest = &base[pos + suffix.len()..];
            let tail_ok =
                rest.is_empty() || rest.strip_prefix(".tar").is_some_and(is_compression_suffix);
            if pos > 0 && tail_ok {
                return true;
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_kind(name: &str, want: FileKind) {
        assert_eq!(classify(name), want, "classify({name:?})");
    }

    #[test]
    fn classification_table() {
        use FileKind::*;
        let table = [
            ("linux-6.6.1.arch1-1-x86_64.pkg.tar.zst", Package),
            ("linux-6.6.1.arch1-1-x86_64.pkg.tar.zst.sig", PackageSig),
            ("foo-1:2.0-1-any.pkg.tar.xz", Package),
            ("foo-1.0-1-any.pkg.tar.gz", Package),
            ("foo-1.0-1-any.pkg.tar", Package),
            ("foo-1.0-1-any.pkg.tar.sig", PackageSig),
            ("foo-1.0-1-any.pkg.tar.zst.part", Other),
            ("foo-1.0-1-any.pkg.tar.rar", Other),
            (".pkg.tar.zst", Other),
            ("core.db", Database),
            ("core.db.sig", DatabaseSig),
            ("core.files", Database),
            ("core.files.sig", DatabaseSig),
            ("core.db.tar.gz", Database),
            ("core.files.tar.zst", Database),
            ("core.db.tar.gz.old", Other),
            ("core.db.part", Other),
            ("index.html", Other),
            ("core.db.tar.rar", Other),
            ("x86_64", Other),
        ];
        for (name, want) in table {
            check_kind(name, want);
        }
    }

    fn check_name(name: &str, want: Result<(), NameError>) {
        assert_eq!(
            validate_name(name).map(|_| ()),
            want,
            "validate_name({name:?})"
        );
    }

    #[test]
    fn name_safety_table() {
        use NameError::*;
        let long = "a".repeat(MAX_NAME_LEN + 1);
        let max = "a".repeat(MAX_NAME_LEN);
        let table: Vec<(&str, Result<(), NameError>)> = vec![
            ("foo-1.0-1-any.pkg.tar.zst", Ok(())),
            ("gtk+-3.0-1-x86_64.pkg.tar.zst", Ok(())),
            ("foo-1:2.0-1-any.pkg.tar.zst", Ok(())),
            ("", Err(Empty)),
            (".", Err(DotSegment)),
            ("..", Err(DotSegment)),
            (".hidden", Err(Hidden)),
            ("a/b", Err(Slash)),
            ("a\\b", Err(Backslash)),
            ("a\0b", Err(Nul)),
            ("a\nb", Err(Control)),
            ("a\u{7f}b", Err(Control)),
            ("a\u{80}b", Err(Control)),
            ("a\u{9f}", Err(Control)),
            ("a\u{a0}b", Ok(())),
            ("caf\u{e9}-1.0-1-any.pkg.tar.zst", Ok(())),
            ("\u{1f600}\u{100}\u{2028}", Ok(())),
            (&long, Err(TooLong(MAX_NAME_LEN + 1))),
            (&max, Ok(())),
        ];
        for (name, want) in table {
            check_name(name, want);
        }
    }

    /// The byte rule refuses exactly the chars `char::is_control` names,
    /// at every code point of the first three UTF-8 lengths and beyond.
    #[test]
    fn control_bytes_are_the_control_chars() {
        let chars = (1..0x1_0000u32).chain([0x1_0000, 0x1_f600, 0x10_ffff]);
        for c in chars.filter_map(char::from_u32) {
            if matches!(c, '/' | '\\') {
                continue;
            }
            let name = format!("a{c}b");
            let refused = validate_name(&name) == Err(NameError::Control);
            assert_eq!(refused, c.is_control(), "U+{:04X}", c as u32);
        }
    }

    #[test]
    fn only_packages_and_their_signatures_are_cacheable() {
        assert!(FileKind::Package.is_cacheable());
        assert!(FileKind::PackageSig.is_cacheable());
        assert!(!FileKind::Database.is_cacheable());
        assert!(!FileKind::DatabaseSig.is_cacheable());
        assert!(!FileKind::Other.is_cacheable());
    }
}
