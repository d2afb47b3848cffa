//! Room on disk for downloads under way (`STORE/incoming`): each download
//! reserves its whole size before its bytes are written, and is refused
//! when that would pass [`MAX_INCOMING_BYTES`] for all downloads together
//! or leave less than [`MIN_FREE_BYTES`] free on the filesystem. A peer
//! claiming a 50 GiB file, or a disk filling up, costs pacman only the
//! mirror's redirect; nothing already stored is touched.

use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::Mutex;

/// Bytes all downloads under way may reserve together (the largest Arch
/// packages are a few GiB; 32 downloads at once are allowed).
pub const MAX_INCOMING_BYTES: u64 = 16 << 30;

/// Free space downloads never take from the store's filesystem.
pub const MIN_FREE_BYTES: u64 = 1 << 30;

/// The bounds [`admit`] keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_bytes: u64,
    pub min_free: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: MAX_INCOMING_BYTES,
            min_free: MIN_FREE_BYTES,
        }
    }
}

/// Why a download gets no room.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoRoom {
    #[error(
        "{size} bytes would pass the cap of {cap} for downloads under way ({reserved} reserved)"
    )]
    OverCap { size: u64, reserved: u64, cap: u64 },
    #[error(
        "{size} bytes would leave less than {min_free} free on the store's disk ({free} free)"
    )]
    DiskFull { size: u64, free: u64, min_free: u64 },
}

/// Whether a download of `size` bytes fits, with `reserved` bytes already
/// reserved and `free` bytes free on the filesystem (`None`: unknown, only
/// the cap applies). Every reservation's whole size is taken off the free
/// space, including what it has written already (which `statvfs` counts as
/// used too): near the floor a download is refused a little early, never
/// let past it.
pub fn admit(size: u64, reserved: u64, free: Option<u64>, limits: Limits) -> Result<(), NoRoom> {
    if reserved.saturating_add(size) > limits.max_bytes {
        return Err(NoRoom::OverCap {
            size,
            reserved,
            cap: limits.max_bytes,
        });
    }
    if let Some(free) = free {
        let after = free.saturating_sub(reserved).saturating_sub(size);
        if after < limits.min_free {
            return Err(NoRoom::DiskFull {
                size,
                free,
                min_free: limits.min_free,
            });
        }
    }
    Ok(())
}

/// The room of one engine's incoming dir.
#[derive(Debug)]
pub struct Room {
    dir: PathBuf,
    limits: Limits,
    reserved: Mutex<u64>,
}

impl Room {
    pub fn new(dir: PathBuf, limits: Limits) -> Arc<Room> {
        Arc::new(Room {
            dir,
            limits,
            reserved: Mutex::new(0),
        })
    }

    /// Reserves `size` bytes, given back when the [`Reservation`] drops.
    /// The free space is read now (a bytes-written count would miss what
    /// everything else on the disk does).
    pub fn reserve(self: &Arc<Self>, size: u64) -> Result<Reservation, NoRoom> {
        let free = free_bytes(&self.dir);
        let mut reserved = self.reserved.lock();
        admit(size, *reserved, free, self.limits)?;
        *reserved += size;
        Ok(Reservation {
            room: self.clone(),
            size,
        })
    }

    /// Bytes reserved now.
    pub fn reserved(&self) -> u64 {
        *self.reserved.lock()
    }
}

/// Bytes an unprivileged writer may still use on `dir`'s filesystem.
fn free_bytes(dir: &std::path::Path) -> Option<u64> {
    let stat = rustix::fs::statvfs(dir).ok()?;
    Some(stat.f_bavail.saturating_mul(stat.f_frsize))
}

/// One download's place in its [`Room`].
#[derive(Debug)]
pub struct Reservation {
    room: Arc<Room>,
    size: u64,
}

impl Reservation {
    /// The bytes it holds.
    pub fn size(&self) -> u64 {
        self.size
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut reserved = self.room.reserved.lock();
        *reserved = reserved.saturating_sub(self.size);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;
    const LIMITS: Limits = Limits {
        max_bytes: 16 * GIB,
        min_free: GIB,
    };

    #[test]
    fn admission_table() {
        let cases: &[(&str, u64, u64, Option<u64>, bool)] = &[
            ("fits", GIB, 0, Some(100 * GIB), true),
            ("exactly the cap", 16 * GIB, 0, Some(100 * GIB), true),
            ("a peer's 50 GiB claim", 50 * GIB, 0, Some(100 * GIB), false),
            (
                "past the cap with others",
                2 * GIB,
                15 * GIB,
                Some(100 * GIB),
                false,
            ),
            ("free space unknown: cap only", 2 * GIB, 0, None, true),
            ("leaves the reserve free", GIB, 0, Some(2 * GIB), true),
            ("would eat the reserve", GIB, 0, Some(2 * GIB - 1), false),
            (
                "reserved bytes count as used",
                GIB,
                GIB,
                Some(3 * GIB - 1),
                false,
            ),
            ("disk already full", 1, 0, Some(0), false),
        ];
        for (what, size, reserved, free, fits) in cases {
            assert_eq!(
                admit(*size, *reserved, *free, LIMITS).is_ok(),
                *fits,
                "{what}"
            );
        }
    }

    #[test]
    fn reservations_are_given_back_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let room = Room::new(
            dir.path().to_owned(),
            Limits {
                max_bytes: 100,
                min_free: 0,
            },
        );
        let a = room.reserve(60).expect("room for 60");
        let refused = room.reserve(50).expect_err("60 + 50 pass 100");
        assert!(
            matches!(refused, NoRoom::OverCap { reserved: 60, .. }),
            "{refused}"
        );
        drop(a);
        assert_eq!(room.reserved(), 0);
        let _b = room.reserve(100).expect("all of it once a is gone");
    }
}
