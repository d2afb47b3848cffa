//! The pacman.conf-insert filter as pure text functions: put
//! `Include = PATH` first in every repository section, or take it out
//! again, changing no other byte.

use std::path::Path;

use crate::error::ConfError;
use crate::lex::{self, Action, Kind, Line, Scope};

/// Returns `text` with `Include = {include_path}` as the first directive of
/// every repository section (`[options]` and commented-out sections are
/// left alone). The new line goes right after the header and ends like the
/// header's line. A section whose first `Server`/`Include` is already this
/// Include is left as it is, so applying this to its own output changes
/// nothing.
///
/// `file` only names the text in errors. Fails where pacman would refuse
/// the file, and on a malformed section header.
pub fn insert_include(text: &str, file: &Path, include_path: &str) -> Result<String, ConfError> {
    check_include_path(include_path)?;
    let entries = entries(text, file)?;
    let directive = format!("Include = {include_path}");
    // For a header on a last line without an ending; a file with no line
    // ending at all gets Unix ones.
    let file_eol = entries
        .iter()
        .map(|e| e.line.eol)
        .find(|eol| !eol.is_empty())
        .unwrap_or("\n");

    let mut out = String::with_capacity(text.len() + 32 * entries.len().min(16));
    for (index, entry) in entries.iter().enumerate() {
        out.push_str(entry.line.text);
        out.push_str(entry.line.eol);
        let is_repo_header =
            matches!(entry.line.kind, Kind::Section(_)) && entry.scope == Scope::Repo;
        if !is_repo_header || already_first(&entries[index + 1..], include_path) {
            continue;
        }
        if entry.line.eol.is_empty() {
            // The header is the last line and the file has no final newline:
            // so the output has none either. A header ending in a stray `\r`
            // gets `\r\n`, or the `\r` would merge into the new line ending
            // and `remove_include` could not restore it.
            let eol = if entry.line.text.ends_with('\r') {
                "\r\n"
            } else {
                file_eol
            };
            out.push_str(eol);
            out.push_str(&directive);
        } else {
            out.push_str(&directive);
            out.push_str(entry.line.eol);
        }
    }
    Ok(out)
}

/// The inverse of [`insert_include`]: removes every `Include =
/// {include_path}` line from repository sections. For a text that held no
/// such line, `remove_include(insert_include(x)) == x`.
pub fn remove_include(text: &str, file: &Path, include_path: &str) -> Result<String, ConfError> {
    check_include_path(include_path)?;
    let mut out = String::with_capacity(text.len());
    let mut last_eol = "";
    for entry in entries(text, file)? {
        let ours =
            entry.scope == Scope::Repo && entry.action == Some(Action::Include(include_path));
        if !ours {
            out.push_str(entry.line.text);
            out.push_str(entry.line.eol);
            last_eol = entry.line.eol;
        } else if entry.line.eol.is_empty() {
            // A last line without an ending was put there after the
            // previous line's ending, which insert added with it.
            out.truncate(out.len() - last_eol.len());
            last_eol = "";
        }
    }
    Ok(out)
}

/// Whether the section starting after `rest`'s header already reaches
/// `include_path` before any other server source.
fn already_first(rest: &[Entry<'_>], include_path: &str) -> bool {
    for entry in rest {
        if matches!(entry.line.kind, Kind::Section(_)) {
            return false;
        }
        match entry.action {
            Some(Action::Include(path)) => return path == include_path,
            Some(Action::Server(_)) => return false,
            _ => {}
        }
    }
    false
}

/// A path that fits on one `Include = …` line and reads back unchanged.
fn check_include_path(path: &str) -> Result<(), ConfError> {
    let reason = if path.is_empty() {
        "it is empty"
    } else if path.contains(['\n', '\r']) {
        "it contains a line break"
    } else if lex::trim(path) != path {
        "it starts or ends with white space, which pacman would drop"
    } else {
        return Ok(());
    };
    Err(ConfError::BadIncludePath {
        path: path.to_owned(),
        reason,
    })
}

/// A lexed line with the section it is in and, for a directive, what it
/// means there.
struct Entry<'a> {
    line: Line<'a>,
    scope: Scope,
    action: Option<Action<'a>>,
}

/// Lexes the whole text first, so that an error anywhere means no output.
fn entries<'a>(text: &'a str, file: &'a Path) -> Result<Vec<Entry<'a>>, ConfError> {
    let mut scope = Scope::None;
    lex::lex(text, file)
        .map(|line| {
            let line = line?;
            let action = match line.kind {
                Kind::Section(name) => {
                    scope = Scope::of_section(name);
                    None
                }
                Kind::Directive { key, value } => {
                    Some(lex::action(scope, key, value, file, line.number)?)
                }
                Kind::Blank | Kind::Comment => None,
            };
            Ok(Entry {
                line,
                scope,
                action,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests;
