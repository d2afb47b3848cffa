//! Tidy checks (after rust-analyzer's `tidy.rs`): the repository's documents
//! stay true to the code. Plain file reads, no network, no build products.
//!
//! **Citations of the design.** Code and documents cite the design as
//! `docs/DESIGN.md, "Heading"` (optionally inside a sentence or brackets,
//! and wrapped across comment lines), where Heading is the exact text of a
//! heading of `docs/DESIGN.md`. Markdown files may also name the whole
//! document without a heading. The design notes that used to live outside
//! the repository are never cited: a newcomer who clones it could not
//! follow them.
//!
//! **The code map.** In `ARCHITECTURE.md`'s "Code map", the section of each
//! crate below (`### \`daemon/\` …` and so on) names every module of that
//! crate by its path relative to the crate's `src/`, in backticks: `plan`,
//! `fetch/` (a directory module, with or without the slash),
//! `fetch/machine`, `mesh/link/serve`. Test modules (`mod tests`,
//! `#[cfg(test)]`) are left out. Conversely, every backticked
//! `lower_case/path` in such a section (one with a `/`) must be a module of
//! the crate, or a file or directory that exists under the crate or the
//! repository (`fuzz/`). Bare names are only checked in the first
//! direction: `plan` might as well be a field or a word.
//!
//! **The code layout list.** `daemon/symbol-order.txt` names functions by
//! hashes of the compiler that made it: one made by another rustc than the
//! one running these tests orders nothing, and the daemon's resident
//! memory grows by 3 MiB without a word but the build's warning
//! (bench/README.md). This is the one check that runs a program:
//! `rustc -V`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The crates whose modules the code map must name: (the folder, which is
/// also the code map's section heading, and its source dir).
const CRATES: [&str; 4] = ["daemon", "proto", "conf-insert", "pacsrv"];

const DESIGN: &str = "docs/DESIGN.md";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the repository")
        .to_path_buf()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Every text file of the repository, build output and git's own left out.
fn repository_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let entries =
            std::fs::read_dir(dir).unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()));
        for entry in entries {
            let entry = entry.expect("a directory entry");
            let path = entry.path();
            let name = entry.file_name();
            let file_type = entry.file_type().expect("a file type");
            if file_type.is_dir() {
                if name != "target" && name != ".git" {
                    walk(&path, out);
                }
            } else if file_type.is_file() && name != "Cargo.lock" {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(&root(), &mut out);
    out.sort();
    out
}

/// The headings of `docs/DESIGN.md`, in order.
fn design_headings() -> Vec<String> {
    read(&root().join(DESIGN))
        .lines()
        .filter(|l| l.starts_with('#'))
        .map(|l| l.trim_start_matches('#').trim().to_owned())
        .collect()
}

/// A file's text with comment markers taken off every line and the lines
/// joined with spaces, so a citation wrapped across comment lines reads as
/// one; and the line each byte of it came from.
fn joined(text: &str) -> (String, Vec<(usize, usize)>) {
    let mut out = String::new();
    let mut starts = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let mut line = line.trim_start();
        for marker in ["//!", "///", "//", "#"] {
            if let Some(rest) = line.strip_prefix(marker) {
                line = rest.trim_start_matches('#').trim_start();
                break;
            }
        }
        starts.push((out.len(), i + 1));
        out.push_str(line.trim_end());
        out.push(' ');
    }
    (out, starts)
}

fn line_at(starts: &[(usize, usize)], offset: usize) -> usize {
    let i = starts.partition_point(|&(start, _)| start <= offset);
    starts[i.saturating_sub(1)].1
}

#[test]
fn design_headings_are_unique() {
    let mut seen = BTreeSet::new();
    let twice: Vec<String> = design_headings()
        .into_iter()
        .filter(|h| !seen.insert(h.clone()))
        .collect();
    assert!(
        twice.is_empty(),
        "{DESIGN} has these headings more than once, so a citation of them is ambiguous: {twice:?}"
    );
}

