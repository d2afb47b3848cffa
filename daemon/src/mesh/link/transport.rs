//! The QUIC transport sized for what pacmesh sends (docs/DESIGN.md,
//! "Before the first exchange"). quinn's defaults suit a web server: 100
//! streams each way, 1.25 MB per stream, no connection-wide receive
//! limit, datagrams on. Before a peer's `Hello` checked, a connection
//! here may open one stream (the control stream) and have
//! [`PRE_HELLO_RECEIVE_WINDOW`] bytes unread in all; once it checked,
//! [`open_up`] gives it the link's limits.

use std::time::Duration;

use anyhow::Context as _;
use pacmesh_proto::MAX_HELLO_LEN;
use quinn::VarInt;

use crate::mesh::admission::MAX_PENDING_HELLOS;

/// Bidirectional streams a peer may have open before its `Hello` checked:
/// the control stream.
pub const PRE_HELLO_STREAMS: u32 = 1;

/// Stream bytes a peer may have sent and this host not yet read, in all,
/// before its `Hello` checked: a `Hello` is at most a few hundred bytes.
pub const PRE_HELLO_RECEIVE_WINDOW: u32 = 16 * 1024;
const _: () = assert!(PRE_HELLO_RECEIVE_WINDOW as usize >= 4 + MAX_HELLO_LEN);

/// Bidirectional streams a linked peer may have open at once: the control
/// stream and its downloads from here (this host serves 8 at once and
/// answers `Busy` beyond; the engine asks one holder per download, 32
/// downloads at most).
pub const LINK_STREAMS: u32 = 64;

/// Unread bytes per stream: quinn's default, which the throughput
/// measurements used (a 16 MiB window gave nothing more: QUIC is
/// CPU-bound here).
pub const STREAM_RECEIVE_WINDOW: u32 = 1_250_000;

/// Unread stream bytes of one linked peer in all: several downloads from
/// it at full speed, and at most this much held should they stall.
pub const LINK_RECEIVE_WINDOW: u32 = 8 << 20;

/// Bytes this host buffers for sending on one connection (unsent and
/// unacknowledged): quinn's default of 8 stream windows.
pub const SEND_WINDOW: u64 = 8 * STREAM_RECEIVE_WINDOW as u64;

/// The transport of every connection, dialed or accepted.
pub fn transport_config(
    keep_alive: Duration,
    idle_timeout: Duration,
) -> anyhow::Result<quinn::TransportConfig> {
    let mut transport = quinn::TransportConfig::default();
    transport
        .keep_alive_interval(Some(keep_alive))
        .max_idle_timeout(Some(
            quinn::IdleTimeout::try_from(idle_timeout).context("idle timeout")?,
        ))
        .max_concurrent_uni_streams(0u8.into())
        .max_concurrent_bidi_streams(PRE_HELLO_STREAMS.into())
        .stream_receive_window(STREAM_RECEIVE_WINDOW.into())
        .receive_window(PRE_HELLO_RECEIVE_WINDOW.into())
        .send_window(SEND_WINDOW)
        // pacmesh sends no datagrams; a peer's would be buffered unread.
        .datagram_receive_buffer_size(None);
    Ok(transport)
}

/// Bounds what quinn holds for connections not yet accepted by the
/// application (0-RTT data, handshake packets).
pub fn limit_incoming(server: &mut quinn::ServerConfig) {
    server
        .max_incoming(2 * MAX_PENDING_HELLOS)
        .incoming_buffer_size(64 * 1024)
        .incoming_buffer_size_total(4 << 20);
}

/// The peer's `Hello` checked: it may now open transfer streams and send
/// digests and file bytes at full speed.
pub fn open_up(conn: &quinn::Connection) {
    conn.set_max_concurrent_bi_streams(VarInt::from_u32(LINK_STREAMS));
    conn.set_receive_window(VarInt::from_u32(LINK_RECEIVE_WINDOW));
}
