//! A deadline that is moved often and rarely reached: a connection's wait
//! for its next head (moved at every request) and a response's wait on a
//! client that takes no bytes (moved at every wait for the socket).
//!
//! Moving it later is a store. Its timer is armed once and re-armed only
//! when it fires before the deadline, where re-arming a timer on every
//! move would take it out of tokio's timer wheel and put it back: a lock
//! and a few cache lines, per request and per wait, that on a connection
//! sending large files cost as much as the rest of its own user-space
//! work between two `sendfile`s.

use std::pin::Pin;

use tokio::time::{Instant, Sleep};

/// A point in time [`Deadline::reached`] completes at.
#[derive(Debug)]
pub struct Deadline {
    due: Instant,
    /// Armed at the first wait, at or before `due`.
    timer: Option<Pin<Box<Sleep>>>,
}

impl Deadline {
    pub fn new(due: Instant) -> Self {
        Deadline { due, timer: None }
    }

    /// Moves the deadline to `due`, later or earlier.
    pub fn set(&mut self, due: Instant) {
        self.due = due;
        if let Some(timer) = self.timer.as_mut() {
            if due < timer.deadline() {
                timer.as_mut().reset(due);
            }
        }
    }

    /// Completes once the deadline has passed. Cancel-safe: dropped and
    /// called again, it keeps its timer.
    pub async fn reached(&mut self) {
        loop {
            let due = self.due;
            let timer = self
                .timer
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
            timer.as_mut().await;
            if Instant::now() >= self.due {
                return;
            }
            // Fired for a deadline since moved later.
            timer.as_mut().reset(self.due);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Armed for 10 s by a first wait, then moved later or earlier: it
    /// is reached at its last place.
    #[tokio::test(start_paused = true)]
    async fn a_moved_deadline_is_reached_at_its_last_place() {
        // (the first wait, where it is moved), seconds from the start.
        for (waited, moved_to) in [(4, 15), (1, 3)] {
            let start = Instant::now();
            let mut deadline = Deadline::new(start + Duration::from_secs(10));
            let first = tokio::time::timeout(Duration::from_secs(waited), deadline.reached()).await;
            assert!(first.is_err(), "reached {} s early", 10 - waited);
            deadline.set(start + Duration::from_secs(moved_to));
            deadline.reached().await;
            assert_eq!(
                start.elapsed(),
                Duration::from_secs(moved_to),
                "moved to {moved_to} s"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_deadline_never_waited_for_has_no_timer() {
        let mut deadline = Deadline::new(Instant::now() + Duration::from_secs(1));
        deadline.set(Instant::now() + Duration::from_secs(2));
        assert!(deadline.timer.is_none());
        deadline.reached().await;
        assert!(deadline.timer.is_some());
    }
}
