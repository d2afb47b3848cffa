//! A fleet upgrading at once behind one WAN link: pacman alone vs through pacmesh (run as root):
//! `cargo build --release --workspace --bins && cargo bench -p pacmesh-tests --bench fleet_upgrade`
//! (benches run the release binaries next to them: build those first). Smoke run, 2 hosts and
//! a small repo: `FLEET_BENCH_QUICK=1 cargo bench -p pacmesh-tests --bench fleet_upgrade`.
//! Env: `FLEET_HOSTS` (8), `FLEET_WAN` (the mirror's egress cap in tc's syntax, `100mbit`),
//! `FLEET_ROUNDS` (3).
//!
//! Hosts in network namespaces: the mirror (nginx) in one, behind a tc cap on its egress (the
//! site's WAN link), and `FLEET_HOSTS` nodes, each a pacman root plus its `pacmeshd`
//! ([`pacmesh_tests::fleet`]). The fixture repo has 20 incompressible packages, 208 MiB in all
//! (2 × 40, 4 × 16, 6 × 8, 8 × 2 MiB), built once by makepkg and cached like the tests'.
//!
//! Each round runs both modes, their order alternating round by round:
//! - `plain`: pacman.conf lists the mirror only and no pacmeshd runs;
//! - `pacmesh`: pacman.conf lists the host's own pacmeshd first, then the mirror; every daemon
//!   runs and is linked to every other.
//!
//! and in each mode two runs: every host `pacman -S` of all packages at the same moment
//! (fleet), then node 0 alone. Before every run each host's packages are removed, its pacman
//! cache and pacmeshd store emptied, and (pacmesh) its daemon restarted and the links awaited.
//!
//! Measured per run: the mirror's body bytes for package files ÷ the packages' unique bytes
//! (from its access log), the time from starting the pacmans to the last one's exit, each
//! daemon's CPU-seconds (utime + stime of its process from /proc/PID/stat, in CLK_TCK ticks),
//! and pacman's error lines. Reported: every run, then medians per mode. Expected until the
//! fetch engine lands: pacmesh ≈ plain (every host is sent to the mirror).

use std::path::Path;
use std::time::{Duration, Instant};

use pacmesh_tests::fixtures::{FixturePackage, FixtureRepo, PkgSpec};
use pacmesh_tests::fleet::{pacman_errors, Fleet, Node, WanUse, WAN_RATE};
use pacmesh_tests::lan::{Lan, DAEMON_SERVER_URL};
use pacmesh_tests::prereq::{self, WHOLE_SYSTEM_TOOLS};
use pacmesh_tests::process::{clock_ticks_per_s, cpu_ticks, describe};
use pacmesh_tests::upstream::ServeOptions;

/// No single run may take longer (8 × 208 MiB at 100 Mbit/s is ~140 s).
const RUN_TIMEOUT: Duration = Duration::from_secs(30 * 60);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Plain,
    Pacmesh,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Plain => "plain",
            Mode::Pacmesh => "pacmesh",
        }
    }
}

/// What one run measured.
struct Run {
    mode: Mode,
    /// How many hosts installed.
    hosts: usize,
    wan_ratio: f64,
    /// Mirror GETs for package files beyond one per file: second
    /// transfers (two fetchers, a resume at the mirror, a host that went
    /// there itself).
    extra_gets: usize,
    last_done_s: f64,
    /// CPU-seconds of each node's daemon during the run (empty in plain mode).
    daemon_cpu_s: Vec<f64>,
    error_lines: usize,
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::NAN, f64::max)
}

fn fixture(quick: bool) -> FixtureRepo {
    if quick {
        return FixtureRepo::get(
            "pmfleetquick",
            &[
                PkgSpec::new("quickbig", "1.0-1", 8 << 20),
                PkgSpec::new("quick-a", "1.0-1", 1 << 20),
                PkgSpec::new("quick-b", "1.0-1", 1 << 20),
                PkgSpec::new("quick-c", "1.0-1", 1 << 20),
            ],
        );
    }
    let mut specs = Vec::new();
    for (count, mib, prefix) in [
        (2, 40, "huge"),
        (4, 16, "large"),
        (6, 8, "mid"),
        (8, 2, "small"),
    ] {
        for i in 0..count {
            specs.push(PkgSpec::new(format!("{prefix}{i}"), "1.0-1", mib << 20));
        }
    }
    FixtureRepo::get("pmfleetbench", &specs)
}

/// Removes every entry of `dir`, keeping `dir`.
fn empty_dir(dir: &Path) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        let gone = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        gone.unwrap_or_else(|e| panic!("removing {}: {e}", path.display()));
    }
}

