//! pacmesh's build helper. `cargo run -p xtask -- assets OUTDIR` writes what
//! the package installs besides the binaries:
//!
//! ```text
//! OUTDIR/man/{pacmeshd,pacman.conf-insert,pacsrv}.8
//! OUTDIR/bash/{pacmeshd,pacman.conf-insert,pacsrv}       bash-completion/completions/
//! OUTDIR/zsh/{_pacmeshd,_pacman.conf-insert,_pacsrv}     zsh/site-functions/
//! OUTDIR/fish/{pacmeshd,pacman.conf-insert,pacsrv}.fish  fish/vendor_completions.d/
//! ```
//!
//! Each page and completion comes from the parser the binary itself uses
//! (`pacmeshd::config::RawConfig`, `pacmesh_conf::Cli`), so they cannot
//! drift apart. pacsrv has no clap parser (every argument is pacman's): its
//! page is made from the text `pacsrv --help` prints, run from the built
//! binary, and its completions are pacman's.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, ensure, Context};
use clap::{CommandFactory, Parser, Subcommand};
use clap_complete::Shell;

#[derive(Debug, Parser)]
#[command(name = "xtask", about = "pacmesh's build helper")]
struct Args {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Write man pages and shell completions into OUTDIR.
    Assets {
        /// Directory to write into (created if missing).
        outdir: PathBuf,
        /// The built pacsrv binary, run for its --help text
        /// [default: pacsrv beside this program].
        #[arg(long, value_name = "BIN")]
        pacsrv: Option<PathBuf>,
    },
}

fn main() -> anyhow::Result<()> {
    match Args::parse().task {
        Task::Assets { outdir, pacsrv } => {
            let pacsrv = match pacsrv {
                Some(p) => p,
                None => std::env::current_exe()
                    .context("finding this program's directory")?
                    .with_file_name("pacsrv"),
            };
            for path in assets(&outdir, &pacsrv)? {
                println!("{}", path.display());
            }
            Ok(())
        }
    }
}

/// Writes every asset under `outdir` and returns their paths.
fn assets(outdir: &Path, pacsrv: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    let mut write = |rel: String, text: &[u8]| -> anyhow::Result<()> {
        let path = outdir.join(rel);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        written.push(path);
        Ok(())
    };

    let commands = [
        (pacmeshd::config::RawConfig::command(), pacmeshd_sections()),
        (pacmesh_conf::Cli::command(), conf_insert_sections()),
    ];
    for (cmd, extra) in commands {
        let name = cmd.get_name().to_string();
        write(format!("man/{name}.8"), &clap_page(cmd.clone(), &extra)?)?;
        for (shell, rel) in [
            (Shell::Bash, format!("bash/{name}")),
            (Shell::Zsh, format!("zsh/_{name}")),
            (Shell::Fish, format!("fish/{name}.fish")),
        ] {
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut cmd.clone(), &name, &mut out);
            write(rel, &out)?;
        }
    }

    let help = pacsrv_help(pacsrv)?;
    write(
        "man/pacsrv.8".into(),
        help_to_man(&help, PACSRV_SEE_ALSO)?.as_bytes(),
    )?;
    write("bash/pacsrv".into(), PACSRV_BASH.as_bytes())?;
    write("zsh/_pacsrv".into(), PACSRV_ZSH.as_bytes())?;
    write("fish/pacsrv.fish".into(), PACSRV_FISH.as_bytes())?;
    Ok(written)
}

/// A clap command's page, section 8, with `extra` (roff: more sections)
/// after its options.
fn clap_page(cmd: clap::Command, extra: &str) -> anyhow::Result<Vec<u8>> {
    type Render = fn(&clap_mangen::Man, &mut dyn std::io::Write) -> std::io::Result<()>;
    let title = cmd.get_name().to_uppercase();
    let man = clap_mangen::Man::new(cmd).section("8").title(title);
    let mut out = Vec::new();
    let sections: [(Render, bool); 6] = [
        (clap_mangen::Man::render_title, false),
        (clap_mangen::Man::render_name_section, false),
        (clap_mangen::Man::render_synopsis_section, false),
        (clap_mangen::Man::render_description_section, false),
        (clap_mangen::Man::render_options_section, false),
        (clap_mangen::Man::render_version_section, true),
    ];
    for (i, (render, after_extra)) in sections.into_iter().enumerate() {
        if after_extra {
            out.extend_from_slice(extra.as_bytes());
        }
        let mut part = Vec::new();
        render(&man, &mut part)?;
        let part = String::from_utf8(part).context("clap_mangen wrote non-UTF-8")?;
        // Each part starts with the same preamble (defining \*(Aq): keep the first.
        out.extend_from_slice(if i == 0 { &part } else { strip_preamble(&part) }.as_bytes());
    }
    Ok(out)
}

