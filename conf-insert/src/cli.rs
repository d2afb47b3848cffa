//! `pacman.conf-insert`'s command line, in the library so that the man page
//! and shell completions (`xtask assets`) are generated from the same clap
//! definition the binary parses with.

use std::path::PathBuf;

use clap::Parser;

use crate::{DEFAULT_INCLUDE_PATH, DEFAULT_PACMAN_CONF};

/// Print a pacman.conf with pacmesh's Include first in every repository.
///
/// Reads FILE and prints it on standard output with an Include of
/// pacmesh's include file as the first directive of every repository
/// section, every other byte unchanged. Running it again on its own output
/// changes nothing; --remove takes the lines out again. Nothing is printed
/// until the whole file has been read, so a failure never leaves half a
/// pacman.conf behind.
#[derive(Debug, Parser)]
#[command(name = "pacman.conf-insert", version)]
pub struct Cli {
    /// The include file to reference.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_INCLUDE_PATH)]
    pub include: String,

    /// Remove the Include lines instead of inserting them.
    #[arg(long)]
    pub remove: bool,

    /// The pacman.conf to read; `-` reads standard input.
    #[arg(value_name = "FILE", default_value = DEFAULT_PACMAN_CONF, value_hint = clap::ValueHint::FilePath)]
    pub file: PathBuf,
}
