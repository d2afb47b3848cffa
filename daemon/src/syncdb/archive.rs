//! A whole sync database file: a tar archive (compressed with gzip, zstd,
//! xz, or not at all: `repo-add` picks by the name it is given, so the
//! format is told by magic bytes, never by name) holding one directory per
//! package with its `desc`.
//!
//! An archive that cannot be read to its end is an error for the whole
//! database (the caller keeps the previous table). An entry that reads
//! fine but says something unusable is skipped and reported in
//! [`ParsedDb::skipped`].

use std::collections::HashMap;
use std::io::{self, Read};

use super::desc::{parse_desc, EntryError};
use super::DbEntry;

/// No real `desc` comes near this; anything larger is skipped unread.
pub const MAX_DESC_SIZE: u64 = 1 << 20;

/// How the tar archive is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
    Xz,
}

/// Why a file is not a sync database this module can read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    #[error("the file is empty")]
    Empty,
    #[error("{0} compression is not supported (use gzip, zstd, xz or none)")]
    Unsupported(&'static str),
    #[error("not a tar archive nor a known compression (starts with {0})")]
    Unknown(String),
}

/// Why a whole database was not read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DbError {
    #[error("{db}: {source}")]
    Format { db: String, source: FormatError },
    #[error("{db}: corrupt archive {place}: {source}")]
    Archive {
        db: String,
        /// Which entry, or after which one, the archive broke.
        place: String,
        source: io::Error,
    },
    #[error("{db}: cannot read: {source}")]
    Read { db: String, source: io::Error },
}

/// One entry left out of a database, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("entry {entry}: {error}")]
pub struct Skipped {
    /// The archive path, e.g. `foo-1.0-1/desc`.
    pub entry: String,
    pub error: EntryError,
}

/// Everything a database lists, by `%FILENAME%`.
#[derive(Debug, Default)]
pub struct ParsedDb {
    pub entries: HashMap<Box<str>, DbEntry>,
    pub skipped: Vec<Skipped>,
}

/// Tells the compression from the first bytes.
pub fn detect(bytes: &[u8]) -> Result<Compression, FormatError> {
    const TAR_MAGIC_AT: usize = 257;
    let unsupported = [
        (&b"BZh"[..], "bzip2"),
        (&[0x04, 0x22, 0x4d, 0x18][..], "lz4"),
        (&b"LZIP"[..], "lzip"),
        (&[0x1f, 0x9d][..], "compress (.Z)"),
        (&[0x89, b'L', b'Z', b'O'][..], "lzop"),
        (&b"LRZI"[..], "lrzip"),
    ];
    if bytes.is_empty() {
        return Err(FormatError::Empty);
    }
    if bytes.starts_with(&[0x1f, 0x8b]) {
        return Ok(Compression::Gzip);
    }
    if bytes.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        return Ok(Compression::Zstd);
    }
    if bytes.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        return Ok(Compression::Xz);
    }
    if let Some((_, name)) = unsupported.iter().find(|(m, _)| bytes.starts_with(m)) {
        return Err(FormatError::Unsupported(name));
    }
    let ustar = bytes.get(TAR_MAGIC_AT..TAR_MAGIC_AT + 5) == Some(b"ustar");
    // A database of no packages is an empty archive: zero blocks only.
    let empty_tar = bytes.len() >= 512 && bytes[..512].iter().all(|&b| b == 0);
    if ustar || empty_tar {
        return Ok(Compression::None);
    }
    let head: Vec<String> = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
    Err(FormatError::Unknown(head.join(" ")))
}

/// Parses a database file's bytes; `db` names it in errors (`core.db`).
pub fn parse_db(db: &str, bytes: &[u8]) -> Result<ParsedDb, DbError> {
    let format_error = |source| DbError::Format {
        db: db.to_owned(),
        source,
    };
    let archive_error = |place: String, source| DbError::Archive {
        db: db.to_owned(),
        place,
        source,
    };
    let reader: Box<dyn Read + '_> = match detect(bytes).map_err(format_error)? {
        Compression::None => Box::new(bytes),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(bytes)),
        Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::with_buffer(bytes)
                .map_err(|e| archive_error("at the start".into(), e))?,
        ),
        Compression::Xz => Box::new(liblzma::read::XzDecoder::new_multi_decoder(bytes)),
    };
    let mut archive = tar::Archive::new(reader);
    let mut parsed = ParsedDb::default();
    let mut last: Option<String> = None;
    let place_after = |last: &Option<String>| match last {
        Some(name) => format!("after entry {name}"),
        None => "at the start".to_owned(),
    };
    let entries = archive
        .entries()
        .map_err(|e| archive_error(place_after(&last), e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| archive_error(place_after(&last), e))?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        if is_desc_path(&name) {
            let desc =
                read_desc(&mut entry).map_err(|e| archive_error(format!("in entry {name}"), e))?;
            let outcome = desc.and_then(|text| parsed.add(&text));
            if let Err(error) = outcome {
                parsed.skipped.push(Skipped {
                    entry: name.clone(),
                    error,
                });
            }
        }
        last = Some(name);
    }
    // The compressed stream's own checksum (gzip's CRC, xz's check) is only
    // verified at its very end, which tar does not read to.
    io::copy(&mut archive.into_inner(), &mut io::sink())
        .map_err(|e| archive_error(place_after(&last), e))?;
    Ok(parsed)
}

impl ParsedDb {
    /// Adds one `desc`; a file name listed twice keeps the first entry.
    fn add(&mut self, text: &[u8]) -> Result<(), EntryError> {
        let desc = parse_desc(text)?;
        if self.entries.contains_key(desc.filename.as_str()) {
            return Err(EntryError::DuplicateFile(desc.filename));
        }
        self.entries.insert(desc.filename.into(), desc.entry);
        Ok(())
    }
}

/// The outer error is the archive breaking; the inner one, this entry
/// being unusable.
fn read_desc<R: Read>(entry: &mut tar::Entry<'_, R>) -> io::Result<Result<Vec<u8>, EntryError>> {
    if !entry.header().entry_type().is_file() {
        return Ok(Err(EntryError::NotAFile));
    }
    let size = entry.size();
    if size > MAX_DESC_SIZE {
        return Ok(Err(EntryError::TooLarge(size)));
    }
    let mut text = Vec::with_capacity(size as usize);
    entry.read_to_end(&mut text)?;
    Ok(Ok(text))
}

/// `pkgname-pkgver-pkgrel/desc` (bsdtar may prefix `./`).
fn is_desc_path(path: &str) -> bool {
    let path = path.strip_prefix("./").unwrap_or(path);
    matches!(path.split_once('/'), Some((dir, "desc")) if !dir.is_empty() && !dir.contains('/'))
}
