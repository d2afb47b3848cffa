//! A whole sync database file: a tar archive (compressed with gzip, zstd,
//! xz, or not at all: `repo-add` picks by the name it is given, so the
//! format is told by magic bytes, never by name) holding one directory per
//! package with its `desc`.
//!
//! An archive that cannot be read to its end, or that breaks one of the
//! [`super::bounds`], is an error for the whole database (the caller keeps
//! the previous table). An entry that reads
//! fine but says something unusable is skipped and reported in
//! [`ParsedDb::skipped`].

use std::collections::HashMap;
use std::io::{self, Read};

use super::bounds::{Bound, Budget, Meter};
use super::bounds::{MAX_DB_MEMBERS, MAX_DB_UNPACKED, MAX_LONG_NAME, MAX_PAX_HEADER};
use super::bounds::{XZ_MEMORY_LIMIT, ZSTD_WINDOW_LOG_MAX};
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
    #[error("{db}: refused: {bound}")]
    Refused { db: String, bound: Bound },
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
    /// The first [`SKIPPED_KEPT`] entries skipped.
    pub skipped: Vec<Skipped>,
    /// How many entries were skipped in all.
    pub skipped_total: usize,
}

/// Skipped entries kept (with their reasons) per database; the rest are
/// counted.
pub const SKIPPED_KEPT: usize = 64;

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

/// The bounds [`parse_db_within`] applies that tests may lower; the
/// others are fixed (see [`super::bounds`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Unpacked bytes ([`MAX_DB_UNPACKED`]).
    pub unpacked: u64,
    /// Tar members ([`MAX_DB_MEMBERS`]).
    pub members: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            unpacked: MAX_DB_UNPACKED,
            members: MAX_DB_MEMBERS,
        }
    }
}

/// Parses a database file's bytes; `db` names it in errors (`core.db`).
pub fn parse_db(db: &str, bytes: &[u8]) -> Result<ParsedDb, DbError> {
    parse_db_within(db, bytes, Limits::default())
}

/// [`parse_db`] with other limits.
pub fn parse_db_within(db: &str, bytes: &[u8], limits: Limits) -> Result<ParsedDb, DbError> {
    let meter = Meter::new(limits.unpacked);
    let mut walk = Walk {
        db,
        meter: &meter,
        last: None,
    };
    let reader = decoder(bytes).map_err(|e| walk.fail(e))?;
    let mut archive = tar::Archive::new(Budget::new(reader, &meter));
    let mut parsed = ParsedDb::default();
    let mut members = 0u64;
    // What an extension member said about the member after it.
    let mut long_name: Option<Vec<u8>> = None;
    let mut pax_path: Option<Vec<u8>> = None;
    // Raw entries: long names and PAX headers come to this loop as members
    // of their own, so their sizes are checked before they are read.
    let entries = archive.entries().map_err(|e| walk.fail(e.into()))?;
    for entry in entries.raw(true) {
        let mut entry = entry.map_err(|e| walk.fail(e.into()))?;
        members += 1;
        if members > limits.members {
            return Err(walk.refused(Bound::Members));
        }
        let kind = entry.header().entry_type();
        let size = entry.size();
        if kind.is_gnu_longname() || kind.is_gnu_longlink() {
            if size > MAX_LONG_NAME {
                return Err(walk.refused(Bound::LongName(size)));
            }
            let mut name = read_all(&mut entry, size).map_err(|e| walk.fail(e.into()))?;
            while name.last() == Some(&0) {
                name.pop();
            }
            if kind.is_gnu_longname() {
                long_name = Some(name);
            }
            continue;
        }
        if kind.is_pax_local_extensions() || kind.is_pax_global_extensions() {
            if size > MAX_PAX_HEADER {
                return Err(walk.refused(Bound::PaxHeader(size)));
            }
            let data = read_all(&mut entry, size).map_err(|e| walk.fail(e.into()))?;
            let path = pax_path_of(&data).map_err(|b| walk.refused(b))?;
            if kind.is_pax_local_extensions() {
                pax_path = path;
            }
            continue;
        }
        if kind.is_gnu_sparse() {
            return Err(walk.refused(Bound::Sparse));
        }
        if size > meter.left() {
            // It cannot fit: refused before a byte of it is unpacked.
            return Err(walk.refused(Bound::Unpacked));
        }
        let path = match pax_path.take().or(long_name.take()) {
            Some(path) => path,
            None => entry.path_bytes().into_owned(),
        };
        let name = String::from_utf8_lossy(&path).into_owned();
        if is_desc_path(&name) {
            let desc = read_desc(&mut entry).map_err(|e| walk.fail_in(&name, e))?;
            if let Err(error) = desc.and_then(|text| parsed.add(&text)) {
                parsed.skip(Skipped {
                    entry: name.clone(),
                    error,
                });
            }
        }
        walk.last = Some(name);
    }
    // The compressed stream's own checksum (gzip's CRC, xz's check) is only
    // verified at its very end, which tar does not read to.
    io::copy(&mut archive.into_inner(), &mut io::sink()).map_err(|e| walk.fail(e.into()))?;
    Ok(parsed)
}

