//! `fanout`: S senders each send M messages addressed to the same K
//! recipients (`f<S>,f<S+1>,...: text`), at most W messages per sender not
//! yet received by all of them. Measures deliveries per second (S x M x K
//! in all) and one-way latency.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;

use crate::args::FanoutArgs;
use crate::login::login_all;
use crate::report::{Report, counts};
use crate::scenarios::{
    BIG_READ, Ctx, Tasks, report_cpu, report_logins, report_traffic, shortfall,
};
use crate::state::Shared;
use crate::traffic::{Windowed, wait_for};

pub(crate) async fn run(ctx: &Ctx, a: &FanoutArgs) -> anyhow::Result<Report> {
    let (s, k) = (a.senders, a.recipients);
    if s == 0 || k == 0 {
        bail!("fanout needs at least one sender and one recipient");
    }
    let names: Vec<String> = (0..s + k).map(|i| ctx.name("f", i)).collect();
    let prefix = format!("{}: ", names[s..].join(",")).into_bytes();
    if prefix.len() + a.size.max(40) > 4096 {
        eprintln!(
            "fanout: warning: a line is {} bytes, longer than achat's default --max-line-bytes",
            prefix.len() + a.size.max(40)
        );
    }
    let shared = Arc::new(Shared::new(names, 1));
    let mut report = Report::new("fanout");
    report.config("senders", s);
    report.config("recipients", k);
    report.config("messages", a.messages);
    report.config("window", a.window);
    report.config("size", a.size);

    let logins = login_all(&shared, &ctx.net, 0..(s + k) as u32, ctx.login_options()).await?;
    report_logins(&mut report, &logins);

    let per_sender = a.messages * k as u64;
    let total = s as u64 * per_sender;
    let cpu = ctx.cpu_meter();
    let mem = ctx.mem_sampler();
    let began = Instant::now();
    let mut tasks = Tasks::default();
    for client in logins.clients {
        let (read, write) = client.stream.into_split();
        tasks.reader(&shared, client.index, 0, read, &client.leftover, BIG_READ);
        if (client.index as usize) < s {
            let plan = Windowed {
                me: client.index,
                prefix: prefix.clone(),
                fanout: k as u64,
                messages: a.messages,
                window: a.window.max(1),
                text_len: a.size,
                request: None,
                until: None,
            };
            tasks.sender(&shared, plan, write);
        } else {
            tasks.keep(write);
        }
    }
    let deadline = ctx.deadline(Duration::from_secs(60) + Duration::from_micros(total / 2));
    let waited = wait_for("fanout", &shared, total, deadline, ctx.common.stall, || {
        shared.delivered(0)
    })
    .await;
    let elapsed = began.elapsed();
    let write_errors = tasks.finish().await;

    report.line(format!(
        "  {s} senders x {} messages x {k} recipients, window {} -> {total} deliveries expected",
        a.messages, a.window
    ));
    report_traffic(&mut report, &shared, 0, "fanout", elapsed);
    ctx.mem_report(&mut report, "memory", mem);
    report_cpu(&mut report, &cpu);
    counts(&mut report, &shared, false, false);
    let (lost, examples) = shortfall(&shared, (0..s as u32).map(|i| (i, per_sender)));
    report.result("lost", lost);
    if let Err(why) = waited {
        report.fail(format!("{why}; short: {}", examples.join(", ")));
    }
    for e in write_errors.into_iter().take(3) {
        report.fail(e);
    }
    Ok(report)
}
