//! The text of `pacsrv --help`.

use pacmesh_conf::{DEFAULT_HTTP_PORT, DEFAULT_INCLUDE_PATH, DEFAULT_PACMAN_CONF};

use crate::probe::{PROBE_TIMEOUT, STATUS_PATH};
use crate::settings::ROOT_CACHE_DIR;

pub fn text() -> String {
    let version = env!("CARGO_PKG_VERSION");
    let ms = PROBE_TIMEOUT.as_millis();
    format!(
        "\
pacsrv {version}: pacman through this host's pacmeshd

Usage: pacsrv PACMAN-ARGUMENTS...     e.g. pacsrv -Syu
       pacsrv --help | --pacsrv-help  this text

pacsrv runs pacman with the same arguments. First it asks pacmeshd for
http://127.0.0.1:{DEFAULT_HTTP_PORT}{STATUS_PATH} (at most {ms} ms):

  answered  pacman runs with --config GENERATED, a copy of pacman.conf
            ({DEFAULT_PACMAN_CONF}, or the FILE of your --config FILE, which
            is replaced, not repeated) with `Include = {DEFAULT_INCLUDE_PATH}`
            first in every repository, as pacman.conf-insert prints it.
            pacman asks pacmeshd first and its own mirrors after.
  silent    plain pacman runs with your arguments unchanged, after one line
            on stderr saying so. The same happens if GENERATED cannot be
            made (e.g. pacman.conf does not parse; pacman then says why).

pacsrv then becomes pacman (exec): exit status, signals and the terminal
are pacman's own. GENERATED is rewritten only when pacman.conf or a file it
includes changes (a content hash), through a temp file and a rename.

Help: `pacsrv --help` alone, or `--pacsrv-help` anywhere, shows this text.
Every other use is pacman's: `pacsrv -h` and `pacsrv -S --help` show
pacman's help.

Include file: GENERATED names {DEFAULT_INCLUDE_PATH} when it exists and the
daemon is at the default address (`pacmeshd --print-include` prints it).
Otherwise pacsrv writes its own, pacmesh-include-PORT in the cache dir,
naming the port it probed: `CacheServer = ...` when `$PACMAN --version` says
pacman 6.1 or later, `Server = ...` otherwise.

Files (CACHE is the cache dir):
  {ROOT_CACHE_DIR}/   CACHE when run as root
  $XDG_CACHE_HOME/pacmesh/     CACHE otherwise (or ~/.cache/pacmesh/)
  CACHE/pacman-HASH.conf       GENERATED, one per source pacman.conf
  CACHE/pacmesh-include-PORT   pacsrv's own include file, when needed

Environment:
  PACMAN             program to run instead of pacman (same command line)
  PACSRV_DAEMON_URL  the daemon's base URL, a loopback address
                     [default: http://127.0.0.1:{DEFAULT_HTTP_PORT}]
  PACSRV_CACHE_DIR   cache dir for GENERATED and the include file
  PACSRV_INCLUDE     include file for GENERATED to name, used as given

Exit status: pacman's; 64 for a bad PACSRV_* value, 126/127 when the
program cannot be run.
"
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn help_names_every_variable_and_both_switches() {
        let text = super::text();
        for word in [
            "PACMAN ",
            "PACSRV_DAEMON_URL",
            "PACSRV_CACHE_DIR",
            "PACSRV_INCLUDE",
            "--pacsrv-help",
            "/etc/pacman.d/pacmesh",
            "/var/cache/pacmesh/pacsrv/",
        ] {
            assert!(text.contains(word), "help lacks {word:?}");
        }
        assert!(text.lines().all(|l| l.chars().count() <= 80), "{text}");
    }
}
