//! `pacmesh-netprobe`: the small server and client that the network
//! namespace tests run inside a namespace (`ip netns exec NS pacmesh-netprobe …`).
//!
//! - `serve IP`: UDP echo on IP:15680 and IP:5353 and a TCP greeting on
//!   IP:15680; prints `PMH ready`, then serves until stdin closes.
//! - `probe PROTO:IP:PORT…`: one request to each at once; prints
//!   `PMH PROTO/PORT RESULT` (`open`, `timeout`, `refused`, …) for each.
//! - `mcast-listen GROUP:PORT IP`: joins GROUP on the interface holding IP,
//!   answers each datagram on GROUP:PORT with a unicast `pacmesh mcast-reply IP
//!   PAYLOAD` to its sender; prints `PMH ready`, then serves until stdin closes.
//! - `mcast-send GROUP:PORT IP N`: from IP (which picks the interface; no
//!   route needed), sends `pacmesh mcast NONCE` to GROUP:PORT every 200 ms
//!   until N listeners answered or 2 s passed; prints `PMH reply IP` for each
//!   listener that answered (its own host's never does: loop is off).
//! - `get http://IP:PORT/PATH [NAME:VALUE]…`: one plain HTTP/1.1 GET with
//!   those extra headers (5 s to connect, 15 s per read: a caching mirror may
//!   wait 8.5 s on its upstream); prints the status line, the headers, a blank
//!   line and the (de-chunked) body. Exits 1 with a message on stderr if no
//!   response came.
//! - `post http://IP:PORT/PATH [NAME:VALUE]…`: the same as a POST without a
//!   body.
//!
//! - `hold-get http://IP:PORT/PATH OUT`: a GET over a socket with a small
//!   receive buffer; prints `PMH ready` once the first body bytes came, then
//!   reads nothing more until stdin closes, so the server is mid-response for
//!   as long as the test wants. Then reads the rest into OUT; exits 1 unless
//!   the whole `Content-Length` came.
//!
//! - `quic-garbage IP:PORT`: completes TLS on pacmesh's ALPN as a stranger,
//!   sends garbage, prints `PMH closed REASON` when the daemon closes the
//!   link (`PMH open` if it did not within 5 s).
//!
//! - `serve-files IP:PORT DIR THREADS`: the serving bench's floor (see
//!   `floor.rs`).
//!
//! It exits by itself after two minutes (`PMH_LIFETIME_S` seconds when
//! set: a bench's long run), should the test that started it be killed:
//! with status 3 and a message on stderr, so a run cut short this way is
//! never taken for one that ended well.

mod bench;
mod floor;
mod quic;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::process::ExitCode;
use std::time::{Duration, Instant};

const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
const LIFETIME: Duration = Duration::from_secs(120);
/// Exit status when [`LIFETIME`] ran out.
const OUT_OF_TIME: i32 = 3;
const MCAST_WAIT: Duration = Duration::from_secs(2);
const HTTP_TIMEOUT: Duration = Duration::from_secs(5);
const HTTP_READ_TIMEOUT: Duration = Duration::from_secs(15);

