//! The decisions: which include file GENERATED names, and what pacman is
//! run with once the probe and the generation have had their say. Pure;
//! `main` gathers the inputs and carries the result out.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::args::PacmanArgs;
use crate::settings::{Daemon, Settings};

/// Which include file the generated pacman.conf names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IncludeChoice {
    /// An existing file: `PACSRV_INCLUDE`, or the shipped
    /// `/etc/pacman.d/pacmesh`.
    Use(PathBuf),
    /// pacsrv's own file in its cache dir, written with
    /// `include_file_contents(port, …)` for the pacman it runs.
    Own { port: u16 },
}

/// `PACSRV_INCLUDE` wins. Otherwise the shipped file, when it exists and
/// the daemon is on the default port it was made for; otherwise pacsrv
/// writes its own, for the port it just probed (pacmesh installed without
/// the include file, or a daemon elsewhere via `PACSRV_DAEMON_URL`).
pub fn choose_include(
    explicit: Option<&Path>,
    daemon: &Daemon,
    shipped: &Path,
    shipped_exists: bool,
) -> IncludeChoice {
    match explicit {
        Some(path) => IncludeChoice::Use(path.to_owned()),
        None if daemon.is_default && shipped_exists => IncludeChoice::Use(shipped.to_owned()),
        None => IncludeChoice::Own {
            port: daemon.addr.port(),
        },
    }
}

/// How far pacsrv got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// GENERATED is ready at this path.
    Generated(PathBuf),
    /// The daemon did not answer, for this reason.
    DaemonDown(String),
    /// The daemon answered but GENERATED could not be made.
    Failed(String),
    /// The command line names no usable pacman.conf (`--config` without a
    /// value): pacman gets it unchanged and explains.
    Untouched,
}

/// The command pacsrv becomes, and the line it prints first, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exec {
    pub program: OsString,
    pub args: Vec<OsString>,
    /// One line for stderr, without its newline.
    pub notice: Option<String>,
}

pub fn exec(settings: &Settings, args: &PacmanArgs, route: Route) -> Exec {
    let plain = |notice: Option<String>| Exec {
        program: settings.pacman.clone(),
        args: args.original.clone(),
        notice,
    };
    let url = &settings.daemon.base_url;
    match route {
        Route::Generated(path) => Exec {
            program: settings.pacman.clone(),
            args: args.with_config(&path),
            notice: None,
        },
        Route::DaemonDown(why) => plain(Some(one_line(&format!(
            "pacsrv: pacmeshd is not answering at {url} ({why}); running pacman without it"
        )))),
        Route::Failed(why) => plain(Some(one_line(&format!(
            "pacsrv: cannot use pacmeshd: {why}; running pacman without it"
        )))),
        Route::Untouched => plain(None),
    }
}

/// `text` as a single line: the notice is promised to be one.
fn one_line(text: &str) -> String {
    text.split(['\n', '\r'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::Invocation;
    use crate::settings::parse_daemon_url;

    fn settings() -> Settings {
        Settings {
            pacman: "pacman".into(),
            daemon: Daemon::default_local(),
            cache_dir: Some(PathBuf::from("/c")),
            include: None,
        }
    }

    fn pacman_args(args: &[&str]) -> PacmanArgs {
        match Invocation::parse(args.iter().map(OsString::from).collect()) {
            Invocation::Pacman(p) => p,
            Invocation::Help => panic!("help"),
        }
    }

    #[test]
    fn include_choice() {
        let default = Daemon::default_local();
        let other = parse_daemon_url("http://127.0.0.1:9999").unwrap();
        let shipped = Path::new("/etc/pacman.d/pacmesh");
        let mine = Some(Path::new("/tmp/inc"));
        let use_ = |p: &str| IncludeChoice::Use(PathBuf::from(p));
        for (explicit, daemon, exists, expected) in [
            (None, &default, true, use_("/etc/pacman.d/pacmesh")),
            (None, &default, false, IncludeChoice::Own { port: 15680 }),
            (None, &other, true, IncludeChoice::Own { port: 9999 }),
            (None, &other, false, IncludeChoice::Own { port: 9999 }),
            (mine, &default, true, use_("/tmp/inc")),
            (mine, &other, false, use_("/tmp/inc")),
        ] {
            assert_eq!(
                choose_include(explicit, daemon, shipped, exists),
                expected,
                "{explicit:?} {daemon:?} {exists}"
            );
        }
    }

    #[test]
    fn daemon_up_runs_pacman_with_generated_conf() {
        let args = pacman_args(&["--config", "/u.conf", "-S", "p"]);
        let got = exec(&settings(), &args, Route::Generated("/c/g.conf".into()));
        assert_eq!(got.program, "pacman");
        assert_eq!(got.args, ["--config", "/c/g.conf", "-S", "p"]);
        assert_eq!(got.notice, None);
    }

    #[test]
    fn otherwise_plain_pacman_with_the_users_arguments() {
        let args = pacman_args(&["--config", "/u.conf", "-S", "p"]);
        let original = ["--config", "/u.conf", "-S", "p"];
        for (route, notice) in [
            (
                Route::DaemonDown("connection refused".into()),
                Some(
                    "pacsrv: pacmeshd is not answering at http://127.0.0.1:15680 \
                     (connection refused); running pacman without it",
                ),
            ),
            (
                Route::Failed("/u.conf:3: bad\nsecond line".into()),
                Some("pacsrv: cannot use pacmeshd: /u.conf:3: bad second line; running pacman without it"),
            ),
            (Route::Untouched, None),
        ] {
            let got = exec(&settings(), &args, route.clone());
            assert_eq!(got.args, original, "{route:?}");
            assert_eq!(got.notice.as_deref(), notice, "{route:?}");
            assert!(!got.notice.unwrap_or_default().contains('\n'));
        }
    }
}
