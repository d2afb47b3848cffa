//! What `systemd/` ships: the units pass `systemd-analyze verify` and the daemon's sandbox scores
//! ≤ 2.0 on `systemd-analyze security`; sysusers/tmpfiles apply to a temp root; the default
//! `pacmeshd.toml` lists every key with its real default; and `pacmesh-ports` opens and closes
//! real holes in a default-drop firewall between two network namespaces (nftables, and the
//! iptables fallback), leaving the ruleset exactly as it found it.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Read as _};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use pacmesh_tests::daemon::Daemon;
use pacmesh_tests::process::{describe, expect_success, run, run_ok, show_command};
use pacmesh_tests::{prereq, process, workspace};

fn systemd_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent: the workspace")
        .join("systemd")
}

fn shipped(name: &str) -> String {
    let path = systemd_dir().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn replace_once(text: &str, from: &str, to: &str, what: &str) -> String {
    assert_eq!(
        text.matches(from).count(),
        1,
        "{what} should contain `{from}` exactly once:\n{text}"
    );
    text.replace(from, to)
}

// ------------------------------------------------------------------ units

#[test]
fn units_pass_systemd_analyze_verify() {
    if !prereq::require_tools(&["systemd-analyze"]) {
        return;
    }
    // `verify` insists that every Exec*= program exists: point the copies at real ones.
    let built = workspace::bin_path("pacmeshd");
    let daemon = if built.is_file() {
        built
    } else {
        std::env::current_exe().expect("the test executable's path")
    };
    let script = systemd_dir().join("pacmesh-ports");
    let dir = tempfile::tempdir().expect("temp dir");

    let unit = shipped("pacmeshd.service");
    for line in [
        "Type=notify",
        "NotifyAccess=main",
        "User=pacmesh",
        "StateDirectory=pacmesh",
        "CacheDirectory=pacmesh",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Wants=pacmesh-ports.service",
        "WatchdogSec=30s",
        "Restart=on-failure",
    ] {
        assert!(
            unit.lines().any(|l| l == line),
            "pacmeshd.service lacks `{line}`"
        );
    }
    let unit = replace_once(
        &unit,
        "ExecStart=/usr/bin/pacmeshd\n",
        &format!("ExecStart={}\n", daemon.display()),
        "pacmeshd.service",
    );
    std::fs::write(dir.path().join("pacmeshd.service"), unit).expect("writing unit copy");

    let ports = shipped("pacmesh-ports.service");
    let mut ports_copy = ports.clone();
    for verb in ["open", "close"] {
        let key = if verb == "open" {
            "ExecStart"
        } else {
            "ExecStop"
        };
        ports_copy = replace_once(
            &ports_copy,
            &format!("{key}=/usr/lib/pacmesh/pacmesh-ports {verb}\n"),
            &format!("{key}={} {verb}\n", script.display()),
            "pacmesh-ports.service",
        );
    }
    let ports_copy =
        ports_copy.replace("/usr/lib/pacmesh/pacmesh-ports", &script.to_string_lossy());
    std::fs::write(dir.path().join("pacmesh-ports.service"), ports_copy)
        .expect("writing unit copy");

    let out = run(Command::new("systemd-analyze")
        .arg("verify")
        .arg(dir.path().join("pacmeshd.service"))
        .arg(dir.path().join("pacmesh-ports.service")));
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "{}",
        describe(&out, "systemd-analyze verify is not clean")
    );
}

