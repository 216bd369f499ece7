//! `slow`: one client logs in and never reads again while another floods
//! it (1 GiB by default, bounded by `--duration`); two bystanders chat
//! meanwhile. Reports the server's memory growth (VmRSS sampled every
//! 100 ms), whether and when the slow client was cut off, and the
//! bystanders' latency.
//!
//! A client that does not read cannot see its connection close (the FIN
//! waits behind the data it does not read), so the cut-off is observed the
//! way everybody else sees it: the flooder's first `error: not online`
//! (achat; the tutorial server never cuts anyone off). Afterwards the slow
//! client drains its socket to confirm the close. "Cap passed" is an
//! estimate: the moment the flooder had sent more than the cap plus what
//! the kernel can hold in between (the slow socket's SO_RCVBUF and the
//! largest send buffer, `tcp_wmem`'s maximum); the lag is the cut-off
//! minus that moment, so it is an upper bound.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use serde_json::json;
use socket2::SockRef;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::args::SlowArgs;
use crate::bystanders::Bystanders;
use crate::login::{LoginOptions, login_all};
use crate::report::{Progress, Report, counts, fmt_mib};
use crate::scenarios::{
    BIG_READ, Ctx, Tasks, check_bystanders, ended_by, report_cpu, report_latency, report_logins,
};
use crate::state::Shared;
use crate::traffic::{FloodPlan, send_flood};

const SLOW: u32 = 0;
const FLOODER: u32 = 1;
const BYSTANDERS: [u32; 2] = [2, 3];
/// Latency classes.
const CHAT: usize = 0;
const FLOOD: usize = 1;

