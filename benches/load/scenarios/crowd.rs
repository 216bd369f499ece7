//! `crowd`: more users than one process can hold, over a cluster's nodes.
//! One `hold` process per node (`--addr a,b,c`, a child of this one, so
//! each has its own descriptors) logs in `--per-node` idle users there;
//! once every node's `/who` lists all of them, the nodes' memory is read
//! again (`--server-pid`, one per node in --addr's order; `--aux-pid` for
//! the NATS servers). Then `--probes` clients of this process, spread over
//! the nodes, send `--messages` probes, each from a random probe client to
//! a random held user on another node, which echoes it back: every probe
//! must come back, once, from the user it was sent to (round-trip latency).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use anyhow::bail;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedReadHalf;

use crate::args::CrowdArgs;
use crate::lines::{Line, LineReader, Payload, classify, parse_payload, push_message};
use crate::login::login_all;
use crate::procfs::vm_rss;
use crate::report::{Report, counts, fmt_count, fmt_mib, latency_json, latency_line};
use crate::scenarios::cluster::await_presence;
use crate::scenarios::conns::Rng;
use crate::scenarios::holders::Holder;
use crate::scenarios::{BIG_READ, Ctx, report_cpu_per_delivery, report_logins};
use crate::state::Shared;
use crate::traffic::wait_for;

/// Server memory per connection the single-node target allows.
const PER_CONN_TARGET: f64 = 4096.0;

pub(crate) async fn run(ctx: &Ctx, a: &CrowdArgs) -> anyhow::Result<Report> {
    let nodes = ctx.net.nodes();
    if nodes < 2 {
        bail!("crowd needs the addresses of at least 2 nodes (--addr a,b,...)");
    }
    if a.probes < nodes {
        bail!("crowd needs at least one probe client per node");
    }
    let pids = ctx.pids.list();
    if !pids.is_empty() && pids.len() != nodes {
        bail!("--server-pid needs one pid per --addr, in the same order");
    }
    let mut report = Report::new("crowd");
    report.config("nodes", nodes);
    report.config("per_node", a.per_node);
    report.config("probes", a.probes);
    report.config("messages", a.messages);
    report.config("window", a.window);
    let held = (nodes * a.per_node) as u64;

    let before = rss_each(pids);
    let aux_before = rss_each(ctx.aux.list());
    let began = Instant::now();
    let mut holders = Vec::with_capacity(nodes);
    for (node, addr) in ctx.net.addrs().iter().enumerate() {
        holders.push(Holder::spawn(ctx, a.per_node, node, *addr)?);
    }
    let until =
        Instant::now() + ctx.login_options_for(a.per_node).timeout + Duration::from_secs(10);
    let mut ready = Ok(());
    for holder in &mut holders {
        ready = ready.and(holder.ready(until).await);
    }
    let logged_in = began.elapsed();
    if let Err(why) = ready {
        report.fail(why);
        finish_holders(&mut report, holders, None).await;
        return Ok(report);
    }
    report.line(format!(
        "  {} users logged in over {nodes} nodes by {nodes} hold processes in {:.2}s ({:.0}/s)",
        fmt_count(held),
        logged_in.as_secs_f64(),
        held as f64 / logged_in.as_secs_f64().max(1e-9)
    ));
    report.result(
        "login",
        json!({"users": held, "seconds": logged_in.as_secs_f64(),
               "per_s": held as f64 / logged_in.as_secs_f64().max(1e-9)}),
    );
    match await_presence(&ctx.net, &ctx.tag, held, a.presence_timeout).await {
        Ok(took) => {
            report.line(format!(
                "  presence: every node listed all {} users {:.2}s after the last login",
                fmt_count(held),
                took.as_secs_f64()
            ));
            report.result("presence_s", took.as_secs_f64());
        }
        Err(why) => {
            report.fail(why);
            finish_holders(&mut report, holders, None).await;
            return Ok(report);
        }
    }
    // Let the nodes finish what the logins started.
    tokio::time::sleep(Duration::from_secs(1)).await;
    memory_report(&mut report, "memory", &before, &rss_each(pids), a.per_node);
    let aux_after = rss_each(ctx.aux.list());
    if !aux_after.is_empty() {
        aux_report(&mut report, &aux_before, &aux_after, held);
    }

    let probed = match probe(ctx, a, &mut report).await {
        Ok(sent) => Some(sent),
        Err(e) => {
            report.fail(format!("{e:#}"));
            None
        }
    };
    finish_holders(&mut report, holders, probed).await;
    Ok(report)
}

