//! One package's `desc` file: `%KEY%` lines, each followed by its values,
//! one per line, up to an empty line. Only `%FILENAME%`, `%CSIZE%` and
//! `%SHA256SUM%` matter here; every other section is skipped.
//!
//! The three are read more strictly than libalpm reads them (exactly one
//! value, digits only, exactly 64 hex digits, no repeated section): an
//! entry that is ambiguous is skipped, and a skipped entry only means that
//! file is fetched from the mirror instead of a peer.

use pacmesh_proto::{validate_name, NameError};

use super::DbEntry;

/// The parts of a `desc` file that a download is verified against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desc {
    /// `%FILENAME%`, checked to be a safe file name.
    pub filename: String,
    pub entry: DbEntry,
}

/// Why one entry of a database was skipped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EntryError {
    #[error("no %FILENAME%")]
    MissingFilename,
    #[error("%{0}% appears twice")]
    Repeated(&'static str),
    #[error("%{0}% has no value")]
    NoValue(&'static str),
    #[error("%{0}% has more than one value")]
    ManyValues(&'static str),
    #[error("%{0}% is not UTF-8")]
    NotUtf8(&'static str),
    #[error("%CSIZE% {0:?} is not a size in bytes")]
    BadSize(String),
    #[error("%SHA256SUM% {0:?} is not 64 hex digits")]
    BadChecksum(String),
    #[error("%FILENAME% {name:?}: {reason}")]
    BadName { name: String, reason: NameError },
    #[error("desc is {0} bytes, more than any real one")]
    TooLarge(u64),
    #[error("desc is not a regular file")]
    NotAFile,
    #[error("{0:?} is listed by an earlier entry too")]
    DuplicateFile(String),
}

const FILENAME: &str = "FILENAME";
const CSIZE: &str = "CSIZE";
const SHA256SUM: &str = "SHA256SUM";

/// Parses one `desc` file.
pub fn parse_desc(text: &[u8]) -> Result<Desc, EntryError> {
    let mut filename = None;
    let mut size = None;
    let mut sha256 = None;
    let mut lines = text.split(|&b| b == b'\n').peekable();
    while let Some(line) = lines.next() {
        let Some(key) = section_key(line) else {
            // Between sections, and the values of sections we skip.
            continue;
        };
        let (field, slot) = match key {
            b"FILENAME" => (FILENAME, &mut filename),
            b"CSIZE" => (CSIZE, &mut size),
            b"SHA256SUM" => (SHA256SUM, &mut sha256),
            _ => continue,
        };
        if slot.is_some() {
            return Err(EntryError::Repeated(field));
        }
        let value = lines.next().filter(|v| !v.is_empty());
        let value = value.ok_or(EntryError::NoValue(field))?;
        if lines.peek().is_some_and(|next| !next.is_empty()) {
            return Err(EntryError::ManyValues(field));
        }
        let value = std::str::from_utf8(value).map_err(|_| EntryError::NotUtf8(field))?;
        *slot = Some(value);
    }
    let filename = filename.ok_or(EntryError::MissingFilename)?;
    validate_name(filename).map_err(|reason| EntryError::BadName {
        name: filename.to_owned(),
        reason,
    })?;
    Ok(Desc {
        filename: filename.to_owned(),
        entry: DbEntry {
            size: size.map(parse_size).transpose()?,
            sha256: sha256.map(parse_sha256).transpose()?,
        },
    })
}

/// `KEY` of a `%KEY%` line.
fn section_key(line: &[u8]) -> Option<&[u8]> {
    let key = line.strip_prefix(b"%")?.strip_suffix(b"%")?;
    (!key.is_empty()).then_some(key)
}

fn parse_size(value: &str) -> Result<u64, EntryError> {
    // `u64::from_str` would also take a leading `+`.
    if !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(EntryError::BadSize(value.to_owned()));
    }
    value
        .parse()
        .map_err(|_| EntryError::BadSize(value.to_owned()))
}

/// 64 hex digits, either case, to 32 bytes.
pub fn parse_sha256(value: &str) -> Result<[u8; 32], EntryError> {
    let bad = || EntryError::BadChecksum(value.to_owned());
    let digits = value.as_bytes();
    if digits.len() != 64 {
        return Err(bad());
    }
    let mut sum = [0u8; 32];
    for (byte, pair) in sum.iter_mut().zip(digits.chunks_exact(2)) {
        let hi = hex_digit(pair[0]).ok_or_else(bad)?;
        let lo = hex_digit(pair[1]).ok_or_else(bad)?;
        *byte = hi << 4 | lo;
    }
    Ok(sum)
}

fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}