/// The "Overall exposure level for UNIT: N.N ..." of `systemd-analyze security --offline=true`.
fn exposure(unit: &Path) -> (f64, Output) {
    let out = run_ok(
        Command::new("systemd-analyze")
            .args(["security", "--offline=true", "--no-pager"])
            .arg(unit)
            .env("SYSTEMD_COLORS", "0"),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let score = text
        .lines()
        .find_map(|l| {
            l.split_once("Overall exposure level for ")?
                .1
                .split_once(": ")
        })
        .and_then(|(_, rest)| rest.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("{}", describe(&out, "no overall exposure level")));
    (score, out)
}

#[test]
fn pacmeshd_sandbox_exposure_is_at_most_2() {
    if !prereq::require_tools(&["systemd-analyze"]) {
        return;
    }
    let (score, out) = exposure(&systemd_dir().join("pacmeshd.service"));
    assert!(
        score <= 2.0,
        "exposure {score} > 2.0{}",
        describe(&out, "systemd-analyze security")
    );
    let (ports_score, _) = exposure(&systemd_dir().join("pacmesh-ports.service"));
    eprintln!("exposure: pacmeshd.service {score}, pacmesh-ports.service {ports_score}");
}

#[test]
fn sysusers_and_tmpfiles_apply_to_a_root() {
    if !prereq::require(&["systemd-sysusers", "systemd-tmpfiles"]) {
        return;
    }
    let root = tempfile::tempdir().expect("temp root");
    for (dir, src) in [
        ("usr/lib/sysusers.d", "pacmesh.sysusers"),
        ("usr/lib/tmpfiles.d", "pacmesh.tmpfiles"),
    ] {
        let dir = root.path().join(dir);
        std::fs::create_dir_all(&dir).expect("creating config dir");
        std::fs::copy(systemd_dir().join(src), dir.join("pacmesh.conf")).expect("copying");
    }
    std::fs::create_dir_all(root.path().join("etc")).expect("creating etc");
    run_ok(Command::new("systemd-sysusers").arg(format!("--root={}", root.path().display())));
    run_ok(
        Command::new("systemd-tmpfiles")
            .arg(format!("--root={}", root.path().display()))
            .arg("--create"),
    );
    let passwd = std::fs::read_to_string(root.path().join("etc/passwd")).expect("etc/passwd");
    let user: Vec<&str> = passwd
        .lines()
        .find(|l| l.starts_with("pacmesh:"))
        .unwrap_or_else(|| panic!("no pacmesh user in passwd:\n{passwd}"))
        .split(':')
        .collect();
    assert_eq!(user[4..6], ["pacmesh daemon", "/var/lib/pacmesh"]);
    let uid: u32 = user[2].parse().expect("numeric uid");
    assert!(uid > 0 && uid < 1000, "a system uid, not {uid}");
    let group = std::fs::read_to_string(root.path().join("etc/group")).expect("etc/group");
    assert!(group.lines().any(|l| l.starts_with("pacmesh:")), "{group}");

    use std::os::unix::fs::MetadataExt as _;
    let etc = std::fs::metadata(root.path().join("etc/pacmesh")).expect("/etc/pacmesh made");
    assert!(etc.is_dir());
    assert_eq!((etc.mode() & 0o7777, etc.uid()), (0o755, 0));

    // A key made by `pacmeshd --gen-mesh-key` (root's, 0600) is given to
    // the daemon's group, 0640: what pacmeshd's permission check accepts
    // for a daemon running as pacmesh.
    let key = root.path().join("etc/pacmesh/mesh.key");
    std::fs::write(&key, "0".repeat(64) + "\n").expect("writing the key");
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .expect("chmod");
    run_ok(
        Command::new("systemd-tmpfiles")
            .arg(format!("--root={}", root.path().display()))
            .arg("--create"),
    );
    let gid: u32 = group
        .lines()
        .find_map(|l| l.strip_prefix("pacmesh:"))
        .and_then(|rest| rest.split(':').nth(1))
        .and_then(|g| g.parse().ok())
        .expect("pacmesh's gid");
    let meta = std::fs::metadata(&key).expect("the key");
    assert_eq!(
        (meta.mode() & 0o7777, meta.uid(), meta.gid()),
        (0o640, 0, gid),
        "mesh.key after tmpfiles"
    );
}

#[test]
fn default_toml_lists_every_key_with_its_default() {
    let text = shipped("pacmeshd.toml");
    // `#key = value` and `#[table]` lines; examples (`#   …`) are not defaults.
    let commented: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix('#'))
        .filter(|l| {
            l.split_once(" = ").is_some_and(|(k, _)| is_key(k))
                || l.strip_prefix('[')
                    .and_then(|t| t.strip_suffix(']'))
                    .is_some_and(is_key)
        })
        .collect();
    let keys: Vec<&str> = commented
        .iter()
        .map(|l| l.split_once(" = ").map_or(*l, |(k, _)| k))
        .collect();
    assert_eq!(
        keys,
        [
            "pacman_conf",
            "cache_dir",
            "http_listen",
            "quic_listen",
            "state_dir",
            "store_dir",
            "peer",
            "mesh_key",
            "no_mdns",
            "serve_lan",
            "pages_lan",
            "verified_only",
            "mode",
            "[mirror]",
            "db_revalidate_s",
            "store_max_gib",
            "keep_versions",
            "refresh_interval_s",
            "prefetch_days",
            "prefetch_kib_s"
        ]
    );
    assert!(
        text.lines().all(|l| l.is_empty() || l.starts_with('#')),
        "every line of the shipped pacmeshd.toml is commented out"
    );

    // Uncommented, the file is what `pacmeshd --print-config` prints for it: the values shown
    // are the defaults (mesh_key, which has none, points at a real file for the check).
    let bin = Daemon::binary();
    assert!(
        bin.is_file(),
        "{} not found: run `cargo build --workspace --bins` first",
        bin.display()
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let key = dir.path().join("mesh.key");
    std::fs::write(&key, "not a real secret\n").expect("writing key");
    let uncommented: Vec<String> = commented
        .iter()
        .map(|l| {
            if l.starts_with("mesh_key = ") {
                format!("mesh_key = \"{}\"", key.display())
            } else {
                (*l).to_string()
            }
        })
        .collect();
    let conf = dir.path().join("pacmeshd.toml");
    std::fs::write(&conf, uncommented.join("\n") + "\n").expect("writing config");
    let out = run_ok(
        Command::new(&bin)
            .arg("--config")
            .arg(&conf)
            .arg("--print-config"),
    );
    let printed: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect();
    assert_eq!(printed, uncommented);
}

fn is_key(k: &str) -> bool {
    !k.is_empty() && k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
}

// ------------------------------------------------------ network namespaces

const A_IP: Ipv4Addr = Ipv4Addr::new(10, 156, 80, 1);
const B_IP: Ipv4Addr = Ipv4Addr::new(10, 156, 80, 2);
/// What the test servers in A listen on (QUIC, mDNS, HTTP).
const SERVICES: [(&str, u16); 3] = [("udp", 15680), ("udp", 5353), ("tcp", 15680)];

/// Two namespaces `A` and `B` joined by a veth pair (10.156.80.1/24 in A, .2 in B; nothing
/// outside them). Dropping it kills the processes in them and deletes both, panic or not.
struct Hosts {
    a: String,
    b: String,
    children: Vec<Child>,
}

impl Hosts {
    fn new() -> Hosts {
        static N: AtomicUsize = AtomicUsize::new(0);
        let base = format!(
            "pm-ports-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let hosts = Hosts {
            a: format!("{base}-a"),
            b: format!("{base}-b"),
            children: Vec::new(),
        };
        for ns in [&hosts.a, &hosts.b] {
            run_ok(Command::new("ip").args(["netns", "add", ns]));
        }
        let (a, b) = (hosts.a.as_str(), hosts.b.as_str());
        let a_addr = format!("{A_IP}/24");
        let b_addr = format!("{B_IP}/24");
        for args in [
            &[
                "-n", a, "link", "add", "veth-a", "type", "veth", "peer", "name", "veth-b",
                "netns", b,
            ][..],
            &["-n", a, "addr", "add", &a_addr, "dev", "veth-a"],
            &["-n", b, "addr", "add", &b_addr, "dev", "veth-b"],
            &["-n", a, "link", "set", "lo", "up"],
            &["-n", b, "link", "set", "lo", "up"],
            &["-n", a, "link", "set", "veth-a", "up"],
            &["-n", b, "link", "set", "veth-b", "up"],
        ] {
            run_ok(Command::new("ip").args(args));
        }
        hosts
    }

    /// `ip netns exec NS PROGRAM`.
    fn exec(ns: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns]).arg(program);
        cmd
    }

    /// Runs `program args` in A and panics unless it exits 0.
    fn in_a(&self, program: &str, args: &[&str]) -> String {
        let out = run_ok(Self::exec(&self.a, program).args(args));
        String::from_utf8(out.stdout).expect("UTF-8 output")
    }

    /// Loads `rules` (nft syntax) into A's ruleset.
    fn load_nft(&self, rules: &str) {
        let file = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(file.path(), rules).expect("writing rules");
        run_ok(Self::exec(&self.a, "nft").arg("-f").arg(file.path()));
    }

    fn ruleset(&self) -> String {
        self.in_a("nft", &["list", "ruleset"])
    }

    /// Starts the UDP echo servers and the TCP greeter on A's address in A.
    fn start_servers(&mut self) {
        let mut child = helper(&self.a, &format!("serve {A_IP}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning the server helper");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let ready = lines.any(|l| l.is_ok_and(|l| l.ends_with("PMH ready")));
        if !ready {
            let mut err = String::new();
            let _ = child.stderr.take().expect("piped").read_to_string(&mut err);
            let _ = child.kill();
            let _ = child.wait();
            panic!("the server helper in {} did not get ready:\n{err}", self.a);
        }
        self.children.push(child);
    }

    /// From B, what each of A's services answers: `open`, `timeout` (dropped), `refused`...
    fn probe(&self) -> BTreeMap<String, String> {
        let targets: Vec<String> = SERVICES
            .iter()
            .map(|(proto, port)| format!("{proto}:{A_IP}:{port}"))
            .collect();
        let out = run_ok(&mut helper(
            &self.b,
            &format!("probe {}", targets.join(" ")),
        ));
        let found: BTreeMap<String, String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| Some(l.split_once("PMH ")?.1))
            .filter_map(|l| l.split_once(' '))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(found.len(), SERVICES.len(), "{}", describe(&out, "probe"));
        found
    }

    /// Asserts that exactly the services in `open` answer from B and the others time out.
    fn expect_open(&self, open: &[&str], when: &str) {
        let expected: BTreeMap<String, String> = SERVICES
            .iter()
            .map(|(proto, port)| {
                let name = format!("{proto}/{port}");
                let state = if open.contains(&name.as_str()) {
                    "open"
                } else {
                    "timeout"
                };
                (name, state.to_string())
            })
            .collect();
        assert_eq!(self.probe(), expected, "{when}");
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for ns in [&self.a, &self.b] {
            // Anything else still in our namespace was started by this test.
            if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    if let Some(pid) = pid
                        .parse::<i32>()
                        .ok()
                        .and_then(rustix::process::Pid::from_raw)
                    {
                        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                    }
                }
            }
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// The `pacmesh-netprobe` helper, run in `ns`: `serve IP` or `probe PROTO:IP:PORT...`.
fn helper(ns: &str, mode: &str) -> Command {
    let mut cmd = Hosts::exec(ns, PathBuf::from(env!("CARGO_BIN_EXE_pacmesh-netprobe")));
    cmd.args(mode.split_whitespace());
    cmd
}