/// VmRSS of each of `pids` (`None` where unreadable).
fn rss_each(pids: &[u32]) -> Vec<Option<u64>> {
    pids.iter().map(|&pid| vm_rss(pid).ok()).collect()
}

/// Reports the nodes' memory growth per connection (each node's growth
/// over the users held on it: the remote users it learnt of included),
/// and holds it to the single-node target.
fn memory_report(
    report: &mut Report,
    key: &str,
    before: &[Option<u64>],
    after: &[Option<u64>],
    per_node: usize,
) {
    if before.is_empty() {
        report.line("  server memory: unknown (give --server-pid, one per node)");
        report.result(key, Value::Null);
        return;
    }
    let mut each = Vec::new();
    let mut worst: Option<f64> = None;
    for (node, (b, a)) in before.iter().zip(after).enumerate() {
        let (Some(b), Some(a)) = (b, a) else {
            report.line(format!("  node {node} memory: unreadable"));
            each.push(Value::Null);
            worst = Some(f64::INFINITY);
            continue;
        };
        let per = (*a as f64 - *b as f64) / per_node.max(1) as f64;
        worst = Some(worst.map_or(per, |w: f64| w.max(per)));
        report.line(format!(
            "  node {node} memory: VmRSS {} before, {} with {} local users: {per:.0} bytes ({:.2} KiB) per connection",
            fmt_mib(*b as i64),
            fmt_mib(*a as i64),
            fmt_count(per_node as u64),
            per / 1024.0
        ));
        each.push(json!({"before_bytes": b, "after_bytes": a, "per_conn_bytes": per}));
    }
    let growth: f64 = before
        .iter()
        .zip(after)
        .map(|(b, a)| a.unwrap_or(0) as f64 - b.unwrap_or(0) as f64)
        .sum();
    let users = (per_node * before.len()).max(1) as f64;
    report.line(format!(
        "  all nodes: {} more for {} users: {:.0} bytes per connection",
        fmt_mib(growth as i64),
        fmt_count(users as u64),
        growth / users
    ));
    report.result(
        key,
        json!({"nodes": each, "growth_bytes": growth, "per_conn_bytes": growth / users}),
    );
    report.target(
        "server memory <= 4 KiB per connection on every node",
        worst.map(|w| w <= PER_CONN_TARGET),
        worst.map_or("not measured".into(), |w| {
            format!("worst node {w:.0} bytes")
        }),
    );
}

/// Reports the aux processes' (NATS servers') memory.
fn aux_report(report: &mut Report, before: &[Option<u64>], after: &[Option<u64>], users: u64) {
    let list = |v: &[Option<u64>]| -> Vec<String> {
        v.iter()
            .map(|m| m.map_or("?".into(), |m| fmt_mib(m as i64)))
            .collect()
    };
    let sum = |v: &[Option<u64>]| v.iter().map(|m| m.unwrap_or(0)).sum::<u64>();
    let growth = sum(after) as f64 - sum(before) as f64;
    report.line(format!(
        "  aux processes (NATS) memory: VmRSS {} before, {} after: {} more, {:.0} bytes per user",
        list(before).join(" + "),
        list(after).join(" + "),
        fmt_mib(growth as i64),
        growth / users.max(1) as f64
    ));
    report.result(
        "aux_memory",
        json!({"before_bytes": before, "after_bytes": after, "growth_bytes": growth,
               "per_user_bytes": growth / users.max(1) as f64}),
    );
}

