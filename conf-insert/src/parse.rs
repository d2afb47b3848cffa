//! Reads pacman.conf into the model the way pacman does: includes expanded
//! in place (globs as `glob(3)` would), first-wins paths, repeating lists,
//! and pacman's errors. Lines are classified by `lex`, never here.

use std::fs;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use crate::error::{ConfError, MAX_FILE_BYTES, MAX_GLOB_MATCHES, MAX_INCLUDES, MAX_INCLUDE_DEPTH};
use crate::lex::{self, Action, Kind, Scope};
use crate::model::{Options, PacmanConf, Repo, Server, Source, DEFAULT_CACHE_DIR, DEFAULT_DB_PATH};

impl PacmanConf {
    /// Reads and parses the pacman.conf at `path` and every file it includes.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ConfError> {
        let path = path.as_ref();
        let bytes = read_bounded(path).map_err(|e| match e {
            IncludeError::Io(cause) => ConfError::Read {
                file: path.to_owned(),
                cause,
            },
            IncludeError::TooLarge => ConfError::TooLarge {
                at: String::new(),
                file: path.to_owned(),
            },
            IncludeError::Conf(e) => e,
        })?;
        Self::parse(&decode_text(bytes, path)?, path)
    }

    /// Parses `text` as if read from `path`. Included files are read from
    /// the file system; relative include paths are relative to the current
    /// directory, as in pacman.
    pub fn parse(text: &str, path: impl AsRef<Path>) -> Result<Self, ConfError> {
        let path = path.as_ref();
        let mut builder = Builder::default();
        builder.files.push(path.to_owned());
        builder.walk(text, path, 0)?;
        Ok(builder.finish(path))
    }
}

/// Decodes the contents of `file` as pacman.conf text, naming the line of
/// the first byte that is not UTF-8.
pub fn decode_text(bytes: Vec<u8>, file: &Path) -> Result<String, ConfError> {
    String::from_utf8(bytes).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        ConfError::NotUtf8 {
            file: file.to_owned(),
            line: valid.iter().filter(|&&b| b == b'\n').count() + 1,
        }
    })
}

/// The state pacman carries while reading: the current section survives the
/// end of an included file, so a header inside an include switches the
/// section for the rest of the including file too.
#[derive(Default)]
struct Builder {
    scope: Scope,
    repos: Vec<Repo>,
    files: Vec<PathBuf>,
    cache_dirs: Vec<PathBuf>,
    db_path: Option<PathBuf>,
    root_dir: Option<PathBuf>,
    architectures: Vec<String>,
    /// Include files read so far (bounded by [`MAX_INCLUDES`]).
    includes_read: usize,
}

impl Builder {
    fn walk(&mut self, text: &str, file: &Path, depth: usize) -> Result<(), ConfError> {
        for line in lex::lex(text, file) {
            let line = line?;
            match line.kind {
                Kind::Blank | Kind::Comment => {}
                Kind::Section(name) => {
                    self.scope = Scope::of_section(name);
                    if self.scope == Scope::Repo {
                        self.repos.push(Repo {
                            name: name.to_owned(),
                            servers: Vec::new(),
                        });
                    }
                }
                Kind::Directive { key, value } => {
                    match lex::action(self.scope, key, value, file, line.number)? {
                        Action::Include(pattern) => {
                            self.include(pattern, file, line.number, depth)?;
                        }
                        Action::Server(url) => self.server(url, file, line.number),
                        Action::Option { key, value } => self.option(key, value),
                        Action::RepoOther => {}
                    }
                }
            }
        }
        Ok(())
    }

    fn include(
        &mut self,
        pattern: &str,
        file: &Path,
        line: usize,
        depth: usize,
    ) -> Result<(), ConfError> {
        let paths = expand_glob(pattern).ok_or_else(|| ConfError::GlobTooWide {
            file: file.to_owned(),
            line,
            pattern: pattern.to_owned(),
        })?;
        for path in paths {
            if depth + 1 >= MAX_INCLUDE_DEPTH {
                return Err(ConfError::IncludeTooDeep {
                    file: file.to_owned(),
                    line,
                    include: path,
                });
            }
            self.includes_read += 1;
            if self.includes_read > MAX_INCLUDES {
                return Err(ConfError::TooManyIncludes {
                    file: file.to_owned(),
                    line,
                    include: path,
                });
            }
            let text = read_include(&path).map_err(|e| match e {
                IncludeError::Io(cause) => ConfError::UnreadableInclude {
                    file: file.to_owned(),
                    line,
                    include: path.clone(),
                    cause,
                },
                IncludeError::TooLarge => ConfError::TooLarge {
                    at: format!("{}:{line}: include ", file.display()),
                    file: path.clone(),
                },
                IncludeError::Conf(e) => e,
            })?;
            if !self.files.contains(&path) {
                self.files.push(path.clone());
            }
            self.walk(&text, &path, depth + 1)?;
        }
        Ok(())
    }

