//! systemd's readiness protocol: datagrams such as `READY=1` sent to the
//! socket named by `$NOTIFY_SOCKET` (a path, or `@name` for an abstract
//! socket). Without the variable (not started by systemd) it does nothing.
//! [`watchdog`] keeps systemd's watchdog (`WatchdogSec=`) fed while the
//! runtime answers.

use std::io;
use std::time::Duration;

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use tokio_util::sync::CancellationToken;

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

/// The interval to send `WATCHDOG=1` at, when systemd asked this process
/// for them (`WatchdogSec=` sets `$WATCHDOG_USEC`, and `$WATCHDOG_PID` to
/// the main process): half the timeout, as sd_watchdog_enabled(3)
/// advises. Pure: the caller reads the variables and its pid.
pub fn watchdog_interval(usec: Option<&str>, pid: Option<&str>, own_pid: u32) -> Option<Duration> {
    if let Some(pid) = pid {
        if pid.parse::<u32>().ok()? != own_pid {
            return None;
        }
    }
    let usec: u64 = usec?.parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

/// Tells systemd every half watchdog timeout that the daemon is alive, but
/// only once the runtime proved it: a task spawned now runs, and a job on
/// the blocking pool (file reads, database parsing) runs, both within a
/// quarter of the timeout. A daemon whose runtime wedged sends nothing,
/// and systemd restarts it (`Restart=on-failure`) rather than leaving
/// pacman to wait 10 s on it for every file. Does nothing unless systemd
/// set a watchdog; ends at `shutdown`.
pub async fn watchdog(shutdown: CancellationToken) {
    let usec = std::env::var("WATCHDOG_USEC").ok();
    let pid = std::env::var("WATCHDOG_PID").ok();
    let Some(interval) = watchdog_interval(usec.as_deref(), pid.as_deref(), std::process::id())
    else {
        return;
    };
    let budget = interval / 2;
    tracing::info!(
        interval_ms = interval.as_millis() as u64,
        "systemd watchdog on"
    );
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => return,
        }
        let probe = async {
            tokio::spawn(async {}).await.ok()?;
            tokio::task::spawn_blocking(|| ()).await.ok()
        };
        match tokio::time::timeout(budget, probe).await {
            Ok(Some(())) => {
                if let Err(e) = notify("WATCHDOG=1") {
                    tracing::warn!(error = %e, "cannot notify the systemd watchdog");
                }
            }
            _ => tracing::warn!(
                budget_ms = budget.as_millis() as u64,
                "runtime did not run a probe in time; not telling the watchdog"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchdog_interval_table() {
        let table = [
            (Some("30000000"), None, Some(Duration::from_secs(15))),
            (Some("30000000"), Some("42"), Some(Duration::from_secs(15))),
            // For another process (a child that inherited the variables).
            (Some("30000000"), Some("7"), None),
            (Some("30000000"), Some("x"), None),
            (None, Some("42"), None),
            (Some("0"), None, None),
            (Some("-5"), None, None),
            (Some("soon"), None, None),
        ];
        for (usec, pid, want) in table {
            assert_eq!(watchdog_interval(usec, pid, 42), want, "{usec:?} {pid:?}");
        }
    }
}
