//! The scenarios, one file each, and what they share: the run's context
//! ([`Ctx`]: where the server is, its pid, the bounds), names, the
//! bookkeeping of reader and sender tasks ([`Tasks`]), starting and
//! reporting bystanders and floods, and the report's common parts.

pub(crate) mod broadcast;
pub(crate) mod churn;
pub(crate) mod cluster;
pub(crate) mod conns;
mod costs;
pub(crate) mod crowd;
pub(crate) mod fanout;
pub(crate) mod flood;
pub(crate) mod hold;
pub(crate) mod holders;
pub(crate) mod lists;
pub(crate) mod nonreaders;
pub(crate) mod paced;
pub(crate) mod ring;
pub(crate) mod slow;
mod tasks;
pub(crate) mod who_batch;
pub(crate) mod whospam;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::task::JoinHandle;

use anyhow::Context as _;

use crate::args::{AttackArgs, Common};
use crate::bystanders::{Bystanders, Chatted};
use crate::lines::{Line, LineReader, classify};
use crate::login::{Client, LoginOptions, Logins, login_all, login_one};
use crate::net::Net;
use crate::procfs::{CpuMeter, MemSampler, MemStats, Pids};
use crate::report::{Progress, Report, fmt_count, fmt_mib, latency_json, latency_line};
use crate::state::Shared;
use crate::traffic::{FloodPlan, Flooded, send_flood, who_count};

pub(crate) use costs::report_cpu_per_delivery;
pub(crate) use tasks::Tasks;

/// Read buffer of a busy client.
pub(crate) const BIG_READ: usize = 256 * 1024;

/// Where and how one run goes.
pub(crate) struct Ctx {
    pub(crate) net: Net,
    /// The server's processes (one per node of a cluster), maybe none.
    pub(crate) pids: Pids,
    /// The processes it depends on (NATS), maybe none.
    pub(crate) aux: Pids,
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

    /// Login options for `n` clients at once: the bound grows by 2 ms a
    /// client beyond 30 s (a server logs in thousands a second).
    pub(crate) fn login_options_for(&self, n: usize) -> LoginOptions {
        LoginOptions {
            timeout: self
                .common
                .login_timeout
                .max(Duration::from_secs(30) + Duration::from_millis(n as u64 * 2)),
            ..self.login_options()
        }
    }

    /// Starts sampling the server's memory (the sum over its processes),
    /// when its pid is known.
    pub(crate) fn mem_sampler(&self) -> Option<MemSampler> {
        MemSampler::processes(&self.pids).ok()
    }

    /// Starts measuring the CPU of the generator, the server and the aux
    /// processes.
    pub(crate) fn cpu_meter(&self) -> CpuMeter {
        CpuMeter::start(&self.pids, &self.aux)
    }

    /// Starts sampling the aux processes' memory (NATS), when given.
    pub(crate) fn aux_sampler(&self) -> Option<MemSampler> {
        MemSampler::processes(&self.aux).ok()
    }

    /// Stops `sampler` (of [`Ctx::aux_sampler`]) and reports it under
    /// `key`, when aux pids were given.
    pub(crate) fn aux_report(&self, report: &mut Report, key: &str, sampler: Option<MemSampler>) {
        if let Some(sampler) = sampler {
            report_sampled(report, key, "aux processes' VmRSS (sum)", sampler);
        }
    }

    /// Stops `sampler` and reports `{before, peak, after, growth}` under
    /// `key`; returns the figures.
    pub(crate) fn mem_report(
        &self,
        report: &mut Report,
        key: &str,
        sampler: Option<MemSampler>,
    ) -> Option<MemStats> {
        match sampler.filter(|_| !self.pids.is_empty()) {
            Some(sampler) => Some(report_sampled(report, key, "VmRSS", sampler)),
            None => {
                report.line(format!("  {key}: unknown (give --server-pid)"));
                report.result(key, serde_json::Value::Null);
                None
            }
        }
    }
}

/// Starts sampling the kernel's TCP memory (machine-wide), if
/// `/proc/net/sockstat` can be read.
pub(crate) fn tcp_sampler() -> Option<MemSampler> {
    MemSampler::tcp_kernel().ok()
}

/// Stops `sampler` (of the kernel's TCP memory) and reports it under
/// `key`, as [`Ctx::mem_report`] does.
pub(crate) fn tcp_report(
    report: &mut Report,
    key: &str,
    sampler: Option<MemSampler>,
) -> Option<MemStats> {
    match sampler {
        Some(sampler) => Some(report_sampled(
            report,
            key,
            "kernel TCP memory (all sockets of the machine)",
            sampler,
        )),
        None => {
            report.line(format!("  {key}: unknown (no /proc/net/sockstat)"));
            report.result(key, serde_json::Value::Null);
            None
        }
    }
}

