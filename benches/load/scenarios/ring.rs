//! `ring`: N clients log in; client i sends M messages to client i+1 (the
//! last to the first), with at most W of its messages not yet received in
//! flight. Measures deliveries per second and one-way latency; checks that
//! every message arrives once, in order, from the right sender. Spread
//! over a cluster (`--addr a,b,c`), neighbours are on different nodes, so
//! every message crosses nodes; the ring starts once every node lists
//! every client.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;

use crate::args::RingArgs;
use crate::login::login_all;
use crate::report::{Report, counts};
use crate::scenarios::cluster::settle_presence;
use crate::scenarios::{
    BIG_READ, Ctx, Tasks, report_cpu_per_delivery, report_logins, report_traffic, shortfall,
};
use crate::state::Shared;
use crate::traffic::{Windowed, wait_for};

pub(crate) async fn run(ctx: &Ctx, a: &RingArgs) -> anyhow::Result<Report> {
    let n = a.clients;
    if n < 2 {
        bail!("ring needs at least 2 clients");
    }
    let names: Vec<String> = (0..n).map(|i| ctx.name("r", i)).collect();
    let shared = Arc::new(Shared::new(names, 1));
    let mut report = Report::new("ring");
    report.config("clients", n);
    report.config("messages", a.messages);
    report.config("window", a.window);
    report.config("size", a.size);

    let logins = login_all(&shared, &ctx.net, 0..n as u32, ctx.login_options()).await?;
    report_logins(&mut report, &logins);
    let presence_bound = ctx.common.login_timeout;
    settle_presence(&ctx.net, &ctx.tag, n as u64, presence_bound, &mut report).await?;

    let total = n as u64 * a.messages;
    let cpu = ctx.cpu_meter();
    let mem = ctx.mem_sampler();
    let aux_mem = ctx.aux_sampler();
    let began = Instant::now();
    let mut tasks = Tasks::default();
    for client in logins.clients {
        let i = client.index as usize;
        let (read, write) = client.stream.into_split();
        tasks.reader(&shared, client.index, 0, read, &client.leftover, BIG_READ);
        let plan = Windowed {
            me: client.index,
            prefix: format!("{}: ", shared.names[(i + 1) % n]).into_bytes(),
            fanout: 1,
            messages: a.messages,
            window: a.window.max(1),
            text_len: a.size,
            request: None,
            until: None,
        };
        tasks.sender(&shared, plan, write);
    }
    let deadline = ctx.deadline(Duration::from_secs(60) + Duration::from_micros(total));
    let waited = wait_for("ring", &shared, total, deadline, ctx.common.stall, || {
        shared.delivered(0)
    })
    .await;
    let elapsed = began.elapsed();
    let write_errors = tasks.finish().await;

    report.line(format!(
        "  {n} clients x {} messages, window {} -> {} deliveries expected",
        a.messages, a.window, total
    ));
    report_traffic(&mut report, &shared, 0, "ring", elapsed);
    ctx.mem_report(&mut report, "memory", mem);
    ctx.aux_report(&mut report, "aux_memory", aux_mem);
    report_cpu_per_delivery(&mut report, &cpu, shared.delivered(0));
    counts(&mut report, &shared, false, false);
    let (lost, examples) = shortfall(&shared, (0..n as u32).map(|s| (s, a.messages)));
    report.result("lost", lost);
    if let Err(why) = waited {
        report.fail(format!("{why}; short: {}", examples.join(", ")));
    }
    for e in write_errors.into_iter().take(3) {
        report.fail(e);
    }
    Ok(report)
}
