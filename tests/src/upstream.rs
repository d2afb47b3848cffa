//! The upstream mirror: a real nginx serving a directory, logging every request — on
//! 127.0.0.1 in the test's own namespace ([`Upstream::start`]), or on a [`Host`]'s LAN address
//! inside its namespace ([`Upstream::start_in`], [`Upstream::start_in_with`]).
//!
//! What it sent is accounted from its access log (client address, method, path, status,
//! `Range`, body bytes): [`Upstream::bytes_by_file`], [`Upstream::total_body_bytes`]; call
//! [`Upstream::wait_idle`] first so every finished request is in the log. What it is sending
//! right now comes from the kernel ([`Upstream::open_connections`]: bytes each client has
//! acknowledged), so a test can act once a transfer reached a byte count ("kill the mirror
//! after 10 MB"), never after a guessed sleep. [`ServeOptions`] throttle each response
//! (`limit_rate`) or serve another file under a path (a corrupt copy); [`Upstream::kill`] is
//! a mirror dying mid-file.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::lan::Host;
use crate::net::{free_tcp_port, loopback, port_answers};

/// The port [`Upstream::start_in`] listens on (the host namespace is the test's own).
pub const LAN_PORT: u16 = 80;

/// nginx's `stub_status` page, left out of the access log: what [`Upstream::wait_idle`] reads.
const STATUS_PATH: &str = "/_upstream/stub_status";

/// How an [`Upstream`] serves beyond the defaults (all off by default).
#[derive(Clone, Debug, Default)]
pub struct ServeOptions {
    /// nginx `limit_rate`, per response (e.g. `"480k"`: 480 KiB/s): each client's transfer
    /// is slow on its own, however many run at once — unlike a tc cap on the host, which
    /// they share.
    pub limit_rate: Option<String>,
    /// Request paths (e.g. `/repo/os/x86_64/x.pkg.tar.zst`) answered from another file:
    /// nginx `location = PATH { alias FILE; }`.
    pub replacements: Vec<(String, PathBuf)>,
    /// Answer every request whole, `Range` or not (nginx `max_ranges 0`): a mirror that
    /// ignores Range.
    pub ignore_range: bool,
}

impl ServeOptions {
    /// Sets [`ServeOptions::limit_rate`].
    pub fn limit_rate(mut self, rate: &str) -> Self {
        self.limit_rate = Some(rate.to_string());
        self
    }
    /// Sets [`ServeOptions::ignore_range`].
    pub fn ignore_range(mut self) -> Self {
        self.ignore_range = true;
        self
    }
    /// Serves `file` for requests of `path` (see [`ServeOptions::replacements`]).
    pub fn replace(mut self, path: &str, file: &Path) -> Self {
        self.replacements
            .push((path.to_string(), file.to_path_buf()));
        self
    }
}

/// A TCP connection of the upstream that is open now, as the kernel sees it (`ss -ti`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenConnection {
    pub client: SocketAddr,
    /// Bytes sent on it that the client's kernel acknowledged (`bytes_acked`): response
    /// headers and bodies of every request on this connection so far.
    pub bytes_acked: u64,
}

/// One line of the access log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoggedRequest {
    /// The client's address (`$remote_addr`).
    pub remote_addr: Option<IpAddr>,
    pub method: String,
    /// The request target as sent (`$request_uri`: not decoded, query included).
    pub path: String,
    pub status: u16,
    /// Body bytes sent (`$body_bytes_sent`).
    pub bytes: u64,
    /// The `Range` request header, if any.
    pub range: Option<String>,
    pub user_agent: Option<String>,
}

impl LoggedRequest {
    /// The last path segment, without any query string.
    pub fn file_name(&self) -> &str {
        let path = self.path.split('?').next().unwrap_or_default();
        path.rsplit('/').next().unwrap_or_default()
    }
}

/// A running nginx (single process, `daemon off; master_process off;`) whose config,
/// pid file, logs and temp paths all live in its own temp prefix. Killed on drop.
pub struct Upstream {
    child: Child,
    prefix: TempDir,
    ip: Ipv4Addr,
    port: u16,
    root: PathBuf,
    /// The namespace it runs in (`None`: the test's own).
    netns: Option<String>,
    /// Set by [`Upstream::kill`].
    killed: bool,
}