// ------------------------------------------------------------ pacmesh-ports

/// A conf file for `pacmesh-ports` with SERVE_LAN set as given (and SOURCES
/// left at its default, lan).
fn ports_conf(dir: &Path, name: &str, serve_lan: bool) -> PathBuf {
    ports_conf_with(dir, name, serve_lan, "")
}

/// [`ports_conf`] with `extra` lines appended.
fn ports_conf_with(dir: &Path, name: &str, serve_lan: bool, extra: &str) -> PathBuf {
    let path = dir.join(name);
    let lan = if serve_lan { "yes" } else { "no" };
    std::fs::write(
        &path,
        format!(
            "QUIC_PORT=15680\nMDNS_PORT=5353\nHTTP_PORT=15680\nSERVE_LAN={lan}\nINTERFACES=\"\"\n{extra}"
        ),
    )
    .expect("writing conf");
    path
}

/// `pacmesh-ports ACTION` in namespace `ns` with conf `conf`, run by `shell`.
fn ports(
    ns: &str,
    shell: Option<&str>,
    backend: Option<&str>,
    conf: &Path,
    action: &str,
) -> Output {
    let script = systemd_dir().join("pacmesh-ports");
    let mut cmd = match shell {
        Some(shell) => {
            let mut cmd = Hosts::exec(ns, shell);
            cmd.arg(&script);
            cmd
        }
        None => Hosts::exec(ns, &script),
    };
    cmd.arg(action).env("PACMESH_PORTS_CONF", conf);
    match backend {
        Some(b) => cmd.env("PACMESH_PORTS_BACKEND", b),
        None => cmd.env_remove("PACMESH_PORTS_BACKEND"),
    };
    let out = run(&mut cmd);
    expect_success(&out, &show_command(&cmd));
    out
}

