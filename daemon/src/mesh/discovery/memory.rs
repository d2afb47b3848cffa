//! An in-process "LAN" for tests: members that have started see each
//! other's announcements (through the same TXT encoding, filtering and
//! tracking as mDNS), and a member that stops says goodbye (`Down`) to
//! the others. Dropping a member without `stop()` is a crash: the others
//! are told nothing, as with a killed daemon on a real LAN.

use parking_lot::{Mutex, MutexGuard};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use anyhow::Context as _;
use tokio::sync::mpsc;

use super::super::{Announce, DiscoveryEvent, SERVICE_TYPE};
use super::txt::{encode, Resolved, SeenIp};
use super::{instance_name, on_removed, on_resolved, Discovery, Tracker};

/// The shared medium; clone it freely, every clone is the same LAN.
#[derive(Debug, Clone, Default)]
pub struct MemoryLan {
    inner: Arc<Mutex<Lan>>,
}

#[derive(Debug, Default)]
struct Lan {
    next_member: u64,
    started: HashMap<u64, Started>,
}

/// A member that announces and browses.
#[derive(Debug)]
struct Started {
    fullname: String,
    announcement: Resolved,
    tracker: Tracker,
    /// Events to the member's owner; a task forwards them to its channel,
    /// so the LAN never waits on a slow receiver while holding its lock.
    queue: mpsc::UnboundedSender<DiscoveryEvent>,
}

impl MemoryLan {
    pub fn new() -> Self {
        Self::default()
    }

    /// A new member whose announcements carry 127.0.0.1 (where in-process
    /// daemons listen).
    pub fn join(&self) -> MemoryDiscovery {
        self.join_at(IpAddr::V4(Ipv4Addr::LOCALHOST))
    }

    /// A new member whose announcements carry `ip`.
    pub fn join_at(&self, ip: IpAddr) -> MemoryDiscovery {
        let mut lan = lock(&self.inner);
        lan.next_member += 1;
        MemoryDiscovery {
            lan: self.inner.clone(),
            member: lan.next_member,
            ip,
        }
    }
}

/// One host on a [`MemoryLan`].
#[derive(Debug)]
pub struct MemoryDiscovery {
    lan: Arc<Mutex<Lan>>,
    member: u64,
    ip: IpAddr,
}

impl Discovery for MemoryDiscovery {
    fn start(&mut self, me: &Announce, events: mpsc::Sender<DiscoveryEvent>) -> anyhow::Result<()> {
        let runtime = tokio::runtime::Handle::try_current()
            .context("memory discovery must start inside a tokio runtime")?;
        let (queue, mut rx) = mpsc::unbounded_channel();
        runtime.spawn(async move {
            while let Some(event) = rx.recv().await {
                if events.send(event).await.is_err() {
                    break;
                }
            }
        });

        let mut lan = lock(&self.lan);
        anyhow::ensure!(
            !lan.started.contains_key(&self.member),
            "memory discovery started twice"
        );
        let fullname = unique_name(&lan, &instance_name(me));
        let txt = encode(me);
        let announcement = Resolved::new(
            txt.iter().map(|(k, v)| (*k, v.as_str())),
            vec![SeenIp {
                ip: self.ip,
                scope: 0,
            }],
        );
        let newcomer = Started {
            fullname: fullname.clone(),
            announcement: announcement.clone(),
            tracker: Tracker::new(me.clone()),
            queue,
        };
        // Like mDNS: the newcomer hears the others, and everyone (itself
        // included) hears the newcomer.
        lan.started.insert(self.member, newcomer);
        let others: Vec<(String, Resolved)> = lan
            .started
            .iter()
            .filter(|(id, _)| **id != self.member)
            .map(|(_, m)| (m.fullname.clone(), m.announcement.clone()))
            .collect();
        if let Some(newcomer) = lan.started.get_mut(&self.member) {
            for (name, seen) in &others {
                let events = on_resolved(&mut newcomer.tracker, name, seen);
                deliver(newcomer, events);
            }
        }
        for member in lan.started.values_mut() {
            let events = on_resolved(&mut member.tracker, &fullname, &announcement);
            deliver(member, events);
        }
        Ok(())
    }

    fn stop(&mut self) {
        let mut lan = lock(&self.lan);
        let Some(me) = lan.started.remove(&self.member) else {
            return;
        };
        for member in lan.started.values_mut() {
            let down = on_removed(&mut member.tracker, &me.fullname);
            deliver(member, down.into_iter().collect());
        }
    }
}

impl Drop for MemoryDiscovery {
    fn drop(&mut self) {
        // A crash: gone from the LAN, nobody told.
        lock(&self.lan).started.remove(&self.member);
    }
}

fn deliver(member: &Started, events: Vec<DiscoveryEvent>) {
    for event in events {
        // Fails only when the owner dropped its receiver: nobody to tell.
        let _ = member.queue.send(event);
    }
}

/// `name`'s full service name, renamed as mDNS does on a clash.
fn unique_name(lan: &Lan, name: &str) -> String {
    let taken = |full: &str| lan.started.values().any(|m| m.fullname == full);
    let mut fullname = format!("{name}.{SERVICE_TYPE}");
    let mut n = 2;
    while taken(&fullname) {
        fullname = format!("{name} ({n}).{SERVICE_TYPE}");
        n += 1;
    }
    fullname
}

fn lock(lan: &Mutex<Lan>) -> MutexGuard<'_, Lan> {
    lan.lock()
}
