//! Names shared by the daemon and pacman.conf-insert, defined once so that
//! the include file the daemon prints and the one pacman reads can never
//! disagree.

/// Where pacmesh's include file lives; pacman.conf-insert puts
/// `Include = {DEFAULT_INCLUDE_PATH}` first in every repository.
pub const DEFAULT_INCLUDE_PATH: &str = "/etc/pacman.d/pacmesh";

/// The daemon's HTTP port for pacman (TCP, loopback by default).
pub const DEFAULT_HTTP_PORT: u16 = 15680;

/// The include file's contents for a daemon on loopback port `port`
/// (printed by `pacmeshd --print-include`).
pub fn include_file_contents(port: u16) -> String {
    format!(
        "# pacmesh: ask this machine's pacmeshd first; it serves packages from\n\
         # the caches of other machines on the network, or redirects to the next\n\
         # server listed in pacman.conf.\n\
         # Written by `pacmeshd --print-include`; included from pacman.conf as the\n\
         # first line of each repository by pacman.conf-insert.\n\
         Server = http://127.0.0.1:{port}/$repo/os/$arch\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn include_file_names_the_daemon_port() {
        let text = include_file_contents(DEFAULT_HTTP_PORT);
        let servers: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(servers, ["Server = http://127.0.0.1:15680/$repo/os/$arch"]);
        assert!(include_file_contents(8080).contains("http://127.0.0.1:8080/"));
    }
}