const TEST_FIREWALL: &str = r#"
table inet testfw {
    chain input {
        type filter hook input priority filter; policy drop;
        ct state established,related accept
        iifname "lo" accept
    }
}
table ip testother {
    chain input {
        type filter hook input priority filter + 10; policy accept;
        ip saddr 192.0.2.0/24 drop
    }
}
"#;

#[test]
fn ports_script_opens_and_closes_holes_in_nftables() {
    if !prereq::require(&["ip", "nft"]) {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let lan = ports_conf(dir.path(), "lan", true);
    let no_lan = ports_conf(dir.path(), "nolan", false);
    let mut hosts = Hosts::new();
    hosts.load_nft(TEST_FIREWALL);
    hosts.start_servers();
    let before = hosts.ruleset();
    assert!(before.contains("policy drop"), "{before}");
    hosts.expect_open(
        &[],
        "before open, the default-drop input chain drops everything",
    );

    // Why the script edits other tables' chains: an accept in a table of its own, even at an
    // earlier priority, is not final; testfw's input chain still drops the packet.
    hosts.load_nft(
        "table inet decoy {
            chain input {
                type filter hook input priority filter - 1; policy accept;
                udp dport { 5353, 15680 } accept
                tcp dport 15680 accept
            }
        }",
    );
    hosts.expect_open(&[], "an accept in another table does not open a port");
    hosts.in_a("nft", &["delete", "table", "inet", "decoy"]);
    assert_eq!(hosts.ruleset(), before);

    let a = hosts.a.clone();
    ports(&a, None, None, &no_lan, "open");
    hosts.expect_open(&["udp/15680", "udp/5353"], "after open, SERVE_LAN=no");

    ports(&a, None, None, &lan, "open");
    hosts.expect_open(
        &["udp/15680", "udp/5353", "tcp/15680"],
        "after open, SERVE_LAN=yes",
    );
    let opened = hosts.ruleset();
    ports(&a, None, None, &lan, "open");
    let twice = hosts.ruleset();
    assert_eq!(twice, opened, "a second open changes nothing");
    // By default (SOURCES=lan) only from A's own network and link-local:
    // IPv4 networks in both chains (inet and ip), IPv6 ones in inet only.
    for rule in ["pacmesh:udp/15680", "pacmesh:udp/5353", "pacmesh:tcp/15680"] {
        for (src, chains) in [
            ("10.156.80.0/24", 2),
            ("169.254.0.0/16", 2),
            ("fe80::/10", 1),
        ] {
            let comment = format!("{rule},src={src}");
            assert_eq!(
                twice.matches(&format!("comment \"{comment}\"")).count(),
                chains,
                "{comment} once in each input chain of its family:\n{twice}"
            );
        }
        assert!(
            !twice.contains(&format!("comment \"{rule}\"")),
            "no rule for any source:\n{twice}"
        );
    }
    let status =
        String::from_utf8_lossy(&ports(&a, None, None, &lan, "status").stdout).into_owned();
    for open in ["udp/15680", "udp/5353", "tcp/15680"] {
        assert!(
            status.contains(&format!(
                "nft inet testfw input: open {open} from 10.156.80.0/24\n"
            )),
            "status shows {open}:\n{status}"
        );
    }

    ports(&a, None, None, &no_lan, "open");
    hosts.expect_open(
        &["udp/15680", "udp/5353"],
        "after open with SERVE_LAN=no again",
    );
    assert!(
        !hosts.ruleset().contains("pacmesh:tcp"),
        "stale TCP rule removed"
    );

    ports(&a, None, None, &lan, "close");
    hosts.expect_open(&[], "after close");
    assert_eq!(
        hosts.ruleset(),
        before,
        "close restores the ruleset byte for byte"
    );

    ports(&a, None, None, &lan, "close");
    assert_eq!(
        hosts.ruleset(),
        before,
        "close on nothing open changes nothing"
    );
    let status =
        String::from_utf8_lossy(&ports(&a, None, None, &lan, "status").stdout).into_owned();
    assert!(status.contains("nothing open"), "{status}");
}