/// `part` without the leading `.ie`/`.el` lines clap_mangen puts before
/// every rendered part.
fn strip_preamble(part: &str) -> &str {
    let mut rest = part;
    for prefix in [".ie \\n(.g .ds Aq", ".el .ds Aq"] {
        if rest.starts_with(prefix) {
            rest = rest.split_once('\n').map_or("", |(_, r)| r);
        }
    }
    rest
}

fn pacmeshd_sections() -> String {
    let config = pacmeshd::config::DEFAULT_CONFIG_PATH;
    let include = pacmesh_conf::DEFAULT_INCLUDE_PATH;
    // The page shows what Arch's pacman (≥ 6.1) gets, whatever pacman the
    // machine building the page has.
    let include_text = pacmesh_conf::include_file_contents(
        pacmesh_conf::DEFAULT_HTTP_PORT,
        pacmesh_conf::ServerDirective::CacheServer,
    );
    let mut s = String::new();
    s.push_str(".SH SIGNALS\n");
    s.push_str(&tagged(&[
        ("SIGTERM, SIGINT", "Stop."),
        (
            "SIGHUP",
            "Read the configuration file and pacman.conf again; a bad configuration is \
             logged and the old one kept. Downloads under way go on.",
        ),
        ("SIGUSR1", "Write the peer table to the log."),
    ]));
    s.push_str(".SH ENVIRONMENT\n");
    s.push_str(&tagged(&[(
        "PACMESH_LOG",
        "Log filter, e.g. debug or pacmeshd=trace [default: info]. Logs go to standard error.",
    )]));
    s.push_str(".SH FILES\n");
    s.push_str(&tagged(&[
        (
            config,
            "The configuration: every option above is also a key, in snake_case \
             (--http-listen is http_listen); flags win over the file. Its [mirror] table \
             (file only) sets caching-mirror mode's repositories and upstreams \
             ([[mirror.repo]] name, arch, servers, mirrorlist), db_revalidate_s, \
             store_max_gib and admin_token_file.",
        ),
        (
            include,
            "The Include file that pacman.conf-insert puts first in every repository of \
             pacman.conf; pacmeshd --print-include prints it for the installed pacman \
             (CacheServer from pacman 6.1 on, Server before), and a pacman hook rewrites it \
             whenever pacman or pacmesh is installed or upgraded.",
        ),
        ("/var/lib/pacmesh", "The daemon's identity key."),
        (
            "/var/cache/pacmesh",
            "The daemon's own package store; in caching-mirror mode also the packages and \
             databases it keeps for its clients (fetched/ and db/).",
        ),
        (
            "/etc/conf.d/pacmesh",
            "The ports pacmesh-ports.service opens in the host firewall.",
        ),
    ]));
    s.push_str(".SH \"EXIT STATUS\"\n");
    s.push_str(&tagged(&[
        ("0", "Stopped by a signal, or printed what was asked."),
        (
            "64",
            "The configuration is wrong (the message names the key and the file).",
        ),
        ("1", "Any other error."),
    ]));
    s.push_str(".SH EXAMPLES\n.PP\nThe include file, as installed with pacman 6.1 or later:\n.PP\n.RS 4\n.nf\n");
    s.push_str(&escape_lines(&include_text));
    s.push_str(".fi\n.RE\n");
    s.push_str(&see_also(&[
        ("pacman.conf-insert", "8"),
        ("pacsrv", "8"),
        ("pacman", "8"),
        ("pacman.conf", "5"),
    ]));
    s
}

fn conf_insert_sections() -> String {
    let mut s = String::from(".SH \"EXIT STATUS\"\n");
    s.push_str(&tagged(&[
        ("0", "Success."),
        ("1", "An error, e.g. FILE cannot be read or does not parse."),
        ("64", "A bad command line."),
    ]));
    s.push_str(".SH EXAMPLES\n.PP\n.RS 4\n.nf\n");
    s.push_str(&escape_lines(
        "pacman.conf-insert > /tmp/pacman.conf\n\
         pacman.conf-insert --remove /tmp/pacman.conf\n\
         pacman.conf-insert - < /etc/pacman.conf\n",
    ));
    s.push_str(".fi\n.RE\n");
    s.push_str(&see_also(&[
        ("pacmeshd", "8"),
        ("pacsrv", "8"),
        ("pacman.conf", "5"),
    ]));
    s
}

