//! `whospam` (hostile): U idle users online (15,000 by default: the
//! descriptor limit is 20,000 here), and S clients that each keep W
//! `/who` requests in flight for `--duration` (a request is answered when
//! its `server: <n> online:` head arrives; more are sent, in one write, as
//! answers come), while two bystanders chat every millisecond. A server
//! that walks (or sorts) everyone online for each `/who` spends its time
//! on the spammers instead of on the bystanders.
//!
//! Reports the bystanders' latency (target: p99 <= 20 ms), the `/who`
//! answers per second, and the server's memory and CPU. The idle users'
//! client side is spread over source addresses 127.0.0.2.. (`--sources`,
//! by default 32 users to an address), as conns does.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::args::{ATTACK, WhospamArgs};
use crate::report::{Report, counts, fmt_count};
use crate::scenarios::{
    BIG_READ, Ctx, Tasks, configure_attack, crowd_names, log_in, report_bystanders, report_cpu,
    sampled_now, start_bystanders, watch,
};
use crate::state::Shared;
use crate::traffic::Windowed;

const BYSTANDERS: [u32; 2] = [0, 1];
/// The spammers are clients `FIRST..FIRST + S`, the idle users after them.
const FIRST: u32 = 2;
const CHAT: usize = 0;
const P99_MS: u64 = 20;

pub(crate) async fn run(ctx: &Ctx, a: &WhospamArgs) -> anyhow::Result<Report> {
    let (s, u) = (a.spammers, a.users);
    let mut specials = vec![("b", 0), ("b", 1)];
    specials.extend((0..s).map(|i| ("w", i)));
    let shared = Arc::new(Shared::new(crowd_names(ctx, &specials, "u", u), 1));
    let mut report = Report::new("whospam");
    report.config("users", u);
    report.config("spammers", s);
    report.config("window", a.window);
    let (duration, interval) = configure_attack(&mut report, &a.attack, ATTACK);

    let spammers = FIRST..FIRST + s as u32;
    let everyone = FIRST..FIRST + (s + u) as u32;
    let options = ctx.login_options_for(s + u);
    let mut clients = log_in(ctx, &mut report, &shared, everyone, options).await?;
    let asking = spammers
        .clone()
        .map(|i| clients.take(i))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let idle = clients.rest();

    let cpu = ctx.cpu_meter();
    let mem = ctx.mem_sampler();
    let bystanders = start_bystanders(ctx, &shared, BYSTANDERS, CHAT, interval).await?;
    let began = Instant::now();
    let until = began + duration;
    let mut tasks = Tasks::default();
    for client in asking {
        let me = client.index;
        let write = tasks.split(&shared, client, CHAT, BIG_READ);
        let plan = Windowed {
            me,
            prefix: Vec::new(),
            fanout: 1,
            messages: u64::MAX,
            window: a.window.max(1),
            text_len: 0,
            request: Some(b"/who\n".to_vec()),
            until: Some(until),
        };
        tasks.sender(&shared, plan, write);
    }
    let answers = || -> u64 {
        spammers
            .clone()
            .map(|i| shared.who_answers[i as usize].load(Relaxed))
            .sum()
    };
    watch(
        "whospam",
        || Instant::now() >= until,
        || {
            format!(
                "{} answers, {} bystander messages, server VmRSS {}",
                fmt_count(answers()),
                fmt_count(shared.delivered(CHAT)),
                sampled_now(mem.as_ref())
            )
        },
    )
    .await;
    let elapsed = began.elapsed();
    let answered = answers();
    let chatted = bystanders.stop().await;
    // The spammers' senders have seen the time is up (they wait on
    // answers at most until then); their last requests are abandoned.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let errors = tasks.finish().await;
    drop(idle);

    let per_s = answered as f64 / elapsed.as_secs_f64().max(1e-9);
    report.line(format!(
        "  {s} spammers x {} /who in flight with {} online: {} answers in {:.2}s = {} answers/s",
        a.window,
        fmt_count((u + s + 2) as u64),
        fmt_count(answered),
        elapsed.as_secs_f64(),
        fmt_count(per_s as u64)
    ));
    report.result(
        "who",
        json!({"answers": answered, "seconds": elapsed.as_secs_f64(), "answers_per_s": per_s}),
    );
    report_bystanders(&mut report, &shared, chatted, "bystanders", Some(P99_MS));
    ctx.mem_report(&mut report, "memory", mem);
    report_cpu(&mut report, &cpu);
    counts(&mut report, &shared, false, false);
    for e in errors.into_iter().take(3) {
        report.fail(format!("a spammer's {e}"));
    }
    Ok(report)
}
