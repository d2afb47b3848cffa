//! The upstream mirror: a real nginx serving a directory, logging every request — on
//! 127.0.0.1 in the test's own namespace ([`Upstream::start`]), or on a [`Host`]'s LAN address
//! inside its namespace ([`Upstream::start_in`]).

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::lan::Host;
use crate::net::{free_tcp_port, loopback, port_answers};

/// The port [`Upstream::start_in`] listens on (the host namespace is the test's own).
pub const LAN_PORT: u16 = 80;

/// One line of the access log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoggedRequest {
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
}

impl Upstream {
    /// Serves `root` (e.g. [`crate::fixtures::FixtureRepo::root`]) on a free loopback port and
    /// returns once the port accepts connections.
    pub fn start(root: &Path) -> Upstream {
        let root = root
            .canonicalize()
            .unwrap_or_else(|e| panic!("upstream root {}: {e}", root.display()));
        let mut last_error = String::new();
        // A picked port can be taken before nginx binds it; try a few.
        for _ in 0..5 {
            match Self::try_start(&root) {
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
        let root = root
            .canonicalize()
            .unwrap_or_else(|e| panic!("upstream root {}: {e}", root.display()));
        let mut upstream = Self::spawn(&root, host.ip(), LAN_PORT, |program| host.exec(program))
            .unwrap_or_else(|e| panic!("nginx did not start in {}: {e}", host.name()));
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

    fn try_start(root: &Path) -> Result<Upstream, String> {
        let port = free_tcp_port();
        let mut upstream = Self::spawn(root, Ipv4Addr::LOCALHOST, port, |p| Command::new(p))?;
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
        command: impl FnOnce(&str) -> Command,
    ) -> Result<Upstream, String> {
        let prefix = tempfile::Builder::new()
            .prefix("pacmesh-nginx-")
            .tempdir()
            .expect("creating nginx's prefix dir");
        let conf = prefix.path().join("nginx.conf");
        std::fs::write(&conf, config(prefix.path(), root, ip, port)).expect("writing nginx.conf");
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

fn config(prefix: &Path, root: &Path, ip: Ipv4Addr, port: u16) -> String {
    let p = prefix.display();
    let temp_paths: String = ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"]
        .iter()
        .map(|t| format!("    {t}_temp_path {p}/{t}_temp;\n"))
        .collect();
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
    log_format pacmesh "$request_method\t$request_uri\t$status\t$body_bytes_sent\t$http_range\t$http_user_agent";
    access_log {p}/access.log pacmesh;
    server {{
        listen {ip}:{port};
        server_name localhost;
        root {root};
        location / {{ autoindex on; }}
    }}
}}
"#,
        root = root.display()
    )
}

fn parse_line(line: &str) -> Option<LoggedRequest> {
    let f: Vec<&str> = line.split('\t').collect();
    let [method, path, status, bytes, range, agent] = f.as_slice() else {
        return None;
    };
    let opt = |s: &str| (s != "-").then(|| s.to_string());
    Some(LoggedRequest {
        method: method.to_string(),
        path: path.to_string(),
        status: status.parse().ok()?,
        bytes: bytes.parse().ok()?,
        range: opt(range),
        user_agent: opt(agent),
    })
}
