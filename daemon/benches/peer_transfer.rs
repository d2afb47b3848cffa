//! One 1 GiB file over loopback: through `Mesh::fetch` (request, index
//! lookup, header, upload accounting, priorities) against a bare quinn
//! stream carrying the same file in the same run, with the same socket
//! buffers, TLS, transport settings, 64 KiB file reads and 256 KiB
//! zero-copy receive chunks. After one uncounted warm-up transfer each,
//! rounds alternate which path goes first; medians are compared.
//! Target: mesh ≥ 0.9 × bare.
//!
//! `cargo bench -p pacmeshd --bench peer_transfer` (env `ROUNDS`, `MIB`)

use std::net::UdpSocket;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use pacmeshd::identity::Identity;
use pacmeshd::index::watch::ChangeSink;
use pacmeshd::mesh::link::{size_buffers, tls, Mesh, MeshOptions, BUFFER_BYTES};
use pacmeshd::mesh::publish::Publisher;
use pacmeshd::mesh::{DiscoveryEvent, PeerAd};
use tokio_util::sync::CancellationToken;

const FILE: &str = "bench-1.0-1-x86_64.pkg.tar.zst";
const READ: usize = 64 * 1024;
const RECV: usize = 256 * 1024;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn mesh_node(cache: &Path, shutdown: &CancellationToken) -> (Mesh, tempfile::TempDir) {
    let state = tempfile::tempdir().expect("state");
    let publisher = Arc::new(Publisher::default());
    let sink = publisher.clone();
    let on_change: ChangeSink = Arc::new(move |changes| sink.change(changes));
    let index = pacmeshd::index::watch::start(vec![cache.into()], on_change, shutdown.clone())
        .await
        .expect("index");
    let identity = Arc::new(Identity::load_or_create(state.path()).expect("identity"));
    let mut opts = MeshOptions::new(identity, vec!["x86_64".into()]);
    opts.index = index;
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let mesh = Mesh::start(socket, opts, publisher, shutdown.clone()).expect("mesh");
    (mesh, state)
}

async fn via_mesh(a: &Mesh, b: &Mesh, size: u64) -> Duration {
    let start = Instant::now();
    let mut dl = a.fetch(b.node_id(), FILE, 0).await.expect("fetch");
    assert_eq!(dl.size, size);
    let mut got = 0u64;
    while let Some(chunk) = dl.next_chunk().await.expect("chunk") {
        got += chunk.len() as u64;
    }
    assert_eq!(got, size);
    start.elapsed()
}

/// The mesh's transport settings (defaults of `MeshOptions`).
fn transport() -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    t.keep_alive_interval(Some(Duration::from_secs(2)))
        .max_idle_timeout(Some(
            quinn::IdleTimeout::try_from(Duration::from_secs(10)).expect("idle"),
        ))
        .max_concurrent_uni_streams(0u8.into());
    Arc::new(t)
}

fn endpoint(server: Option<quinn::ServerConfig>) -> quinn::Endpoint {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    size_buffers(&socket, BUFFER_BYTES);
    socket.set_nonblocking(true).expect("nonblocking");
    let runtime = quinn::default_runtime().expect("runtime");
    quinn::Endpoint::new(quinn::EndpointConfig::default(), server, socket, runtime)
        .expect("endpoint")
}

/// A bare quinn pair: the server sends the file on every stream it
/// accepts, after reading the asker's one-byte request.
struct Bare {
    client: quinn::Connection,
    _server: quinn::Endpoint,
    _client_ep: quinn::Endpoint,
}