/// Stops the hold processes and adds what they said; `probed` is how
/// many probes came back (each was echoed once).
async fn finish_holders(report: &mut Report, holders: Vec<Holder>, probed: Option<u64>) {
    let mut echoed = 0u64;
    for holder in holders {
        let node = holder.node;
        let said = holder.finish().await;
        for line in &said.lines {
            report.line(format!("  hold {node}:{line}"));
        }
        echoed += said.echoed;
        for why in said.failures {
            report.fail(format!("hold {node}: {why}"));
        }
    }
    report.result("echoed", echoed);
    if let Some(probed) = probed
        && echoed < probed
    {
        report.fail(format!(
            "the held users echoed {echoed} lines for {probed} probes"
        ));
    }
}

/// What the probes share: which held user each probe went to, whether it
/// came back.
struct Plan {
    tag: String,
    per_node: usize,
    /// Per probe: the held user it was sent to (`node * per_node + i`).
    targets: Vec<AtomicU32>,
    seen: Vec<AtomicBool>,
    duplicates: AtomicU64,
}

impl Plan {
    /// The name of held user `id` (as `hold` names them).
    fn name(&self, id: u32) -> String {
        let (node, i) = (id as usize / self.per_node, id as usize % self.per_node);
        Holder::user_name(&self.tag, node, i)
    }
}

/// Logs in the probe clients, waits until every node knows them, sends
/// the probes and waits for every echo; returns how many came back.
async fn probe(ctx: &Ctx, a: &CrowdArgs, report: &mut Report) -> anyhow::Result<u64> {
    let (p, m, nodes) = (a.probes, a.messages, ctx.net.nodes());
    let names: Vec<String> = (0..p).map(|i| ctx.name("p", i)).collect();
    let shared = Arc::new(Shared::new(names, 1));
    let logins = login_all(&shared, &ctx.net, 0..p as u32, ctx.login_options()).await?;
    report_logins(report, &logins);
    let everyone = (nodes * a.per_node + p) as u64;
    await_presence(&ctx.net, &ctx.tag, everyone, a.presence_timeout)
        .await
        .map_err(anyhow::Error::msg)?;
    let plan = Arc::new(Plan {
        tag: ctx.tag.clone(),
        per_node: a.per_node,
        targets: (0..m).map(|_| AtomicU32::new(u32::MAX)).collect(),
        seen: (0..m).map(|_| AtomicBool::new(false)).collect(),
        duplicates: AtomicU64::new(0),
    });
    let cpu = ctx.cpu_meter();
    let began = Instant::now();
    let mut readers = Vec::with_capacity(p);
    let mut writes = Vec::with_capacity(p);
    for client in logins.clients {
        let (read, write) = client.stream.into_split();
        let (shared, plan) = (shared.clone(), plan.clone());
        readers.push(tokio::spawn(echoes(
            shared,
            plan,
            client.index,
            read,
            client.leftover,
        )));
        writes.push(write);
    }
    let mut rng = Rng::new(a.seed);
    let mut line = Vec::with_capacity(128);
    let deadline = ctx.deadline(Duration::from_secs(60) + Duration::from_millis(m));
    let mut write_error = None;
    let mut sent = 0u64;
    while sent < m && Instant::now() < deadline {
        if sent - shared.delivered(0).min(sent) >= a.window.max(1) {
            tokio::time::sleep(Duration::from_millis(1)).await;
            continue;
        }
        let from = rng.below(p as u64) as usize;
        let other = (from % nodes + 1 + rng.below(nodes as u64 - 1) as usize) % nodes;
        let id = (other * a.per_node) as u32 + rng.below(a.per_node as u64) as u32;
        plan.targets[sent as usize].store(id, Relaxed);
        line.clear();
        line.extend_from_slice(plan.name(id).as_bytes());
        line.extend_from_slice(b": ");
        let payload = Payload {
            sender: from as u32,
            seq: sent,
            sent_ns: shared.now_ns(),
        };
        push_message(&mut line, b"", payload, 0);
        if let Err(e) = writes[from].write_all(&line).await {
            write_error = Some(format!("{}: write failed: {e}", shared.names[from]));
            break;
        }
        sent += 1;
    }
    let waited = wait_for("crowd", &shared, m, deadline, ctx.common.stall, || {
        shared.delivered(0)
    })
    .await;
    let elapsed = began.elapsed();
    for r in &readers {
        r.abort();
    }
    for r in readers {
        let _ = r.await;
    }
    drop(writes);

    let back = shared.delivered(0);
    let h = shared.histogram(0);
    report.line(format!(
        "  probes: {} of {} came back in {:.2}s ({}/s), each from a random probe client to a random held user on another node and echoed back",
        fmt_count(back),
        fmt_count(m),
        elapsed.as_secs_f64(),
        fmt_count((back as f64 / elapsed.as_secs_f64().max(1e-9)) as u64)
    ));
    report.line(format!("  probe round trip: {}", latency_line(&h)));
    let duplicates = plan.duplicates.load(Relaxed);
    report.result(
        "probes",
        json!({"sent": sent, "back": back, "duplicates": duplicates,
               "seconds": elapsed.as_secs_f64(), "round_trip": latency_json(&h)}),
    );
    report_cpu_per_delivery(report, &cpu, back);
    counts(report, &shared, false, false);
    if duplicates > 0 {
        report.fail(format!("{duplicates} probes came back twice"));
    }
    if let Err(why) = waited {
        report.fail(format!("probes: {why}"));
    }
    if let Some(e) = write_error {
        report.fail(e);
    }
    Ok(back)
}

