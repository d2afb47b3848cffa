//! Table-driven tests of the insert/remove filter: each case gives an input
//! and the exact expected output (or error), and `check` also asserts
//! idempotence and that `remove_include` undoes `insert_include`.

use super::*;
use proptest::prelude::*;

const P: &str = "/etc/pacman.d/pacmesh";
const ARCH_STOCK: &str = include_str!("../../tests/data/arch-pacman.conf");

enum Want {
    /// The exact output.
    Out(String),
    /// The input, unchanged.
    Same,
    /// An error whose message starts with this.
    Err(&'static str),
}

struct Case {
    name: &'static str,
    input: String,
    want: Want,
    /// The input already holds pacmesh's Include, so removing gives less
    /// than the input back.
    prior: bool,
}

fn case(name: &'static str, input: &str, want: Want) -> Case {
    Case {
        name,
        input: input.to_owned(),
        want,
        prior: false,
    }
}

fn out(text: &str) -> Want {
    Want::Out(text.to_owned())
}

fn multilib_enabled() -> String {
    ARCH_STOCK.replace(
        "#[multilib]\n#Include = /etc/pacman.d/mirrorlist\n",
        "[multilib]\nInclude = /etc/pacman.d/mirrorlist\n",
    )
}

fn with_include_after(text: &str, headers: &[&str]) -> String {
    let mut text = text.to_owned();
    for header in headers {
        let line = format!("\n{header}\n");
        assert!(text.contains(&line), "{header} in stock file");
        text = text.replace(&line, &format!("\n{header}\nInclude = {P}\n"));
    }
    text
}

fn cases() -> Vec<Case> {
    let multilib = multilib_enabled();
    vec![
        case(
            "arch stock",
            ARCH_STOCK,
            Want::Out(with_include_after(ARCH_STOCK, &["[core]", "[extra]"])),
        ),
        case(
            "arch stock with multilib",
            &multilib,
            Want::Out(with_include_after(&multilib, &["[core]", "[extra]", "[multilib]"])),
        ),
        case(
            "custom repos with Server only",
            "[options]\nArchitecture = auto\n\n[mine]\nSigLevel = Optional TrustAll\nServer = file:///srv/mine\n[theirs]\nServer = https://a/$repo\nServer = https://b/$repo\n",
            out("[options]\nArchitecture = auto\n\n[mine]\nInclude = /etc/pacman.d/pacmesh\nSigLevel = Optional TrustAll\nServer = file:///srv/mine\n[theirs]\nInclude = /etc/pacman.d/pacmesh\nServer = https://a/$repo\nServer = https://b/$repo\n"),
        ),
        case(
            "Include and Server in one repo",
            "[core]\nServer = https://first/$repo/os/$arch\nInclude = /etc/pacman.d/mirrorlist\nServer = https://last/$repo/os/$arch\n",
            out("[core]\nInclude = /etc/pacman.d/pacmesh\nServer = https://first/$repo/os/$arch\nInclude = /etc/pacman.d/mirrorlist\nServer = https://last/$repo/os/$arch\n"),
        ),
        case(
            "Include= without spaces",
            "[core]\nInclude=/etc/pacman.d/mirrorlist\n",
            out("[core]\nInclude = /etc/pacman.d/pacmesh\nInclude=/etc/pacman.d/mirrorlist\n"),
        ),
        case(
            "tabs and odd spacing",
            "\t[options]  \n\tHoldPkg\t=\tpacman\n  [core]\t\n\tInclude\t=\t/etc/pacman.d/mirrorlist\t\n",
            out("\t[options]  \n\tHoldPkg\t=\tpacman\n  [core]\t\nInclude = /etc/pacman.d/pacmesh\n\tInclude\t=\t/etc/pacman.d/mirrorlist\t\n"),
        ),
        case(
            "CRLF",
            "[options]\r\nCheckSpace\r\n[core]\r\nInclude = /etc/pacman.d/mirrorlist\r\n",
            out("[options]\r\nCheckSpace\r\n[core]\r\nInclude = /etc/pacman.d/pacmesh\r\nInclude = /etc/pacman.d/mirrorlist\r\n"),
        ),
        case(
            "no trailing newline after a directive",
            "[core]\nServer = https://m/$repo",
            out("[core]\nInclude = /etc/pacman.d/pacmesh\nServer = https://m/$repo"),
        ),
        case(
            "no trailing newline after the last header",
            "[core]\r\nServer = https://m\r\n[empty]",
            out("[core]\r\nInclude = /etc/pacman.d/pacmesh\r\nServer = https://m\r\n[empty]\r\nInclude = /etc/pacman.d/pacmesh"),
        ),
        case(
            "header with a stray CR and no newline",
            "[core]\n[x]\r",
            out("[core]\nInclude = /etc/pacman.d/pacmesh\n[x]\r\r\nInclude = /etc/pacman.d/pacmesh"),
        ),
        Case {
            prior: true,
            ..case(
                "already inserted",
                "[core]\nInclude = /etc/pacman.d/pacmesh\nInclude = /etc/pacman.d/mirrorlist\n",
                Want::Same,
            )
        },
        Case {
            prior: true,
            ..case(
                "already inserted, own spacing, after a comment and SigLevel",
                "[core]\n# ours\nSigLevel = Never\nInclude=/etc/pacman.d/pacmesh\nServer = https://m\n",
                Want::Same,
            )
        },
        Case {
            prior: true,
            ..case(
                "inserted by hand after a mirror is not first",
                "[core]\nServer = https://m\nInclude = /etc/pacman.d/pacmesh\n",
                out("[core]\nInclude = /etc/pacman.d/pacmesh\nServer = https://m\nInclude = /etc/pacman.d/pacmesh\n"),
            )
        },
        case(
            "another pacmesh path is not ours",
            "[core]\nInclude = /etc/pacman.d/pacmesh.bak\n",
            out("[core]\nInclude = /etc/pacman.d/pacmesh\nInclude = /etc/pacman.d/pacmesh.bak\n"),
        ),
        case("[options] only", "[options]\nCacheDir = /a\n#[core]\n", Want::Same),
        case("empty file", "", Want::Same),
        case("comments only, no newline", "# nothing\n#[core]", Want::Same),
        case(
            "Include glob",
            "[core]\nInclude = /etc/pacman.d/mirrors.d/*.list\n",
            out("[core]\nInclude = /etc/pacman.d/pacmesh\nInclude = /etc/pacman.d/mirrors.d/*.list\n"),
        ),
        case(
            "empty repo section and repeated section",
            "[a]\n[a]\n\n[b]\n",
            out("[a]\nInclude = /etc/pacman.d/pacmesh\n[a]\nInclude = /etc/pacman.d/pacmesh\n\n[b]\nInclude = /etc/pacman.d/pacmesh\n"),
        ),
        case(
            "Include before any section",
            "Include = /etc/pacman.d/repos.conf\n[core]\n",
            out("Include = /etc/pacman.d/repos.conf\n[core]\nInclude = /etc/pacman.d/pacmesh\n"),
        ),
        case(
            "hash inside a value is not a comment",
            "[core]\nServer = https://m/#x\n",
            out("[core]\nInclude = /etc/pacman.d/pacmesh\nServer = https://m/#x\n"),
        ),
        case(
            "directive before any section",
            "# header\nServer = https://m\n[core]\n",
            Want::Err("t.conf:2: directive `Server` outside any section"),
        ),
        case(
            "header followed by a comment",
            "[options]\n\n[core] # main repo\nServer = https://m\n",
            Want::Err("t.conf:3: malformed section header `[core] # main repo`"),
        ),
        case("unclosed header", "[core]\nServer = a\n[extra\n", Want::Err("t.conf:3: malformed section header `[extra`")),
        case("empty header", "[core]\n[]\n", Want::Err("t.conf:2: malformed section header `[]`")),
        case("bare Server", "[core]\r\nServer\r\n", Want::Err("t.conf:2: directive `Server` needs a value")),
        case("bare Include", "[options]\nInclude\n", Want::Err("t.conf:2: directive `Include` needs a value")),
        case("bare SigLevel late", &format!("{ARCH_STOCK}[x]\nSigLevel\n"), Want::Err("t.conf:102: directive `SigLevel` needs a value")),
    ]
}

fn check(case: &Case) {
    let file = Path::new("t.conf");
    let name = case.name;
    let inserted = insert_include(&case.input, file, P);
    let removed = remove_include(&case.input, file, P);
    let output = match &case.want {
        Want::Err(message) => {
            for result in [inserted, removed] {
                let error = result.err().map(|e| e.to_string()).unwrap_or_default();
                assert!(
                    error.starts_with(message),
                    "{name}: got error {error:?}, want {message:?}"
                );
            }
            return;
        }
        Want::Same => case.input.clone(),
        Want::Out(expected) => expected.clone(),
    };
    let inserted = inserted.unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(inserted, output, "{name}: insert");
    let again = insert_include(&inserted, file, P).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(again, inserted, "{name}: insert is not idempotent");
    let undone = remove_include(&inserted, file, P).unwrap_or_else(|e| panic!("{name}: {e}"));
    let removed = removed.unwrap_or_else(|e| panic!("{name}: {e}"));
    if case.prior {
        assert_eq!(undone, removed, "{name}: remove of insert");
    } else {
        assert_eq!(
            undone, case.input,
            "{name}: remove is not the inverse of insert"
        );
        assert_eq!(
            removed, case.input,
            "{name}: remove changed a file without our lines"
        );
    }
    let twice = remove_include(&undone, file, P).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(twice, undone, "{name}: remove is not idempotent");
}

#[test]
fn table() {
    let cases = cases();
    for case in &cases {
        check(case);
    }
    assert!(cases.len() >= 25);
}

#[test]
fn remove_takes_out_every_copy_in_repos_only() {
    let text = "[options]\nInclude = /p\n[a]\nServer = s\nInclude  =  /p\n[b]\nInclude = /p";
    let removed = remove_include(text, Path::new("t"), "/p").expect("removes");
    assert_eq!(removed, "[options]\nInclude = /p\n[a]\nServer = s\n[b]");
}

#[test]
fn include_paths_that_do_not_fit_one_line_are_refused() {
    for path in ["", " /p", "/p\t", "/a\nb", "/a\rb"] {
        let error = insert_include("[core]\n", Path::new("t"), path).err();
        assert!(
            matches!(error, Some(ConfError::BadIncludePath { .. })),
            "{path:?}"
        );
    }
    assert!(insert_include("[core]\n", Path::new("t"), "/etc/pacman.d/with space").is_ok());
}

/// A line of a valid pacman.conf, with any line ending.
fn any_line() -> impl Strategy<Value = String> {
    let body = prop_oneof![
        Just("[core]"),
        Just("  [extra]\t"),
        Just("[options]"),
        Just("#[multilib]"),
        Just("# comment"),
        Just(""),
        Just("  \t"),
        Just("Server = https://m/$repo/os/$arch"),
        Just("\tServer=file:///srv"),
        Just("Include = /etc/pacman.d/mirrorlist"),
        Just("SigLevel = Never"),
        Just("CheckSpace"),
        Just("x\r"),
    ];
    (body, prop_oneof![Just("\n"), Just("\r\n")]).prop_map(|(body, eol)| format!("{body}{eol}"))
}

proptest! {
    #[test]
    fn remove_inverts_insert_and_both_are_idempotent(
        lines in proptest::collection::vec(any_line(), 0..24),
        drop_last_eol in any::<bool>(),
    ) {
        let mut text = format!("[options]\n{}", lines.concat());
        if drop_last_eol {
            while text.ends_with(['\n']) { text.pop(); }
        }
        let file = Path::new("p.conf");
        let inserted = insert_include(&text, file, P).expect("valid input");
        prop_assert_eq!(&insert_include(&inserted, file, P).expect("valid"), &inserted);
        prop_assert_eq!(&remove_include(&inserted, file, P).expect("valid"), &text);
        // Every repository now reaches pacmesh before any other server.
        let sections = inserted.split('\n').filter(|l| lex::trim(l).starts_with("[")).count();
        let ours = inserted.matches(&format!("Include = {P}")).count();
        let options = inserted.matches("[options]").count();
        prop_assert_eq!(ours, sections - options);
    }
}
