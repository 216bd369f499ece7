//! Taking turns on a worker thread.
//!
//! A worker runs many sessions, one at a time, and a session reads its
//! socket for as long as there is input and credit. A client that sends
//! flat out, whose credits the broker returns at once, would keep its
//! worker to itself: the other sessions on that thread would wait, and so
//! would the worker's look at its sockets (tokio polls its I/O driver only
//! between rounds of ready tasks).
//!
//! So after a buffer's worth of input a session gives up its turn
//! ([`Turn::give_up`]) and does not read again until its [`Turn`] has come
//! round ([`Turn::has_come`]): the wake-up is deferred with tokio's
//! `yield_now`, which wakes the task only after the runtime has polled its
//! I/O driver, so every session that was waiting for its socket runs
//! first. Anything else that wakes the session meanwhile (output arriving
//! from the broker, say) is handled, but does not let it read early.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{self, Wake, Waker};

/// A turn given up and not yet come round again.
pub(super) struct Turn(Arc<TurnWaker>);

/// The waker handed to tokio's deferred wake-up: notes that the turn has
/// come, then wakes the session.
struct TurnWaker {
    come: AtomicBool,
    session: Waker,
}

impl Wake for TurnWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.come.store(true, Ordering::Release);
        self.session.wake_by_ref();
    }
}

impl Turn {
    /// Gives up the session's turn: it is woken again (through `task_cx`'s
    /// waker) after the worker's other ready sessions and its I/O driver
    /// have had theirs.
    pub(super) fn give_up(task_cx: &task::Context<'_>) -> Turn {
        let turn = Arc::new(TurnWaker {
            come: AtomicBool::new(false),
            session: task_cx.waker().clone(),
        });
        let waker = Waker::from(turn.clone());
        let mut deferred = task::Context::from_waker(&waker);
        // `yield_now` is pending on its first poll, always, having handed
        // the waker to the runtime to wake once it has polled its driver
        // (outside a runtime it wakes it at once).
        let _ = pin!(tokio::task::yield_now()).poll(&mut deferred);
        Turn(turn)
    }

    /// Whether the turn has come round again.
    pub(super) fn has_come(&self) -> bool {
        self.0.come.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_turn_comes_after_the_runtime_has_gone_round() {
        let woken = Arc::new(AtomicBool::new(false));
        struct Flag(Arc<AtomicBool>);
        impl Wake for Flag {
            fn wake(self: Arc<Self>) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let waker = Waker::from(Arc::new(Flag(woken.clone())));
        let turn = Turn::give_up(&task::Context::from_waker(&waker));
        assert!(!turn.has_come());
        assert!(!woken.load(Ordering::SeqCst));
        // Going round the runtime once (this task yields too) wakes it.
        tokio::task::yield_now().await;
        assert!(turn.has_come());
        assert!(woken.load(Ordering::SeqCst));
    }
}
