//! The credits that pace a session's input: a permit is taken before
//! reading and goes to the broker with the batch, which drops it once the
//! batch is handled (see [`Credit`]).
//!
//! The permits come from a semaphore polled through tokio-util's
//! [`PollSemaphore`]: waiting for one from inside the session's hand-written
//! future needs a pollable acquire, and `PollSemaphore` keeps one boxed
//! future for the session's life instead of boxing a new one per wait (and
//! none at all for a session that never has to wait).

use std::sync::Arc;
use std::task::{self, Poll, ready};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::PollSemaphore;

use crate::messages::Credit;

/// Batches a session may have at the broker at once: two, so the next read
/// overlaps the broker's work on the last one, while a flooding client
/// still has at most two reads' worth of input (128 KiB) in the server.
const BATCHES_IN_FLIGHT: usize = 2;

/// The permits for batches at the broker ([`BATCHES_IN_FLIGHT`] in all)
/// and the one for the next batch, taken before reading, so input is only
/// read when its batch may go out.
pub(super) struct Credits {
    pool: PollSemaphore,
    next: Option<OwnedSemaphorePermit>,
}

/// The credit pool was closed. It never is while the session lives; the
/// session stops if it ever were.
#[derive(Debug)]
pub(super) struct PoolClosed;

impl Credits {
    pub(super) fn new() -> Self {
        Credits {
            pool: PollSemaphore::new(Arc::new(Semaphore::new(BATCHES_IN_FLIGHT))),
            next: None,
        }
    }

    /// Ready once a permit for the next batch is held; pending while both
    /// batches are at the broker.
    pub(super) fn poll_ready(
        &mut self,
        task_cx: &mut task::Context<'_>,
    ) -> Poll<Result<(), PoolClosed>> {
        if self.next.is_none() {
            self.next = Some(ready!(self.pool.poll_acquire(task_cx)).ok_or(PoolClosed)?);
        }
        Poll::Ready(Ok(()))
    }

    /// Whether a permit for the next batch is in hand.
    pub(super) fn is_held(&self) -> bool {
        self.next.is_some()
    }

    /// The held permit, to go out with a batch; the next read takes a new
    /// one.
    pub(super) fn take(&mut self) -> Credit {
        self.next.take().map_or_else(Credit::unlimited, Credit::new)
    }
}