#[test]
fn citations_of_the_design_name_its_sections() {
    let root = root();
    let headings: BTreeSet<String> = design_headings().into_iter().collect();
    let this_file = root.join("tests/tests/tidy.rs");
    // Spelt in two parts so that this file does not cite anything itself.
    let outside_notes = ["FIELD", "-NOTES"].concat();
    let mut problems = Vec::new();
    for path in repository_files() {
        if path == this_file || path == root.join(DESIGN) {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue; // not text
        };
        let rel = path.strip_prefix(&root).expect("under the root").display();
        let markdown = path.extension().is_some_and(|e| e == "md");
        let (text, starts) = joined(&text);
        for (at, _) in text.match_indices(&outside_notes) {
            problems.push(format!(
                "{rel}:{}: cites the field notes, which are not in the repository; cite {DESIGN}, \"Heading\"",
                line_at(&starts, at)
            ));
        }
        for (at, _) in text.match_indices("DESIGN.md") {
            let line = line_at(&starts, at);
            if !text[..at].ends_with("docs/") {
                problems.push(format!(
                    "{rel}:{line}: a DESIGN.md that is not {DESIGN} (the repository's own)"
                ));
                continue;
            }
            let after = &text[at + "DESIGN.md".len()..];
            let after = after.strip_prefix('`').unwrap_or(after);
            match after.strip_prefix(", \"").and_then(|a| a.split_once('"')) {
                Some((heading, _)) if headings.contains(heading) => {}
                Some((heading, _)) => problems.push(format!(
                    "{rel}:{line}: cites {DESIGN}, {heading:?}, which is no heading there"
                )),
                None if markdown => {} // the whole document
                None => problems.push(format!(
                    "{rel}:{line}: cite a section, as `{DESIGN}, \"Heading\"`"
                )),
            }
        }
    }
    assert!(
        problems.is_empty(),
        "citations of the design:\n  {}\n(headings of {DESIGN}: {headings:?})",
        problems.join("\n  ")
    );
}

/// A `mod` declaration on `line`, unless it is a test module: its name.
fn declared_module<'a>(line: &'a str, previous: &str) -> Option<&'a str> {
    let mut rest = line.trim_start();
    if let Some(after) = rest.strip_prefix("pub") {
        rest = after.trim_start();
        if rest.starts_with('(') {
            rest = rest[rest.find(')')? + 1..].trim_start();
        }
    }
    let rest = rest.strip_prefix("mod ")?.trim_start();
    let end = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(rest.len());
    let (name, tail) = rest.split_at(end);
    let tail = tail.trim_start();
    let is_test = name == "tests" || previous.contains("cfg(test)");
    (!name.is_empty() && (tail.starts_with(';') || tail.starts_with('{')) && !is_test)
        .then_some(name)
}

/// The module path (relative to `src/`, `/`-separated) of the modules a
/// file at `rel` (relative to `src/`) declares as its children.
fn parent_path(rel: &Path) -> String {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let file = parts.pop().unwrap_or_default();
    match file.as_str() {
        "lib.rs" | "main.rs" if parts.is_empty() => String::new(),
        "mod.rs" => parts.join("/"),
        _ => {
            parts.push(file.trim_end_matches(".rs").to_owned());
            parts.join("/")
        }
    }
}

/// Every non-test module of `krate`, as a path relative to its `src/`.
fn modules_of(krate: &str) -> BTreeSet<String> {
    let src = root().join(krate).join("src");
    let mut modules = BTreeSet::new();
    for path in repository_files() {
        let Ok(rel) = path.strip_prefix(&src) else {
            continue;
        };
        if path.extension().is_none_or(|e| e != "rs") || rel.starts_with("bin") {
            continue;
        }
        let parent = parent_path(rel);
        let text = read(&path);
        let mut previous = "";
        for line in text.lines() {
            if let Some(name) = declared_module(line, previous) {
                modules.insert(if parent.is_empty() {
                    name.to_owned()
                } else {
                    format!("{parent}/{name}")
                });
            }
            if !line.trim().is_empty() {
                previous = line;
            }
        }
    }
    modules
}

/// The backticked words of each crate's section of ARCHITECTURE.md's code
/// map (the section's heading left out).
fn code_map_sections() -> BTreeMap<&'static str, Vec<String>> {
    let text = read(&root().join("ARCHITECTURE.md"));
    let (_, map) = text
        .split_once("\n## Code map")
        .expect("ARCHITECTURE.md has a `## Code map` section");
    let map = map.split("\n## ").next().unwrap_or(map);
    let mut sections = BTreeMap::new();
    for section in map.split("\n### ").skip(1) {
        let (heading, body) = section.split_once('\n').unwrap_or((section, ""));
        let Some(krate) = CRATES
            .into_iter()
            .find(|k| heading.starts_with(&format!("`{k}/`")))
        else {
            continue;
        };
        let words = body
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect();
        sections.insert(krate, words);
    }
    sections
}

