//! The scenarios, one file each, and what they share: the run's context
//! ([`Ctx`]: where the server is, its pid, the bounds), names, and the
//! bookkeeping of reader and sender tasks ([`Tasks`]).

pub(crate) mod churn;
pub(crate) mod conns;
pub(crate) mod fanout;
pub(crate) mod flood;
pub(crate) mod ring;
pub(crate) mod slow;

use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::task::JoinHandle;

use crate::args::Common;
use crate::lines::LineReader;
use crate::login::{LoginOptions, Logins};
use crate::net::Net;
use crate::procfs::{CpuMeter, MemSampler, MemStats};
use crate::report::{Report, fmt_count, fmt_mib, latency_json, latency_line};
use crate::state::Shared;
use crate::traffic::{Windowed, receive, send_windowed};

/// Read buffer of a busy client.
pub(crate) const BIG_READ: usize = 256 * 1024;

/// Where and how one run goes.
pub(crate) struct Ctx {
    pub(crate) net: Net,
    pub(crate) pid: Option<u32>,
    pub(crate) common: Common,
    /// Makes this run's names unique.
    pub(crate) tag: String,
}

impl Ctx {
    /// The name of client `i` of role `role` (a letter or two).
    pub(crate) fn name(&self, role: &str, i: usize) -> String {
        format!("{role}{i}-{}", self.tag)
    }

    /// When the traffic phase must be over: `--timeout`, or `default`.
    pub(crate) fn deadline(&self, default: Duration) -> Instant {
        Instant::now() + self.common.timeout.unwrap_or(default)
    }

    pub(crate) fn login_options(&self) -> LoginOptions {
        LoginOptions {
            concurrency: self.common.login_concurrency,
            timeout: self.common.login_timeout,
            recv_buffer: None,
        }
    }

    /// Starts sampling the server's memory, when its pid is known.
    pub(crate) fn mem_sampler(&self) -> Option<MemSampler> {
        self.pid.and_then(|pid| MemSampler::start(pid).ok())
    }

    /// Stops `sampler` and reports `{before, peak, after, growth}` under
    /// `key`; returns the figures.
    pub(crate) fn mem_report(
        &self,
        report: &mut Report,
        key: &str,
        sampler: Option<MemSampler>,
    ) -> Option<MemStats> {
        let (Some(pid), Some(sampler)) = (self.pid, sampler) else {
            report.line(format!("  {key}: unknown (give --server-pid)"));
            report.result(key, serde_json::Value::Null);
            return None;
        };
        let m = sampler.stop(pid);
        let growth = m.peak as i64 - m.first as i64;
        report.line(format!(
            "  {key}: VmRSS {} before, {} peak, {} after (peak growth {})",
            fmt_mib(m.first as i64),
            fmt_mib(m.peak as i64),
            fmt_mib(m.last as i64),
            fmt_mib(growth)
        ));
        report.result(
            key,
            json!({"before_bytes": m.first, "peak_bytes": m.peak, "after_bytes": m.last, "peak_growth_bytes": growth}),
        );
        Some(m)
    }
}

/// Adds how the login barrier went.
pub(crate) fn report_logins(report: &mut Report, logins: &Logins) {
    report.line(format!(
        "  login barrier: {} clients in {:.2}s ({:.0}/s), login latency {}; server lines: {}",
        fmt_count(logins.clients.len() as u64),
        logins.elapsed.as_secs_f64(),
        logins.rate(),
        latency_line(&logins.latency),
        if logins.welcomed > 0 {
            "yes (achat)"
        } else {
            "none (tutorial protocol)"
        }
    ));
    report.result(
        "login",
        json!({
            "clients": logins.clients.len(),
            "seconds": logins.elapsed.as_secs_f64(),
            "per_s": logins.rate(),
            "latency": latency_json(&logins.latency),
            "welcomed": logins.welcomed,
        }),
    );
}

