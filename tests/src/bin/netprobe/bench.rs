//! Modes for `tests/benches/peer_transfer_lan.rs`:
//!
//! - `quic-sink IP:PORT FILE`: a bare quinn server with pacmesh's transport
//!   settings (TLS 1.3 on ring, ed25519 self-signed certificate, 4 MiB UDP
//!   buffers, 2 s keep-alive, 10 s idle timeout); on every bi stream it
//!   reads one byte, then sends FILE in 64 KiB reads as the daemon does.
//!   Prints `PMH ready`, serves until stdin closes.
//! - `quic-pull IP:PORT N`: connects to a `quic-sink`, then times one
//!   stream (request byte to last byte, 256 KiB reads, bytes discarded);
//!   prints `PMH pulled bytes=N us=T cpu_ticks=C` (C: its own utime+stime,
//!   handshake included). Exits 1 unless N bytes came.
//! - `fetch URL`: one HTTP/1.1 GET (`Connection: close`), body discarded;
//!   prints `PMH fetch status=S bytes=N ttfb_us=T total_us=T` (ttfb: the
//!   response head in).
//! - `latency URL N`: N sequential GETs on one keep-alive connection, `{i}`
//!   in URL replaced by the request's number, after N/10 uncounted ones;
//!   prints `PMH latency n=N status=S other=K p50_us=… p99_us=… max_us=…`
//!   (S: the first response's status, K: responses with another status).

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::unix::fs::FileExt as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::PrivateKeyDer;

type Error = Box<dyn std::error::Error>;

/// The modes this file handles.
pub const MODES: &[&str] = &["quic-sink", "quic-pull", "fetch", "latency"];

const ALPN: &[u8] = b"pacmesh-bench/1";
/// What pacmeshd asks for (`daemon/src/mesh/link/socket.rs`).
const BUFFER_BYTES: usize = 4 << 20;
/// pacmeshd's file reads for peers (`cachefile::CHUNK`).
const READ: usize = 64 * 1024;
/// pacmeshd's receive chunk (`transfer::MAX_CHUNK`).
const RECV: usize = 256 * 1024;
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);

pub fn run(mode: &str, args: &[String]) -> ExitCode {
    let result = match (mode, args) {
        ("quic-sink", [addr, file]) => addr
            .parse()
            .map_err(Error::from)
            .and_then(|addr| sink(addr, file)),
        ("quic-pull", [addr, n]) => match (addr.parse(), n.parse()) {
            (Ok(addr), Ok(n)) => pull(addr, n),
            _ => Err("quic-pull IP:PORT N".into()),
        },
        ("fetch", [url]) => fetch(url),
        ("latency", [url, n]) => match n.parse() {
            Ok(n) => latency(url, n),
            Err(_) => Err("latency URL N".into()),
        },
        _ => Err(format!("{mode}: bad arguments {args:?}").into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pacmesh-netprobe {mode}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Every stream of every bench connection: pacmesh's `MeshOptions` defaults.
fn transport() -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    t.keep_alive_interval(Some(Duration::from_secs(2)))
        .max_idle_timeout(quinn::IdleTimeout::try_from(Duration::from_secs(10)).ok())
        .max_concurrent_uni_streams(0u8.into());
    Arc::new(t)
}

/// A UDP socket with pacmesh's buffer sizes, as a quinn endpoint.
fn endpoint(
    bind: SocketAddr,
    server: Option<quinn::ServerConfig>,
) -> Result<quinn::Endpoint, Error> {
    let socket = UdpSocket::bind(bind)?;
    let state = quinn::udp::UdpSocketState::new((&socket).into())?;
    state.set_recv_buffer_size((&socket).into(), BUFFER_BYTES)?;
    state.set_send_buffer_size((&socket).into(), BUFFER_BYTES)?;
    let (rcv, snd) = (
        state.recv_buffer_size((&socket).into())?,
        state.send_buffer_size((&socket).into())?,
    );
    if rcv < BUFFER_BYTES || snd < BUFFER_BYTES {
        eprintln!("pacmesh-netprobe: UDP buffers {rcv}/{snd} B, short of {BUFFER_BYTES} B");
    }
    socket.set_nonblocking(true)?;
    let runtime = quinn::default_runtime().ok_or("no tokio runtime")?;
    Ok(quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        server,
        socket,
        runtime,
    )?)
}

fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn sink(addr: SocketAddr, path: &str) -> Result<(), Error> {
    let file = Arc::new(std::fs::File::open(path)?);
    let size = file.metadata()?.len();
    runtime()?.block_on(async move {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)?;
        let cert = rcgen::CertificateParams::new(vec!["pacmesh".to_owned()])?.self_signed(&key)?;
        let mut tls = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )?;
        tls.alpn_protocols = vec![ALPN.to_vec()];
        let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)?;
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        server.transport_config(transport());
        let endpoint = endpoint(addr, Some(server))?;
        let accepting = endpoint.clone();
        tokio::spawn(async move {
            while let Some(incoming) = accepting.accept().await {
                let file = file.clone();
                tokio::spawn(async move {
                    let Ok(conn) = incoming.await else { return };
                    while let Ok((send, recv)) = conn.accept_bi().await {
                        tokio::spawn(send_file(file.clone(), size, send, recv));
                    }
                });
            }
        });
        println!("PMH ready");
        let _ = std::io::stdout().flush();
        // Serve until the bench closes stdin.
        let _ = tokio::task::spawn_blocking(|| {
            let _ = std::io::stdin().read_to_end(&mut Vec::new());
        })
        .await;
        endpoint.close(0u32.into(), b"done");
        Ok(())
    })
}