impl Upstream {
    /// Serves `root` (e.g. [`crate::fixtures::FixtureRepo::root`]) on a free loopback port and
    /// returns once the port accepts connections.
    pub fn start(root: &Path) -> Upstream {
        Self::start_with(root, &ServeOptions::default())
    }

    /// [`Upstream::start`] serving as `options` say.
    pub fn start_with(root: &Path, options: &ServeOptions) -> Upstream {
        let root = root
            .canonicalize()
            .unwrap_or_else(|e| panic!("upstream root {}: {e}", root.display()));
        let mut last_error = String::new();
        // A picked port can be taken before nginx binds it; try a few.
        for _ in 0..5 {
            match Self::try_start(&root, options) {
                Ok(upstream) => return upstream,
                Err(e) => last_error = e,
            }
        }
        panic!("nginx did not start:\n{last_error}");
    }

    /// Serves `root` from inside `host`'s namespace on `<host ip>:80` ([`LAN_PORT`]), so the
    /// other hosts of the [`crate::lan::Lan`] reach it over the bridge (the test process,
    /// in the root namespace, does not: read [`Upstream::requests`] instead). Returns once
    /// nginx has bound its socket (it writes its pid file after that); killed on drop, and
    /// by the `Lan`'s drop at the latest.
    pub fn start_in(host: &Host, root: &Path) -> Upstream {
        Self::start_in_with(host, root, &ServeOptions::default())
    }

