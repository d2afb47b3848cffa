//! `pacman.conf-insert`: prints a pacman.conf with pacmesh's `Include` as
//! the first directive of every repository (or, with `--remove`, without
//! it). Output is written only once the whole file has been processed, so a
//! failure never leaves half a pacman.conf on stdout.

#![forbid(unsafe_code)]

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use pacmesh_conf::{decode_text, insert_include, remove_include, Cli};

/// Exit status for bad command lines (sysexits' EX_USAGE).
const EXIT_USAGE: u8 = 64;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version are not failures; their text goes to
            // stdout and clap knows it.
            let code = if e.use_stderr() { EXIT_USAGE } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pacman.conf-insert: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli) -> anyhow::Result<()> {
    let (name, bytes) = read_input(&cli.file)?;
    let text = decode_text(bytes, &name)?;
    let output = if cli.remove {
        remove_include(&text, &name, &cli.include)?
    } else {
        insert_include(&text, &name, &cli.include)?
    };
    let mut stdout = io::stdout().lock();
    stdout
        .write_all(output.as_bytes())
        .and_then(|()| stdout.flush())
        .context("cannot write to standard output")
}

/// The input's name for messages, and its bytes.
fn read_input(file: &Path) -> anyhow::Result<(PathBuf, Vec<u8>)> {
    let mut bytes = Vec::new();
    if file == Path::new("-") {
        io::stdin()
            .lock()
            .read_to_end(&mut bytes)
            .context("cannot read standard input")?;
        Ok((PathBuf::from("<stdin>"), bytes))
    } else {
        bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
        Ok((file.to_owned(), bytes))
    }
}