fn main() -> ExitCode {
    let lifetime = std::env::var("PMH_LIFETIME_S")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(LIFETIME, Duration::from_secs);
    std::thread::spawn(move || {
        std::thread::sleep(lifetime);
        eprintln!(
            "pacmesh-netprobe: still running after its lifetime of {} s (PMH_LIFETIME_S); exiting",
            lifetime.as_secs()
        );
        std::process::exit(OUT_OF_TIME);
    });
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.split_first() {
        Some((mode, [ip])) if mode == "serve" => match ip.parse() {
            Ok(ip) => serve(ip),
            Err(e) => return usage(&format!("serve IP: {e}")),
        },
        Some((mode, targets)) if mode == "probe" && !targets.is_empty() => {
            let mut probes = Vec::new();
            for target in targets {
                let Some((proto, addr)) = target.split_once(':') else {
                    return usage(&format!("{target}: expected PROTO:IP:PORT"));
                };
                let Ok(addr) = addr.parse::<SocketAddr>() else {
                    return usage(&format!("{target}: bad IP:PORT"));
                };
                let proto = proto.to_string();
                probes.push(std::thread::spawn(move || {
                    let result = if proto == "tcp" {
                        probe_tcp(addr)
                    } else {
                        probe_udp(addr)
                    };
                    format!("PMH {proto}/{} {result}", addr.port())
                }));
            }
            for probe in probes {
                match probe.join() {
                    Ok(line) => println!("{line}"),
                    Err(_) => return ExitCode::FAILURE,
                }
            }
        }
        Some((mode, [group, ip])) if mode == "mcast-listen" => {
            let (Ok(group), Ok(ip)) = (group.parse(), ip.parse()) else {
                return usage("mcast-listen GROUP:PORT IP");
            };
            mcast_listen(group, ip);
        }
        Some((mode, [group, ip, n])) if mode == "mcast-send" => {
            let (Ok(group), Ok(ip), Ok(n)) = (group.parse(), ip.parse(), n.parse()) else {
                return usage("mcast-send GROUP:PORT IP N");
            };
            for from in mcast_send(group, ip, n) {
                println!("PMH reply {from}");
            }
        }
        Some((mode, [url, headers @ ..])) if mode == "get" || mode == "post" => match http_request(
            &mode.to_uppercase(),
            url,
            headers,
        ) {
            Ok(response) => {
                let mut out = std::io::stdout().lock();
                if out.write_all(&response).and_then(|()| out.flush()).is_err() {
                    return ExitCode::FAILURE;
                }
            }
            Err(e) => {
                eprintln!("pacmesh-netprobe: {mode} {url}: {e}");
                return ExitCode::FAILURE;
            }
        },
        Some((mode, [url, out])) if mode == "hold-get" => {
            if let Err(e) = hold_get(url, out.as_ref()) {
                eprintln!("pacmesh-netprobe: hold-get {url}: {e}");
                return ExitCode::FAILURE;
            }
        }
        Some((mode, [addr])) if mode == "quic-garbage" => {
            let Ok(addr) = addr.parse() else {
                return usage("quic-garbage IP:PORT");
            };
            match quic::garbage(addr) {
                Ok(said) => println!("{said}"),
                Err(e) => {
                    eprintln!("pacmesh-netprobe: quic-garbage {addr}: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
        Some((mode, [addr, dir, threads])) if mode == "serve-files" => {
            return floor::run(addr, dir, threads)
        }
        Some((mode, rest)) if bench::MODES.contains(&mode.as_str()) => {
            return bench::run(mode, rest)
        }
        _ => {
            return usage(
                "expected `serve IP`, `probe PROTO:IP:PORT...`, `mcast-listen GROUP:PORT IP`, \
                 `mcast-send GROUP:PORT IP N`, `get URL [NAME:VALUE]...`, `post URL [NAME:VALUE]...`, `hold-get URL OUT`, `quic-garbage IP:PORT` or `serve-files IP:PORT DIR THREADS`",
            )
        }
    }
    ExitCode::SUCCESS
}

fn usage(why: &str) -> ExitCode {
    eprintln!("pacmesh-netprobe: {why}");
    ExitCode::from(64)
}

fn serve(ip: Ipv4Addr) {
    let tcp = TcpListener::bind((ip, 15680)).expect("binding TCP 15680");
    std::thread::spawn(move || {
        for mut stream in tcp.incoming().flatten() {
            let _ = stream.write_all(b"pacmesh\n");
        }
    });
    for port in [15680, 5353] {
        let udp = UdpSocket::bind((ip, port)).expect("binding UDP");
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while let Ok((n, from)) = udp.recv_from(&mut buf) {
                let _ = udp.send_to(&buf[..n], from);
            }
        });
    }
    println!("PMH ready");
    let _ = std::io::stdout().flush();
    // Serve until the test closes stdin (or dies).
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
}

fn classify(e: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    match e.kind() {
        TimedOut | WouldBlock => "timeout".into(),
        ConnectionRefused => "refused".into(),
        _ => format!("error:{}", e.to_string().replace(' ', "_")),
    }
}

fn probe_tcp(addr: SocketAddr) -> String {
    let mut stream = match TcpStream::connect_timeout(&addr, PROBE_TIMEOUT) {
        Ok(s) => s,
        Err(e) => return classify(&e),
    };
    if let Err(e) = stream.set_read_timeout(Some(PROBE_TIMEOUT)) {
        return classify(&e);
    }
    let mut got = String::new();
    match stream.read_to_string(&mut got) {
        Ok(_) if got == "pacmesh\n" => "open".into(),
        Ok(_) => format!("unexpected:{got:?}"),
        Err(e) => classify(&e),
    }
}

fn probe_udp(addr: SocketAddr) -> String {
    let socket = match UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)) {
        Ok(s) => s,
        Err(e) => return classify(&e),
    };
    if let Err(e) = socket
        .connect(addr)
        .and_then(|()| socket.set_read_timeout(Some(PROBE_TIMEOUT)))
    {
        return classify(&e);
    }
    let ping = format!("pacmesh probe {}", std::process::id());
    if let Err(e) = socket.send(ping.as_bytes()) {
        return classify(&e);
    }
    let mut buf = [0u8; 512];
    match socket.recv(&mut buf) {
        Ok(n) if buf[..n] == *ping.as_bytes() => "open".into(),
        Ok(n) => format!("unexpected:{:?}", String::from_utf8_lossy(&buf[..n])),
        Err(e) => classify(&e),
    }
}

