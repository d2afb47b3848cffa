//! pacman.conf as pacmesh sees it: a model of the parts the daemon and
//! pacsrv need (cache dirs, sync dir, architectures, each repository's
//! servers in pacman's order, which of them are pacmesh's own), and the
//! `pacman.conf-insert` text filter that puts pacmesh's `Include` first in
//! every repository.
//!
//! One lexer (`lex`) classifies lines for both, so the filter and the model
//! cannot disagree about what a line is. Nothing here logs or touches the
//! network; only `PacmanConf::load`/`parse` read files (pacman.conf and the
//! files it includes), and only `installed_pacman_version` runs a program
//! (`pacman --version`, to choose between `Server` and `CacheServer`).

#![forbid(unsafe_code)]

pub mod cli;
mod defaults;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod insert;
mod lex;
mod model;
mod own;
mod parse;
mod version;

pub use cli::Cli;
pub use defaults::{
    include_directive, include_file_contents, ServerDirective, CACHE_SERVER_SINCE,
    DEFAULT_HTTP_PORT, DEFAULT_INCLUDE_PATH,
};
pub use error::{ConfError, MAX_INCLUDE_DEPTH};
pub use insert::{insert_include, remove_include};
pub use model::{
    expand_server, Options, PacmanConf, Repo, Server, Source, DEFAULT_CACHE_DIR, DEFAULT_DB_PATH,
};
pub use own::OwnServers;
pub use parse::decode_text;
pub use version::{installed_pacman_version, PacmanVersion, VersionError};

/// Where pacman reads its configuration unless told otherwise.
pub const DEFAULT_PACMAN_CONF: &str = "/etc/pacman.conf";
