//! Names shared by the daemon, pacsrv and pacman.conf-insert, and the text
//! of pacmesh's include file, defined once so that the include file the
//! daemon prints and the one pacman reads can never disagree.

use crate::version::PacmanVersion;

/// Where pacmesh's include file lives; pacman.conf-insert puts
/// `Include = {DEFAULT_INCLUDE_PATH}` first in every repository.
pub const DEFAULT_INCLUDE_PATH: &str = "/etc/pacman.d/pacmesh";

/// The daemon's HTTP port for pacman (TCP, loopback by default).
pub const DEFAULT_HTTP_PORT: u16 = 15680;

/// The directive that names the daemon in the include file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerDirective {
    /// Every pacman knows it. pacman counts soft errors per host and stops
    /// asking one after 3 in a transaction, and a `Server` is also where
    /// databases are fetched from.
    Server,
    /// pacman ≥ 6.1: tried before every `Server`, for packages only, and
    /// never dropped after a 404 or another soft error, which is what a
    /// cache in front of the mirrors wants.
    CacheServer,
}

impl ServerDirective {
    /// The key as written in pacman.conf.
    pub fn key(self) -> &'static str {
        match self {
            ServerDirective::Server => "Server",
            ServerDirective::CacheServer => "CacheServer",
        }
    }
}

/// The first pacman that knows `CacheServer`.
pub const CACHE_SERVER_SINCE: PacmanVersion = PacmanVersion::new(6, 1, 0);

/// The directive for a pacman of `version` (`None`: not known).
///
/// Measured with Debian's pacman 6.0.2: a `CacheServer` line in a
/// repository section is ignored, with `warning: config file …, line N:
/// directive 'CacheServer' in section 'core' not recognized.` on every run
/// (pacman-conf 6.0.2 ignores it without a word), so pacman would never ask
/// the daemon. An unknown version therefore gets `Server`, which works
/// with every pacman; at worst pacmesh is then asked as an ordinary server.
pub fn include_directive(version: Option<PacmanVersion>) -> ServerDirective {
    match version {
        Some(v) if v >= CACHE_SERVER_SINCE => ServerDirective::CacheServer,
        _ => ServerDirective::Server,
    }
}

/// The include file's contents for a daemon on loopback port `port`
/// (printed by `pacmeshd --print-include`), naming it with `directive`.
pub fn include_file_contents(port: u16, directive: ServerDirective) -> String {
    let key = directive.key();
    format!(
        "# pacmesh: ask this machine's pacmeshd first; it serves packages from\n\
         # the caches of other machines on the network, or redirects to the next\n\
         # server listed in pacman.conf.\n\
         # Written by `pacmeshd --print-include`; included from pacman.conf as the\n\
         # first line of each repository by pacman.conf-insert. CacheServer where\n\
         # the installed pacman knows it (6.1 and later), Server where it does not.\n\
         {key} = http://127.0.0.1:{port}/$repo/os/$arch\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directive_follows_the_pacman_version() {
        let v = |a, b, c| Some(PacmanVersion::new(a, b, c));
        for (version, expected) in [
            (v(6, 0, 2), ServerDirective::Server),
            (v(6, 0, 99), ServerDirective::Server),
            (v(5, 2, 2), ServerDirective::Server),
            (v(6, 1, 0), ServerDirective::CacheServer),
            (v(7, 0, 0), ServerDirective::CacheServer),
            (v(7, 1, 0), ServerDirective::CacheServer),
            (None, ServerDirective::Server),
        ] {
            assert_eq!(include_directive(version), expected, "{version:?}");
        }
    }

    #[test]
    fn include_file_names_the_daemon_port() {
        let lines = |text: &str| -> Vec<String> {
            text.lines()
                .filter(|l| !l.starts_with('#'))
                .map(str::to_owned)
                .collect()
        };
        let text = include_file_contents(DEFAULT_HTTP_PORT, ServerDirective::Server);
        assert_eq!(
            lines(&text),
            ["Server = http://127.0.0.1:15680/$repo/os/$arch"]
        );
        let text = include_file_contents(8080, ServerDirective::CacheServer);
        assert_eq!(
            lines(&text),
            ["CacheServer = http://127.0.0.1:8080/$repo/os/$arch"]
        );
    }
}
