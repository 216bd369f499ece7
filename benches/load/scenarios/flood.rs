//! `flood`: one client sends to a reading peer (the sink) as fast as the
//! socket takes it, for `--duration` (or `--flood-bytes`), while two
//! bystanders chat at a steady pace. Every flooded message must reach the
//! sink, in order. Reports the flood's throughput, the bystanders'
//! latency and the server's memory (VmRSS sampled every 100 ms).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::args::FloodArgs;
use crate::bystanders::Bystanders;
use crate::login::login_all;
use crate::report::{Progress, Report, counts, fmt_count, fmt_mib};
use crate::scenarios::{
    BIG_READ, Ctx, Tasks, check_bystanders, ended_by, report_cpu, report_latency, report_logins,
    report_traffic,
};
use crate::sidethread::ReaderThread;
use crate::state::Shared;
use crate::traffic::{FloodPlan, send_flood, wait_for};

const FLOODER: u32 = 0;
const SINK: u32 = 1;
const BYSTANDERS: [u32; 2] = [2, 3];
const CHAT: usize = 0;
const FLOOD: usize = 1;

pub(crate) async fn run(ctx: &Ctx, a: &FloodArgs) -> anyhow::Result<Report> {
    let names = vec![
        ctx.name("flooder", 0),
        ctx.name("sink", 0),
        ctx.name("b", 0),
        ctx.name("b", 1),
    ];
    let shared = Arc::new(Shared::new(names, 2));
    let mut report = Report::new("flood");
    report.config("duration_s", a.duration.as_secs_f64());
    report.config("flood_bytes", a.flood_bytes);
    report.config("size", a.size);
    report.config("rate_bytes_per_s", a.rate);
    report.config(
        "bystander_interval_us",
        a.bystander_interval.as_micros() as u64,
    );

    let logins = login_all(&shared, &ctx.net, [FLOODER, SINK], ctx.login_options()).await?;
    report_logins(&mut report, &logins);

    let cpu = ctx.cpu_meter();
    let mem = ctx.mem_sampler();
    let bystanders = Bystanders::start(
        &shared,
        &ctx.net,
        BYSTANDERS,
        CHAT,
        a.bystander_interval,
        ctx.login_options(),
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    shared.reset_histogram(CHAT);

    let mut tasks = Tasks::default();
    let mut flooder_write = None;
    let mut sink = None;
    for client in logins.clients {
        if client.index == SINK {
            sink = Some(ReaderThread::start(&shared, client, FLOOD, BIG_READ)?);
            continue;
        }
        let (read, write) = client.stream.into_split();
        tasks.reader(
            &shared,
            client.index,
            CHAT,
            read,
            &client.leftover,
            BIG_READ,
        );
        flooder_write = Some(write);
    }
    let Some(write) = flooder_write else {
        anyhow::bail!("login barrier lost the flooder");
    };
    let plan = FloodPlan {
        me: FLOODER,
        prefix: format!("{}: ", shared.names[SINK as usize]).into_bytes(),
        text_len: a.size,
        budget: a.flood_bytes,
        until: Instant::now() + a.duration,
        rate: a.rate,
    };
    let so_far = Arc::new(AtomicU64::new(0));
    let flood = tokio::spawn(send_flood(shared.clone(), plan, write, so_far.clone()));
    let mut progress = Progress::new("flood");
    while !flood.is_finished() {
        tokio::time::sleep(Duration::from_millis(50)).await;
        progress.show(|| {
            let rss = mem
                .as_ref()
                .map(|m| fmt_mib(m.peek().last as i64))
                .unwrap_or_else(|| "?".into());
            format!(
                "flooded {}, sink got {} messages, server VmRSS {rss}",
                fmt_mib(so_far.load(Relaxed) as i64),
                fmt_count(shared.delivered(FLOOD))
            )
        });
    }
    progress.finish();
    let flooded = flood.await?;
    let chatted = bystanders.stop().await;
    let deadline = ctx.deadline(Duration::from_secs(30));
    let waited = wait_for(
        "flood: sink",
        &shared,
        flooded.messages,
        deadline,
        ctx.common.stall,
        || shared.delivered(FLOOD),
    )
    .await;
    let flood_elapsed = Duration::from_nanos(shared.now_ns() - flooded.began_ns);
    if let Some(sink) = sink {
        sink.stop().await;
    }
    let _ = tasks.finish().await;
    drop(flooded.write);

    let secs = flood_elapsed.as_secs_f64();
    report.line(format!(
        "  flood: {} in {} messages, {} delivered after {secs:.2}s ({:.0} MiB/s){}",
        fmt_mib(flooded.bytes as i64),
        fmt_count(flooded.messages),
        fmt_count(shared.delivered(FLOOD)),
        flooded.bytes as f64 / secs.max(1e-9) / 1048576.0,
        ended_by(flooded.error.as_ref())
    ));
    report.result(
        "flood_bytes",
        json!({"bytes": flooded.bytes, "mib_per_s": flooded.bytes as f64 / secs.max(1e-9) / 1048576.0}),
    );
    report_traffic(&mut report, &shared, FLOOD, "flood", flood_elapsed);
    report.line(format!(
        "  bystanders: {} of {} messages delivered (measured during the flood)",
        shared.delivered(CHAT),
        chatted.sent
    ));
    report_latency(&mut report, &shared, CHAT, "bystanders");
    let memory = ctx.mem_report(&mut report, "memory", mem);
    report_cpu(&mut report, &cpu);
    counts(&mut report, &shared, false, false);

    let p99 = shared.histogram(CHAT).value_at_quantile(0.99);
    report.target(
        "bystander p99 <= 10 ms",
        Some(p99 <= 10_000_000),
        format!("p99 {:.2} ms", p99 as f64 / 1e6),
    );
    let bound = a.max_growth;
    report.target(
        "memory bounded",
        memory.map(|m| m.peak.saturating_sub(m.first) <= bound),
        format!("peak growth at most {}", fmt_mib(bound as i64)),
    );
    if let Err(why) = waited {
        report.fail(why);
    }
    if let Some(e) = flooded.error {
        report.fail(format!("the flooder's write failed: {e}"));
    }
    check_bystanders(&mut report, &shared, &chatted, "bystanders");
    Ok(report)
}