/// Stops `sampler` (of the kernel memory of the server's sockets) and
/// reports it under `key`.
pub(crate) fn server_sockets_report(
    report: &mut Report,
    key: &str,
    sampler: Option<MemSampler>,
) -> Option<MemStats> {
    let what = "kernel memory of the server's sockets (ss -tm, r+w+f)";
    match sampler {
        Some(sampler) => Some(report_sampled(report, key, what, sampler)),
        None => {
            report.line(format!("  {key}: unknown (ss from iproute2 did not run)"));
            report.result(key, serde_json::Value::Null);
            None
        }
    }
}

/// Stops `sampler` and reports what it saw of `what` under `key`.
fn report_sampled(report: &mut Report, key: &str, what: &str, sampler: MemSampler) -> MemStats {
    let m = sampler.stop();
    let growth = m.peak as i64 - m.first as i64;
    report.line(format!(
        "  {key}: {what} {} before, {} peak, {} after (peak growth {})",
        fmt_mib(m.first as i64),
        fmt_mib(m.peak as i64),
        fmt_mib(m.last as i64),
        fmt_mib(growth)
    ));
    report.result(
        key,
        json!({"before_bytes": m.first, "peak_bytes": m.peak, "after_bytes": m.last, "peak_growth_bytes": growth}),
    );
    m
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

/// Adds the CPU figures; returns the server's CPU seconds, if known.
pub(crate) fn report_cpu(report: &mut Report, cpu: &CpuMeter) -> Option<f64> {
    let (value, human) = cpu.stop();
    report.line(human);
    let server = value["server_cpu_s"].as_f64();
    report.result("cpu", value);
    server
}

/// Records an attack's length and the bystanders' pace in the report's
/// config; returns them (`default`: the scenario's length).
pub(crate) fn configure_attack(
    report: &mut Report,
    attack: &AttackArgs,
    default: Duration,
) -> (Duration, Duration) {
    let duration = attack.duration_or(default);
    report.config("duration_s", duration.as_secs_f64());
    let interval = attack.bystander_interval;
    report.config("bystander_interval_us", interval.as_micros() as u64);
    (duration, interval)
}

/// `specials` names (clients 0..), then a crowd of `n` clients named
/// `role0`, `role1`, ... (clients `specials.len()..`).
pub(crate) fn crowd_names(
    ctx: &Ctx,
    specials: &[(&str, usize)],
    role: &str,
    n: usize,
) -> Vec<String> {
    let mut names: Vec<String> = specials.iter().map(|(r, i)| ctx.name(r, *i)).collect();
    names.extend((0..n).map(|i| ctx.name(role, i)));
    names
}

/// Logs in clients `indices` (`n` of them: the bound grows with it),
/// reports the barrier, and returns the clients.
pub(crate) async fn log_in(
    ctx: &Ctx,
    report: &mut Report,
    shared: &Arc<Shared>,
    indices: impl IntoIterator<Item = u32>,
    options: LoginOptions,
) -> anyhow::Result<LoggedIn> {
    let logins = login_all(shared, &ctx.net, indices, options).await?;
    report_logins(report, &logins);
    Ok(LoggedIn(logins.clients))
}

/// Logged-in clients, from which a scenario takes its special ones
/// before treating the rest as a crowd.
pub(crate) struct LoggedIn(Vec<Client>);

impl LoggedIn {
    /// Takes client `index` out.
    pub(crate) fn take(&mut self, index: u32) -> anyhow::Result<Client> {
        let at = self
            .0
            .iter()
            .position(|c| c.index == index)
            .with_context(|| format!("login barrier lost client {index}"))?;
        Ok(self.0.swap_remove(at))
    }

    /// The clients not taken, in order.
    pub(crate) fn rest(mut self) -> Vec<Client> {
        self.0.sort_by_key(|c| c.index);
        self.0
    }
}

/// Starts two bystanders chatting every `interval` (latencies in
/// `class`), and lets them settle: their latency counts from 200 ms on.
pub(crate) async fn start_bystanders(
    ctx: &Ctx,
    shared: &Arc<Shared>,
    pair: [u32; 2],
    class: usize,
    interval: Duration,
) -> anyhow::Result<Bystanders> {
    let bystanders =
        Bystanders::start(shared, &ctx.net, pair, class, interval, ctx.login_options()).await?;
    settle(shared, class).await;
    Ok(bystanders)
}

/// Lets chatting bystanders settle: clears `class`'s latencies after
/// 200 ms, so their first messages (while connections warm up) do not count.
pub(crate) async fn settle(shared: &Shared, class: usize) {
    tokio::time::sleep(Duration::from_millis(200)).await;
    shared.reset_histogram(class);
}

/// Reports stopped bystanders under `key`: what was delivered, the
/// latency, the p99 target if `p99_limit_ms` is given, and a failure for
/// any message lost or write failed.
pub(crate) fn report_bystanders(
    report: &mut Report,
    shared: &Shared,
    chatted: Chatted,
    key: &str,
    p99_limit_ms: Option<u64>,
) {
    let class = chatted.class;
    let delivered = shared.delivered(class);
    report.line(format!(
        "  {key}: {delivered} of {} messages delivered (measured under the load)",
        chatted.sent
    ));
    report_latency(report, shared, class, key);
    if let Some(limit) = p99_limit_ms {
        let p99 = shared.histogram(class).value_at_quantile(0.99);
        let singular = key.strip_suffix('s').unwrap_or(key);
        report.target(
            &format!("{singular} p99 <= {limit} ms"),
            Some(p99 <= limit * 1_000_000),
            format!("p99 {:.2} ms", p99 as f64 / 1e6),
        );
    }
    check_bystanders(report, shared, &chatted, key);
}

/// Fails the run if the bystanders' messages did not all arrive, or
/// their thread reported an error.
pub(crate) fn check_bystanders(report: &mut Report, shared: &Shared, chatted: &Chatted, key: &str) {
    let delivered = shared.delivered(chatted.class);
    if delivered < chatted.sent {
        report.fail(format!(
            "{key}: {delivered} of {} messages delivered within 5 s of the end",
            chatted.sent
        ));
    }
    if let Some(why) = &chatted.error {
        report.fail(format!("{key}: {why}"));
    }
}

/// Waits until `done()`, showing `text()` as progress under `label`.
pub(crate) async fn watch(label: &str, done: impl Fn() -> bool, mut text: impl FnMut() -> String) {
    let mut progress = Progress::new(label);
    while !done() {
        tokio::time::sleep(Duration::from_millis(50)).await;
        progress.show(&mut text);
    }
    progress.finish();
}

/// The last sample of `sampler`, for progress lines.
pub(crate) fn sampled_now(sampler: Option<&MemSampler>) -> String {
    sampler.map_or_else(|| "?".into(), |m| fmt_mib(m.peek().last as i64))
}

/// Starts a flood on `write` (see [`send_flood`]); the counter has the
/// bytes sent so far.
pub(crate) fn start_flood(
    shared: &Arc<Shared>,
    plan: FloodPlan,
    write: OwnedWriteHalf,
) -> (JoinHandle<Flooded>, Arc<AtomicU64>) {
    let so_far = Arc::new(AtomicU64::new(0));
    let flood = tokio::spawn(send_flood(shared.clone(), plan, write, so_far.clone()));
    (flood, so_far)
}

/// Reports a flood under `key`: bytes, lines, rate, how it ended. Returns
/// its length in seconds.
pub(crate) fn report_flood(report: &mut Report, key: &str, flooded: &Flooded) -> f64 {
    let secs = (flooded.ended_ns - flooded.began_ns) as f64 / 1e9;
    let mib_per_s = flooded.bytes as f64 / secs.max(1e-9) / 1048576.0;
    report.line(format!(
        "  {key}: {} in {} lines over {secs:.2}s ({mib_per_s:.1} MiB/s, {} lines/s){}",
        fmt_mib(flooded.bytes as i64),
        fmt_count(flooded.messages),
        fmt_count((flooded.messages as f64 / secs.max(1e-9)) as u64),
        ended_by(flooded.error.as_ref())
    ));
    report.result(
        key,
        json!({"bytes": flooded.bytes, "lines": flooded.messages, "seconds": secs,
               "mib_per_s": mib_per_s, "lines_per_s": flooded.messages as f64 / secs.max(1e-9),
               "write_failed": flooded.error.is_some()}),
    );
    secs
}

/// `, ended by a write error: <error>`, or nothing.
pub(crate) fn ended_by(error: Option<&std::io::Error>) -> String {
    error
        .map(|e| format!(", ended by a write error: {e}"))
        .unwrap_or_default()
}

/// A target on a sampled peak: `limit` bytes at most.
pub(crate) fn peak_target(report: &mut Report, name: &str, stats: Option<MemStats>, limit: u64) {
    report.target(
        name,
        stats.map(|m| m.peak <= limit),
        stats.map_or_else(
            || "not measured".into(),
            |m| format!("peak {}", fmt_mib(m.peak as i64)),
        ),
    );
}

/// Logs in client `index`, asks `/who` and returns the online count of
/// the answer (`None`: no answer within 5 s, or the login failed). The
/// connection is closed afterwards.
pub(crate) async fn online_count(shared: &Shared, net: &Net, index: u32) -> Option<u64> {
    let (client, _, _) = login_one(shared, net, index, None).await.ok()?;
    let mut stream = client.stream;
    stream.write_all(b"/who\n").await.ok()?;
    let mut reader = LineReader::new(64 * 1024, &client.leftover);
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        while let Some(line) = reader.next_line() {
            if let Line::Server(text) = classify(line)
                && let Some(n) = who_count(text)
            {
                return Some(n);
            }
        }
        match tokio::time::timeout_at(until.into(), reader.fill(&mut stream)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => return None,
        }
    }
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