#[test]
fn architecture_names_every_module() {
    let sections = code_map_sections();
    let mut missing = Vec::new();
    for krate in CRATES {
        let words: BTreeSet<&str> = sections
            .get(krate)
            .unwrap_or_else(|| panic!("ARCHITECTURE.md's code map has no `### `{krate}/`` section"))
            .iter()
            .map(String::as_str)
            .collect();
        let unnamed: Vec<String> = modules_of(krate)
            .into_iter()
            .filter(|m| !words.contains(m.as_str()) && !words.contains(format!("{m}/").as_str()))
            .map(|m| format!("`{m}`"))
            .collect();
        if !unnamed.is_empty() {
            missing.push(format!("{krate}/src: {}", unnamed.join(", ")));
        }
    }
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md's code map does not name these modules (write each as its path \
         relative to the crate's src/, in backticks, in the crate's section):\n  {}",
        missing.join("\n  ")
    );
}

/// A backticked word that reads as a module path: lower-case segments
/// joined by `/`, with at least one `/`.
fn looks_like_module_path(word: &str) -> bool {
    word.contains('/')
        && word.trim_end_matches('/').split('/').all(|seg| {
            seg.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        })
}

#[test]
fn architecture_names_only_modules_that_exist() {
    let root = root();
    let mut stale = Vec::new();
    for (krate, words) in code_map_sections() {
        let modules = modules_of(krate);
        let mut wrong: BTreeSet<String> = BTreeSet::new();
        for word in words.iter().filter(|w| looks_like_module_path(w)) {
            let path = word.trim_end_matches('/');
            let exists = modules.contains(path)
                || root.join(krate).join(path).exists()
                || root.join(path).exists();
            if !exists {
                wrong.insert(format!("`{word}`"));
            }
        }
        if !wrong.is_empty() {
            let wrong: Vec<String> = wrong.into_iter().collect();
            stale.push(format!("{krate}/src: {}", wrong.join(", ")));
        }
    }
    assert!(
        stale.is_empty(),
        "ARCHITECTURE.md's code map names these paths, which are no module of the crate (a \
         nested module is written in full from src/, e.g. `mesh/link/serve`):\n  {}",
        stale.join("\n  ")
    );
}

#[test]
fn module_paths_follow_the_files() {
    // The helpers above, on the shapes the crates use.
    let check = |rel: &str, want: &str| assert_eq!(parent_path(Path::new(rel)), want, "{rel}");
    check("lib.rs", "");
    check("main.rs", "");
    check("plan.rs", "plan");
    check("fetch/mod.rs", "fetch");
    check("fetch/machine.rs", "fetch/machine");
    check("mesh/link/mod.rs", "mesh/link");
    assert_eq!(declared_module("pub mod fetch;", ""), Some("fetch"));
    assert_eq!(declared_module("    pub(crate) mod x {", ""), Some("x"));
    assert_eq!(declared_module("mod tests;", "#[cfg(test)]"), None);
    assert_eq!(declared_module("mod helpers {", "#[cfg(test)]"), None);
    assert_eq!(declared_module("// mod nothing;", ""), None);
    assert_eq!(declared_module("model::parse;", ""), None);
    assert!(looks_like_module_path("mesh/link/serve"));
    assert!(looks_like_module_path("fetch/"));
    assert!(!looks_like_module_path("plan"));
    assert!(!looks_like_module_path("STORE/incoming"));
    assert!(!looks_like_module_path("/etc/pacman.d/pacmesh"));
    assert!(!looks_like_module_path("pacmesh/1"));
}

#[test]
fn the_symbol_order_was_made_by_this_compiler() {
    let list = read(&root().join("daemon/symbol-order.txt"));
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let out = std::process::Command::new(&rustc)
        .arg("-V")
        .output()
        .unwrap_or_else(|e| panic!("running {rustc} -V: {e}"));
    let version = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let made = list.lines().find_map(|line| line.strip_prefix("# rustc: "));
    assert_eq!(
        made,
        Some(version.as_str()),
        "daemon/symbol-order.txt was made by another compiler: run bench/symbol-order.sh \
         (needs valgrind) and commit the list it writes"
    );
}