/// `pacman -Rdd` of everything installed in the node's root.
fn uninstall_all(node: &Node) {
    let listed = node.host().pacman(&node.pacman, &["-Qq"]);
    let text = String::from_utf8_lossy(&listed.stdout).into_owned();
    let installed: Vec<&str> = text.split_whitespace().collect();
    if installed.is_empty() {
        return;
    }
    let mut args = vec!["-Rdd"];
    args.extend(installed);
    node.host().pacman_ok(&node.pacman, &args);
}

/// Every node back to "nothing installed, nothing cached", set up for `mode`.
fn reset(fleet: &mut Fleet, mirror_url: &str, mode: Mode) {
    for node in &mut fleet.nodes {
        if node.daemon.pid().is_some() {
            node.daemon.stop();
        }
        uninstall_all(node);
        empty_dir(node.pacman.cache_dir());
        empty_dir(node.daemon.store_dir());
        let servers = match mode {
            Mode::Plain => vec![mirror_url.to_string()],
            Mode::Pacmesh => vec![DAEMON_SERVER_URL.to_string(), mirror_url.to_string()],
        };
        node.pacman.set_servers(&servers);
    }
    if mode == Mode::Pacmesh {
        for node in &mut fleet.nodes {
            node.daemon.restart();
        }
        let all: Vec<usize> = (0..fleet.nodes.len()).collect();
        fleet.wait_linked(&all);
    }
}

/// `pacman -S` of every package on the nodes `which` at once; what it cost.
fn measure(fleet: &Fleet, repo: &FixtureRepo, mode: Mode, which: &[usize], tck: f64) -> Run {
    let pkgs: Vec<&FixturePackage> = repo.packages().iter().collect();
    let logged: Vec<usize> = fleet.mirrors.iter().map(|m| m.requests().len()).collect();
    let pids: Vec<u32> = fleet.nodes.iter().filter_map(|n| n.daemon.pid()).collect();
    let cpu_before: Vec<u64> = pids.iter().map(|&p| cpu_ticks(p)).collect();
    let started = Instant::now();
    let done = fleet.install_at_once(which, &pkgs, RUN_TIMEOUT);
    let last_done_s = started.elapsed().as_secs_f64();
    let daemon_cpu_s = pids
        .iter()
        .zip(&cpu_before)
        .map(|(&p, &before)| (cpu_ticks(p) - before) as f64 / tck)
        .collect();
    let mut error_lines = 0;
    for run in &done {
        assert!(
            run.output.status.success(),
            "{}",
            describe(&run.output, &format!("{} ({})", run.what, mode.name()))
        );
        error_lines += pacman_errors(&run.output).len();
    }
    fleet.wait_mirrors_idle();
    let requests = fleet
        .mirrors
        .iter()
        .zip(&logged)
        .flat_map(|(m, &from)| m.requests().split_off(from));
    let wan = WanUse::from_requests(requests, repo.packages());
    Run {
        mode,
        hosts: which.len(),
        wan_ratio: wan.ratio(),
        extra_gets: wan.files.values().map(|f| f.gets.saturating_sub(1)).sum(),
        last_done_s,
        daemon_cpu_s,
        error_lines,
    }
}