pub(crate) async fn run(ctx: &Ctx, a: &SlowArgs) -> anyhow::Result<Report> {
    let names = vec![
        ctx.name("slow", 0),
        ctx.name("flooder", 0),
        ctx.name("b", 0),
        ctx.name("b", 1),
    ];
    let shared = Arc::new(Shared::new(names, 2));
    let mut report = Report::new("slow");
    report.config("flood_bytes", a.flood_bytes);
    report.config("duration_s", a.duration.as_secs_f64());
    report.config("size", a.size);
    report.config("rate_bytes_per_s", a.rate);
    report.config("max_outbox_bytes", a.max_outbox_bytes);
    report.config("slow_rcvbuf", a.slow_rcvbuf);
    report.config(
        "bystander_interval_us",
        a.bystander_interval.as_micros() as u64,
    );

    let options = LoginOptions {
        recv_buffer: a.slow_rcvbuf,
        ..ctx.login_options()
    };
    let mut logins = login_all(&shared, &ctx.net, [SLOW], options).await?;
    let others = login_all(&shared, &ctx.net, [FLOODER], ctx.login_options()).await?;
    logins.clients.extend(others.clients);
    let _ = logins.latency.add(&others.latency);
    logins.welcomed += others.welcomed;
    report_logins(&mut report, &logins);
    let mut clients = logins.clients.into_iter();
    let (Some(slow), Some(flooder)) = (clients.next(), clients.next()) else {
        anyhow::bail!("login barrier returned too few clients");
    };
    // What the kernel can hold between the server and the slow client: its
    // receive buffer (autotuned up to tcp_rmem's maximum unless pinned by
    // --slow-rcvbuf) and the server's send buffer (up to tcp_wmem's).
    let slow_rcvbuf = match a.slow_rcvbuf {
        Some(_) => SockRef::from(&slow.stream).recv_buffer_size().unwrap_or(0) as u64,
        None => tcp_mem_max("tcp_rmem").unwrap_or(6 << 20),
    };
    let wmem_max = tcp_mem_max("tcp_wmem").unwrap_or(4 << 20);
    let threshold = a.max_outbox_bytes + slow_rcvbuf + wmem_max;

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
    let (read, write) = flooder.stream.into_split();
    tasks.reader(&shared, FLOODER, FLOOD, read, &flooder.leftover, BIG_READ);
    let plan = FloodPlan {
        me: FLOODER,
        prefix: format!("{}: ", shared.names[SLOW as usize]).into_bytes(),
        text_len: a.size,
        budget: a.flood_bytes,
        until: Instant::now() + a.duration,
        rate: a.rate,
    };
    let flooded_so_far = Arc::new(AtomicU64::new(0));
    let flood = tokio::spawn(send_flood(
        shared.clone(),
        plan,
        write,
        flooded_so_far.clone(),
    ));
    let mut progress = Progress::new("slow");
    while !flood.is_finished() {
        tokio::time::sleep(Duration::from_millis(50)).await;
        progress.show(|| {
            let rss = mem
                .as_ref()
                .map(|m| fmt_mib(m.peek().last as i64))
                .unwrap_or_else(|| "?".into());
            let cut = shared.first_not_online_ns.load(Relaxed) != u64::MAX;
            format!(
                "flooded {}, server VmRSS {rss}, slow client cut off: {}",
                fmt_mib(flooded_so_far.load(Relaxed) as i64),
                if cut { "yes" } else { "not yet" }
            )
        });
    }
    progress.finish();
    let flooded = flood.await?;
    let chatted = bystanders.stop().await;
    // Error lines for the last writes may still be on their way.
    let settle = Instant::now() + Duration::from_secs(1);
    while shared.first_not_online_ns.load(Relaxed) == u64::MAX && Instant::now() < settle {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let cut_ns = shared.first_not_online_ns.load(Relaxed);
    let cut = (cut_ns != u64::MAX).then(|| cut_ns.saturating_sub(flooded.began_ns));
    let drained = if cut.is_some() {
        Some(drain(slow.stream, Duration::from_secs(5)).await)
    } else {
        drop(slow.stream);
        None
    };
    let _ = tasks.finish().await;
    drop(flooded.write);

    let secs = (flooded.ended_ns - flooded.began_ns) as f64 / 1e9;
    report.line(format!(
        "  flood: {} in {} messages over {secs:.2}s ({:.0} MiB/s){}",
        fmt_mib(flooded.bytes as i64),
        flooded.messages,
        flooded.bytes as f64 / secs.max(1e-9) / 1048576.0,
        ended_by(flooded.error.as_ref())
    ));
    let at_cut = cut.map(|c| bytes_at(&flooded.timeline, flooded.began_ns + c));
    let cap_passed = flooded
        .timeline
        .iter()
        .find(|(_, bytes)| *bytes > threshold)
        .map(|(t, _)| t.saturating_sub(flooded.began_ns));
    let lag_ms = cut
        .zip(cap_passed)
        .map(|(c, p)| (c as f64 - p as f64) / 1e6);
    match cut {
        Some(c) => report.line(format!(
            "  slow client cut off {:.1} ms into the flood, after {} flooded; cap surely passed at {} (cap + {} receive buffer + {} send buffer); lag at most {}",
            c as f64 / 1e6,
            fmt_mib(at_cut.unwrap_or(0) as i64),
            cap_passed.map(|p| format!("{:.1} ms", p as f64 / 1e6)).unwrap_or_else(|| "never".into()),
            fmt_mib(slow_rcvbuf as i64),
            fmt_mib(wmem_max as i64),
            lag_ms.map(|l| format!("{l:.1} ms")).unwrap_or_else(|| "n/a".into()),
        )),
        None => report.line("  slow client never cut off (no 'error: not online' reached the flooder)"),
    }
    if let Some(d) = &drained {
        report.line(format!(
            "  slow client then read {} and saw {}",
            fmt_mib(d.bytes as i64),
            d.ended
        ));
    }
    report.result(
        "flood",
        json!({"bytes": flooded.bytes, "messages": flooded.messages, "seconds": secs,
               "mib_per_s": flooded.bytes as f64 / secs.max(1e-9) / 1048576.0}),
    );
    report.result(
        "cutoff",
        json!({
            "cut": cut.is_some(),
            "after_ms": cut.map(|c| c as f64 / 1e6),
            "flooded_bytes_at_cut": at_cut,
            "cap_passed_by_ms": cap_passed.map(|p| p as f64 / 1e6),
            "lag_ms": lag_ms,
            "threshold_bytes": threshold,
            "slow_drained_bytes": drained.as_ref().map(|d| d.bytes),
            "slow_saw": drained.as_ref().map(|d| d.ended.clone()),
        }),
    );
    report.line(format!(
        "  bystanders: {} of {} messages delivered (measured during the flood)",
        shared.delivered(CHAT),
        chatted.sent
    ));
    report_latency(&mut report, &shared, CHAT, "bystanders");
    let memory = ctx.mem_report(&mut report, "memory", mem);
    report_cpu(&mut report, &cpu);
    counts(&mut report, &shared, true, false);

    let p99 = shared.histogram(CHAT).value_at_quantile(0.99);
    let limit = a.max_outbox_bytes + (32 << 20);
    report.target(
        "memory growth <= max-outbox-bytes + 32 MiB",
        memory.map(|m| m.peak.saturating_sub(m.first) <= limit),
        format!("limit {}", fmt_mib(limit as i64)),
    );
    report.target(
        "cut off within 1 s of passing the cap",
        Some(lag_ms.is_some_and(|l| l <= 1000.0) || (cut.is_some() && cap_passed.is_none())),
        lag_ms
            .map(|l| format!("lag {l:.1} ms"))
            .unwrap_or_else(|| "no cut-off".into()),
    );
    report.target(
        "bystander p99 <= 10 ms",
        Some(p99 <= 10_000_000),
        format!("p99 {:.2} ms", p99 as f64 / 1e6),
    );
    check_bystanders(&mut report, &shared, &chatted, "bystanders");
    Ok(report)
}

/// Bytes the flooder had sent at `ns` (since start).
fn bytes_at(timeline: &[(u64, u64)], ns: u64) -> u64 {
    timeline
        .iter()
        .take_while(|(t, _)| *t <= ns)
        .last()
        .map_or(0, |(_, b)| *b)
}

/// `tcp_wmem`'s or `tcp_rmem`'s maximum: the most a socket's buffer grows to.
fn tcp_mem_max(which: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/sys/net/ipv4/{which}"))
        .ok()?
        .split_whitespace()
        .nth(2)?
        .parse()
        .ok()
}

struct Drained {
    bytes: u64,
    ended: String,
}

/// Reads `stream` until it ends (at most `limit`).
async fn drain(mut stream: TcpStream, limit: Duration) -> Drained {
    let mut buf = vec![0u8; 256 * 1024];
    let mut bytes = 0u64;
    let until = Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(until.into(), stream.read(&mut buf)).await {
            Ok(Ok(0)) => {
                return Drained {
                    bytes,
                    ended: "end of stream".into(),
                };
            }
            Ok(Ok(n)) => bytes += n as u64,
            Ok(Err(e)) => {
                return Drained {
                    bytes,
                    ended: format!("an error ({e})"),
                };
            }
            Err(_) => {
                return Drained {
                    bytes,
                    ended: format!("no end within {limit:?}"),
                };
            }
        }
    }
}
