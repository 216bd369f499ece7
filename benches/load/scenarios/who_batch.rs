//! `who-batch` (hostile): P idle clients online, and one client that
//! sends W `/who` lines in a single write, then a message to itself as a
//! marker, and reads everything. Each answer lists up to 500 names, so W
//! answers are far more output than one client's outbox holds: a server
//! that produces them all at once must not cut the asker off for asking,
//! nor drop answers; it should produce them as the asker reads.
//!
//! Reports the answers received (their `server: <n> online:` heads;
//! target: all W), whether the asker was cut off (its connection closed
//! before the marker came back; target: not), how long the answers took,
//! and the server's memory and CPU. Bounded by `--timeout` (default 30 s).

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::AsyncWriteExt;

use crate::args::WhoBatchArgs;
use crate::lines::{LineReader, Payload, push_message};
use crate::report::{Report, counts, fmt_count};
use crate::scenarios::{BIG_READ, Ctx, Tasks, log_in, report_cpu, watch};
use crate::state::Shared;

const ASKER: u32 = 0;

pub(crate) async fn run(ctx: &Ctx, a: &WhoBatchArgs) -> anyhow::Result<Report> {
    let p = a.idle;
    let mut names = vec![ctx.name("asker", 0)];
    names.extend((0..p).map(|i| ctx.name("i", i)));
    let shared = Arc::new(Shared::new(names, 1));
    let mut report = Report::new("who-batch");
    report.config("idle", p);
    report.config("who", a.who);

    let options = ctx.login_options_for(p);
    let mut clients = log_in(ctx, &mut report, &shared, 0..=p as u32, options).await?;
    let asker = clients.take(ASKER)?;
    let idle = clients.rest();
    let mut tasks = Tasks::default();
    let (read, mut write) = asker.stream.into_split();
    let reader = LineReader::new(BIG_READ, &asker.leftover);
    let task = tasks.read_with(&shared, ASKER, 0, read, reader);

    let mut asked = b"/who\n".repeat(a.who);
    let me = format!("{}: ", shared.names[ASKER as usize]);
    let marker = Payload {
        sender: ASKER,
        seq: 0,
        sent_ns: shared.now_ns(),
    };
    push_message(&mut asked, me.as_bytes(), marker, 0);
    let cpu = ctx.cpu_meter();
    let mem = ctx.mem_sampler();
    let began = Instant::now();
    let written = write.write_all(&asked).await;
    let deadline = ctx.deadline(Duration::from_secs(30));
    let answers = || shared.who_answers[ASKER as usize].load(Relaxed);
    watch(
        "who-batch",
        || shared.delivered(0) > 0 || tasks.reader_ended(task) || Instant::now() >= deadline,
        || format!("{} of {} answers", answers(), a.who),
    )
    .await;
    let took = began.elapsed();
    let got = answers();
    let marker_back = shared.delivered(0) > 0;
    let cut = tasks.reader_ended(task);
    let _ = tasks.finish().await;
    drop(write);
    drop(idle);

    report.line(format!(
        "  asked /who {} times in one write ({} bytes) with {} online: {} answers in {:.2}s; marker {}; {}",
        a.who,
        fmt_count(asked.len() as u64),
        p + 1,
        fmt_count(got),
        took.as_secs_f64(),
        if marker_back { "back" } else { "not back" },
        if cut {
            "the asker was cut off (its connection closed)"
        } else {
            "the asker stayed online"
        }
    ));
    report.result(
        "who",
        json!({"asked": a.who, "answers": got, "seconds": took.as_secs_f64(),
               "marker_back": marker_back, "cut_off": cut,
               "answers_per_s": got as f64 / took.as_secs_f64().max(1e-9)}),
    );
    ctx.mem_report(&mut report, "memory", mem);
    report_cpu(&mut report, &cpu);
    counts(&mut report, &shared, true, true);
    report.target(
        "all answers received",
        Some(got == a.who as u64),
        format!("{got} of {}", a.who),
    );
    report.target(
        "asker not cut off",
        Some(!cut),
        if cut { "cut off" } else { "stayed online" }.to_string(),
    );
    if let Err(e) = written {
        report.fail(format!("the asker's write failed: {e}"));
    }
    if !marker_back && !cut {
        report.fail(format!(
            "the marker did not come back within {:.0}s",
            took.as_secs_f64()
        ));
    }
    Ok(report)
}
