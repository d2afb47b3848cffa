//! pacsrv's command line: pacman's, read just far enough to find the
//! `--config FILE` that pacsrv replaces and pacsrv's own help switch. Pure:
//! arguments in, arguments out.
//!
//! pacman parses with `getopt_long`, so this follows its rules: options and
//! operands may come in any order, `--` ends the options, an option that
//! takes a value swallows the next argument (so `--ignore --config` ignores a
//! package called `--config`), and short options cluster (`-Syb /db`).
//! `--config` cannot be abbreviated: `--conf` and `--confi` are also
//! prefixes of `--confirm`, which getopt rejects as ambiguous.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

/// pacman 6's long options that take a required value (pacman.c
/// `parseargs`). `--debug` takes an optional one, which getopt only accepts
/// in the `--debug=LEVEL` form, so it is not listed.
const LONG_WITH_VALUE: &[&str] = &[
    "arch",
    "ask",
    "assume-installed",
    "cachedir",
    "color",
    "config",
    "dbpath",
    "gpgdir",
    "hookdir",
    "ignore",
    "ignoregroup",
    "logfile",
    "overwrite",
    "print-format",
    "root",
    "sysroot",
];

/// pacman's short options that take a value: `-b DBPATH`, `-r ROOT`.
const SHORT_WITH_VALUE: &[u8] = b"br";

/// pacsrv's own help switch, accepted anywhere among the options. `--help`
/// is pacsrv's too, but only as the sole argument: after an operation it is
/// pacman's (`pacsrv -S --help`), and `pacsrv -h` always is.
pub const HELP_FLAG: &str = "--pacsrv-help";

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invocation {
    /// Print pacsrv's help and exit.
    Help,
    /// Run pacman.
    Pacman(PacmanArgs),
}

/// A pacman command line and what pacsrv found in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacmanArgs {
    /// Exactly as given.
    pub original: Vec<OsString>,
    pub config: ConfigArg,
    /// `original` without any `--config` option (nor its value).
    without_config: Vec<OsString>,
}

/// The `--config` the user gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigArg {
    /// None: pacman reads `/etc/pacman.conf`.
    Default,
    /// `--config FILE` or `--config=FILE`; with several, the last, as pacman.
    File(PathBuf),
    /// `--config` without a value (last argument) or with an empty one:
    /// pacman will refuse it with its own message, so pacsrv leaves the
    /// command line alone.
    Unusable,
}

impl Invocation {
    pub fn parse(args: Vec<OsString>) -> Invocation {
        if args.len() == 1 && args[0] == "--help" {
            return Invocation::Help;
        }
        let mut config = ConfigArg::Default;
        let mut without_config = Vec::with_capacity(args.len());
        let mut rest = args.iter();
        while let Some(arg) = rest.next() {
            let bytes = arg.as_bytes();
            if bytes == b"--" {
                // Operands only from here on.
                without_config.push(arg.clone());
                without_config.extend(rest.by_ref().cloned());
                break;
            }
            if let Some(long) = bytes.strip_prefix(b"--") {
                let (name, inline) = match long.iter().position(|&b| b == b'=') {
                    Some(at) => (&long[..at], Some(&long[at + 1..])),
                    None => (long, None),
                };
                if name == HELP_FLAG.as_bytes()[2..].as_ref() && inline.is_none() {
                    return Invocation::Help;
                }
                let takes_value = LONG_WITH_VALUE.iter().any(|o| o.as_bytes() == name);
                // The value's own argument, when it is not inline.
                let next = if takes_value && inline.is_none() {
                    rest.next()
                } else {
                    None
                };
                if name == b"config" {
                    let value = inline
                        .map(OsStr::from_bytes)
                        .or(next.map(OsString::as_os_str));
                    config = match value {
                        Some(v) if !v.is_empty() => ConfigArg::File(PathBuf::from(v)),
                        _ => ConfigArg::Unusable,
                    };
                    continue;
                }
                without_config.push(arg.clone());
                without_config.extend(next.cloned());
            } else if bytes.len() > 1 && bytes[0] == b'-' {
                without_config.push(arg.clone());
                if needs_next_as_value(&bytes[1..]) {
                    without_config.extend(rest.next().cloned());
                }
            } else {
                // An operand (a package name, a file, or `-` for stdin).
                without_config.push(arg.clone());
            }
        }
        Invocation::Pacman(PacmanArgs {
            original: args,
            config,
            without_config,
        })
    }
}

/// Whether the short-option cluster `cluster` (after the `-`) ends in an
/// option whose value is the next argument: `-Sb` yes, `-Sb/db` no.
fn needs_next_as_value(cluster: &[u8]) -> bool {
    match cluster.iter().position(|c| SHORT_WITH_VALUE.contains(c)) {
        Some(at) => at + 1 == cluster.len(),
        None => false,
    }
}

impl PacmanArgs {
    /// The pacman.conf pacman would read, if pacsrv can tell.
    pub fn source_conf(&self) -> Option<&Path> {
        match &self.config {
            ConfigArg::Default => Some(Path::new(pacmesh_conf::DEFAULT_PACMAN_CONF)),
            ConfigArg::File(path) => Some(path),
            ConfigArg::Unusable => None,
        }
    }

