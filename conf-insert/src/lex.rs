//! The one pacman.conf lexer: splits text into lines (keeping each line's
//! ending so callers can rebuild the text byte for byte), classifies every
//! line as pacman's `ini.c` does, and says what a directive means in the
//! section it appears in. The model (`parse`) and the text filter
//! (`insert`) both read pacman.conf only through this module.

use std::path::Path;

use crate::error::ConfError;

/// One line of a file, as pacman sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Line<'a> {
    /// 1-based, as in pacman's messages.
    pub number: usize,
    /// The line without its ending.
    pub text: &'a str,
    /// `"\n"`, `"\r\n"`, or `""` for a last line without one.
    pub eol: &'a str,
    pub kind: Kind<'a>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind<'a> {
    Blank,
    /// pacman only knows whole-line comments: a `#` after other text is part
    /// of that text (`Server = http://x/#y` keeps its `#y`).
    Comment,
    /// `[name]`; the name is everything between the outer brackets.
    Section(&'a str),
    /// `Key = Value` or a bare `Key` (value `None`).
    Directive {
        key: &'a str,
        value: Option<&'a str>,
    },
}

/// Lexes `text`, read from `file` (used only in error messages).
pub(crate) fn lex<'a>(
    text: &'a str,
    file: &'a Path,
) -> impl Iterator<Item = Result<Line<'a>, ConfError>> + 'a {
    split_lines(text)
        .enumerate()
        .map(move |(index, (line, eol))| {
            let number = index + 1;
            let kind = classify(line).ok_or_else(|| ConfError::BadSectionHeader {
                file: file.to_owned(),
                line: number,
                text: trim(line).to_owned(),
            })?;
            Ok(Line {
                number,
                text: line,
                eol,
                kind,
            })
        })
}

/// Splits at `\n` only, as `fgets` does; a `\r` before it belongs to the
/// line ending. Concatenating every `(text, eol)` gives back `text`.
fn split_lines(text: &str) -> impl Iterator<Item = (&str, &str)> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let (line, eol, tail) = match rest.find('\n') {
            Some(at) if rest[..at].ends_with('\r') => (&rest[..at - 1], "\r\n", &rest[at + 1..]),
            Some(at) => (&rest[..at], "\n", &rest[at + 1..]),
            None => (rest, "", ""),
        };
        rest = tail;
        Some((line, eol))
    })
}

/// pacman's `strtrim`: C `isspace`, not Unicode whitespace.
pub(crate) fn trim(text: &str) -> &str {
    text.trim_matches(|c| matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c'))
}

/// `None` for a line that starts with `[` but is not a valid header.
fn classify(line: &str) -> Option<Kind<'_>> {
    let line = trim(line);
    if line.is_empty() {
        return Some(Kind::Blank);
    }
    if line.starts_with('#') {
        return Some(Kind::Comment);
    }
    if let Some(inner) = line.strip_prefix('[') {
        // pacman takes everything up to the *last* `]` as the name, even
        // `[a]b]`; only `[]` and a missing `]` are refused here.
        return match inner.strip_suffix(']') {
            Some(name) if !name.is_empty() => Some(Kind::Section(name)),
            _ => None,
        };
    }
    let (key, value) = match line.split_once('=') {
        Some((key, value)) => (trim(key), Some(trim(value))),
        None => (line, None),
    };
    Some(Kind::Directive { key, value })
}

/// The section a directive appears in.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// Before the first header.
    #[default]
    None,
    Options,
    Repo,
}

impl Scope {
    pub(crate) fn of_section(name: &str) -> Scope {
        if name == "options" {
            Scope::Options
        } else {
            Scope::Repo
        }
    }
}