/// By default the ports open only to the host's own networks: a peer that
/// reaches A through a route, not on one of A's networks, stays shut out
/// until SOURCES=any.
#[test]
fn ports_script_opens_only_to_the_lan_by_default() {
    if !prereq::require(&["ip", "nft"]) {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let lan = ports_conf(dir.path(), "lan", true);
    let any = ports_conf_with(dir.path(), "any", true, "SOURCES=any\n");
    let mut hosts = Hosts::new();
    let a = hosts.a.clone();
    // A keeps its address but not its network: B is reached by a route.
    run_ok(Command::new("ip").args([
        "-n",
        &a,
        "addr",
        "del",
        &format!("{A_IP}/24"),
        "dev",
        "veth-a",
    ]));
    run_ok(Command::new("ip").args([
        "-n",
        &a,
        "addr",
        "add",
        &format!("{A_IP}/32"),
        "dev",
        "veth-a",
    ]));
    run_ok(Command::new("ip").args([
        "-n",
        &a,
        "route",
        "add",
        &format!("{B_IP}/32"),
        "dev",
        "veth-a",
    ]));
    hosts.load_nft(TEST_FIREWALL);
    hosts.start_servers();
    let before = hosts.ruleset();

    ports(&a, None, None, &lan, "open");
    hosts.expect_open(&[], "SOURCES=lan: B is not on A's networks");
    let opened = hosts.ruleset();
    assert!(
        opened.contains("ip saddr 169.254.0.0/16 udp dport 15680 accept"),
        "{opened}"
    );
    assert!(
        !opened.contains("10.156.80"),
        "no rule for a network A is not on:\n{opened}"
    );

    ports(&a, None, None, &any, "open");
    hosts.expect_open(&["udp/15680", "udp/5353", "tcp/15680"], "SOURCES=any");
    let any_rules = hosts.ruleset();
    assert!(
        !any_rules.contains(",src="),
        "the LAN rules were replaced:\n{any_rules}"
    );
    let status =
        String::from_utf8_lossy(&ports(&a, None, None, &any, "status").stdout).into_owned();
    assert!(
        status.contains("nft inet testfw input: open udp/15680\n"),
        "{status}"
    );

    ports(&a, None, None, &any, "close");
    assert_eq!(hosts.ruleset(), before, "close restores the ruleset");
}

#[test]
fn ports_script_close_with_nothing_open_and_bad_config() {
    if !prereq::require(&["ip", "nft"]) {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let lan = ports_conf(dir.path(), "lan", true);
    let hosts = Hosts::new();
    let a = hosts.a.clone();

    // No ruleset at all: nothing filters, so open and close add and remove nothing.
    let empty = hosts.ruleset();
    assert_eq!(empty, "");
    ports(&a, None, None, &lan, "close");
    ports(&a, None, None, &lan, "open");
    assert_eq!(hosts.ruleset(), empty, "no input chain: nothing to add");

    hosts.load_nft(TEST_FIREWALL);
    let before = hosts.ruleset();
    ports(&a, None, None, &lan, "close");
    assert_eq!(hosts.ruleset(), before);

    // A bad config fails before touching the firewall; a missing named one too.
    for (name, text) in [
        ("badport", "QUIC_PORT=abc\n"),
        ("bigport", "MDNS_PORT=70000\n"),
        ("badlan", "SERVE_LAN=maybe\n"),
        ("badif", "INTERFACES='eth0 \"x y\"'\n"),
        ("badsources", "SOURCES=world\n"),
    ] {
        let conf = dir.path().join(name);
        std::fs::write(&conf, text).expect("writing conf");
        let script = systemd_dir().join("pacmesh-ports");
        let out = run(Hosts::exec(&a, &script)
            .arg("open")
            .env("PACMESH_PORTS_CONF", &conf));
        assert_eq!(out.status.code(), Some(1), "{}", describe(&out, name));
        assert!(!out.stderr.is_empty(), "{name}: says why");
        assert_eq!(hosts.ruleset(), before, "{name}: firewall untouched");
    }
    let out = run(Hosts::exec(&a, systemd_dir().join("pacmesh-ports"))
        .arg("open")
        .env("PACMESH_PORTS_CONF", dir.path().join("missing")));
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        describe(&out, "missing conf")
    );
    let out = run(Hosts::exec(&a, systemd_dir().join("pacmesh-ports")).arg("frobnicate"));
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out, "usage"));
    assert_eq!(hosts.ruleset(), before);
}

