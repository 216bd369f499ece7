//! The broker thread's scheduling policy.
//!
//! The broker is a batching stage: the longer it waits before running, the
//! more batches its mailbox holds and the fewer times it wakes, flushes and
//! parks. Under Linux's default policy it does the opposite: a woken
//! thread that slept a lot preempts whatever runs on its CPU, so on a busy
//! machine every session's [`Route`](crate::messages::Route) wakes the
//! broker at once, interrupting a worker in the middle of its socket
//! writes, for a mailbox holding one batch. `SCHED_BATCH` tells the kernel
//! the thread is throughput-bound: it still gets its fair share of the CPU
//! and still runs at once on an idle CPU, but it does not preempt a running
//! thread on waking; it runs when that thread blocks or its time slice
//! ends. docs/BENCHMARKS.md has the measurements (in "Ring with 1,000
//! clients": context switches down from 47,000 to 6,000 in 1.5 s, a fifth
//! less server CPU per message); `--broker-sched normal` turns this off.
//!
//! This is one of the crate's two `unsafe` blocks (the other is in
//! [`crate::tcp`]): a system call with no pointer that outlives it.

use std::io;

/// How the broker's thread is scheduled (`--broker-sched`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum BrokerSched {
    /// SCHED_BATCH: when woken, it waits for a free CPU instead of preempting a running thread.
    #[default]
    Batch,
    /// The system's default policy (SCHED_OTHER).
    Normal,
}

impl std::fmt::Display for BrokerSched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BrokerSched::Batch => "batch (SCHED_BATCH)",
            BrokerSched::Normal => "normal",
        })
    }
}

/// Applies `policy` to the calling thread. The nice value is unchanged;
/// `Normal` leaves the thread as it is.
pub fn apply(policy: BrokerSched) -> io::Result<()> {
    match policy {
        BrokerSched::Normal => Ok(()),
        BrokerSched::Batch => set_batch(),
    }
}

#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn set_batch() -> io::Result<()> {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` is a valid `sched_param` that lives across the call,
    // which only reads it; pid 0 is the calling thread.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn set_batch() -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "SCHED_BATCH exists on Linux only",
    ))
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// The calling thread's policy, from field 41 of /proc/thread-self/stat.
    fn current_policy() -> u32 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
        // The command name (field 2) may contain spaces; count after it.
        let after_comm = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        after_comm
            .split_whitespace()
            .nth(41 - 3)
            .and_then(|f| f.parse().ok())
            .unwrap_or(u32::MAX)
    }

    #[test]
    fn batch_sets_sched_batch_on_the_calling_thread_only() {
        let main_before = current_policy();
        let seen = std::thread::spawn(|| {
            let before = current_policy();
            let applied = apply(BrokerSched::Batch).map_err(|e| e.raw_os_error());
            (before, applied, current_policy())
        })
        .join();
        let Ok((before, applied, after)) = seen else {
            panic!("the thread panicked");
        };
        match applied {
            Ok(()) => assert_eq!(after, libc::SCHED_BATCH as u32),
            // A sandbox (a seccomp filter, say) may refuse the call; then
            // nothing changed, and the server carries on with a warning.
            Err(code) => {
                assert!(
                    matches!(code, Some(libc::EPERM | libc::ENOSYS)),
                    "unexpected error {code:?}"
                );
                assert_eq!(after, before);
            }
        }
        assert_eq!(current_policy(), main_before, "only that thread changes");
    }

    #[test]
    fn normal_changes_nothing() {
        let seen = std::thread::spawn(|| {
            let before = current_policy();
            let applied = apply(BrokerSched::Normal);
            (before, applied.is_ok(), current_policy())
        })
        .join();
        assert!(matches!(seen, Ok((before, true, after)) if before == after));
    }
}