async fn bare_pair(path: &Path, dir: &Path) -> Bare {
    for sub in ["s", "c"] {
        std::fs::create_dir_all(dir.join(sub)).expect("identity dir");
    }
    let server_id = Identity::load_or_create(&dir.join("s")).expect("identity");
    let client_id = Identity::load_or_create(&dir.join("c")).expect("identity");
    let mut server_config = quinn::ServerConfig::with_crypto(Arc::new(
        tls::server_crypto(&server_id).expect("server tls"),
    ));
    server_config.transport_config(transport());
    let server = endpoint(Some(server_config));
    let client_ep = endpoint(None);
    let mut client_config = quinn::ClientConfig::new(Arc::new(
        tls::client_crypto(&client_id, Some(server_id.node_id()), Default::default())
            .expect("client tls"),
    ));
    client_config.transport_config(transport());
    let addr = server.local_addr().expect("addr");
    let accepting = server.clone();
    let file = Arc::new(std::fs::File::open(path).expect("open"));
    tokio::spawn(async move {
        let conn = accepting
            .accept()
            .await
            .expect("incoming")
            .await
            .expect("handshake");
        while let Ok((mut send, mut recv)) = conn.accept_bi().await {
            let file = file.clone();
            tokio::spawn(async move {
                let mut one = [0u8; 1];
                recv.read_exact(&mut one).await.expect("request");
                let size = file.metadata().expect("stat").len();
                let mut pos = 0u64;
                while pos < size {
                    let want = (size - pos).min(READ as u64) as usize;
                    let mut buf = BytesMut::zeroed(want);
                    let n = file.read_at(&mut buf, pos).expect("read");
                    buf.truncate(n);
                    pos += n as u64;
                    send.write_chunk(buf.freeze()).await.expect("write");
                }
                let _ = send.finish();
                let _ = send.stopped().await;
            });
        }
    });
    let client = client_ep
        .connect_with(client_config, addr, tls::SERVER_NAME)
        .expect("connect")
        .await
        .expect("handshake");
    Bare {
        client,
        _server: server,
        _client_ep: client_ep,
    }
}

async fn via_bare(bare: &Bare, size: u64) -> Duration {
    let start = Instant::now();
    let (mut send, mut recv) = bare.client.open_bi().await.expect("stream");
    send.write_all(&[1]).await.expect("request");
    let _ = send.finish();
    let mut got = 0u64;
    while let Some(chunk) = recv.read_chunk(RECV, true).await.expect("read") {
        got += chunk.bytes.len() as u64;
    }
    assert_eq!(got, size);
    start.elapsed()
}

fn mb_s(size: u64, d: Duration) -> f64 {
    size as f64 / 1e6 / d.as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let size = env_or("MIB", 1024) << 20;
    let rounds = env_or("ROUNDS", 3);
    let dir = tempfile::tempdir_in("/tmp").expect("tmp");
    let cache = dir.path().join("cache");
    std::fs::create_dir(&cache).expect("cache dir");
    let path = cache.join(FILE);
    // Sparse: reads come from the page cache's zero page, not the disk.
    std::fs::File::create(&path)
        .expect("create")
        .set_len(size)
        .expect("size");

    let shutdown = CancellationToken::new();
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).expect("empty dir");
    let (a, _sa) = mesh_node(&empty, &shutdown).await;
    let (b, _sb) = mesh_node(&cache, &shutdown).await;
    a.on_discovery(DiscoveryEvent::Up(PeerAd {
        node_id: Some(b.node_id()),
        addrs: vec![b.local_addr()],
    }));
    let deadline = Instant::now() + Duration::from_secs(10);
    while a.candidates(FILE).is_empty() {
        assert!(Instant::now() < deadline, "no link");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let bare = bare_pair(&path, dir.path()).await;

    // Warm-up (not counted): the first transfer on each path is slower.
    via_bare(&bare, size).await;
    via_mesh(&a, &b, size).await;
    let (mut mesh_runs, mut bare_runs) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        // Alternate which goes first, so neither always follows the other.
        let (d, m) = if round % 2 == 0 {
            let d = via_bare(&bare, size).await;
            (d, via_mesh(&a, &b, size).await)
        } else {
            let m = via_mesh(&a, &b, size).await;
            (via_bare(&bare, size).await, m)
        };
        bare_runs.push(mb_s(size, d));
        mesh_runs.push(mb_s(size, m));
        println!(
            "round {round}: bare quinn {:.0} MB/s, Mesh::fetch {:.0} MB/s",
            mb_s(size, d),
            mb_s(size, m)
        );
    }
    let (m, q) = (median(mesh_runs), median(bare_runs));
    println!(
        "{} MiB x {rounds} rounds, medians: bare quinn {q:.0} MB/s, Mesh::fetch {m:.0} MB/s, \
         ratio {:.3} (target >= 0.9)",
        size >> 20,
        m / q
    );
    assert_eq!(b.bytes_to_peers(), size * (rounds + 1));
    shutdown.cancel();
    a.closed().await;
    b.closed().await;
}