/// What a directive does, once pacman's rules for its section are applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action<'a> {
    /// `Include = pattern`, in any section (or before all of them).
    Include(&'a str),
    /// `Server = url` in a repository section.
    Server(&'a str),
    /// Any other directive of `[options]` (pacman ignores unknown ones with
    /// a warning, and so does this crate).
    Option {
        key: &'a str,
        value: Option<&'a str>,
    },
    /// Any other directive of a repository section, `CacheServer`
    /// included (see `Repo::servers`).
    RepoOther,
}

/// Repository directives that pacman refuses without a value.
/// (`CacheServer` is pacman 6.1's; 6.0 warns about it and goes on.)
const REPO_KEYS_NEEDING_VALUE: [&str; 4] = ["Server", "SigLevel", "Usage", "CacheServer"];

/// Applies pacman's rules for a directive in `scope`; keys are
/// case-sensitive as in pacman (`server = …` is an unknown directive).
pub(crate) fn action<'a>(
    scope: Scope,
    key: &'a str,
    value: Option<&'a str>,
    file: &Path,
    line: usize,
) -> Result<Action<'a>, ConfError> {
    let missing_value = || ConfError::MissingValue {
        file: file.to_owned(),
        line,
        key: key.to_owned(),
    };
    if key == "Include" {
        // Allowed before any section: what it includes must then start
        // with a header, and that is checked line by line inside it.
        return value.map(Action::Include).ok_or_else(missing_value);
    }
    match scope {
        Scope::None => Err(ConfError::OutsideSection {
            file: file.to_owned(),
            line,
            key: key.to_owned(),
        }),
        Scope::Options => Ok(Action::Option { key, value }),
        Scope::Repo => match value {
            None if REPO_KEYS_NEEDING_VALUE.contains(&key) => Err(missing_value()),
            Some(url) if key == "Server" => Ok(Action::Server(url)),
            _ => Ok(Action::RepoOther),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<Kind<'_>> {
        lex(text, Path::new("t"))
            .map(|line| line.expect("lexes").kind)
            .collect()
    }

    #[test]
    fn split_lines_rebuilds_the_text() {
        for text in ["", "a", "a\n", "a\r\nb", "\n\n", "a\rb\r\n\r", "x\r"] {
            let rebuilt: String = split_lines(text).map(|(l, e)| format!("{l}{e}")).collect();
            assert_eq!(rebuilt, text);
        }
    }

    #[test]
    fn classifies_like_pacman() {
        use Kind::*;
        let text = "  \t\r\n# c\n  #[multilib]\n[core]\r\n\t[ a b ]  \n[a]b]\nKey\nK=v=w\n \tServer\t=\thttp://x/#f \n=v\nK =\n";
        assert_eq!(
            kinds(text),
            vec![
                Blank,
                Comment,
                Comment,
                Section("core"),
                Section(" a b "),
                Section("a]b"),
                Directive {
                    key: "Key",
                    value: None
                },
                Directive {
                    key: "K",
                    value: Some("v=w")
                },
                Directive {
                    key: "Server",
                    value: Some("http://x/#f")
                },
                Directive {
                    key: "",
                    value: Some("v")
                },
                Directive {
                    key: "K",
                    value: Some("")
                },
            ]
        );
    }

    #[test]
    fn refuses_broken_headers_with_their_line() {
        for (text, line) in [("[core] # c\n", 1), ("a=b\n[]\n", 2), ("\n\n[core\n", 3)] {
            let error = lex(text, Path::new("f.conf"))
                .find_map(Result::err)
                .expect("an error");
            assert!(
                error
                    .to_string()
                    .starts_with(&format!("f.conf:{line}: malformed section header")),
                "{text:?}: {error}"
            );
        }
    }

    #[test]
    fn actions_follow_the_section() {
        let f = Path::new("f");
        assert_eq!(
            action(Scope::None, "Include", Some("/x"), f, 1).ok(),
            Some(Action::Include("/x"))
        );
        assert!(action(Scope::None, "Server", Some("u"), f, 1).is_err());
        assert!(action(Scope::Repo, "Include", None, f, 1).is_err());
        assert!(action(Scope::Repo, "Usage", None, f, 1).is_err());
        assert_eq!(
            action(Scope::Repo, "Server", Some("u"), f, 1).ok(),
            Some(Action::Server("u"))
        );
        assert_eq!(
            action(Scope::Repo, "server", Some("u"), f, 1).ok(),
            Some(Action::RepoOther)
        );
        assert_eq!(
            action(Scope::Options, "CacheDir", None, f, 1).ok(),
            Some(Action::Option {
                key: "CacheDir",
                value: None
            })
        );
    }
}