    /// [`Upstream::start_in`] serving as `options` say.
    pub fn start_in_with(host: &Host, root: &Path, options: &ServeOptions) -> Upstream {
        let root = root
            .canonicalize()
            .unwrap_or_else(|e| panic!("upstream root {}: {e}", root.display()));
        let mut upstream = Self::spawn(&root, host.ip(), LAN_PORT, options, |program| {
            host.exec(program)
        })
        .unwrap_or_else(|e| panic!("nginx did not start in {}: {e}", host.name()));
        upstream.netns = Some(host.name().to_string());
        let pid_file = upstream.prefix.path().join("nginx.pid");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if pid_file.is_file() {
                return upstream;
            }
            if let Ok(Some(status)) = upstream.child.try_wait() {
                panic!(
                    "nginx in {} exited {status}:\n{}",
                    host.name(),
                    upstream.error_log()
                );
            }
            if Instant::now() >= deadline {
                panic!(
                    "nginx in {} wrote no pid file in 10 s:\n{}",
                    host.name(),
                    upstream.error_log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn try_start(root: &Path, options: &ServeOptions) -> Result<Upstream, String> {
        let port = free_tcp_port();
        let mut upstream = Self::spawn(root, Ipv4Addr::LOCALHOST, port, options, |p| {
            Command::new(p)
        })?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if port_answers(loopback(port)) {
                return Ok(upstream);
            }
            if let Ok(Some(status)) = upstream.child.try_wait() {
                return Err(format!("nginx exited {status}:\n{}", upstream.error_log()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!(
            "nginx not answering on port {port} after 10 s:\n{}",
            upstream.error_log()
        ))
    }

    /// Writes the config and spawns nginx through `command` (plain, or `ip netns exec`).
    fn spawn(
        root: &Path,
        ip: Ipv4Addr,
        port: u16,
        options: &ServeOptions,
        command: impl FnOnce(&str) -> Command,
    ) -> Result<Upstream, String> {
        let prefix = tempfile::Builder::new()
            .prefix("pacmesh-nginx-")
            .tempdir()
            .expect("creating nginx's prefix dir");
        let conf = prefix.path().join("nginx.conf");
        std::fs::write(&conf, config(prefix.path(), root, ip, port, options))
            .expect("writing nginx.conf");
        let stderr = std::fs::File::create(prefix.path().join("stderr.log"))
            .expect("creating nginx's stderr log");
        let child = command("nginx")
            .arg("-p")
            .arg(prefix.path())
            .arg("-c")
            .arg(&conf)
            .arg("-e")
            .arg(prefix.path().join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("could not run nginx: {e}"))?;
        Ok(Upstream {
            child,
            prefix,
            ip,
            port,
            root: root.to_path_buf(),
            netns: None,
            killed: false,
        })
    }

    /// `http://IP:PORT` (no trailing slash): `127.0.0.1` for [`Upstream::start`], the
    /// host's LAN address for [`Upstream::start_in`].
    pub fn url(&self) -> String {
        format!("http://{}:{}", self.ip, self.port)
    }
    /// The address it listens on.
    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }
    pub fn port(&self) -> u16 {
        self.port
    }
    /// The pacman `Server` value for this mirror: `http://IP:PORT/$repo/os/$arch`.
    pub fn server_url(&self) -> String {
        format!("{}/$repo/os/$arch", self.url())
    }
    /// The directory being served.
    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Every request logged so far, oldest first. nginx writes a line when it finishes a
    /// request, just after the last byte is sent: poll with `assert_eventually!` when a
    /// client has only just returned.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        let path = self.prefix.path().join("access.log");
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        text.lines().filter_map(parse_line).collect()
    }

    /// Returns once every request nginx finished before this call is in
    /// [`Upstream::requests`]: it asks for a marker file of its own and
    /// waits for that request's log line (nginx, one process, logs requests
    /// in the order they end). Use it before asserting that a request did
    /// not happen.
    pub fn barrier(&self) {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let marker = format!("pacmesh-test-barrier-{}-{n}", std::process::id());
        let url = format!("{}/{marker}", self.url());
        let answered = match &self.netns {
            Some(ns) => crate::lan::http_get_in(ns, &url).map(|_| ()),
            None => crate::http::try_get(&url, &[]).map(|_| ()),
        };
        answered.unwrap_or_else(|e| panic!("barrier request to {url}: {e:#}"));
        crate::assert_eventually!(
            !self.requests_for(&marker).is_empty(),
            Duration::from_secs(5),
            "nginx never logged the barrier request {url}"
        );
    }

    /// `GET`s whose last path segment is `file_name` (what a download of it costs the mirror).
    pub fn gets_for(&self, file_name: &str) -> Vec<LoggedRequest> {
        self.requests_for(file_name)
            .into_iter()
            .filter(|r| r.method == "GET")
            .collect()
    }

    /// Requests whose last path segment is `file_name`.
    pub fn requests_for(&self, file_name: &str) -> Vec<LoggedRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.file_name() == file_name)
            .collect()
    }

    /// Body bytes sent (`$body_bytes_sent`) per file name (last path segment), summed over
    /// every logged request: what each file cost this mirror.
    pub fn bytes_by_file(&self) -> BTreeMap<String, u64> {
        let mut by_file = BTreeMap::new();
        for r in self.requests() {
            *by_file.entry(r.file_name().to_string()).or_insert(0) += r.bytes;
        }
        by_file
    }

    /// Body bytes sent for every logged request.
    pub fn total_body_bytes(&self) -> u64 {
        self.requests().iter().map(|r| r.bytes).sum()
    }

    /// One line per file name: its requests as `CLIENT METHOD STATUS BYTES [RANGE]`, for
    /// failure messages.
    pub fn transfer_report(&self) -> String {
        let mut by_file: BTreeMap<String, Vec<LoggedRequest>> = BTreeMap::new();
        for r in self.requests() {
            by_file
                .entry(r.file_name().to_string())
                .or_default()
                .push(r);
        }
        let mut s = format!("upstream {}:\n", self.url());
        for (file, requests) in by_file {
            let gets = requests.iter().filter(|r| r.method == "GET").count();
            let bytes: u64 = requests.iter().map(|r| r.bytes).sum();
            let _ = writeln!(s, "  {file}: {gets} GET, {bytes} body bytes");
            for r in requests {
                let client = r.remote_addr.map_or("?".to_string(), |a| a.to_string());
                let range = r.range.as_deref().unwrap_or("");
                let _ = writeln!(
                    s,
                    "    {client} {} {} {} {range}",
                    r.method, r.status, r.bytes
                );
            }
        }
        s
    }

    /// Waits until nginx has no request in progress but the status query asking it, so
    /// every request so far is in the access log (nginx, one process, updates its counters
    /// and writes the log line in the same step); immediately if it was killed. Panics after
    /// `timeout`.
    pub fn wait_idle(&self, timeout: Duration) {
        if self.killed {
            return;
        }
        let deadline = Instant::now() + timeout;
        loop {
            let busy = self.requests_in_progress();
            match busy {
                Ok(0) => return,
                _ if Instant::now() >= deadline => panic!(
                    "upstream {} still busy after {timeout:?}: {busy:?}\n{}",
                    self.url(),
                    self.transfer_report()
                ),
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// Requests nginx is reading or answering, not counting the status query itself.
    fn requests_in_progress(&self) -> anyhow::Result<u64> {
        let url = format!("{}{STATUS_PATH}", self.url());
        let response = match &self.netns {
            Some(ns) => crate::lan::http_get_in(ns, &url)?,
            None => crate::http::try_get(&url, &[])?,
        };
        anyhow::ensure!(response.status == 200, "{url}: {}", response.status);
        let text = response.text();
        let count = |key: &str| -> anyhow::Result<u64> {
            text.split_whitespace()
                .skip_while(|w| *w != key)
                .nth(1)
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| anyhow::anyhow!("no {key} in {text:?}"))
        };
        Ok(count("Reading:")? + count("Writing:")?.saturating_sub(1))
    }

    /// Its TCP connections that are open now (`ss -ti` in its namespace), with the bytes
    /// each client has acknowledged. A finished transfer's connection may be gone (or
    /// kept alive for the next request): this is for transfers under way.
    pub fn open_connections(&self) -> Vec<OpenConnection> {
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "ss"]);
                c
            }
            None => Command::new("ss"),
        };
        cmd.args(["-tinH", "state", "established"])
            .arg(format!("( sport = :{} )", self.port));
        let out = crate::process::run_ok(&mut cmd);
        let local = SocketAddr::from((self.ip, self.port));
        parse_ss(&String::from_utf8_lossy(&out.stdout), local)
    }

    /// The first open connection whose client acknowledged at least `bytes` (see
    /// [`Upstream::open_connections`]).
    pub fn connection_past(&self, bytes: u64) -> Option<OpenConnection> {
        self.open_connections()
            .into_iter()
            .find(|c| c.bytes_acked >= bytes)
    }

    /// SIGKILLs nginx, as a mirror dying mid-transfer: its clients see their connections
    /// close early. The access log stays readable ([`Upstream::requests`]); the requests it
    /// was answering are not in it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.killed = true;
    }

    /// nginx's error log (startup problems, 404 reasons).
    pub fn error_log(&self) -> String {
        let mut s = String::new();
        for name in ["stderr.log", "error.log"] {
            let text = std::fs::read_to_string(self.prefix.path().join(name)).unwrap_or_default();
            let _ = write!(s, "{text}");
        }
        s
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log =
                std::fs::read_to_string(self.prefix.path().join("access.log")).unwrap_or_default();
            eprintln!(
                "----- upstream nginx {} access log (last 40) -----\n{}\n----- end -----",
                self.url(),
                crate::process::tail(&log, 40)
            );
        }
    }
}

