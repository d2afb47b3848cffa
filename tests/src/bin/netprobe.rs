//! `pacmesh-netprobe`: the small server and client that the network
//! namespace tests run inside a namespace (`ip netns exec NS pacmesh-netprobe …`).
//!
//! - `serve IP`: UDP echo on IP:15680 and IP:5353 and a TCP greeting on
//!   IP:15680; prints `PMH ready`, then serves until stdin closes.
//! - `probe PROTO:IP:PORT…`: one request to each at once; prints
//!   `PMH PROTO/PORT RESULT` (`open`, `timeout`, `refused`, …) for each.
//!
//! It exits by itself after two minutes, should the test that started it be
//! killed.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::ExitCode;
use std::time::Duration;

const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
const LIFETIME: Duration = Duration::from_secs(120);

fn main() -> ExitCode {
    std::thread::spawn(|| {
        std::thread::sleep(LIFETIME);
        std::process::exit(0);
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
        _ => return usage("expected `serve IP` or `probe PROTO:IP:PORT...`"),
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
