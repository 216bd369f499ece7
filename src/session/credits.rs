//! The credits that pace a session's input: a permit is taken before
//! reading and goes to the broker with the batch, which drops it once the
//! batch is handled (see [`Credit`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{self, Poll, ready};

use tokio::sync::{AcquireError, OwnedSemaphorePermit, Semaphore};

use crate::messages::Credit;

/// Batches a session may have at the broker at once: two, so the next read
/// overlaps the broker's work on the last one, while a flooding client
/// still has at most two reads' worth of input (128 KiB) in the server.
const BATCHES_IN_FLIGHT: usize = 2;

/// The permits for batches at the broker ([`BATCHES_IN_FLIGHT`] in all)
/// and the one for the next batch, taken before reading, so input is only
/// read when its batch may go out.
pub(super) struct Credits {
    pool: Arc<Semaphore>,
    next: NextCredit,
}

enum NextCredit {
    None,
    /// Both batches are at the broker: waiting for one to come back.
    Waiting(Pin<Box<dyn Future<Output = Result<OwnedSemaphorePermit, AcquireError>>>>),
    Held(OwnedSemaphorePermit),
}

impl Credits {
    pub(super) fn new() -> Self {
        Credits {
            pool: Arc::new(Semaphore::new(BATCHES_IN_FLIGHT)),
            next: NextCredit::None,
        }
    }

    pub(super) fn is_waiting(&self) -> bool {
        matches!(self.next, NextCredit::Waiting(_))
    }

    /// Ready once a permit for the next batch is held. (The pool is never
    /// closed, so the error cannot happen.)
    pub(super) fn poll_ready(
        &mut self,
        task_cx: &mut task::Context<'_>,
    ) -> Poll<Result<(), AcquireError>> {
        loop {
            match &mut self.next {
                NextCredit::Held(_) => return Poll::Ready(Ok(())),
                NextCredit::Waiting(acquire) => {
                    let permit = ready!(acquire.as_mut().poll(task_cx));
                    self.next = NextCredit::None;
                    self.next = NextCredit::Held(permit?);
                }
                NextCredit::None => {
                    self.next = match self.pool.clone().try_acquire_owned() {
                        Ok(permit) => NextCredit::Held(permit),
                        Err(_) => NextCredit::Waiting(Box::pin(self.pool.clone().acquire_owned())),
                    };
                }
            }
        }
    }

    /// The held permit, to go out with a batch; the next read takes a new
    /// one.
    pub(super) fn take(&mut self) -> Credit {
        match std::mem::replace(&mut self.next, NextCredit::None) {
            NextCredit::Held(permit) => Credit::new(permit),
            other => {
                self.next = other;
                Credit::unlimited()
            }
        }
    }

    /// Whether a permit for the next batch is in hand.
    pub(super) fn is_held(&self) -> bool {
        matches!(self.next, NextCredit::Held(_))
    }
}