const PACSRV_SEE_ALSO: &[(&str, &str)] = &[
    ("pacman", "8"),
    ("pacmeshd", "8"),
    ("pacman.conf-insert", "8"),
    ("pacman.conf", "5"),
];

/// pacsrv takes pacman's arguments, so it completes like pacman (when
/// pacman's completion is installed).
const PACSRV_BASH: &str = "\
# pacsrv takes pacman's arguments: complete it like pacman.
if ! declare -F _pacman >/dev/null; then
    _comp_load pacman 2>/dev/null || __load_completion pacman 2>/dev/null
fi
if declare -F _pacman >/dev/null; then
    complete -F _pacman -o default pacsrv
fi
";

const PACSRV_ZSH: &str = "\
#compdef pacsrv=pacman
# pacsrv takes pacman's arguments: complete it like pacman.
_pacman \"$@\"
";

const PACSRV_FISH: &str = "\
# pacsrv takes pacman's arguments: complete it like pacman.
complete -c pacsrv -w pacman
";

fn pacsrv_help(bin: &Path) -> anyhow::Result<String> {
    let out = Command::new(bin)
        .arg("--help")
        .output()
        .with_context(|| format!("running {} --help", bin.display()))?;
    ensure!(
        out.status.success(),
        "{} --help failed: {}\n{}",
        bin.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).context("pacsrv --help printed non-UTF-8 text")
}

/// A section 8 page from a plain-text help in the shape of `pacsrv --help`:
///
/// - first line `NAME VERSION: summary` → title and NAME;
/// - a block starting `Usage: ` → SYNOPSIS, lines kept as they are;
/// - a block whose first line ends with `:` and whose other lines are
///   indented (`Files (note):`, `Environment:`) → its own section, the
///   lines kept as they are;
/// - a paragraph starting `Exit status: ` → EXIT STATUS;
/// - other indented blocks → kept as they are; other paragraphs → filled.
///
/// `` `code` `` is set in bold.
fn help_to_man(help: &str, see: &[(&str, &str)]) -> anyhow::Result<String> {
    let mut blocks = help
        .split("\n\n")
        .map(|b| b.trim_end_matches('\n'))
        .filter(|b| !b.trim().is_empty());
    let first = blocks.next().context("empty help text")?;
    let Some((name_version, summary)) = first.split_once(": ") else {
        bail!("help's first line is not `NAME VERSION: summary`: {first:?}");
    };
    let (name, version) = name_version.split_once(' ').unwrap_or((name_version, ""));
    let mut s = format!(
        ".TH {} 8 \"\" \"{}\"\n.SH NAME\n{} \\- {}\n",
        name.to_uppercase(),
        escape(name_version),
        escape(name),
        escape(summary.trim())
    );
    let mut in_description = false;
    for block in blocks {
        let lines: Vec<&str> = block.lines().collect();
        let indented = |l: &&str| l.starts_with(' ');
        if let Some(rest) = block.strip_prefix("Usage: ") {
            let width = "Usage: ".len();
            s.push_str(".SH SYNOPSIS\n.nf\n");
            for (i, line) in rest.lines().enumerate() {
                let line = if i == 0 {
                    line
                } else {
                    line.get(width..).unwrap_or(line.trim_start())
                };
                s.push_str(&code_to_bold(&escape_line(line)));
                s.push('\n');
            }
            s.push_str(".fi\n");
        } else if lines.len() > 1
            && !indented(&lines[0])
            && lines[0].ends_with(':')
            && lines[1..].iter().all(indented)
        {
            let heading = lines[0].trim_end_matches(':');
            let (title, note) = match heading.split_once(" (") {
                Some((t, n)) => (t, Some(n.trim_end_matches(')'))),
                None => (heading, None),
            };
            let _ = writeln!(s, ".SH \"{}\"", escape(&title.to_uppercase()));
            if let Some(note) = note {
                let _ = writeln!(s, ".PP\n{}.", code_to_bold(&escape(note)));
            }
            preformatted(&mut s, &lines[1..]);
        } else if let Some(rest) = block.strip_prefix("Exit status: ") {
            s.push_str(".SH \"EXIT STATUS\"\n.PP\n");
            push_paragraph(&mut s, rest);
        } else {
            if !in_description {
                s.push_str(".SH DESCRIPTION\n");
                in_description = true;
            }
            if lines.iter().all(indented) {
                preformatted(&mut s, &lines);
            } else {
                s.push_str(".PP\n");
                push_paragraph(&mut s, block);
            }
        }
    }
    s.push_str(&see_also(see));
    if !version.is_empty() {
        let _ = writeln!(s, ".SH VERSION\n.PP\n{}", escape(version));
    }
    Ok(s)
}

