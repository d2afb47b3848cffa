//! systemd's readiness protocol: datagrams such as `READY=1` sent to the
//! socket named by `$NOTIFY_SOCKET` (a path, or `@name` for an abstract
//! socket). Without the variable (not started by systemd) it does nothing.

use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// Sends one notification, e.g. `"READY=1\nSTATUS=serving"`.
pub fn notify(message: &str) -> io::Result<()> {
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(());
    };
    let target = target.to_string_lossy();
    let addr = match target.strip_prefix('@') {
        Some(abstract_name) => SocketAddr::from_abstract_name(abstract_name.as_bytes())?,
        None => SocketAddr::from_pathname(&*target)?,
    };
    let socket = UnixDatagram::unbound()?;
    socket.send_to_addr(message.as_bytes(), &addr)?;
    Ok(())
}
