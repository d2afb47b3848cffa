//! Discovery on mDNS (mdns-sd): announces `_pacmesh._udp.local.` with the
//! TXT record of [`super::txt`] and browses the same type.
//!
//! Interfaces: every non-loopback IPv4 interface. IPv6 is off for now:
//! peers would otherwise resolve again with link-local addresses that
//! only help together with their interface, and a LAN that has IPv6 has
//! IPv4 too in practice. Loopback is off because a remote peer's
//! 127.0.0.1 would point back at this host (tests may turn it on).
//!
//! An announced address is dialled only on the subnet of the interface
//! it was announced on, or when it is a static peer's (`super::scope`);
//! the host's networks are read again every [`NETS_REFRESH`].
//!
//! mdns-sd runs its own thread; its events arrive on a flume channel read
//! by one tokio task that turns them into [`DiscoveryEvent`]s.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use mdns_sd::{IfKind, ScopedIp, ServiceDaemon, ServiceEvent, ServiceInfo, UnregisterStatus};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::super::{Announce, DiscoveryEvent, SERVICE_TYPE};
use super::scope::{dialable_from, LocalNet};
use super::txt::{encode, Resolved, SeenIp};
use super::{instance_name, on_removed, on_resolved, Discovery, Tracker, TARGET};

/// How long `stop()` waits for the goodbye and the shutdown together.
const STOP_BUDGET: Duration = Duration::from_secs(2);
/// mdns-sd sends the goodbye once more 120 ms after the first, in case a
/// peer missed it; waiting this long lets the repeat leave too.
const GOODBYE_REPEAT: Duration = Duration::from_millis(150);

/// How often the host's networks are read again (DHCP, a cable plugged).
const NETS_REFRESH: Duration = Duration::from_secs(10);

/// mDNS announcing and browsing; see the module comment for interfaces.
#[derive(Default)]
pub struct MdnsDiscovery {
    loopback: bool,
    /// Static peers' addresses: dialled even off this host's subnets.
    statics: Vec<IpAddr>,
    running: Option<Running>,
}

struct Running {
    daemon: ServiceDaemon,
    fullname: String,
    browse: JoinHandle<()>,
}

impl std::fmt::Debug for MdnsDiscovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MdnsDiscovery")
            .field("loopback", &self.loopback)
            .field("fullname", &self.running.as_ref().map(|r| &r.fullname))
            .finish()
    }
}

impl MdnsDiscovery {
    pub fn new() -> Self {
        Self::default()
    }

    /// Also announce and browse on loopback (127.0.0.1), for daemons
    /// sharing one host with no other interface.
    pub fn with_loopback(mut self, on: bool) -> Self {
        self.loopback = on;
        self
    }

    /// Announcements at these addresses (the static peers') are dialled
    /// even when off this host's subnets.
    pub fn with_static_peers(mut self, ips: Vec<IpAddr>) -> Self {
        self.statics = ips;
        self
    }
}

impl Discovery for MdnsDiscovery {
    fn start(&mut self, me: &Announce, events: mpsc::Sender<DiscoveryEvent>) -> anyhow::Result<()> {
        anyhow::ensure!(self.running.is_none(), "mDNS discovery started twice");
        let runtime = tokio::runtime::Handle::try_current()
            .context("mDNS discovery must start inside a tokio runtime")?;
        // The announcement is checked before the daemon (and its thread)
        // exists, so a bad one leaves nothing running.
        let instance = instance_name(me);
        // Explicit and unique: hosts in network namespaces (and containers)
        // share the system host name, and mDNS would mix their addresses.
        let host = format!("pacmesh-{instance}.local.");
        let txt = encode(me);
        let info = ServiceInfo::new(SERVICE_TYPE, &instance, &host, (), me.quic_port, &txt[..])
            .context("building the mDNS announcement")?
            .enable_addr_auto();
        let fullname = info.get_fullname().to_string();

        let daemon = ServiceDaemon::new().context("starting mDNS on UDP 5353")?;
        let announced = announce_and_browse(&daemon, info, self.loopback);
        let receiver = match announced {
            Ok(receiver) => receiver,
            Err(e) => {
                let _ = daemon.shutdown();
                return Err(e);
            }
        };
        tracing::info!(target: TARGET, instance = %fullname, host, "announcing on mDNS");

        let tracker = Tracker::new(me.clone());
        let scope = Scope {
            loopback: self.loopback,
            statics: self.statics.clone(),
            nets: Vec::new(),
            read_at: None,
        };
        let browse = runtime.spawn(browse_loop(receiver, tracker, scope, events));
        self.running = Some(Running {
            daemon,
            fullname,
            browse,
        });
        Ok(())
    }