/// `iptables -S` and `ip6tables -S` in A.
fn iptables_rules(hosts: &Hosts) -> String {
    hosts.in_a("iptables", &["-w", "-S"]) + &hosts.in_a("ip6tables", &["-w", "-S"])
}

#[test]
fn ports_script_iptables_fallback() {
    if !prereq::require(&["ip", "nft", "iptables", "ip6tables", "bash"]) {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let lan = ports_conf(dir.path(), "lan", true);
    let no_lan = ports_conf(dir.path(), "nolan", false);
    let mut hosts = Hosts::new();
    for rule in [
        &[
            "-A",
            "INPUT",
            "-m",
            "conntrack",
            "--ctstate",
            "ESTABLISHED,RELATED",
            "-j",
            "ACCEPT",
        ][..],
        &["-A", "INPUT", "-i", "lo", "-j", "ACCEPT"],
        &["-P", "INPUT", "DROP"],
    ] {
        hosts.in_a("iptables", &[&["-w"][..], rule].concat());
    }
    hosts.start_servers();
    let before = iptables_rules(&hosts);
    hosts.expect_open(&[], "before open, INPUT's policy drops everything");

    // Run by bash this time (the shebang's sh is dash on Debian).
    let a = hosts.a.clone();
    let it = Some("iptables");
    ports(&a, Some("bash"), it, &lan, "open");
    hosts.expect_open(&["udp/15680", "udp/5353", "tcp/15680"], "after open");
    let opened = iptables_rules(&hosts);
    ports(&a, Some("bash"), it, &lan, "open");
    assert_eq!(
        iptables_rules(&hosts),
        opened,
        "a second open changes nothing"
    );
    for rule in ["pacmesh:udp/15680", "pacmesh:udp/5353", "pacmesh:tcp/15680"] {
        let comment = format!("{rule},src=10.156.80.0/24");
        assert_eq!(
            opened.matches(&format!("--comment \"{comment}\"")).count(),
            1,
            "{comment} once, in iptables' INPUT only (ip6tables accepts everything):\n{opened}"
        );
        assert!(
            opened.contains(&format!("-s 10.156.80.0/24 -p {}", &rule[8..11])),
            "{opened}"
        );
    }

    ports(&a, Some("bash"), it, &no_lan, "open");
    hosts.expect_open(&["udp/15680", "udp/5353"], "after open with SERVE_LAN=no");

    ports(&a, Some("bash"), it, &lan, "close");
    hosts.expect_open(&[], "after close");
    assert_eq!(iptables_rules(&hosts), before, "close restores the rules");
    ports(&a, Some("bash"), it, &lan, "close");
    assert_eq!(iptables_rules(&hosts), before);
}

// ---------------------------------------------------------- real systemd

/// Run in a private mount namespace: boots this machine's own OS in a container whose root is a
/// throwaway overlay of `/` (upper layer in tmpfs) with `$W/stage` copied on top, on a private
/// network, with `systemd --unit=pmcheck.target`; `/pmcheck/check.sh` writes to `$W/out`.
const CONTAINER_BOOT: &str = r#"
set -eu
mkdir "$W/ovl" "$W/root"
mount -t tmpfs pmovl "$W/ovl"
mkdir "$W/ovl/upper" "$W/ovl/work"
mount -t overlay pmroot -o "lowerdir=/,upperdir=$W/ovl/upper,workdir=$W/ovl/work" "$W/root"
# nspawn keeps state here and refuses to clean it unless it is a tmpfs.
mkdir -p /run/systemd/nspawn
mount -t tmpfs pmnspawn /run/systemd/nspawn
cp -a "$W/stage/." "$W/root/"
: > "$W/root/etc/machine-id"
exec timeout 150 systemd-nspawn --quiet --directory="$W/root" --private-network \
    --link-journal=no --register=no --keep-unit --machine="$MACHINE" \
    --bind="$W/out:/pmcheck-out" --boot -- --unit=pmcheck.target >"$W/boot.log" 2>&1
"#;

/// Inside the container: results as `key=value` lines in /pmcheck-out/results.
const CONTAINER_CHECK: &str = r#"#!/bin/sh
O=/pmcheck-out
r() { printf '%s=%s\n' "$1" "$2" >>"$O/results"; }
systemd-sysusers && systemd-tmpfiles --create /usr/lib/tmpfiles.d/pacmesh.conf
r setup $?
nft -f /pmcheck/fw.nft
r firewall $?
nft list ruleset >"$O/before.nft"
timeout 60 systemctl start pacmeshd.service
r start $?
r pacmeshd "$(systemctl show -P ActiveState pacmeshd.service)"
r ports "$(systemctl show -P ActiveState pacmesh-ports.service)"
pid=$(systemctl show -P MainPID pacmeshd.service)
# A drop-in shortened the watchdog to 2 s. Wait (polling) until the
# daemon has fed it for longer than that: the last ping's timestamp moves
# 2.5 s past the first one seen. A daemon that did not feed it would have
# been killed and restarted by then, and its timestamp would not move.
first=$(systemctl show -P WatchdogTimestampMonotonic pacmeshd.service)
fed=no
for _ in $(seq 1 100); do
    last=$(systemctl show -P WatchdogTimestampMonotonic pacmeshd.service)
    if [ "${last:-0}" -gt $(( ${first:-0} + 2500000 )) ]; then fed=yes; break; fi
    sleep 0.1
done
r watchdog_fed "$fed"
r watchdog "$(systemctl show -P WatchdogUSec pacmeshd.service)"
r pacmeshd_after_watchdog "$(systemctl show -P ActiveState pacmeshd.service)"
r restarts "$(systemctl show -P NRestarts pacmeshd.service)"
[ "$(systemctl show -P MainPID pacmeshd.service)" = "$pid" ] && r watchdog_same_pid yes || r watchdog_same_pid no
r user "$(stat -c %U "/proc/$pid")"
r state_dir "$(stat -c '%U %a' /var/lib/pacmesh)"
r cache_dir "$(stat -c '%U %a' /var/cache/pacmesh)"
r etc_dir "$(stat -c '%U %a' /etc/pacmesh)"
nft list ruleset >"$O/open.nft"
r http "$(bash -c 'exec 3<>/dev/tcp/127.0.0.1/15680 &&
    printf "GET /_pacmesh/status HTTP/1.0\r\nHost: localhost\r\n\r\n" >&3 &&
    head -n 1 <&3 | cut -d " " -f 2')"
timeout 30 systemctl reload pacmeshd.service
r reload $?
for _ in $(seq 1 50); do
    [ "$(systemctl show -P ActiveState pacmeshd.service)" = active ] && break
    sleep 0.1
done
r pacmeshd_after_reload "$(systemctl show -P ActiveState pacmeshd.service)"
[ "$(systemctl show -P MainPID pacmeshd.service)" = "$pid" ] && r same_pid yes || r same_pid no
timeout 30 systemctl stop pacmeshd.service
r stop $?
for _ in 1 2 3 4 5 6 7 8 9 10; do
    [ "$(systemctl show -P ActiveState pacmesh-ports.service)" = inactive ] && break
    sleep 0.5
done
r pacmeshd_after_stop "$(systemctl show -P ActiveState pacmeshd.service)"
r ports_after_stop "$(systemctl show -P ActiveState pacmesh-ports.service)"
nft list ruleset >"$O/after.nft"
journalctl --no-pager -o short-monotonic -u pacmeshd.service -u pacmesh-ports.service >"$O/journal.log"
r done yes
"#;

const CONTAINER_TARGET: &str = "[Unit]
Description=pacmesh unit check
Requires=basic.target pmcheck.service
After=basic.target
";

const CONTAINER_SERVICE: &str = "[Unit]
Description=pacmesh unit check
After=basic.target
[Service]
Type=oneshot
ExecStart=/bin/sh -c '/pmcheck/check.sh >/pmcheck-out/check.log 2>&1; systemctl poweroff --no-block'
";

fn stage_file(stage: &Path, path: &str, text: &[u8], mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    let dest = stage.join(path);
    std::fs::create_dir_all(dest.parent().expect("a staged file has a dir"))
        .expect("creating stage dir");
    std::fs::write(&dest, text).unwrap_or_else(|e| panic!("writing {}: {e}", dest.display()));
    std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(mode)).expect("setting mode");
}

