//! `paced` (hostile): R readers that read slowly on purpose, each at a
//! fixed rate (`--read-rate`: one read of at most rate x `--read-interval`
//! bytes, then a real pause), with default socket buffers, while one
//! sender floods them with 4 KB lines for `--duration`: lines naming every
//! reader (or `*:` with `--everyone`). A server that judges readers by how
//! often their socket comes writable, or that lets a flooder outrun its
//! readers, cuts such readers off; a fair one paces the sender to them.
//!
//! Reports, per reader, whether it was cut off (the sender's first
//! `error: not online` naming it, or its connection closing) and the rate
//! it achieved over the flood (lines received x line length / duration);
//! and the sender's achieved rate, which should be about the readers'
//! (plus what the buffers on the way hold), not more. Target: no reader
//! cut off.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use serde_json::json;

use crate::args::PacedArgs;
use crate::lines::LineReader;
use crate::net::cap_send_buffer;
use crate::report::{Report, counts, fmt_count, fmt_mib};
use crate::scenarios::{
    BIG_READ, Ctx, Tasks, log_in, report_cpu, report_flood, sampled_now, start_flood, watch,
};
use crate::state::Shared;
use crate::traffic::FloodPlan;

const SENDER: u32 = 0;
/// The readers are clients `FIRST..`; reader i's latencies are class i.
const FIRST: u32 = 1;

pub(crate) async fn run(ctx: &Ctx, a: &PacedArgs) -> anyhow::Result<Report> {
    let r = a.readers.max(1);
    let mut names = vec![ctx.name("s", 0)];
    names.extend((0..r).map(|i| ctx.name("p", i)));
    // One class per reader, and one for the sender's own lines.
    let shared = Arc::new(Shared::new(names, r + 1));
    let mut report = Report::new("paced");
    report.config("readers", r);
    report.config("read_rate_bytes_per_s", a.read_rate);
    report.config("read_interval_ms", a.read_interval.as_secs_f64() * 1e3);
    report.config("duration_s", a.duration.as_secs_f64());
    report.config("size", a.size);
    report.config("everyone", a.everyone);

    let options = ctx.login_options();
    let mut clients = log_in(ctx, &mut report, &shared, 0..=r as u32, options).await?;
    let mut tasks = Tasks::default();
    let sender = clients.take(SENDER)?;
    cap_send_buffer(&sender.stream)?;
    let write = tasks.split(&shared, sender, r, BIG_READ);
    let mut readers = Vec::with_capacity(r);
    for client in clients.rest() {
        let (read, idle) = client.stream.into_split();
        let class = (client.index - FIRST) as usize;
        let reader = LineReader::new(64 * 1024, &client.leftover);
        let reader = reader.paced(a.read_rate, a.read_interval);
        let task = tasks.read_with(&shared, client.index, class, read, reader);
        readers.push((client.index, task));
        tasks.keep(idle);
    }

    let recipients = if a.everyone {
        "*".to_string()
    } else {
        shared.names[FIRST as usize..].join(",")
    };
    let cpu = ctx.cpu_meter();
    let mem = ctx.mem_sampler();
    let prefix = format!("{recipients}: ");
    let plan = FloodPlan::timed(SENDER, prefix.as_bytes(), a.size, a.duration);
    let (flood, so_far) = start_flood(&shared, plan, write);
    watch(
        "paced",
        || flood.is_finished(),
        || {
            let cut = readers
                .iter()
                .filter(|(i, task)| {
                    shared.offline_ns[*i as usize].load(Relaxed) != u64::MAX
                        || tasks.reader_ended(*task)
                })
                .count();
            format!(
                "sent {}, readers cut off: {cut} of {r}, server VmRSS {}",
                fmt_mib(so_far.load(Relaxed) as i64),
                sampled_now(mem.as_ref())
            )
        },
    )
    .await;
    let flooded = flood.await?;
    let secs = report_flood(&mut report, "sender", &flooded);
    // What each reader got over the flood, before it drains the rest.
    let line_bytes = ("from ".len() + shared.names[SENDER as usize].len() + ": ".len()) as f64
        + a.size.max(40) as f64
        + 1.0;
    let mut cut_off = 0;
    let mut per_reader = Vec::with_capacity(r);
    for (index, task) in &readers {
        let class = (index - FIRST) as usize;
        let lines = shared.delivered(class);
        let rate = lines as f64 * line_bytes / secs.max(1e-9);
        let told = shared.offline_ns[*index as usize].load(Relaxed);
        let told_s = (told != u64::MAX).then(|| told.saturating_sub(flooded.began_ns) as f64 / 1e9);
        let closed = tasks.reader_ended(*task);
        let cut = told_s.is_some() || closed;
        cut_off += usize::from(cut);
        let name = &shared.names[*index as usize];
        report.line(format!(
            "  {name}: {} lines, {:.0} KiB/s ({:.0}% of the {:.0} KiB/s asked); {}",
            fmt_count(lines),
            rate / 1024.0,
            100.0 * rate / a.read_rate.max(1) as f64,
            a.read_rate as f64 / 1024.0,
            match (told_s, closed) {
                (Some(t), _) =>
                    format!("cut off: the sender was told it is not online {t:.2}s into the flood"),
                (None, true) => "cut off: its connection was closed".to_string(),
                (None, false) => "not cut off".to_string(),
            }
        ));
        per_reader.push(json!({"name": name, "lines": lines, "bytes_per_s": rate,
                               "cut_off": cut, "told_offline_after_s": told_s, "closed": closed}));
    }
    let read_total: f64 = per_reader
        .iter()
        .filter_map(|v| v["bytes_per_s"].as_f64())
        .sum();
    let mean_read = read_total / r as f64;
    let sender_rate = flooded.bytes as f64 / secs.max(1e-9);
    report.line(format!(
        "  sender: {:.0} KiB/s against {:.0} KiB/s read by each reader on average ({:.2}x; each line goes to every reader)",
        sender_rate / 1024.0,
        mean_read / 1024.0,
        sender_rate / mean_read.max(1e-9)
    ));
    report.result(
        "readers",
        json!({"cut_off": cut_off, "mean_bytes_per_s": mean_read, "each": per_reader}),
    );
    report.result("sender_over_reader_rate", sender_rate / mean_read.max(1e-9));
    let _ = tasks.finish().await;
    drop(flooded.write);
    ctx.mem_report(&mut report, "memory", mem);
    report_cpu(&mut report, &cpu);
    counts(&mut report, &shared, true, true);
    report.target(
        "no reader cut off",
        Some(cut_off == 0),
        format!("{cut_off} of {r} cut off"),
    );
    Ok(report)
}
