//! Is pacmeshd answering? One `GET /_pacmesh/status` over a plain socket,
//! everything within one deadline, so a missing or stuck daemon costs
//! pacman at most [`PROBE_TIMEOUT`].

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::settings::Daemon;

/// The whole probe, connect to answer.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(300);

/// Where the daemon's status page is.
pub const STATUS_PATH: &str = "/_pacmesh/status";

/// The answer to the probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    Up,
    /// Why not, in a few words for the notice line.
    Down(String),
}

/// Asks `daemon` for its status page; up means an HTTP 200.
pub fn probe(daemon: &Daemon, timeout: Duration) -> Probe {
    match status_code(daemon, timeout) {
        Ok(200) => Probe::Up,
        Ok(code) => Probe::Down(format!("{STATUS_PATH} answered {code}")),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            Probe::Down("connection refused".to_owned())
        }
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
            ) =>
        {
            Probe::Down(format!("no answer within {} ms", timeout.as_millis()))
        }
        Err(e) => Probe::Down(e.to_string()),
    }
}

fn status_code(daemon: &Daemon, timeout: Duration) -> std::io::Result<u16> {
    let deadline = Instant::now() + timeout;
    let left = || {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or(std::io::ErrorKind::TimedOut)
    };
    let mut stream = TcpStream::connect_timeout(&daemon.addr, timeout)?;
    stream.set_write_timeout(Some(left()?))?;
    stream.write_all(request(daemon).as_bytes())?;
    let mut head = Vec::with_capacity(256);
    let mut buf = [0u8; 512];
    loop {
        if let Some(code) = parse_status_line(&head) {
            return code.ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::InvalidData, "not an HTTP answer")
            });
        }
        stream.set_read_timeout(Some(left()?))?;
        let n = stream.read(&mut buf)?;
        if n == 0 || head.len() > 4096 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "no HTTP status line",
            ));
        }
        head.extend_from_slice(&buf[..n]);
    }
}

fn request(daemon: &Daemon) -> String {
    let host = daemon.base_url.trim_start_matches("http://");
    format!(
        "GET {STATUS_PATH} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: pacsrv/{}\r\n\
         Connection: close\r\n\r\n",
        env!("CARGO_PKG_VERSION")
    )
}

/// The status code once `head` holds a whole first line: `None` while it
/// does not, `Some(None)` when that line is not `HTTP/1.x NNN …`.
fn parse_status_line(head: &[u8]) -> Option<Option<u16>> {
    let end = head.windows(2).position(|w| w == b"\r\n")?;
    let line = std::str::from_utf8(&head[..end]).ok();
    Some(line.and_then(|line| {
        let mut parts = line.splitn(3, ' ');
        let version = parts.next()?;
        let code = parts.next()?;
        (version.starts_with("HTTP/1.") && code.len() == 3)
            .then(|| code.parse().ok())
            .flatten()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn status_lines() {
        for (head, expected) in [
            (&b"HTTP/1.1 200 OK\r\n"[..], Some(Some(200))),
            (b"HTTP/1.0 503 Service Unavailable\r\nx", Some(Some(503))),
            (b"HTTP/1.1 200\r\n", Some(Some(200))),
            (b"HTTP/1.1 200 O", None),
            (b"", None),
            (b"SSH-2.0-OpenSSH\r\n", Some(None)),
            (b"HTTP/1.1 2000 OK\r\n", Some(None)),
            (b"\xff\xfe\r\n", Some(None)),
        ] {
            assert_eq!(parse_status_line(head), expected, "{head:?}");
        }
    }

    /// A one-shot server on loopback answering `reply`, or saying nothing.
    fn serve_once(reply: Option<&'static [u8]>) -> (Daemon, std::thread::JoinHandle<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let daemon =
            crate::settings::parse_daemon_url(&format!("http://127.0.0.1:{port}")).unwrap();
        let thread = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut got = vec![0u8; 1024];
            let n = conn.read(&mut got).unwrap();
            got.truncate(n);
            match reply {
                Some(reply) => conn.write_all(reply).unwrap(),
                None => std::thread::sleep(Duration::from_millis(800)),
            }
            got
        });
        (daemon, thread)
    }

    #[test]
    fn up_on_200() {
        let (daemon, server) = serve_once(Some(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"));
        assert_eq!(probe(&daemon, PROBE_TIMEOUT), Probe::Up);
        let request = String::from_utf8(server.join().unwrap()).unwrap();
        assert!(
            request.starts_with("GET /_pacmesh/status HTTP/1.1\r\n"),
            "{request}"
        );
    }

    #[test]
    fn down_on_other_answers_silence_and_refusal() {
        let (daemon, server) = serve_once(Some(b"HTTP/1.1 404 Not Found\r\n\r\n"));
        assert_eq!(
            probe(&daemon, PROBE_TIMEOUT),
            Probe::Down("/_pacmesh/status answered 404".into())
        );
        server.join().unwrap();

        let (daemon, server) = serve_once(None);
        let started = Instant::now();
        assert!(matches!(probe(&daemon, PROBE_TIMEOUT), Probe::Down(_)));
        assert!(started.elapsed() < PROBE_TIMEOUT + Duration::from_millis(100));
        server.join().unwrap();

        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let daemon =
            crate::settings::parse_daemon_url(&format!("http://127.0.0.1:{port}")).unwrap();
        assert_eq!(
            probe(&daemon, PROBE_TIMEOUT),
            Probe::Down("connection refused".into())
        );
    }
}