/// Adds throughput and latency of `class` over `elapsed`.
pub(crate) fn report_traffic(
    report: &mut Report,
    shared: &Shared,
    class: usize,
    key: &str,
    elapsed: Duration,
) {
    let h = shared.histogram(class);
    let delivered = shared.delivered(class);
    let rate = delivered as f64 / elapsed.as_secs_f64().max(1e-9);
    report.line(format!(
        "  {key}: {} deliveries in {:.2}s = {}/s",
        fmt_count(delivered),
        elapsed.as_secs_f64(),
        fmt_count(rate as u64)
    ));
    report.line(format!("  {key} latency (one-way): {}", latency_line(&h)));
    report.result(
        key,
        json!({"deliveries": delivered, "seconds": elapsed.as_secs_f64(), "per_s": rate, "latency": latency_json(&h)}),
    );
}

/// Adds the latency of `class`, without a rate (paced traffic).
pub(crate) fn report_latency(report: &mut Report, shared: &Shared, class: usize, key: &str) {
    let h = shared.histogram(class);
    report.line(format!("  {key} latency (one-way): {}", latency_line(&h)));
    report.result(key, json!({"latency": latency_json(&h)}));
}

/// Adds the CPU figures.
pub(crate) fn report_cpu(report: &mut Report, cpu: &CpuMeter) {
    let (value, human) = cpu.stop();
    report.line(human);
    report.result("cpu", value);
}

/// Senders whose messages were not all delivered: `(lost, examples)`,
/// given what each sender should have had acknowledged.
pub(crate) fn shortfall(
    shared: &Shared,
    expected: impl Iterator<Item = (u32, u64)>,
) -> (u64, Vec<String>) {
    let mut lost = 0;
    let mut examples = Vec::new();
    for (sender, want) in expected {
        let got = shared.acked[sender as usize].load(Relaxed);
        if got < want {
            lost += want - got;
            if examples.len() < 3 {
                examples.push(format!(
                    "{}: {got} of {want} deliveries",
                    shared.names[sender as usize]
                ));
            }
        }
    }
    (lost, examples)
}

/// The reader and sender tasks of a run. Write halves stay open until
/// [`Tasks::finish`]: closing one would tell the server the client left.
#[derive(Default)]
pub(crate) struct Tasks {
    readers: Vec<JoinHandle<()>>,
    senders: Vec<JoinHandle<io::Result<OwnedWriteHalf>>>,
    idle: Vec<OwnedWriteHalf>,
}

impl Tasks {
    /// Starts client `me`'s receive loop.
    pub(crate) fn reader(
        &mut self,
        shared: &Arc<Shared>,
        me: u32,
        class: usize,
        read: OwnedReadHalf,
        leftover: &[u8],
        buffer: usize,
    ) {
        let reader = LineReader::new(buffer, leftover);
        self.readers.push(tokio::spawn(receive(
            shared.clone(),
            me,
            class,
            read,
            reader,
            false,
        )));
    }

    /// Starts a windowed sender.
    pub(crate) fn sender(&mut self, shared: &Arc<Shared>, plan: Windowed, write: OwnedWriteHalf) {
        self.senders
            .push(tokio::spawn(send_windowed(shared.clone(), plan, write)));
    }

    /// Keeps a write half open without sending on it.
    pub(crate) fn keep(&mut self, write: OwnedWriteHalf) {
        self.idle.push(write);
    }

    /// Stops everything and closes the connections; returns the senders'
    /// write errors.
    pub(crate) async fn finish(self) -> Vec<String> {
        for r in &self.readers {
            r.abort();
        }
        let mut errors = Vec::new();
        let mut writes = self.idle;
        for s in self.senders {
            if !s.is_finished() {
                s.abort();
                continue;
            }
            match s.await {
                Ok(Ok(w)) => writes.push(w),
                Ok(Err(e)) => errors.push(format!("write failed: {e}")),
                Err(e) => errors.push(format!("sender task: {e}")),
            }
        }
        for r in self.readers {
            let _ = r.await;
        }
        drop(writes);
        errors
    }
}