    fn stop(&mut self) {
        let Some(running) = self.running.take() else {
            return;
        };
        let deadline = Instant::now() + STOP_BUDGET;
        // `shutdown()` alone sends no goodbye: unregister first and wait
        // until it has been sent.
        match running.daemon.unregister(&running.fullname) {
            Ok(status) => match status.recv_timeout(STOP_BUDGET) {
                Ok(UnregisterStatus::OK) => std::thread::sleep(GOODBYE_REPEAT),
                Ok(UnregisterStatus::NotFound) => {
                    tracing::warn!(target: TARGET, "mDNS goodbye: announcement not found")
                }
                Err(e) => tracing::warn!(target: TARGET, error = %e, "mDNS goodbye not confirmed"),
            },
            Err(e) => tracing::warn!(target: TARGET, error = %e, "mDNS goodbye failed"),
        }
        running.browse.abort();
        match running.daemon.shutdown() {
            Ok(done) => {
                let left = deadline.saturating_duration_since(Instant::now());
                let _ = done.recv_timeout(left.max(Duration::from_millis(100)));
            }
            Err(e) => tracing::debug!(target: TARGET, error = %e, "mDNS shutdown"),
        }
        tracing::info!(target: TARGET, "mDNS stopped");
    }
}

impl Drop for MdnsDiscovery {
    fn drop(&mut self) {
        // Dropped without `stop()`: no goodbye, but no stray thread either.
        if let Some(running) = self.running.take() {
            running.browse.abort();
            let _ = running.daemon.shutdown();
        }
    }
}

fn announce_and_browse(
    daemon: &ServiceDaemon,
    info: ServiceInfo,
    loopback: bool,
) -> anyhow::Result<mdns_sd::Receiver<ServiceEvent>> {
    let mut off = vec![IfKind::IPv6];
    if !loopback {
        off.push(IfKind::LoopbackV4);
    }
    daemon
        .disable_interface(off)
        .context("choosing mDNS interfaces")?;
    let receiver = daemon.browse(SERVICE_TYPE).context("browsing mDNS")?;
    daemon.register(info).context("announcing on mDNS")?;
    Ok(receiver)
}

/// What an announced address is checked against, the host's networks
/// read at most every [`NETS_REFRESH`].
struct Scope {
    loopback: bool,
    statics: Vec<IpAddr>,
    nets: Vec<LocalNet>,
    read_at: Option<Instant>,
}

impl Scope {
    fn keep_dialable(&mut self, seen: &mut Resolved) {
        let now = Instant::now();
        if self
            .read_at
            .is_none_or(|at| now.duration_since(at) >= NETS_REFRESH)
        {
            self.nets = local_nets();
            self.read_at = Some(now);
        }
        seen.keep_dialable(|ip| dialable_from(ip, &self.nets, &self.statics, self.loopback));
    }
}

/// The host's IPv4 networks, by interface index.
fn local_nets() -> Vec<LocalNet> {
    let interfaces = match if_addrs::get_if_addrs() {
        Ok(interfaces) => interfaces,
        Err(e) => {
            tracing::warn!(target: TARGET, error = %e, "cannot list this host's networks; dialling no announced address");
            return Vec::new();
        }
    };
    interfaces
        .iter()
        .filter_map(|i| match (&i.addr, i.index) {
            (if_addrs::IfAddr::V4(v4), Some(if_index)) => Some(LocalNet {
                if_index,
                addr: v4.ip,
                prefix: v4.prefixlen,
            }),
            _ => None,
        })
        .filter(|n| n.addr != Ipv4Addr::UNSPECIFIED)
        .collect()
}

async fn browse_loop(
    receiver: mdns_sd::Receiver<ServiceEvent>,
    mut tracker: Tracker,
    mut scope: Scope,
    events: mpsc::Sender<DiscoveryEvent>,
) {
    while let Ok(event) = receiver.recv_async().await {
        let out = match event {
            ServiceEvent::ServiceResolved(service) => {
                let mut seen = Resolved::new(
                    service
                        .txt_properties
                        .iter()
                        .map(|p| (p.key(), p.val_str())),
                    service.addresses.iter().map(seen_ip).collect(),
                );
                scope.keep_dialable(&mut seen);
                let name = service.fullname.to_ascii_lowercase();
                tracing::debug!(target: TARGET, instance = name, ips = ?seen.ips, "mDNS resolved");
                on_resolved(&mut tracker, &name, &seen)
            }
            ServiceEvent::ServiceRemoved(_, fullname) => {
                tracing::debug!(target: TARGET, instance = fullname, "mDNS removed");
                on_removed(&mut tracker, &fullname.to_ascii_lowercase())
                    .into_iter()
                    .collect()
            }
            other => {
                tracing::trace!(target: TARGET, event = ?other, "mDNS");
                continue;
            }
        };
        for event in out {
            if events.send(event).await.is_err() {
                return;
            }
        }
    }
}

/// The address and the interface it was seen on (the first, for an IPv4
/// address seen on several).
fn seen_ip(ip: &ScopedIp) -> SeenIp {
    let scope = match ip {
        ScopedIp::V6(v6) => v6.scope_id().index,
        ScopedIp::V4(v4) => v4.interface_ids().first().map_or(0, |i| i.index),
        _ => 0,
    };
    let ip: IpAddr = ip.to_ip_addr();
    SeenIp { ip, scope }
}