async fn send_file(
    file: Arc<std::fs::File>,
    size: u64,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) {
    let mut one = [0u8; 1];
    if recv.read_exact(&mut one).await.is_err() {
        return;
    }
    let mut pos = 0u64;
    while pos < size {
        let want = usize::try_from((size - pos).min(READ as u64)).unwrap_or(READ);
        let mut buf = vec![0u8; want];
        let Ok(n) = file.read_at(&mut buf, pos) else {
            return;
        };
        if n == 0 {
            return;
        }
        buf.truncate(n);
        pos += n as u64;
        if send.write_chunk(buf.into()).await.is_err() {
            return;
        }
    }
    let _ = send.finish();
    let _ = send.stopped().await;
}

fn pull(addr: SocketAddr, want: u64) -> Result<(), Error> {
    runtime()?.block_on(async move {
        let provider = provider();
        let mut tls = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(crate::quic::AnyServer(provider)))
            .with_no_client_auth();
        tls.alpn_protocols = vec![ALPN.to_vec()];
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)?;
        let mut config = quinn::ClientConfig::new(Arc::new(crypto));
        config.transport_config(transport());
        let endpoint = endpoint("0.0.0.0:0".parse()?, None)?;
        let conn = endpoint.connect_with(config, addr, "pacmesh")?.await?;
        let started = Instant::now();
        let (mut send, mut recv) = conn.open_bi().await?;
        send.write_all(&[1]).await?;
        let _ = send.finish();
        let mut got = 0u64;
        while let Some(chunk) = recv.read_chunk(RECV, true).await? {
            got += chunk.bytes.len() as u64;
        }
        let us = started.elapsed().as_micros();
        conn.close(0u32.into(), b"done");
        endpoint.wait_idle().await;
        if got != want {
            return Err(format!("got {got} bytes, expected {want}").into());
        }
        println!(
            "PMH pulled bytes={got} us={us} cpu_ticks={}",
            own_cpu_ticks().unwrap_or(0)
        );
        Ok(())
    })
}

/// utime + stime of this process, in clock ticks.
fn own_cpu_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state); utime and stime are fields 14 and 15.
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

fn connect(addr: SocketAddr) -> Result<TcpStream, Error> {
    let stream = TcpStream::connect_timeout(&addr, HTTP_TIMEOUT)?;
    stream.set_read_timeout(Some(HTTP_TIMEOUT))?;
    stream.set_write_timeout(Some(HTTP_TIMEOUT))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Reads a response head; its status and `Content-Length`.
fn read_head(reader: &mut impl std::io::BufRead) -> Result<(u16, Option<u64>), Error> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err("connection closed before a response".into());
    }
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {line:?}"))?;
    let mut length = None;
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Err("connection closed inside the head".into());
        }
        let header = line.trim_end();
        if header.is_empty() {
            return Ok((status, length));
        }
        if let Some((k, v)) = header.split_once(':') {
            if k.trim().eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().ok();
            }
        }
    }
}

fn fetch(url: &str) -> Result<(), Error> {
    let (addr, authority, path) = crate::split_url(url)?;
    let started = Instant::now();
    let mut stream = connect(addr)?;
    stream.write_all(
        format!(
            "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: pacmesh-netprobe\r\n\
             Connection: close\r\n\r\n"
        )
        .as_bytes(),
    )?;
    let mut reader = BufReader::with_capacity(RECV, stream);
    let (status, _) = read_head(&mut reader)?;
    let ttfb = started.elapsed();
    let mut bytes = reader.buffer().len() as u64;
    reader.consume(reader.buffer().len());
    let mut stream = reader.into_inner();
    let mut buf = vec![0u8; RECV];
    loop {
        match stream.read(&mut buf)? {
            0 => break,
            n => bytes += n as u64,
        }
    }
    println!(
        "PMH fetch status={status} bytes={bytes} ttfb_us={} total_us={}",
        ttfb.as_micros(),
        started.elapsed().as_micros()
    );
    Ok(())
}

fn latency(url: &str, n: usize) -> Result<(), Error> {
    let (addr, authority, path) = crate::split_url(url)?;
    let stream = connect(addr)?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let warmup = n / 10;
    let mut times = Vec::with_capacity(n);
    let mut first = None;
    let mut other = 0usize;
    let mut body = Vec::new();
    for i in 0..warmup + n {
        let path = path.replace("{i}", &i.to_string());
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: pacmesh-netprobe\r\n\r\n"
        );
        let started = Instant::now();
        writer.write_all(request.as_bytes())?;
        let (status, length) = read_head(&mut reader)?;
        let length = length.ok_or("a response without Content-Length")?;
        body.resize(usize::try_from(length)?, 0);
        reader.read_exact(&mut body)?;
        let took = started.elapsed();
        if i < warmup {
            continue;
        }
        times.push(took);
        match first {
            None => first = Some(status),
            Some(s) if s != status => other += 1,
            Some(_) => {}
        }
    }
    times.sort();
    let at = |q: f64| {
        let i = ((times.len() as f64 * q).ceil() as usize).clamp(1, times.len()) - 1;
        times[i].as_micros()
    };
    println!(
        "PMH latency n={n} status={} other={other} p50_us={} p99_us={} max_us={}",
        first.unwrap_or(0),
        at(0.50),
        at(0.99),
        at(1.0)
    );
    Ok(())
}
