//! `nonreaders` (hostile): K clients log in and never read again, while
//! one broadcaster sends `*: <4000 bytes>` lines as fast as the server
//! takes them, for `--duration`, and two bystanders chat every
//! millisecond. Every broadcast line is a copy for each non-reader: output
//! the server cannot write anywhere, which it must bound (or cut the
//! non-readers off) without starving the bystanders.
//!
//! Measures the server's memory (VmRSS every 100 ms: peak and growth),
//! the kernel's memory for the server's sockets (`skmem` of `ss -tm` for
//! the server's port, summed: what the target is about), the kernel's
//! memory for TCP on the whole machine (`/proc/net/sockstat`'s `mem`: it
//! includes the non-readers' own receive queues on the generator's side,
//! which on a real network are on the attacker's machine), how many
//! non-readers the server cut off, and the bystanders' latency. A client that does not read cannot see its
//! connection close, and a line to `*` draws no `not online` error, so the
//! cut-offs are counted afterwards: a fresh client asks `/who`, and every
//! name missing from the count (K non-readers, the broadcaster, the two
//! bystanders and the asker itself should be online) was cut off.
//!
//! The broadcaster's copies reach the bystanders too (they are online);
//! they count as broadcast traffic, not as the bystanders' own.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use serde_json::json;

use crate::args::{NONREADERS_ATTACK, NonreadersArgs};
use crate::net::cap_send_buffer;
use crate::procfs::MemSampler;
use crate::report::{Report, counts, fmt_count, fmt_mib};
use crate::scenarios::{
    BIG_READ, Ctx, Tasks, configure_attack, crowd_names, log_in, online_count, peak_target,
    report_bystanders, report_cpu, report_flood, sampled_now, server_sockets_report,
    start_bystanders, start_flood, tcp_report, tcp_sampler, watch,
};
use crate::state::Shared;
use crate::traffic::FloodPlan;

const BROADCASTER: u32 = 0;
const BYSTANDERS: [u32; 2] = [1, 2];
/// Asks `/who` after the flood.
const ASKER: u32 = 3;
/// The non-readers are clients `FIRST..`.
const FIRST: u32 = 4;
/// Latency classes.
const CHAT: usize = 0;
const BROADCAST: usize = 1;

/// The targets.
const RSS_LIMIT: u64 = 768 << 20;
const TCP_LIMIT: u64 = 512 << 20;
const P99_MS: u64 = 50;

pub(crate) async fn run(ctx: &Ctx, a: &NonreadersArgs) -> anyhow::Result<Report> {
    let k = a.nonreaders;
    let specials = [("bc", 0), ("b", 0), ("b", 1), ("ask", 0)];
    let names = crowd_names(ctx, &specials, "n", k);
    let shared = Arc::new(Shared::new(names, 2).sender_class(BROADCASTER, BROADCAST));
    let mut report = Report::new("nonreaders");
    report.config("nonreaders", k);
    report.config("size", a.size);
    report.config("rate_bytes_per_s", a.rate);
    let (duration, interval) = configure_attack(&mut report, &a.attack, NONREADERS_ATTACK);

    let everyone = (FIRST..FIRST + k as u32).chain([BROADCASTER]);
    let options = ctx.login_options_for(k);
    let mut clients = log_in(ctx, &mut report, &shared, everyone, options).await?;
    let broadcaster = clients.take(BROADCASTER)?;
    cap_send_buffer(&broadcaster.stream)?;
    let nonreaders: Vec<_> = clients.rest().into_iter().map(|c| c.stream).collect();

    let cpu = ctx.cpu_meter();
    let mem = ctx.mem_sampler();
    let tcp = tcp_sampler();
    let sockets = MemSampler::server_sockets(ctx.net.addr(0).port()).ok();
    let bystanders = start_bystanders(ctx, &shared, BYSTANDERS, CHAT, interval).await?;

    let mut tasks = Tasks::default();
    let write = tasks.split(&shared, broadcaster, BROADCAST, BIG_READ);
    let plan = FloodPlan {
        rate: a.rate,
        ..FloodPlan::timed(BROADCASTER, b"*: ", a.size, duration)
    };
    let (flood, so_far) = start_flood(&shared, plan, write);
    watch(
        "nonreaders",
        || flood.is_finished(),
        || {
            format!(
                "broadcast {}, server VmRSS {}, server sockets {}, kernel TCP memory {}",
                fmt_mib(so_far.load(Relaxed) as i64),
                sampled_now(mem.as_ref()),
                sampled_now(sockets.as_ref()),
                sampled_now(tcp.as_ref()),
            )
        },
    )
    .await;
    let flooded = flood.await?;
    report_flood(&mut report, "broadcast", &flooded);
    // Who is left, while the bystanders and the broadcaster are still on.
    let online = online_count(&shared, &ctx.net, ASKER).await;
    let chatted = bystanders.stop().await;
    let memory = ctx.mem_report(&mut report, "memory", mem);
    let kernel = server_sockets_report(&mut report, "server_sockets", sockets);
    tcp_report(&mut report, "tcp_memory", tcp);
    drop(nonreaders);
    let _ = tasks.finish().await;
    drop(flooded.write);
    // Let the kernel free the non-readers' buffers before the next run.
    tokio::time::sleep(Duration::from_millis(500)).await;

    report.line(format!(
        "  broadcast copies read by the bystanders: {}",
        fmt_count(shared.delivered(BROADCAST))
    ));
    let expected_online = k as u64 + 4;
    let cut = online.map(|n| expected_online.saturating_sub(n));
    match (online, cut) {
        (Some(n), Some(cut)) => report.line(format!(
            "  after the flood: {n} online (/who) of {expected_online} expected: {cut} of {k} non-readers cut off"
        )),
        _ => report.line("  after the flood: no answer to /who within 5 s; cut-offs unknown"),
    }
    report.result(
        "cutoff",
        json!({"online_after": online, "expected_online": expected_online, "cut_off": cut}),
    );
    report_bystanders(&mut report, &shared, chatted, "bystanders", Some(P99_MS));
    report_cpu(&mut report, &cpu);
    counts(&mut report, &shared, true, true);
    peak_target(
        &mut report,
        "server VmRSS peak <= 768 MiB",
        memory,
        RSS_LIMIT,
    );
    peak_target(
        &mut report,
        "kernel memory of the server's sockets peak <= 512 MiB",
        kernel,
        TCP_LIMIT,
    );
    Ok(report)
}