/// The decompressor for `bytes`, each with its memory bounded.
fn decoder(bytes: &[u8]) -> Result<Box<dyn Read + '_>, WalkError> {
    Ok(match detect(bytes)? {
        Compression::None => Box::new(bytes),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(bytes)),
        Compression::Zstd => {
            let mut zstd = zstd::stream::read::Decoder::with_buffer(bytes)?;
            zstd.window_log_max(ZSTD_WINDOW_LOG_MAX)?;
            Box::new(zstd)
        }
        Compression::Xz => {
            let stream = liblzma::stream::Stream::new_stream_decoder(
                XZ_MEMORY_LIMIT,
                liblzma::stream::CONCATENATED,
            )
            .map_err(io::Error::from)?;
            Box::new(liblzma::read::XzDecoder::new_stream(bytes, stream))
        }
    })
}

/// A PAX header's `path`, if it has one. A `size` record is refused: it
/// would make the member's data another length than its tar header says,
/// which raw entries do not follow (and no `desc` needs).
fn pax_path_of(data: &[u8]) -> Result<Option<Vec<u8>>, Bound> {
    let mut path = None;
    for record in tar::PaxExtensions::new(data).flatten() {
        match record.key_bytes() {
            b"size" => return Err(Bound::PaxSize),
            b"path" => path = Some(record.value_bytes().to_vec()),
            _ => {}
        }
    }
    Ok(path)
}

/// A member's whole data, whose size was checked already.
fn read_all<R: Read>(entry: &mut tar::Entry<'_, R>, size: u64) -> io::Result<Vec<u8>> {
    let mut data = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    entry.read_to_end(&mut data)?;
    Ok(data)
}

/// Why the walk stopped, before it is named after the database.
enum WalkError {
    Format(FormatError),
    Io(io::Error),
}

impl From<FormatError> for WalkError {
    fn from(e: FormatError) -> Self {
        WalkError::Format(e)
    }
}

impl From<io::Error> for WalkError {
    fn from(e: io::Error) -> Self {
        WalkError::Io(e)
    }
}

/// The walk's place in the archive, for errors.
struct Walk<'a> {
    db: &'a str,
    meter: &'a Meter,
    last: Option<String>,
}

impl Walk<'_> {
    fn place(&self) -> String {
        match &self.last {
            Some(name) => format!("after entry {name}"),
            None => "at the start".to_owned(),
        }
    }

    fn refused(&self, bound: Bound) -> DbError {
        DbError::Refused {
            db: self.db.to_owned(),
            bound,
        }
    }

    /// A read error is a refusal when it came from the unpacked budget.
    fn fail(&self, e: WalkError) -> DbError {
        match e {
            _ if self.meter.tripped() => self.refused(Bound::Unpacked),
            WalkError::Format(source) => DbError::Format {
                db: self.db.to_owned(),
                source,
            },
            WalkError::Io(source) => DbError::Archive {
                db: self.db.to_owned(),
                place: self.place(),
                source,
            },
        }
    }

    fn fail_in(&self, entry: &str, source: io::Error) -> DbError {
        if self.meter.tripped() {
            return self.refused(Bound::Unpacked);
        }
        DbError::Archive {
            db: self.db.to_owned(),
            place: format!("in entry {entry}"),
            source,
        }
    }
}

impl ParsedDb {
    /// Notes an entry left out; past [`SKIPPED_KEPT`] only counts it.
    fn skip(&mut self, skipped: Skipped) {
        if self.skipped.len() < SKIPPED_KEPT {
            self.skipped.push(skipped);
        }
        self.skipped_total += 1;
    }

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