    fn server(&mut self, url: &str, file: &Path, line: usize) {
        // `Server =` with nothing after it is accepted by pacman-conf but
        // names no server; keeping it would give the daemon an empty URL
        // to redirect to.
        if url.is_empty() {
            return;
        }
        if let Some(repo) = self.repos.last_mut() {
            repo.servers.push(Server {
                url: url.to_owned(),
                source: Source {
                    file: file.to_owned(),
                    line,
                },
            });
        }
    }

    fn option(&mut self, key: &str, value: Option<&str>) {
        let Some(value) = value.filter(|v| !v.is_empty()) else {
            // A bare `CacheDir` is only a warning in pacman: ignored.
            return;
        };
        match key {
            "CacheDir" => self
                .cache_dirs
                .extend(value.split_ascii_whitespace().map(PathBuf::from)),
            "DBPath" => {
                self.db_path.get_or_insert_with(|| PathBuf::from(value));
            }
            "RootDir" => {
                self.root_dir.get_or_insert_with(|| PathBuf::from(value));
            }
            "Architecture" => {
                for arch in value.split_ascii_whitespace() {
                    let arch = if arch == "auto" {
                        std::env::consts::ARCH
                    } else {
                        arch
                    };
                    if !self.architectures.iter().any(|a| a == arch) {
                        self.architectures.push(arch.to_owned());
                    }
                }
            }
            _ => {}
        }
    }

    fn finish(self, path: &Path) -> PacmanConf {
        let db_path = self.db_path.unwrap_or_else(|| match &self.root_dir {
            // As pacman: without DBPath, the database lives under RootDir.
            Some(root) => root.join(DEFAULT_DB_PATH.trim_start_matches('/')),
            None => PathBuf::from(DEFAULT_DB_PATH),
        });
        let cache_dirs = if self.cache_dirs.is_empty() {
            vec![PathBuf::from(DEFAULT_CACHE_DIR)]
        } else {
            self.cache_dirs
        };
        // pacman itself has no default and refuses `$arch` without an
        // Architecture line; the daemon is better served by a guess than by
        // a refusal, and `auto` is what every stock pacman.conf says.
        let architectures = if self.architectures.is_empty() {
            vec![std::env::consts::ARCH.to_owned()]
        } else {
            self.architectures
        };
        PacmanConf {
            path: path.to_owned(),
            options: Options {
                cache_dirs,
                db_path,
                architectures,
                root_dir: self.root_dir,
            },
            repos: self.repos,
            files: self.files,
        }
    }
}

/// The files an `Include` pattern names, sorted, as `glob(3)` with
/// `GLOB_NOCHECK` gives them to pacman: a pattern that matches nothing (or
/// does not parse as a glob) stands for itself, so reading it then fails
/// just as pacman's `fopen` does. `None` past [`MAX_GLOB_MATCHES`].
fn expand_glob(pattern: &str) -> Option<Vec<PathBuf>> {
    let options = glob::MatchOptions {
        case_sensitive: true,
        // POSIX glob: `*` matches neither `/` nor a leading dot.
        require_literal_separator: true,
        require_literal_leading_dot: true,
    };
    // glob(3) has no `**`: two stars are one. The glob crate's `**` walks
    // every directory below, the whole file system for `/**`.
    let mut posix = String::with_capacity(pattern.len());
    for c in pattern.chars() {
        if !(c == '*' && posix.ends_with('*')) {
            posix.push(c);
        }
    }
    let matches: Vec<PathBuf> = match glob::glob_with(&posix, options) {
        // Entries that cannot be read while globbing are skipped, as glob(3)
        // without GLOB_ERR skips them.
        Ok(paths) => paths
            .filter_map(Result::ok)
            .take(MAX_GLOB_MATCHES + 1)
            .collect(),
        Err(_) => Vec::new(),
    };
    if matches.len() > MAX_GLOB_MATCHES {
        None
    } else if matches.is_empty() {
        Some(vec![PathBuf::from(pattern)])
    } else {
        Some(matches)
    }
}

enum IncludeError {
    Io(std::io::Error),
    TooLarge,
    Conf(ConfError),
}

fn read_include(path: &Path) -> Result<String, IncludeError> {
    // pacman can fopen a directory, then reads nothing from it.
    if path.is_dir() {
        return Ok(String::new());
    }
    let bytes = read_bounded(path)?;
    decode_text(bytes, path).map_err(IncludeError::Conf)
}

/// The bytes of `path`, at most [`MAX_FILE_BYTES`] of them. Opened without
/// blocking and without becoming a controlling terminal: an `Include` glob
/// matching `/dev/console` (found by fuzzing) or a FIFO would otherwise
/// block for ever; now a terminal with nothing to read is an error
/// (`EAGAIN`) and a FIFO without a writer reads as empty.
fn read_bounded(path: &Path) -> Result<Vec<u8>, IncludeError> {
    use rustix::fs::OFlags;
    use std::os::unix::fs::OpenOptionsExt as _;
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags((OFlags::NONBLOCK | OFlags::NOCTTY).bits() as i32)
        .open(path)
        .map_err(IncludeError::Io)?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(IncludeError::Io)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(IncludeError::TooLarge);
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests;