/// `pacmeshd.service` and `pacmesh-ports.service` installed as a package would install them,
/// started, reloaded and stopped by a real systemd (this machine's OS booted in a container):
/// the sandbox lets the daemon start and notify readiness as user `pacmesh`, its directories are
/// made, pacmesh-ports opens holes in a default-drop firewall and closes them when pacmeshd stops.
#[test]
fn units_run_under_real_systemd_in_a_container() {
    if !prereq::require(&[
        "systemd-nspawn",
        "systemd",
        "unshare",
        "timeout",
        "nft",
        "bash",
    ]) {
        return;
    }
    let bin = Daemon::binary();
    assert!(
        bin.is_file(),
        "{} not found: run `cargo build --workspace --bins` first",
        bin.display()
    );
    let w = tempfile::Builder::new()
        .prefix("pacmesh-nspawn-")
        .tempdir()
        .expect("temp dir");
    let stage = w.path().join("stage");
    let read = |p: &Path| std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let s = systemd_dir();
    for (path, src, mode) in [
        ("usr/bin/pacmeshd", bin.clone(), 0o755),
        (
            "usr/lib/pacmesh/pacmesh-ports",
            s.join("pacmesh-ports"),
            0o755,
        ),
        (
            "etc/systemd/system/pacmeshd.service",
            s.join("pacmeshd.service"),
            0o644,
        ),
        (
            "etc/systemd/system/pacmesh-ports.service",
            s.join("pacmesh-ports.service"),
            0o644,
        ),
        (
            "usr/lib/sysusers.d/pacmesh.conf",
            s.join("pacmesh.sysusers"),
            0o644,
        ),
        (
            "usr/lib/tmpfiles.d/pacmesh.conf",
            s.join("pacmesh.tmpfiles"),
            0o644,
        ),
        ("etc/pacmesh/pacmeshd.toml", s.join("pacmeshd.toml"), 0o644),
    ] {
        stage_file(&stage, path, &read(&src), mode);
    }
    let conf = shipped("pacmesh.conf.d").replace("SERVE_LAN=no", "SERVE_LAN=yes");
    stage_file(&stage, "etc/conf.d/pacmesh", conf.as_bytes(), 0o644);
    stage_file(
        &stage,
        "pmcheck/check.sh",
        CONTAINER_CHECK.as_bytes(),
        0o755,
    );
    stage_file(&stage, "pmcheck/fw.nft", TEST_FIREWALL.as_bytes(), 0o644);
    stage_file(
        &stage,
        "etc/systemd/system/pacmeshd.service.d/watchdog.conf",
        b"[Service]\nWatchdogSec=2s\n",
        0o644,
    );
    stage_file(
        &stage,
        "etc/systemd/system/pmcheck.target",
        CONTAINER_TARGET.as_bytes(),
        0o644,
    );
    stage_file(
        &stage,
        "etc/systemd/system/pmcheck.service",
        CONTAINER_SERVICE.as_bytes(),
        0o644,
    );
    let out_dir = w.path().join("out");
    std::fs::create_dir(&out_dir).expect("creating out dir");

    let boot = run(Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            CONTAINER_BOOT,
        ])
        .env("W", w.path())
        .env("TERM", "dumb")
        .env("MACHINE", format!("pmcheck-{}", std::process::id())));
    let file = |name: &str| std::fs::read_to_string(out_dir.join(name)).unwrap_or_default();
    let report = || {
        format!(
            "{}\n----- check.log -----\n{}\n----- journal -----\n{}\n----- boot.log (tail) -----\n{}",
            describe(&boot, "container"),
            file("check.log"),
            file("journal.log"),
            process::tail(
                &std::fs::read_to_string(w.path().join("boot.log")).unwrap_or_default(),
                40
            )
        )
    };
    let results: BTreeMap<String, String> = file("results")
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let get = |k: &str| results.get(k).map(String::as_str).unwrap_or("<missing>");
    for (key, want) in [
        ("setup", "0"),
        ("firewall", "0"),
        ("start", "0"),
        ("pacmeshd", "active"),
        ("ports", "active"),
        ("watchdog", "2s"),
        ("pacmeshd_after_watchdog", "active"),
        ("restarts", "0"),
        ("watchdog_same_pid", "yes"),
        ("watchdog_fed", "yes"),
        ("user", "pacmesh"),
        ("state_dir", "pacmesh 700"),
        ("cache_dir", "pacmesh 700"),
        ("etc_dir", "root 755"),
        ("http", "200"),
        ("reload", "0"),
        ("pacmeshd_after_reload", "active"),
        ("same_pid", "yes"),
        ("stop", "0"),
        ("pacmeshd_after_stop", "inactive"),
        ("ports_after_stop", "inactive"),
        ("done", "yes"),
    ] {
        assert_eq!(get(key), want, "{key}{}", report());
    }
    // The container's only network is loopback's: the ports open to
    // link-local sources alone (SOURCES=lan), in both input chains.
    let open = file("open.nft");
    for rule in ["pacmesh:udp/15680", "pacmesh:udp/5353", "pacmesh:tcp/15680"] {
        let comment = format!("{rule},src=169.254.0.0/16");
        assert_eq!(
            open.matches(&format!("comment \"{comment}\"")).count(),
            2,
            "{comment} in both input chains while pacmeshd runs:\n{open}{}",
            report()
        );
    }
    assert_eq!(
        file("after.nft"),
        file("before.nft"),
        "stopping pacmeshd closes the ports{}",
        report()
    );
}
