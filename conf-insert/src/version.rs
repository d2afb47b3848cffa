//! Which pacman is installed: the version in `pacman --version`, read by a
//! pure parser ([`PacmanVersion::from_version_output`]) and found by one
//! thin runner ([`installed_pacman_version`]), the only place in this crate
//! that starts a process.
//!
//! The version decides which directive pacmesh's include file uses (see
//! `include_directive`). `pacman --version` is used rather than
//! `pacman-conf --version`, which says `pacman-conf v1.0.0` in every pacman
//! release. Its banner line is printed untranslated and before pacman
//! reads any configuration, so it needs neither root nor a pacman.conf.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io;
use std::process::{Command, ExitStatus, Stdio};

/// A pacman release, `major.minor.patch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PacmanVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl PacmanVersion {
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        PacmanVersion {
            major,
            minor,
            patch,
        }
    }

    /// The version in what `pacman --version` prints: the banner line
    /// ` .--.   Pacman v6.0.2 - libalpm v13.0.2`. A development build's
    /// `v7.0.0.r6.gc685ae6` counts as 7.0.0. `None` for anything else,
    /// including the banners of other front-ends (`yay v12.4.2 - libalpm
    /// v15.0.0`): they read pacman.conf with parsers of their own.
    pub fn from_version_output(text: &str) -> Option<PacmanVersion> {
        let (_, after) = text.split_once("Pacman v")?;
        let word = after.split_ascii_whitespace().next()?;
        let mut parts = word.split('.');
        let major = whole_number(parts.next()?)?;
        let minor = whole_number(parts.next()?)?;
        let patch = parts.next().and_then(leading_number).unwrap_or(0);
        Some(PacmanVersion::new(major, minor, patch))
    }
}

/// `part` if it is all digits.
fn whole_number(part: &str) -> Option<u32> {
    part.bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| part.parse().ok())?
}

/// The digits `part` starts with, so that `0-dev` reads as 0.
fn leading_number(part: &str) -> Option<u32> {
    let digits = part.len() - part.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    part[..digits].parse().ok()
}

impl fmt::Display for PacmanVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// Why the installed pacman's version is not known.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VersionError {
    /// The program could not be started (not installed, not executable).
    #[error("cannot run `{} --version`: {source}", program.to_string_lossy())]
    Run {
        program: OsString,
        #[source]
        source: io::Error,
    },
    /// It ran and failed.
    #[error("`{} --version` failed: {status}", program.to_string_lossy())]
    Failed {
        program: OsString,
        status: ExitStatus,
    },
    /// It ran, but printed no pacman banner (another front-end, a wrapper).
    #[error("`{} --version` names no pacman version", program.to_string_lossy())]
    Unrecognised { program: OsString },
}

/// Runs `PROGRAM --version` (`pacman`, looked up on `PATH`, or the
/// program pacsrv runs in its place) and parses its banner.
pub fn installed_pacman_version(program: &OsStr) -> Result<PacmanVersion, VersionError> {
    let output = Command::new(program)
        .arg("--version")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map_err(|source| VersionError::Run {
            program: program.to_owned(),
            source,
        })?;
    if !output.status.success() {
        return Err(VersionError::Failed {
            program: program.to_owned(),
            status: output.status,
        });
    }
    PacmanVersion::from_version_output(&String::from_utf8_lossy(&output.stdout)).ok_or_else(|| {
        VersionError::Unrecognised {
            program: program.to_owned(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `pacman --version` of Debian 12's pacman-package-manager 6.0.2-3,
    /// as printed here.
    const PACMAN_6_0_2: &str = "
 .--.                  Pacman v6.0.2 - libalpm v13.0.2
/ _.-' .-.  .-.  .-.   Copyright (C) 2006-2021 Pacman Development Team
\\  '-. '-'  '-'  '-'   Copyright (C) 2002-2006 Judd Vinet
 '--'
                       This program may be freely redistributed under
                       the terms of the GNU General Public License.

";

    /// The same banner from Arch's pacman 7.0.0 (libalpm 15).
    const PACMAN_7_0_0: &str = "
 .--.                  Pacman v7.0.0 - libalpm v15.0.0
/ _.-' .-.  .-.  .-.   Copyright (C) 2006-2024 Pacman Development Team
\\  '-. '-'  '-'  '-'   Copyright (C) 2002-2006 Judd Vinet
 '--'
                       This program may be freely redistributed under
                       the terms of the GNU General Public License.

";

    fn check(output: &str, expected: Option<(u32, u32, u32)>) {
        let expected = expected.map(|(a, b, c)| PacmanVersion::new(a, b, c));
        assert_eq!(
            PacmanVersion::from_version_output(output),
            expected,
            "{output:?}"
        );
    }

    #[test]
    fn versions_from_pacman_banners() {
        for (output, expected) in [
            (PACMAN_6_0_2, Some((6, 0, 2))),
            (PACMAN_7_0_0, Some((7, 0, 0))),
            (" .--.  Pacman v6.1.0 - libalpm v14.0.0\n", Some((6, 1, 0))),
            ("Pacman v7.1.0 - libalpm v16.0.1", Some((7, 1, 0))),
            // pacman-git and other development builds.
            (
                " .--.  Pacman v7.0.0.r6.gc685ae6 - libalpm v15.0.0",
                Some((7, 0, 0)),
            ),
            ("Pacman v6.1", Some((6, 1, 0))),
            ("Pacman v10.2.3-dev", Some((10, 2, 3))),
            // Not pacman, or not a version.
            ("", None),
            ("pacman-conf v1.0.0\n", None),
            ("yay v12.4.2 - libalpm v15.0.0\n", None),
            ("pid 42\n--version\n", None),
            ("Pacman v", None),
            ("Pacman v7", None),
            ("Pacman vx.1.0", None),
            ("Pacman v7x.1.0", None),
            ("Pacman v7.x", None),
            ("Pacman v99999999999.0.0", None),
        ] {
            check(output, expected);
        }
    }

    #[test]
    fn versions_order_and_print_as_numbers() {
        let v = PacmanVersion::new;
        assert!(v(6, 0, 2) < v(6, 1, 0));
        assert!(v(6, 1, 0) < v(7, 0, 0));
        assert!(v(6, 10, 0) > v(6, 9, 9));
        assert_eq!(v(6, 0, 2).to_string(), "6.0.2");
    }

    #[test]
    fn runner_reports_what_went_wrong() {
        let missing = installed_pacman_version(OsStr::new("/nonexistent/pacman"));
        assert!(
            matches!(missing, Err(VersionError::Run { .. })),
            "{missing:?}"
        );
        let failed = installed_pacman_version(OsStr::new("false"));
        assert!(
            matches!(failed, Err(VersionError::Failed { .. })),
            "{failed:?}"
        );
        // `true` prints nothing: no banner.
        let silent = installed_pacman_version(OsStr::new("true"));
        assert!(
            matches!(silent, Err(VersionError::Unrecognised { .. })),
            "{silent:?}"
        );
    }
}
