//! `broadcast` (hostile): N logged-in clients that read everything, and
//! one client flooding them with `*: <numbers>` lines (the shortest line
//! that still carries a timestamp) for `--duration`; two bystanders chat
//! every millisecond. One short line becomes N copies: the flooder asks
//! the server for far more work than its own bytes suggest, and the
//! bystanders' messages must not wait behind it.
//!
//! After the flood the readers are given time (`--timeout`, default 60 s,
//! and `--stall`) to receive every copy; the bystanders chat until then.
//! Reports the bystanders' latency, the server's memory (VmRSS peak), the
//! deliveries per second the readers saw (flood start to last copy), the
//! broadcast's own latency, and the server's CPU per delivery.
//!
//! The readers share the generator's one thread (16 KiB reads, cut with
//! memchr); the flooder's copies reach the bystanders too, and count as
//! broadcast traffic.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use serde_json::json;

use crate::args::{ATTACK, BroadcastArgs};
use crate::net::cap_send_buffer;
use crate::report::{Report, counts, fmt_count, fmt_mib};
use crate::scenarios::{
    BIG_READ, Ctx, Tasks, configure_attack, crowd_names, log_in, peak_target, report_bystanders,
    report_cpu, report_flood, report_traffic, sampled_now, start_bystanders, start_flood, watch,
};
use crate::state::Shared;
use crate::traffic::{FloodPlan, wait_for};

const FLOODER: u32 = 0;
const BYSTANDERS: [u32; 2] = [1, 2];
/// The readers are clients `FIRST..`.
const FIRST: u32 = 3;
const CHAT: usize = 0;
const BROADCAST: usize = 1;
/// A reader's buffer: thousands of readers, each sent short lines.
const READ_BUFFER: usize = 16 * 1024;

const RSS_LIMIT: u64 = 256 << 20;
const P99_MS: u64 = 20;

pub(crate) async fn run(ctx: &Ctx, a: &BroadcastArgs) -> anyhow::Result<Report> {
    let n = a.readers;
    let names = crowd_names(ctx, &[("fl", 0), ("b", 0), ("b", 1)], "r", n);
    let shared = Arc::new(Shared::new(names, 2).sender_class(FLOODER, BROADCAST));
    let mut report = Report::new("broadcast");
    report.config("readers", n);
    report.config("size", a.size);
    let (duration, interval) = configure_attack(&mut report, &a.attack, ATTACK);

    let everyone = (FIRST..FIRST + n as u32).chain([FLOODER]);
    let options = ctx.login_options_for(n);
    let mut clients = log_in(ctx, &mut report, &shared, everyone, options).await?;
    let mut tasks = Tasks::default();
    let flooder = clients.take(FLOODER)?;
    cap_send_buffer(&flooder.stream)?;
    let write = tasks.split(&shared, flooder, BROADCAST, BIG_READ);
    for reader in clients.rest() {
        let idle = tasks.split(&shared, reader, BROADCAST, READ_BUFFER);
        tasks.keep(idle);
    }

    let cpu = ctx.cpu_meter();
    let mem = ctx.mem_sampler();
    let bystanders = start_bystanders(ctx, &shared, BYSTANDERS, CHAT, interval).await?;
    let plan = FloodPlan::timed(FLOODER, b"*: ", a.size, duration);
    let (flood, so_far) = start_flood(&shared, plan, write);
    watch(
        "broadcast",
        || flood.is_finished(),
        || {
            format!(
                "flooded {}, {} copies delivered, server VmRSS {}",
                fmt_mib(so_far.load(Relaxed) as i64),
                fmt_count(shared.delivered(BROADCAST)),
                sampled_now(mem.as_ref())
            )
        },
    )
    .await;
    let flooded = flood.await?;
    let during = shared.delivered(BROADCAST);
    // Every reader and both bystanders get every line.
    let expected = flooded.messages * (n as u64 + 2);
    let deadline = ctx.deadline(Duration::from_secs(60));
    let waited = wait_for(
        "broadcast: readers",
        &shared,
        expected,
        deadline,
        ctx.common.stall,
        || shared.delivered(BROADCAST),
    )
    .await;
    let elapsed = Duration::from_nanos(shared.now_ns() - flooded.began_ns);
    let chatted = bystanders.stop().await;
    report_flood(&mut report, "flood", &flooded);
    let _ = tasks.finish().await;
    drop(flooded.write);

    report.line(format!(
        "  copies: {} expected ({} lines x {} recipients), {} delivered by the flood's end, {} in all",
        fmt_count(expected),
        fmt_count(flooded.messages),
        n + 2,
        fmt_count(during),
        fmt_count(shared.delivered(BROADCAST))
    ));
    report_traffic(&mut report, &shared, BROADCAST, "deliveries", elapsed);
    report_bystanders(&mut report, &shared, chatted, "bystanders", Some(P99_MS));
    let memory = ctx.mem_report(&mut report, "memory", mem);
    let server_cpu = report_cpu(&mut report, &cpu);
    let delivered = shared.delivered(BROADCAST);
    let per_delivery_ns = server_cpu.map(|s| s * 1e9 / delivered.max(1) as f64);
    if let Some(ns) = per_delivery_ns {
        report.line(format!("  server CPU per delivery: {ns:.0} ns"));
    }
    report.result(
        "copies",
        json!({"expected": expected, "during_flood": during, "delivered": delivered,
               "server_cpu_ns_per_delivery": per_delivery_ns}),
    );
    counts(&mut report, &shared, true, true);
    peak_target(
        &mut report,
        "server VmRSS peak <= 256 MiB",
        memory,
        RSS_LIMIT,
    );
    if let Err(why) = waited {
        report.fail(why);
    }
    Ok(report)
}