/// Lines set as they are (tables), their common indentation removed, the
/// block indented as a whole.
fn preformatted(s: &mut String, lines: &[&str]) {
    let common = lines
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    s.push_str(".PP\n.RS 4\n.nf\n");
    let text: String = lines
        .iter()
        .map(|l| format!("{}\n", l.get(common..).unwrap_or("")))
        .collect();
    s.push_str(&code_to_bold(&escape_lines(&text)));
    s.push_str(".fi\n.RE\n");
}

fn push_paragraph(s: &mut String, text: &str) {
    let joined: Vec<&str> = text.lines().map(str::trim).collect();
    s.push_str(&code_to_bold(&escape_line(&joined.join(" "))));
    s.push('\n');
}

/// `.TP` entries: tag in bold, then its text.
fn tagged(items: &[(&str, &str)]) -> String {
    let mut s = String::new();
    for (tag, text) in items {
        let _ = writeln!(s, ".TP\n\\fB{}\\fR\n{}", escape(tag), escape_line(text));
    }
    s
}

fn see_also(pages: &[(&str, &str)]) -> String {
    let refs: Vec<String> = pages
        .iter()
        .map(|(name, section)| format!("\\fB{}\\fR({section})", escape(name)))
        .collect();
    format!(".SH \"SEE ALSO\"\n.PP\n{}\n", refs.join(", "))
}

/// Text for roff: backslashes and hyphens (so options stay ASCII `-`).
fn escape(text: &str) -> String {
    text.replace('\\', "\\e").replace('-', "\\-")
}

/// One line of text: [`escape`], and no request or macro where it starts.
fn escape_line(line: &str) -> String {
    let e = escape(line);
    if e.starts_with(['.', '\'']) {
        format!("\\&{e}")
    } else {
        e
    }
}

fn escape_lines(text: &str) -> String {
    text.lines().map(|l| escape_line(l) + "\n").collect()
}

/// `` `x` `` → bold x, when the backticks pair up.
fn code_to_bold(text: &str) -> String {
    if text.matches('`').count() & 1 == 1 {
        return text.to_string();
    }
    let mut out = String::new();
    for (i, part) in text.split('`').enumerate() {
        if i % 2 == 1 {
            let _ = write!(out, "\\fB{part}\\fR");
        } else {
            out.push_str(part);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_text_becomes_sections() {
        let help =
            "tool 1.2: does things\n\nUsage: tool ARGS...   e.g. tool -x\n       tool --help\n\n\
                    It runs `other` with\nARGS.\n\n  a  first\n  b  second\n\n\
                    Files (D is a dir):\n  D/x   a file\n\nExit status: 0 or\nnot.\n";
        let page = help_to_man(help, &[("other", "8")]).expect("converts");
        for want in [
            ".TH TOOL 8 \"\" \"tool 1.2\"\n",
            ".SH NAME\ntool \\- does things\n",
            ".SH SYNOPSIS\n.nf\ntool ARGS...   e.g. tool \\-x\ntool \\-\\-help\n.fi\n",
            ".SH DESCRIPTION\n.PP\nIt runs \\fBother\\fR with ARGS.\n",
            ".nf\na  first\nb  second\n.fi\n",
            ".SH \"FILES\"\n.PP\nD is a dir.\n.PP\n.RS 4\n.nf\nD/x   a file\n",
            ".SH \"EXIT STATUS\"\n.PP\n0 or not.\n",
            ".SH \"SEE ALSO\"\n.PP\n\\fBother\\fR(8)\n",
        ] {
            assert!(page.contains(want), "{want:?} missing from\n{page}");
        }
    }

    #[test]
    fn lines_never_start_a_request() {
        assert_eq!(escape_line(".x 'y' \\z"), "\\&.x 'y' \\ez");
        assert_eq!(escape_line("'q"), "\\&'q");
    }
}
