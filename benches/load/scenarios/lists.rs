//! `lists` (hostile): one client sends, flat out for `--duration`, lines
//! whose recipient list is about 4 KB of `a,a,a,...` (`--list-bytes`; one
//! name listed two thousand times, nobody online by that name, so each
//! line costs the server a long parse and earns one short `not online`
//! error). Meanwhile two bystander pairs chat every millisecond: one pair
//! on the same server worker thread as the attacker, one on the other.
//! A server that lets one session's input keep its worker busy starves
//! everyone else on that worker.
//!
//! Placement: the server puts sessions on its `--workers` round-robin by
//! accept order (connection i on worker i % workers; start it with
//! `--workers 2`). The generator therefore connects its five clients one
//! after the other, each logged in before the next connects: attacker,
//! other-worker bystander, same-worker bystander, other, same. With two
//! workers, connections n and n+2, n+4 share a worker and n+1, n+3 share
//! the other, whatever n is (compare mode's readiness probe takes one
//! connection first). Nothing else may connect to the server meanwhile.
//! The report lists the server's busiest threads, which shows the worker
//! the attacker kept busy.
//!
//! The attacker writes from a blocking thread of its own and a second
//! thread reads its answers ([`Blaster`]), and each pair chats on a thread
//! and runtime of its own, so the generator's scheduling does not distort
//! the bystanders. Reports both pairs' latency; target: same-worker p99
//! <= 10 ms.

use std::sync::Arc;
use std::time::Instant;

use serde_json::json;

use crate::args::{ATTACK, ListsArgs};
use crate::bystanders::Bystanders;
use crate::login::LoginOptions;
use crate::procfs::ThreadMeter;
use crate::report::{Report, counts, fmt_count};
use crate::scenarios::{
    Ctx, configure_attack, log_in, report_bystanders, report_cpu, settle, watch,
};
use crate::sidethread::Blaster;
use crate::state::Shared;

const ATTACKER: u32 = 0;
/// The order of connection: attacker, other, same, other, same.
const OTHER: [u32; 2] = [1, 3];
const SAME: [u32; 2] = [2, 4];
/// Latency classes.
const SAME_WORKER: usize = 0;
const OTHER_WORKER: usize = 1;
/// Lines per write of the attacker.
const LINES_PER_WRITE: usize = 16;

const P99_MS: u64 = 10;

pub(crate) async fn run(ctx: &Ctx, a: &ListsArgs) -> anyhow::Result<Report> {
    let names = vec![
        ctx.name("attacker", 0),
        ctx.name("o", 0),
        ctx.name("s", 0),
        ctx.name("o", 1),
        ctx.name("s", 1),
    ];
    let shared = Arc::new(Shared::new(names, 2));
    let mut report = Report::new("lists");
    let listed = a.list_bytes.div_ceil(2).max(1);
    let mut line = vec![b'a'; 2 * listed - 1];
    for comma in line.iter_mut().skip(1).step_by(2) {
        *comma = b',';
    }
    line.extend_from_slice(b": x\n");
    report.config("list_bytes", line.len() - 4);
    report.config("names_listed", listed);
    let (duration, interval) = configure_attack(&mut report, &a.attack, ATTACK);

    // One at a time, in this order: the order of accept is the placement.
    let one_by_one = LoginOptions {
        concurrency: 1,
        ..ctx.login_options()
    };
    let mut clients = log_in(ctx, &mut report, &shared, 0..5, one_by_one).await?;
    let attacker = clients.take(ATTACKER)?;
    let other = [clients.take(OTHER[0])?, clients.take(OTHER[1])?];
    let same = [clients.take(SAME[0])?, clients.take(SAME[1])?];

    let cpu = ctx.cpu_meter();
    let threads = ThreadMeter::start(ctx.pids.single());
    let mem = ctx.mem_sampler();
    let same = Bystanders::adopt(&shared, same, SAME_WORKER, interval).await?;
    let other = Bystanders::adopt(&shared, other, OTHER_WORKER, interval).await?;
    settle(&shared, OTHER_WORKER).await;
    shared.reset_histogram(SAME_WORKER);

    let buffer = line.repeat(LINES_PER_WRITE);
    let blaster = Blaster::start(attacker, buffer, Instant::now() + duration)?;
    watch(
        "lists",
        || blaster.is_finished(),
        || {
            format!(
                "bystanders: {} same-worker, {} other-worker messages",
                fmt_count(shared.delivered(SAME_WORKER)),
                fmt_count(shared.delivered(OTHER_WORKER))
            )
        },
    )
    .await;
    let (blasted, answers) = blaster.stop().await;
    let busiest = threads.map(|t| t.stop()).unwrap_or_default();
    let same_chat = same.stop().await;
    let other_chat = other.stop().await;

    let lines = blasted.bytes / line.len() as u64;
    let per_s = lines as f64 / blasted.seconds.max(1e-9);
    report.line(format!(
        "  attacker: {} lines ({} names listed each) in {:.2}s = {} lines/s, {:.1} MiB/s; {} answer lines read{}{}",
        fmt_count(lines),
        listed,
        blasted.seconds,
        fmt_count(per_s as u64),
        blasted.bytes as f64 / blasted.seconds.max(1e-9) / 1048576.0,
        fmt_count(answers.lines),
        blasted
            .error
            .as_ref()
            .map(|e| format!("; its writes ended: {e}"))
            .unwrap_or_default(),
        answers
            .ended
            .as_ref()
            .map(|e| format!("; its reads ended: {e}"))
            .unwrap_or_default(),
    ));
    report.result(
        "attacker",
        json!({"lines": lines, "lines_per_s": per_s, "bytes": blasted.bytes,
               "seconds": blasted.seconds, "answer_lines": answers.lines,
               "answer_bytes": answers.bytes, "write_error": blasted.error,
               "read_end": answers.ended}),
    );
    report_bystanders(
        &mut report,
        &shared,
        same_chat,
        "same-worker bystanders",
        Some(P99_MS),
    );
    report_bystanders(
        &mut report,
        &shared,
        other_chat,
        "other-worker bystanders",
        None,
    );
    let shown: Vec<String> = busiest
        .iter()
        .take(4)
        .map(|(name, cores)| format!("{name} {cores:.2}"))
        .collect();
    report.line(format!(
        "  server threads, busiest first (cores): {}",
        if shown.is_empty() {
            "unknown".to_string()
        } else {
            shown.join(", ")
        }
    ));
    ctx.mem_report(&mut report, "memory", mem);
    report_cpu(&mut report, &cpu);
    counts(&mut report, &shared, false, false);
    Ok(report)
}
