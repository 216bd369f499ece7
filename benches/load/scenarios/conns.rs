//! `conns`: C idle logged-in connections, the client side spread over
//! several source addresses (127.0.0.2, ...), then M messages between
//! random pairs with at most W in flight. Measures logins per second and
//! the server's memory per connection: (VmRSS after the logins - VmRSS
//! before) / C, from `/proc/<pid>/status`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use serde_json::json;
use tokio::io::AsyncWriteExt;

use crate::args::ConnsArgs;
use crate::lines::{Payload, push_message};
use crate::login::login_all;

use crate::report::{Report, counts, fmt_count};
use crate::scenarios::{Ctx, Tasks, report_cpu, report_logins, report_traffic};
use crate::state::Shared;
use crate::traffic::wait_for;

/// A small, fast, seeded random number generator (xorshift64*).
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) % n.max(1)
    }
}

pub(crate) async fn run(ctx: &Ctx, a: &ConnsArgs) -> anyhow::Result<Report> {
    let c = a.conns;
    if c < 2 {
        bail!("conns needs at least 2 connections");
    }
    let names: Vec<String> = (0..c).map(|i| ctx.name("c", i)).collect();
    let shared = Arc::new(Shared::new(names, 1));
    let mut report = Report::new("conns");
    report.config("conns", c);
    report.config("messages", a.messages);
    report.config("window", a.window);

    let before = ctx.pids.vm_rss().transpose()?;
    let logins = login_all(&shared, &ctx.net, 0..c as u32, ctx.login_options_for(c)).await?;
    report_logins(&mut report, &logins);
    // Let the server finish what the logins started (log lines, buffers).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = ctx.pids.vm_rss().transpose()?;
    match (before, after) {
        (Some(before), Some(after)) => {
            let per = (after as f64 - before as f64) / c as f64;
            report.line(format!(
                "  server memory: VmRSS {} KiB before, {} KiB with {} connections: {:.0} bytes ({:.1} KiB) per connection",
                before / 1024,
                after / 1024,
                fmt_count(c as u64),
                per,
                per / 1024.0
            ));
            report.result(
                "memory",
                json!({"before_bytes": before, "after_bytes": after, "per_conn_bytes": per}),
            );
        }
        _ => {
            report.line("  server memory: unknown (give --server-pid)");
            report.result("memory", serde_json::Value::Null);
        }
    }

    let cpu = ctx.cpu_meter();
    let began = Instant::now();
    let mut tasks = Tasks::default();
    let mut writes = Vec::with_capacity(c);
    for client in logins.clients {
        let (read, write) = client.stream.into_split();
        tasks.reader(&shared, client.index, 0, read, &client.leftover, 2048);
        writes.push(write);
    }
    let mut rng = Rng::new(a.seed);
    let mut seqs: HashMap<(u32, u32), u64> = HashMap::new();
    let mut line = Vec::with_capacity(128);
    let deadline = ctx.deadline(Duration::from_secs(60));
    let mut write_error = None;
    let mut sent = 0u64;
    while sent < a.messages && Instant::now() < deadline {
        if sent - shared.delivered(0).min(sent) >= a.window.max(1) {
            tokio::time::sleep(Duration::from_millis(1)).await;
            continue;
        }
        let from = rng.below(c as u64) as u32;
        let to = ((u64::from(from) + 1 + rng.below(c as u64 - 1)) % c as u64) as u32;
        let seq = seqs.entry((from, to)).or_insert(0);
        line.clear();
        line.extend_from_slice(shared.names[to as usize].as_bytes());
        line.extend_from_slice(b": ");
        let payload = Payload {
            sender: from,
            seq: *seq,
            sent_ns: shared.now_ns(),
        };
        push_message(&mut line, b"", payload, 0);
        *seq += 1;
        if let Err(e) = writes[from as usize].write_all(&line).await {
            write_error = Some(format!(
                "{}: write failed: {e}",
                shared.names[from as usize]
            ));
            break;
        }
        sent += 1;
    }
    let waited = wait_for(
        "conns",
        &shared,
        a.messages,
        deadline,
        ctx.common.stall,
        || shared.delivered(0),
    )
    .await;
    let elapsed = began.elapsed();
    let _ = tasks.finish().await;
    drop(writes);

    report.line(format!(
        "  {} idle logged-in connections, then {} messages between random pairs (window {})",
        fmt_count(c as u64),
        fmt_count(a.messages),
        a.window
    ));
    report_traffic(&mut report, &shared, 0, "pairs", elapsed);
    report_cpu(&mut report, &cpu);
    counts(&mut report, &shared, false, false);
    if let Err(why) = waited {
        report.fail(why);
    }
    if let Some(e) = write_error {
        report.fail(e);
    }
    Ok(report)
}
