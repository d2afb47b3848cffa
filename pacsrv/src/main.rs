//! `pacsrv ARGS…`: pacman through this host's pacmeshd. Probes the daemon,
//! makes (or reuses) a pacman.conf that asks it first, and becomes pacman
//! with `exec`. The decisions live in `args`, `settings` and `plan`; this
//! file only gathers their inputs from the environment and carries the
//! result out.

#![forbid(unsafe_code)]

mod args;
mod generated;
mod help;
mod plan;
mod probe;
mod settings;

use std::ffi::OsString;
use std::io::Write as _;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Command, ExitCode};

use anyhow::Context as _;
use pacmesh_conf::DEFAULT_INCLUDE_PATH;

use args::{Invocation, PacmanArgs};
use plan::{IncludeChoice, Route};
use settings::Settings;

/// sysexits' EX_USAGE, for a PACSRV_* variable that cannot be used.
const EXIT_USAGE: u8 = 64;

fn main() -> ExitCode {
    let args = match Invocation::parse(std::env::args_os().skip(1).collect()) {
        Invocation::Help => {
            let _ = std::io::stdout().write_all(help::text().as_bytes());
            return ExitCode::SUCCESS;
        }
        Invocation::Pacman(args) => args,
    };
    let is_root = rustix::process::geteuid().is_root();
    let settings = match Settings::from_env(|name| std::env::var_os(name), is_root) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("pacsrv: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let route = route(&settings, &args);
    let exec = plan::exec(&settings, &args, route);
    if let Some(notice) = &exec.notice {
        eprintln!("{notice}");
    }
    // Only returns if pacman could not be started.
    let error = Command::new(&exec.program).args(&exec.args).exec();
    eprintln!(
        "pacsrv: cannot run {}: {error}",
        Path::new(&exec.program).display()
    );
    // The shell's codes for "not found" and "not executable".
    ExitCode::from(if error.kind() == std::io::ErrorKind::NotFound {
        127
    } else {
        126
    })
}

/// Probes the daemon and, if it answers, makes GENERATED.
fn route(settings: &Settings, args: &PacmanArgs) -> Route {
    let Some(source) = args.source_conf() else {
        return Route::Untouched;
    };
    if let probe::Probe::Down(why) = probe::probe(&settings.daemon, probe::PROBE_TIMEOUT) {
        return Route::DaemonDown(why);
    }
    match generate(settings, source) {
        Ok(path) => Route::Generated(path),
        Err(e) => Route::Failed(format!("{e:#}")),
    }
}

fn generate(settings: &Settings, source: &Path) -> anyhow::Result<std::path::PathBuf> {
    let cache_dir = settings
        .cache_dir
        .as_deref()
        .context("no cache dir (HOME and XDG_CACHE_HOME are unset; set PACSRV_CACHE_DIR)")?;
    let shipped = Path::new(DEFAULT_INCLUDE_PATH);
    let choice = plan::choose_include(
        settings.include.as_deref(),
        &settings.daemon,
        shipped,
        shipped.is_file(),
    );
    let include = match choice {
        IncludeChoice::Use(path) => path,
        IncludeChoice::Own { port } => {
            // Asked of the program pacsrv is about to become, since that is
            // what reads the include; anything that is not a pacman saying
            // its version (a wrapper, another front-end) gets `Server`.
            let version = pacmesh_conf::installed_pacman_version(&settings.pacman).ok();
            let directive = pacmesh_conf::include_directive(version);
            generated::ensure_own_include(cache_dir, port, directive)?
        }
    };
    let include = include_str(include.into_os_string())?;
    Ok(generated::ensure(source, cache_dir, &include)?.path)
}

/// An include path as text for the `Include =` line.
fn include_str(path: OsString) -> anyhow::Result<String> {
    path.into_string()
        .map_err(|p| anyhow::anyhow!("include path {} is not UTF-8", Path::new(&p).display()))
}
