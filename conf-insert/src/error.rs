//! The one error type of this crate: everything that makes a pacman.conf
//! unusable, each variant naming the file and (where one applies) the line.

use std::io;
use std::path::PathBuf;

/// How deep `Include`s may nest, counting the main file as depth 0.
/// pacman stops at the same depth, so a file that loops on itself fails
/// here exactly as it fails there.
pub const MAX_INCLUDE_DEPTH: usize = 10;

/// Include files read in all while parsing one pacman.conf (a file
/// included twice counts twice). Arch's stock file reads its mirrorlist
/// about ten times; without a bound, a file including itself twice, or
/// a glob of many files each including it again, would be read
/// 2^[`MAX_INCLUDE_DEPTH`] times or more.
pub const MAX_INCLUDES: usize = 256;

/// Files one `Include` glob may match.
pub const MAX_GLOB_MATCHES: usize = 128;

/// Bytes of one pacman.conf or include file (an `Include = /dev/zero`
/// must not fill memory).
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// Why a pacman.conf (or an include file) could not be used.
///
/// Messages start with `FILE:LINE:` like a compiler's, so an editor can jump
/// to them. I/O causes are part of the message (and kept in the variant for
/// callers that want the [`io::ErrorKind`]); they are deliberately not
/// exposed as `source()` so that an error chain does not print them twice.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfError {
    /// The main file could not be read at all.
    #[error("{}: cannot read: {}", file.display(), os_message(cause))]
    Read { file: PathBuf, cause: io::Error },

    /// A byte sequence that is not UTF-8; pacman.conf is text.
    #[error("{}:{line}: not valid UTF-8", file.display())]
    NotUtf8 { file: PathBuf, line: usize },

    /// A line that starts like a section header but is not one, such as
    /// `[core] # comment` or `[core`. pacman would read it as an unknown
    /// directive of the *previous* section and silently file the following
    /// servers under the wrong repository, so it is refused here.
    #[error("{}:{line}: malformed section header `{text}`", file.display())]
    BadSectionHeader {
        file: PathBuf,
        line: usize,
        text: String,
    },

    /// A directive before the first section header (pacman refuses these).
    #[error("{}:{line}: directive `{key}` outside any section", file.display())]
    OutsideSection {
        file: PathBuf,
        line: usize,
        key: String,
    },

    /// A bare key where pacman requires `Key = Value` (`Include`, and in a
    /// repository `Server`, `SigLevel`, `Usage`, `CacheServer`).
    #[error("{}:{line}: directive `{key}` needs a value", file.display())]
    MissingValue {
        file: PathBuf,
        line: usize,
        key: String,
    },

    /// An `Include` whose file cannot be read (pacman refuses these too,
    /// including a glob that matches nothing).
    #[error(
        "{}:{line}: unreadable include {}: {}",
        file.display(),
        include.display(),
        os_message(cause)
    )]
    UnreadableInclude {
        file: PathBuf,
        line: usize,
        include: PathBuf,
        cause: io::Error,
    },

    /// `Include`s nested more than [`MAX_INCLUDE_DEPTH`] deep, usually a
    /// file that includes itself.
    #[error(
        "{}:{line}: includes nested more than {MAX_INCLUDE_DEPTH} deep at {}",
        file.display(),
        include.display()
    )]
    IncludeTooDeep {
        file: PathBuf,
        line: usize,
        include: PathBuf,
    },

    /// More than [`MAX_INCLUDES`] include files read in all.
    #[error(
        "{}:{line}: more than {MAX_INCLUDES} include files read in all, at {}",
        file.display(),
        include.display()
    )]
    TooManyIncludes {
        file: PathBuf,
        line: usize,
        include: PathBuf,
    },

    /// An `Include` glob matching more than [`MAX_GLOB_MATCHES`] files.
    #[error(
        "{}:{line}: include {pattern} matches more than {MAX_GLOB_MATCHES} files",
        file.display()
    )]
    GlobTooWide {
        file: PathBuf,
        line: usize,
        pattern: String,
    },

    /// A pacman.conf or include file larger than [`MAX_FILE_BYTES`]; `at`
    /// is the `Include` line that named it (`FILE:LINE: `), if any.
    #[error("{at}{}: larger than {MAX_FILE_BYTES} bytes", file.display())]
    TooLarge { at: String, file: PathBuf },

    /// An include path that cannot be written as one `Include = …` line.
    #[error("bad include path {path:?}: {reason}")]
    BadIncludePath { path: String, reason: &'static str },
}

/// The OS's description of an I/O error without Rust's ` (os error N)`
/// suffix, so messages read like pacman's own.
fn os_message(error: &io::Error) -> String {
    let text = error.to_string();
    match text.rfind(" (os error ") {
        Some(at) if text.ends_with(')') => text[..at].to_owned(),
        _ => text,
    }
}