fn mcast_listen(group: SocketAddrV4, ip: Ipv4Addr) {
    let socket =
        UdpSocket::bind((Ipv4Addr::UNSPECIFIED, group.port())).expect("binding the group's port");
    socket
        .join_multicast_v4(group.ip(), &ip)
        .expect("joining the group");
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok((n, from)) = socket.recv_from(&mut buf) {
            let mut reply = format!("pacmesh mcast-reply {ip} ").into_bytes();
            reply.extend_from_slice(&buf[..n]);
            let _ = socket.send_to(&reply, from);
        }
    });
    println!("PMH ready");
    let _ = std::io::stdout().flush();
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
}

/// The listeners that answered, in the order they did.
fn mcast_send(group: SocketAddrV4, ip: Ipv4Addr, want: usize) -> Vec<Ipv4Addr> {
    // Bound to IP, a multicast goes out of IP's interface without IP_MULTICAST_IF or a route.
    let socket = UdpSocket::bind((ip, 0)).expect("binding the sender");
    socket
        .set_multicast_loop_v4(false)
        .and_then(|()| socket.set_multicast_ttl_v4(1))
        .and_then(|()| socket.set_read_timeout(Some(Duration::from_millis(50))))
        .expect("setting socket options");
    let ping = format!("pacmesh mcast {} {ip}", std::process::id());
    let prefix = "pacmesh mcast-reply ";
    let deadline = Instant::now() + MCAST_WAIT;
    let mut next_send = Instant::now();
    let mut got: Vec<Ipv4Addr> = Vec::new();
    let mut buf = [0u8; 512];
    while got.len() < want && Instant::now() < deadline {
        if Instant::now() >= next_send {
            if let Err(e) = socket.send_to(ping.as_bytes(), group) {
                eprintln!("pacmesh-netprobe: sending to {group}: {e}");
            }
            next_send += Duration::from_millis(200);
        }
        let Ok(n) = socket.recv(&mut buf) else {
            continue;
        };
        let text = String::from_utf8_lossy(&buf[..n]);
        let Some((from, payload)) = text
            .strip_prefix(prefix)
            .and_then(|rest| rest.split_once(' '))
        else {
            continue;
        };
        if payload == ping {
            if let Ok(from) = from.parse() {
                if !got.contains(&from) {
                    got.push(from);
                }
            }
        }
    }
    got
}