fn print_run(round: usize, run: &Run) {
    let cpu = if run.daemon_cpu_s.is_empty() {
        "-".to_string()
    } else {
        run.daemon_cpu_s
            .iter()
            .map(|c| format!("{c:.2}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!(
        "round {round} {:<7} {} host(s): WAN {:.2}× unique ({} extra GETs), last done {:.1} s, \
         pacmeshd CPU-s per host [{cpu}], pacman error lines {}",
        run.mode.name(),
        run.hosts,
        run.wan_ratio,
        run.extra_gets,
        run.last_done_s,
        run.error_lines
    );
}

fn main() {
    if !prereq::require(WHOLE_SYSTEM_TOOLS)
        || !prereq::require(Lan::TOOLS)
        || !prereq::require(&["tc", "ss", "sha256sum", "gzip"])
    {
        eprintln!("fleet_upgrade: needs root, pacman, makepkg, nginx, ip, tc; skipped");
        return;
    }
    let quick = std::env::var("FLEET_BENCH_QUICK").is_ok_and(|v| v == "1");
    let hosts = env_or("FLEET_HOSTS", if quick { 2 } else { 8 });
    let rounds = env_or("FLEET_ROUNDS", if quick { 1 } else { 3 });
    let wan = std::env::var("FLEET_WAN").unwrap_or_else(|_| WAN_RATE.to_string());
    let tck = clock_ticks_per_s();
    let began = Instant::now();

    let repo = fixture(quick);
    let unique: u64 = repo.packages().iter().map(FixturePackage::size).sum();
    println!(
        "fixture {}: {} packages, {:.1} MiB (ready after {:.0} s)",
        repo.repo_name(),
        repo.packages().len(),
        unique as f64 / f64::from(1 << 20),
        began.elapsed().as_secs_f64()
    );
    let lan = Lan::new(hosts + 1);
    let mut fleet = Fleet::start(&lan, &repo, &[ServeOptions::default()], hosts);
    fleet.cap_wan(&wan);
    fleet.sync_all();
    let mirror_url = fleet.mirrors[0].server_url();
    println!(
        "{hosts} hosts + the mirror behind a {wan} cap, {rounds} round(s), daemon {}",
        pacmesh_tests::daemon::Daemon::binary().display()
    );

    let mut runs: Vec<Run> = Vec::new();
    let everyone: Vec<usize> = (0..hosts).collect();
    for round in 1..=rounds {
        let order = if round % 2 == 1 {
            [Mode::Plain, Mode::Pacmesh]
        } else {
            [Mode::Pacmesh, Mode::Plain]
        };
        for mode in order {
            for which in [&everyone[..], &[0][..]] {
                reset(&mut fleet, &mirror_url, mode);
                let run = measure(&fleet, &repo, mode, which, tck);
                print_run(round, &run);
                runs.push(run);
            }
        }
    }

    println!(
        "\n{hosts} hosts, {:.0} MiB of packages each, WAN {wan}, medians of {rounds} round(s):\n",
        unique as f64 / f64::from(1 << 20)
    );
    println!(
        "| mode | WAN bytes ÷ unique, all hosts | last host done, s | one host alone, s | \
         WAN ÷ unique, one host | pacmeshd CPU-s per host, all hosts (median / max) | \
         pacmeshd CPU-s, one host alone | pacman error lines |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let mut last_done = [0.0; 2];
    for (k, mode) in [Mode::Plain, Mode::Pacmesh].into_iter().enumerate() {
        let of = |fleet_run: bool| -> Vec<&Run> {
            runs.iter()
                .filter(|r| r.mode == mode && (r.hosts == hosts) == fleet_run)
                .collect()
        };
        let (all, alone) = (of(true), of(false));
        let med = |rs: &[&Run], f: &dyn Fn(&Run) -> f64| median(rs.iter().map(|r| f(r)).collect());
        let cpu_all: Vec<f64> = all.iter().flat_map(|r| r.daemon_cpu_s.clone()).collect();
        // Alone: the installing host's daemon (node 0, the first pid).
        let cpu_alone: Vec<f64> = alone
            .iter()
            .filter_map(|r| r.daemon_cpu_s.first().copied())
            .collect();
        let cpu = |v: &[f64]| {
            if v.is_empty() {
                "-".to_string()
            } else {
                format!("{:.2} / {:.2}", median(v.to_vec()), max(v))
            }
        };
        let errors: usize = runs
            .iter()
            .filter(|r| r.mode == mode)
            .map(|r| r.error_lines)
            .sum();
        last_done[k] = med(&all, &|r| r.last_done_s);
        println!(
            "| {} | {:.2} | {:.1} | {:.1} | {:.2} | {} | {} | {errors} |",
            mode.name(),
            med(&all, &|r| r.wan_ratio),
            last_done[k],
            med(&alone, &|r| r.last_done_s),
            med(&alone, &|r| r.wan_ratio),
            cpu(&cpu_all),
            cpu(&cpu_alone),
        );
    }
    println!(
        "\npacmesh ÷ plain, time until the last host is done: {:.2}×",
        last_done[1] / last_done[0]
    );
    let alone_plain = median(
        runs.iter()
            .filter(|r| r.mode == Mode::Plain && r.hosts == 1)
            .map(|r| r.last_done_s)
            .collect(),
    );
    println!(
        "pacmesh fleet ÷ one host alone without pacmesh, time until the last host is done: {:.2}×",
        last_done[1] / alone_plain
    );
    let extra: usize = runs
        .iter()
        .filter(|r| r.mode == Mode::Pacmesh && r.hosts > 1)
        .map(|r| r.extra_gets)
        .sum();
    let fleet_runs = runs
        .iter()
        .filter(|r| r.mode == Mode::Pacmesh && r.hosts > 1)
        .count();
    println!(
        "pacmesh fleet runs: {extra} extra mirror GETs for {} package downloads (two fetchers, or a \
         host at the mirror itself)",
        fleet_runs * hosts * repo.packages().len()
    );
    println!("total {:.0} s", began.elapsed().as_secs_f64());
    drop(fleet);
    drop(lan);
}