/// Probe client `me`'s receive loop: every echo must carry one of its own
/// probes, come from the held user it was sent to, and come once.
async fn echoes(
    shared: Arc<Shared>,
    plan: Arc<Plan>,
    me: u32,
    mut read: OwnedReadHalf,
    leftover: Vec<u8>,
) {
    let mut reader = LineReader::new(BIG_READ / 4, &leftover);
    let mut latencies = Vec::new();
    let mut now = shared.now_ns();
    loop {
        while let Some(line) = reader.next_line() {
            match classify(line) {
                Line::From { name, text } => match parse_payload(text) {
                    Some(p) if p.sender == me && (p.seq as usize) < plan.seen.len() => {
                        let k = p.seq as usize;
                        let to = plan.targets[k].load(Relaxed);
                        if to == u32::MAX || name != plan.name(to).as_bytes() {
                            shared.counts.misattributed.fetch_add(1, Relaxed);
                            shared.note(|| {
                                format!(
                                    "probe {k} came back from {}",
                                    String::from_utf8_lossy(name)
                                )
                            });
                        }
                        if plan.seen[k].swap(true, Relaxed) {
                            plan.duplicates.fetch_add(1, Relaxed);
                        } else {
                            latencies.push(now.saturating_sub(p.sent_ns));
                        }
                    }
                    _ => {
                        shared.counts.unparsed.fetch_add(1, Relaxed);
                    }
                },
                Line::Error(text) => {
                    shared.counts.error_lines.fetch_add(1, Relaxed);
                    let me = &shared.names[me as usize];
                    shared.note(|| format!("{me} got: error: {}", String::from_utf8_lossy(text)));
                }
                Line::Server(_) => {
                    shared.counts.server_lines.fetch_add(1, Relaxed);
                }
                Line::Other => {}
            }
        }
        if !latencies.is_empty() {
            shared.record(0, &latencies);
            latencies.clear();
        }
        match reader.fill(&mut read).await {
            Ok(n) if n > 0 => now = shared.now_ns(),
            _ => {
                shared.counts.closed_by_server.fetch_add(1, Relaxed);
                return;
            }
        }
    }
}
