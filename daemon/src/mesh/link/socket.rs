//! UDP socket buffers sized for bulk transfer: at the default size the
//! kernel drops packets on fast links (1–2 % loss and a third less
//! throughput over veth; 4 MiB gives no loss: docs/DESIGN.md, "QUIC
//! throughput").
//!
//! rustix rather than socket2: socket2 has no `SO_RCVBUFFORCE`, and a raw
//! `setsockopt` would need `unsafe`, which the workspace forbids.

use std::net::UdpSocket;

use rustix::net::sockopt;

/// Receive and send buffer size asked for.
pub const BUFFER_BYTES: usize = 4 << 20;

/// Asks for `bytes` each way: forced past `net.core.rmem_max` /
/// `wmem_max` when we may (root or CAP_NET_ADMIN), else as much as the
/// limit allows. Never fails: small buffers cost throughput, not function.
pub fn size_buffers(socket: &UdpSocket, bytes: usize) {
    if sockopt::set_socket_recv_buffer_size_force(socket, bytes).is_err() {
        let _ = sockopt::set_socket_recv_buffer_size(socket, bytes);
    }
    if sockopt::set_socket_send_buffer_size_force(socket, bytes).is_err() {
        let _ = sockopt::set_socket_send_buffer_size(socket, bytes);
    }
    tracing::debug!(
        recv = sockopt::socket_recv_buffer_size(socket).unwrap_or(0),
        send = sockopt::socket_send_buffer_size(socket).unwrap_or(0),
        "QUIC socket buffers"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_grow_to_at_least_the_default_limit() {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let before = sockopt::socket_recv_buffer_size(&socket).expect("getsockopt");
        size_buffers(&socket, BUFFER_BYTES);
        let after = sockopt::socket_recv_buffer_size(&socket).expect("getsockopt");
        assert!(after >= before, "{before} -> {after}");
        let probe = UdpSocket::bind("127.0.0.1:0").expect("bind");
        if sockopt::set_socket_recv_buffer_size_force(&probe, 4096).is_ok() {
            // Linux reports twice the size asked for.
            assert!(after >= BUFFER_BYTES, "forced as root: {after}");
        }
    }
}