fn config(prefix: &Path, root: &Path, ip: Ipv4Addr, port: u16, options: &ServeOptions) -> String {
    let p = prefix.display();
    let temp_paths: String = ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"]
        .iter()
        .map(|t| format!("    {t}_temp_path {p}/{t}_temp;\n"))
        .collect();
    let mut locations = String::new();
    if let Some(rate) = &options.limit_rate {
        let _ = writeln!(locations, "        limit_rate {rate};");
    }
    if options.ignore_range {
        let _ = writeln!(locations, "        max_ranges 0;");
    }
    for (path, file) in &options.replacements {
        let _ = writeln!(
            locations,
            "        location = {path} {{ alias {}; }}",
            file.display()
        );
    }
    format!(
        r#"daemon off;
master_process off;
worker_processes 1;
pid {p}/nginx.pid;
error_log {p}/error.log info;
events {{ worker_connections 512; }}
http {{
{temp_paths}    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 30s;
    log_format pacmesh "$remote_addr\t$request_method\t$request_uri\t$status\t$body_bytes_sent\t$http_range\t$http_user_agent";
    access_log {p}/access.log pacmesh;
    server {{
        listen {ip}:{port};
        server_name localhost;
        root {root};
        location / {{ autoindex on; }}
        location = {STATUS_PATH} {{ stub_status; access_log off; }}
{locations}    }}
}}
"#,
        root = root.display()
    )
}