    /// pacman's arguments for reading `generated` instead: `--config
    /// GENERATED` first, then every other argument in its order, the
    /// user's `--config` options taken out.
    pub fn with_config(&self, generated: &Path) -> Vec<OsString> {
        let mut args = Vec::with_capacity(self.without_config.len() + 2);
        args.push(OsString::from("--config"));
        args.push(generated.as_os_str().to_owned());
        args.extend(self.without_config.iter().cloned());
        args
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    fn pacman(args: &[&str]) -> PacmanArgs {
        match Invocation::parse(os(args)) {
            Invocation::Pacman(p) => p,
            Invocation::Help => panic!("{args:?} asked for pacsrv's help"),
        }
    }

    /// `args` → (the config pacsrv reads, pacman's arguments with GEN).
    fn check(args: &[&str], source: Option<&str>, expected: &[&str]) {
        let parsed = pacman(args);
        assert_eq!(parsed.source_conf(), source.map(Path::new), "{args:?}");
        assert_eq!(
            parsed.with_config(Path::new("GEN")),
            os(expected),
            "{args:?}"
        );
        assert_eq!(parsed.original, os(args));
    }

    #[test]
    fn rewrites_config_and_keeps_every_other_argument_in_order() {
        let etc = Some("/etc/pacman.conf");
        for (args, source, expected) in [
            (&["-Syu"][..], etc, &["--config", "GEN", "-Syu"][..]),
            (&[], etc, &["--config", "GEN"]),
            (
                &["-S", "b", "a", "--noconfirm", "--needed"],
                etc,
                &["--config", "GEN", "-S", "b", "a", "--noconfirm", "--needed"],
            ),
            (
                &["-S", "--config", "/x.conf", "pkg", "--noconfirm"],
                Some("/x.conf"),
                &["--config", "GEN", "-S", "pkg", "--noconfirm"],
            ),
            (
                &["--config=/x.conf", "-Qi", "pkg"],
                Some("/x.conf"),
                &["--config", "GEN", "-Qi", "pkg"],
            ),
            (
                &["--config", "rel.conf", "-Q"],
                Some("rel.conf"),
                &["--config", "GEN", "-Q"],
            ),
            // pacman takes the last; none survives.
            (
                &["--config", "/a", "-S", "--config=/b", "p"],
                Some("/b"),
                &["--config", "GEN", "-S", "p"],
            ),
            // A value is taken whole, `=` and all.
            (
                &["--config=/a=b", "-Q"],
                Some("/a=b"),
                &["--config", "GEN", "-Q"],
            ),
            // Values that look like --config are values.
            (
                &["-S", "--ignore", "--config", "p"],
                etc,
                &["--config", "GEN", "-S", "--ignore", "--config", "p"],
            ),
            (
                &["-Sb", "--config", "p"],
                etc,
                &["--config", "GEN", "-Sb", "--config", "p"],
            ),
            (
                &["-r", "--config=/x", "-Q"],
                etc,
                &["--config", "GEN", "-r", "--config=/x", "-Q"],
            ),
            // Inline values: the next argument is an option again.
            (
                &["-Sb/db", "--config", "/x", "p"],
                Some("/x"),
                &["--config", "GEN", "-Sb/db", "p"],
            ),
            (
                &["--dbpath=/db", "--config", "/x"],
                Some("/x"),
                &["--config", "GEN", "--dbpath=/db"],
            ),
            // --debug's value is optional, so never the next argument.
            (
                &["--debug", "--config", "/x", "-Q"],
                Some("/x"),
                &["--config", "GEN", "--debug", "-Q"],
            ),
            // After `--`, everything is an operand.
            (
                &["-S", "--", "--config", "/x"],
                etc,
                &["--config", "GEN", "-S", "--", "--config", "/x"],
            ),
            // `--confirm` and `-` are not --config.
            (
                &["-U", "--confirm", "-"],
                etc,
                &["--config", "GEN", "-U", "--confirm", "-"],
            ),
        ] {
            check(args, source, expected);
        }
    }

    #[test]
    fn config_without_a_value_is_left_to_pacman() {
        for args in [&["-S", "--config"][..], &["--config=", "-S"]] {
            let parsed = pacman(args);
            assert_eq!(parsed.config, ConfigArg::Unusable, "{args:?}");
            assert_eq!(parsed.source_conf(), None);
        }
    }

    #[test]
    fn help_is_pacsrvs_only_when_asked_unambiguously() {
        for (args, help) in [
            (&["--help"][..], true),
            (&["--pacsrv-help"], true),
            (&["-S", "--pacsrv-help"], true),
            (&["-S", "--help"], false),
            (&["-h"], false),
            (&["--help", "-S"], false),
            (&["-S", "--", "--pacsrv-help"], false),
            (&["-S", "--ignore", "--pacsrv-help"], false),
        ] {
            let got = Invocation::parse(os(args)) == Invocation::Help;
            assert_eq!(got, help, "{args:?}");
        }
    }

    #[test]
    fn arguments_that_are_not_utf8_pass_through() {
        use std::os::unix::ffi::OsStringExt as _;
        let odd = OsString::from_vec(b"caf\xe9".to_vec());
        let conf = OsString::from_vec(b"/c\xff.conf".to_vec());
        let args = vec![
            OsString::from("-S"),
            odd.clone(),
            OsString::from("--config"),
            conf.clone(),
        ];
        let Invocation::Pacman(parsed) = Invocation::parse(args) else {
            panic!("not help");
        };
        assert_eq!(parsed.source_conf(), Some(Path::new(&conf)));
        assert_eq!(
            parsed.with_config(Path::new("GEN")),
            vec!["--config".into(), "GEN".into(), "-S".into(), odd]
        );
    }
}
