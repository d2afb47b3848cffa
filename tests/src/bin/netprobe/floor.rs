//! `serve-files IP:PORT DIR THREADS`, for `bench/serve-vs-nginx.sh`: the
//! least a tokio server must do to serve a cache hit, as a floor to
//! measure pacmeshd's hit path against (the serving bench's counterpart of
//! `quic-sink`). THREADS threads, each a current-thread runtime accepting
//! from one shared listener (pacmeshd's serving threads, nginx's workers);
//! per request: the head parsed by httparse, the file opened by its name
//! in DIR, a `200` head with its length written with `MSG_MORE`, the body
//! sent with `sendfile` in pieces of 2 MiB, and the connection kept for the
//! next request. Nothing else: no time limits, no log, no ranges, no
//! admission, no page cache probe. A name that is not a regular file in
//! DIR gets a `404`, anything but a GET a `400` and the close. Prints
//! `PMH ready`, then serves until killed.

use std::fs::File;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::rc::Rc;

use tokio::io::{AsyncReadExt as _, Interest};
use tokio::net::TcpStream;

/// pacmeshd's `send::SENDFILE_PIECE` (nginx's `sendfile_max_chunk`).
const PIECE: usize = 2 * 1024 * 1024;
/// A request head longer than this is refused.
const MAX_HEAD: usize = 8 * 1024;
/// Header fields parsed per request.
const MAX_FIELDS: usize = 32;

pub fn run(addr: &str, dir: &str, threads: &str) -> ExitCode {
    let (Ok(addr), Ok(threads)) = (addr.parse::<SocketAddr>(), threads.parse::<usize>()) else {
        return crate::usage("serve-files IP:PORT DIR THREADS");
    };
    let listener = match TcpListener::bind(addr).and_then(|l| {
        l.set_nonblocking(true)?;
        Ok(l)
    }) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("pacmesh-netprobe: serve-files: bind {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut serving = Vec::new();
    for _ in 0..threads.max(1) {
        let (listener, dir) = match listener.try_clone() {
            Ok(l) => (l, PathBuf::from(dir)),
            Err(e) => {
                eprintln!("pacmesh-netprobe: serve-files: {e}");
                return ExitCode::FAILURE;
            }
        };
        serving.push(std::thread::spawn(move || serve_thread(listener, dir)));
    }
    println!("PMH ready");
    for thread in serving {
        if let Ok(Err(e)) = thread.join() {
            eprintln!("pacmesh-netprobe: serve-files: {e}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

/// One serving thread: accepts and serves until an accept fails.
fn serve_thread(listener: TcpListener, dir: PathBuf) -> io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let dir = Rc::new(dir);
        loop {
            let (stream, _) = listener.accept().await?;
            stream.set_nodelay(true)?;
            // A connection that fails is closed; the others go on.
            tokio::task::spawn_local(connection(stream, dir.clone()));
        }
    })
}

/// A parsed request: what to write, and the file to send after it.
struct Answer {
    head: Vec<u8>,
    file: Option<(File, u64)>,
    close: bool,
}

async fn connection(mut stream: TcpStream, dir: Rc<PathBuf>) -> io::Result<()> {
    let mut input = Vec::with_capacity(1024);
    loop {
        let (used, answer) = loop {
            if let Some(parsed) = parse(&input, &dir) {
                break parsed;
            }
            if input.len() > MAX_HEAD {
                return Err(io::Error::other("request head too long"));
            }
            input.reserve(1024);
            if stream.read_buf(&mut input).await? == 0 {
                return Ok(());
            }
        };
        input.drain(..used);
        write(&stream, &answer.head, answer.file.is_some()).await?;
        if let Some((file, len)) = answer.file {
            send_file(&stream, &file, len).await?;
        }
        if answer.close {
            return Ok(());
        }
    }
}

/// The bytes of one head at the start of `input` and its answer, or
/// `None` while the head is incomplete.
fn parse(input: &[u8], dir: &Path) -> Option<(usize, Answer)> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
    let mut request = httparse::Request::new(&mut fields);
    let used = match request.parse(input) {
        Ok(httparse::Status::Partial) => return None,
        Ok(httparse::Status::Complete(used)) => used,
        Err(_) => input.len(),
    };
    let name = request
        .path
        .filter(|_| request.method == Some("GET"))
        .and_then(|path| path.strip_prefix('/'));
    let Some(name) = name else {
        let head = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
        return Some((
            used,
            Answer {
                head: head.to_vec(),
                file: None,
                close: true,
            },
        ));
    };
    let answer = match regular_file(dir, name) {
        Some((len, file)) => Answer {
            head: format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: {len}\r\n\r\n"
            )
            .into_bytes(),
            file: Some((file, len)),
            close: false,
        },
        None => Answer {
            head: b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n".to_vec(),
            file: None,
            close: false,
        },
    };
    Some((used, answer))
}

/// The regular file named `name` in `dir` (not below it) and its length.
/// `.`, `..` and the empty name are directories, so they are not found.
fn regular_file(dir: &Path, name: &str) -> Option<(u64, File)> {
    if name.contains('/') {
        return None;
    }
    let file = File::open(dir.join(name)).ok()?;
    let meta = file.metadata().ok()?;
    meta.is_file().then_some((meta.len(), file))
}

/// Writes `head` whole, with `MSG_MORE` when a body follows.
async fn write(stream: &TcpStream, mut head: &[u8], more: bool) -> io::Result<()> {
    let flags = if more {
        rustix::net::SendFlags::MORE
    } else {
        rustix::net::SendFlags::empty()
    };
    while !head.is_empty() {
        let sent = stream.try_io(Interest::WRITABLE, || {
            rustix::net::send(stream, head, flags).map_err(io::Error::from)
        });
        match sent {
            Ok(n) => head = &head[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => stream.writable().await?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Sends `len` bytes of `file` with `sendfile`.
async fn send_file(stream: &TcpStream, file: &File, len: u64) -> io::Result<()> {
    let mut pos = 0;
    while pos < len {
        let want = (len - pos).min(PIECE as u64) as usize;
        let sent = stream.try_io(Interest::WRITABLE, || {
            rustix::fs::sendfile(stream, file, Some(&mut pos), want).map_err(io::Error::from)
        });
        match sent {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => stream.writable().await?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