fn parse_line(line: &str) -> Option<LoggedRequest> {
    let f: Vec<&str> = line.split('\t').collect();
    let [remote, method, path, status, bytes, range, agent] = f.as_slice() else {
        return None;
    };
    let opt = |s: &str| (s != "-").then(|| s.to_string());
    Some(LoggedRequest {
        remote_addr: remote.parse().ok(),
        method: method.to_string(),
        path: path.to_string(),
        status: status.parse().ok()?,
        bytes: bytes.parse().ok()?,
        range: opt(range),
        user_agent: opt(agent),
    })
}

/// `ss -tinH state established` output: a line `RECV-Q SEND-Q LOCAL PEER` per connection,
/// then an indented line of `key:value` details. Connections not on `local` are left out.
fn parse_ss(text: &str, local: SocketAddr) -> Vec<OpenConnection> {
    let mut out: Vec<OpenConnection> = Vec::new();
    let mut current: Option<OpenConnection> = None;
    for line in text.lines() {
        if line.starts_with(char::is_whitespace) {
            if let Some(conn) = current.as_mut() {
                if let Some(n) = line
                    .split_whitespace()
                    .find_map(|kv| kv.strip_prefix("bytes_acked:"))
                    .and_then(|n| n.parse().ok())
                {
                    conn.bytes_acked = n;
                }
            }
            continue;
        }
        out.extend(current.take());
        let f: Vec<&str> = line.split_whitespace().collect();
        let (Some(l), Some(p)) = (f.get(2), f.get(3)) else {
            continue;
        };
        let (Ok(l), Ok(client)) = (l.parse::<SocketAddr>(), p.parse::<SocketAddr>()) else {
            continue;
        };
        if l == local {
            current = Some(OpenConnection {
                client,
                bytes_acked: 0,
            });
        }
    }
    out.extend(current);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ss_connections() {
        let text = "0 2872000 10.1.2.1:80 10.1.2.3:41464\n\t bbr wscale:10,10 bytes_sent:142848 \
                    bytes_acked:128000 segs_out:6\n0 0 10.1.2.1:80 10.1.2.4:5000\n\t cubic \
                    rto:204\n0 0 10.1.2.1:81 10.1.2.4:5001\n\t bytes_acked:9\n";
        let local: SocketAddr = "10.1.2.1:80".parse().unwrap();
        assert_eq!(
            parse_ss(text, local),
            vec![
                OpenConnection {
                    client: "10.1.2.3:41464".parse().unwrap(),
                    bytes_acked: 128_000
                },
                OpenConnection {
                    client: "10.1.2.4:5000".parse().unwrap(),
                    bytes_acked: 0
                },
            ]
        );
    }

    #[test]
    fn parses_a_log_line() {
        let r = parse_line("10.1.2.3\tGET\t/r/os/x/a.pkg.tar.zst\t206\t100\tbytes=5-\tpacman/6")
            .unwrap();
        assert_eq!(r.remote_addr, Some(IpAddr::from([10, 1, 2, 3])));
        assert_eq!((r.status, r.bytes), (206, 100));
        assert_eq!(r.range.as_deref(), Some("bytes=5-"));
        assert_eq!(r.file_name(), "a.pkg.tar.zst");
    }
}