/// `http://IP[:PORT]/PATH` → (address, authority, path); port 80 if none.
fn split_url(url: &str) -> Result<(SocketAddr, String, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or("only http://IP:PORT/PATH URLs")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, "/"),
    };
    let addr = authority
        .parse()
        .or_else(|_| format!("{authority}:80").parse())
        .map_err(|_| format!("{authority}: expected IP:PORT"))?;
    Ok((addr, authority.to_owned(), path.to_owned()))
}

/// Connects to `url`'s address (with a receive buffer of `recv_buffer`
/// bytes if given), sets the timeouts, and sends `METHOD url` (no body,
/// `Connection: close`) with `headers` (`Name: value` each).
fn send_request(
    method: &str,
    url: &str,
    headers: &[String],
    recv_buffer: Option<usize>,
) -> Result<TcpStream, String> {
    let (addr, authority, path) = split_url(url)?;
    let mut stream = TcpStream::connect_timeout(&addr, HTTP_TIMEOUT).map_err(|e| e.to_string())?;
    if let Some(bytes) = recv_buffer {
        rustix::net::sockopt::set_socket_recv_buffer_size(&stream, bytes)
            .map_err(|e| format!("SO_RCVBUF: {e}"))?;
    }
    stream
        .set_read_timeout(Some(HTTP_READ_TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(HTTP_TIMEOUT)))
        .map_err(|e| e.to_string())?;
    let extra: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: pacmesh-netprobe\r\n\
         {extra}Connection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| e.to_string())?;
    Ok(stream)
}

/// `METHOD url` (no body) with `headers` (`Name: value` each) over a fresh
/// connection; the response with any chunked body decoded.
fn http_request(method: &str, url: &str, headers: &[String]) -> Result<Vec<u8>, String> {
    let mut stream = send_request(method, url, headers, None)?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .map_err(|e| format!("reading the response: {e}"))?;
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("no end of headers in {:?}", String::from_utf8_lossy(&raw)))?;
    let (head, body) = (&raw[..end + 4], &raw[end + 4..]);
    let chunked = String::from_utf8_lossy(head).lines().any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("transfer-encoding")
                && v.trim().eq_ignore_ascii_case("chunked")
        })
    });
    let mut out = head.to_vec();
    if chunked {
        out.extend(dechunk(body)?);
    } else {
        out.extend_from_slice(body);
    }
    Ok(out)
}

/// The receive buffer `hold-get` asks for: the kernel doubles it and keeps a
/// floor, so the server can queue only a few tens of KiB beyond it.
const HOLD_RECV_BUFFER: usize = 4096;

/// `hold-get`: see the module doc.
fn hold_get(url: &str, out: &std::path::Path) -> Result<(), String> {
    let mut stream = send_request("GET", url, &[], Some(HOLD_RECV_BUFFER))?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 1024];
    let (head_end, length) = loop {
        let n = stream.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("closed before the first body byte".into());
        }
        raw.extend_from_slice(&buf[..n]);
        let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        if raw.len() > end + 4 {
            let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .ok_or_else(|| format!("no Content-Length in {head:?}"))?;
            break (end + 4, length);
        }
    };
    println!("PMH ready");
    let _ = std::io::stdout().flush();
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    stream
        .read_to_end(&mut raw)
        .map_err(|e| format!("reading the rest: {e}"))?;
    let body = &raw[head_end..];
    std::fs::write(out, body).map_err(|e| format!("writing {}: {e}", out.display()))?;
    if body.len() != length {
        return Err(format!("{} of {length} body bytes came", body.len()));
    }
    Ok(())
}

fn dechunk(mut body: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let eol = body
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("truncated chunk size")?;
        let size = String::from_utf8_lossy(&body[..eol]);
        let size = size.split(';').next().unwrap_or_default().trim();
        let size =
            usize::from_str_radix(size, 16).map_err(|_| format!("bad chunk size {size:?}"))?;
        body = &body[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        let chunk = body.get(..size).ok_or("truncated chunk")?;
        out.extend_from_slice(chunk);
        body = body.get(size + 2..).ok_or("truncated chunk end")?;
    }
}
