//! `churn`: sessions start at a steady rate; each connects, logs in
//! (through the login barrier), sends `--chat` messages addressed to a
//! long-lived anchor client and to itself, waits for its own copies, and
//! leaves: by closing, or (`--reset-percent` of them) by a reset. Reports
//! the server's memory before, at the peak and after, and whether any name
//! stayed registered.
//!
//! "Registered" is checked two ways. achat answers `/who`, so its count is
//! read before and after. And for any server, a sample of the churned
//! names logs in again through the barrier: a name still held by a dead
//! session is refused (achat) or swallows the probe (the tutorial server
//! relays it to the old session), so the re-login fails.
//!
//! Over a cluster (`--addr a,b,c`) session i is on node i mod n (the anchor
//! on the first), so most sessions' messages to the anchor cross nodes,
//! and the sample logs in again on the next node, not the one it left:
//! a name must be free in the whole cluster, not only where it was.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::args::ChurnArgs;
use crate::lines::{Line, LineReader, Payload, classify, parse_payload, push_message};
use crate::login::{LoginOptions, login_all, login_one, login_some};
use crate::net::Net;
use crate::report::{Progress, Report, counts, fmt_count, fmt_mib, latency_json, latency_line};
use crate::scenarios::cluster::settle_presence;
use crate::scenarios::{BIG_READ, Ctx, Tasks, report_cpu, report_logins, report_traffic};
use crate::state::{Shared, duration_ns, new_histogram};
use crate::traffic::wait_for;

const ANCHOR: u32 = 0;
/// Latency classes: messages at the anchor, sessions' own copies.
const AT_ANCHOR: usize = 0;
const ECHO: usize = 1;

pub(crate) async fn run(ctx: &Ctx, a: &ChurnArgs) -> anyhow::Result<Report> {
    let n = a.sessions;
    let mut names = Vec::with_capacity(n + 1);
    names.push(ctx.name("anchor", 0));
    names.extend((1..=n).map(|i| ctx.name("c", i)));
    let shared = Arc::new(Shared::new(names, 2));
    let mut report = Report::new("churn");
    report.config("sessions", n);
    report.config("rate", a.rate);
    report.config("chat", a.chat);
    report.config("reset_percent", a.reset_percent);
    report.config("max_inflight", a.max_inflight);

    let logins = login_all(&shared, &ctx.net, [ANCHOR], ctx.login_options()).await?;
    let speaks_who = logins.welcomed > 0;
    report_logins(&mut report, &logins);
    let mut tasks = Tasks::default();
    let mut anchor_write = None;
    for client in logins.clients {
        let (read, write) = client.stream.into_split();
        tasks.reader(
            &shared,
            client.index,
            AT_ANCHOR,
            read,
            &client.leftover,
            BIG_READ,
        );
        anchor_write = Some(write);
    }
    let Some(mut anchor) = anchor_write else {
        anyhow::bail!("login barrier lost the anchor");
    };
    let bound = ctx.common.login_timeout;
    settle_presence(&ctx.net, &ctx.tag, 1, bound, &mut report).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let who_before = if speaks_who {
        who(&shared, &mut anchor).await
    } else {
        None
    };
    let cpu = ctx.cpu_meter();
    let mem = ctx.mem_sampler();
    let aux_mem = ctx.aux_sampler();

    // The sessions, started on schedule (or as soon as a slot frees).
    let began = Instant::now();
    let deadline = ctx.deadline(Duration::from_secs_f64(n as f64 / a.rate.max(1e-3) + 60.0));
    let slots = Arc::new(Semaphore::new(a.max_inflight.max(1)));
    let mut running = JoinSet::new();
    let mut outcome = Outcome::new();
    let mut progress = Progress::new("churn");
    let session_timeout = ctx.common.login_timeout.min(Duration::from_secs(10));
    for i in 1..=n as u32 {
        let due = began + Duration::from_secs_f64(f64::from(i - 1) / a.rate.max(1e-3));
        tokio::time::sleep_until(due.into()).await;
        let Ok(slot) = slots.clone().acquire_owned().await else {
            break;
        };
        if Instant::now() >= deadline {
            outcome.not_started = n - (i as usize - 1);
            break;
        }
        // Resets spread evenly: session i resets when i * percent / 100 steps.
        let pct = u64::from(a.reset_percent.min(100));
        let reset = u64::from(i) * pct / 100 != u64::from(i - 1) * pct / 100;
        let (shared, net, chat) = (shared.clone(), ctx.net.clone(), a.chat);
        running.spawn(async move {
            let _slot = slot;
            let r =
                tokio::time::timeout(session_timeout, session(&shared, &net, i, chat, reset)).await;
            r.unwrap_or_else(|_| {
                Err(format!(
                    "{}: session not done within {session_timeout:?}",
                    shared.names[i as usize]
                ))
            })
        });
        while let Some(done) = running.try_join_next() {
            outcome.add(done);
        }
        progress.show(|| outcome.progress(i as usize, n, began, running.len()));
    }
    while let Some(done) = running.join_next().await {
        outcome.add(done);
        progress.show(|| outcome.progress(n, n, began, running.len()));
    }
    progress.finish();
    let churn_elapsed = began.elapsed();

    // The anchor's copies, then the server's bookkeeping, settle.
    let to_anchor = outcome.sent;
    let waited = wait_for(
        "churn: anchor",
        &shared,
        to_anchor,
        deadline.max(Instant::now() + Duration::from_secs(5)),
        ctx.common.stall,
        || shared.delivered(AT_ANCHOR),
    )
    .await;
    let who_after = if speaks_who {
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            let count = who(&shared, &mut anchor).await;
            if count == who_before || Instant::now() >= until {
                break count;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    } else {
        tokio::time::sleep(Duration::from_secs(1)).await;
        None
    };
    // Idle for a while, so "after" is what the server keeps, not what its
    // allocator has yet to give back.
    tokio::time::sleep(a.settle).await;
    let memory = ctx.mem_report(&mut report, "memory", mem);
    ctx.aux_report(&mut report, "aux_memory", aux_mem);
    report_cpu(&mut report, &cpu);

    // A sample of the churned names must be free again.
    let sample: Vec<u32> = (0..a.verify_names.min(n))
        .map(|k| 1 + (k * n / a.verify_names.min(n).max(1)) as u32)
        .collect();
    let verify = LoginOptions {
        timeout: Duration::from_secs(10),
        ..ctx.login_options()
    };
    let elsewhere = ctx.net.rotated(1);
    let relogins = login_some(&shared, &elsewhere, sample.iter().copied(), verify).await;
    drop(relogins.clients);
    let _ = tasks.finish().await;
    drop(anchor);

    let done = outcome.ok + outcome.failed;
    report.line(format!(
        "  {} sessions ({} by reset) in {:.2}s = {:.0}/s (asked {}/s); {} failed, {} not started",
        fmt_count(done as u64),
        fmt_count(outcome.resets as u64),
        churn_elapsed.as_secs_f64(),
        done as f64 / churn_elapsed.as_secs_f64().max(1e-9),
        a.rate,
        outcome.failed,
        outcome.not_started
    ));
    report.line(format!(
        "  session login latency: {}",
        latency_line(&outcome.login)
    ));
    report.result(
        "sessions",
        json!({"done": done, "ok": outcome.ok, "failed": outcome.failed, "resets": outcome.resets,
               "not_started": outcome.not_started, "seconds": churn_elapsed.as_secs_f64(),
               "per_s": done as f64 / churn_elapsed.as_secs_f64().max(1e-9),
               "login_latency": latency_json(&outcome.login)}),
    );
    report_traffic(&mut report, &shared, AT_ANCHOR, "anchor", churn_elapsed);
    report_traffic(&mut report, &shared, ECHO, "own_copies", churn_elapsed);
    report.line(format!(
        "  names online: {} before, {} after (/who); {} of {} churned names still registered (re-login check)",
        who_before.map_or("?".to_string(), |c| c.to_string()),
        who_after.map_or("?".to_string(), |c| c.to_string()),
        relogins.failed,
        sample.len()
    ));
    report.result(
        "names",
        json!({"who_before": who_before, "who_after": who_after, "checked": sample.len(),
               "still_registered": relogins.failed, "examples": relogins.failures}),
    );
    counts(&mut report, &shared, false, false);

    if let Some(m) = memory {
        let ratio = m.last as f64 / m.first.max(1) as f64;
        report.result("memory_after_over_before", ratio);
        report.target(
            "memory back within 10%",
            Some(ratio <= 1.10),
            format!(
                "after/before {ratio:.3} ({} -> {})",
                fmt_mib(m.first as i64),
                fmt_mib(m.last as i64)
            ),
        );
    } else {
        report.target("memory back within 10%", None, "give --server-pid".into());
    }
    report.target(
        "no name left registered",
        Some(relogins.failed == 0 && who_after == who_before),
        format!(
            "{} of {} sampled names still taken",
            relogins.failed,
            sample.len()
        ),
    );
    if outcome.failed > 0 || outcome.not_started > 0 {
        report.fail(format!(
            "{} sessions failed, {} not started; e.g. {}",
            outcome.failed,
            outcome.not_started,
            outcome.failures.join("; ")
        ));
    }
    if let Err(why) = waited {
        report.fail(why);
    }
    if relogins.failed > 0 {
        report.fail(format!(
            "{} churned names still registered: {}",
            relogins.failed,
            relogins.failures.join("; ")
        ));
    }
    Ok(report)
}

/// The sessions' results so far.
struct Outcome {
    ok: usize,
    failed: usize,
    not_started: usize,
    resets: usize,
    /// Messages the sessions sent (each also to the anchor).
    sent: u64,
    login: hdrhistogram::Histogram<u64>,
    failures: Vec<String>,
}

impl Outcome {
    fn new() -> Self {
        Outcome {
            ok: 0,
            failed: 0,
            not_started: 0,
            resets: 0,
            sent: 0,
            login: new_histogram(),
            failures: Vec::new(),
        }
    }

    fn add(&mut self, joined: Result<Result<Session, String>, tokio::task::JoinError>) {
        match joined {
            Ok(Ok(s)) => {
                self.ok += 1;
                self.resets += usize::from(s.reset);
                self.sent += s.sent;
                self.login.saturating_record(duration_ns(s.login).max(1));
            }
            Ok(Err(why)) => {
                self.failed += 1;
                if self.failures.len() < 3 {
                    self.failures.push(why);
                }
            }
            Err(e) => {
                self.failed += 1;
                if self.failures.len() < 3 {
                    self.failures.push(format!("session task: {e}"));
                }
            }
        }
    }

    fn progress(&self, started: usize, n: usize, began: Instant, running: usize) -> String {
        format!(
            "{started}/{n} started, {} done ({:.0}/s), {running} running, {} failed",
            self.ok + self.failed,
            (self.ok + self.failed) as f64 / began.elapsed().as_secs_f64().max(1e-9),
            self.failed
        )
    }
}

/// What one session did.
struct Session {
    login: Duration,
    sent: u64,
    reset: bool,
}

/// One session: log in, send `chat` messages to the anchor and to itself,
/// read its own copies, leave.
async fn session(
    shared: &Arc<Shared>,
    net: &Net,
    i: u32,
    chat: u64,
    reset: bool,
) -> Result<Session, String> {
    let (client, login, _) = login_one(shared, net, i, None).await?;
    let me = shared.names[i as usize].as_str();
    let mut stream = client.stream;
    let prefix = format!("{}, {me}: ", shared.names[ANCHOR as usize]);
    let mut out = Vec::with_capacity(64 * chat as usize);
    let sent_ns = shared.now_ns();
    for seq in 0..chat {
        push_message(
            &mut out,
            prefix.as_bytes(),
            Payload {
                sender: i,
                seq,
                sent_ns,
            },
            0,
        );
    }
    stream
        .write_all(&out)
        .await
        .map_err(|e| format!("{me}: write failed: {e}"))?;
    let mut reader = LineReader::new(1024, &client.leftover);
    let mut got = 0;
    let mut latencies = Vec::new();
    while got < chat {
        match reader.fill(&mut stream).await {
            Ok(0) => return Err(format!("{me}: the server closed the connection")),
            Ok(_) => {}
            Err(e) => return Err(format!("{me}: {e}")),
        }
        let now = shared.now_ns();
        while let Some(line) = reader.next_line() {
            match classify(line) {
                Line::From { name, text } if name == me.as_bytes() => {
                    if let Some(p) = parse_payload(text) {
                        if p.seq != got {
                            shared.counts.order_violations.fetch_add(1, Relaxed);
                        }
                        latencies.push(now.saturating_sub(p.sent_ns));
                        got += 1;
                    }
                }
                Line::Error(text) => {
                    shared.counts.error_lines.fetch_add(1, Relaxed);
                    shared.note(|| format!("{me} got: error: {}", String::from_utf8_lossy(text)));
                }
                _ => {}
            }
        }
    }
    shared.record(ECHO, &latencies);
    if reset {
        let _ = stream.set_zero_linger();
    }
    drop(stream);
    Ok(Session {
        login,
        sent: chat,
        reset,
    })
}

/// Asks `/who` on the anchor and reads the count its reader saw.
async fn who(shared: &Shared, anchor: &mut OwnedWriteHalf) -> Option<u64> {
    shared.who.store(u64::MAX, Relaxed);
    anchor.write_all(b"/who\n").await.ok()?;
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        let n = shared.who.load(Relaxed);
        if n != u64::MAX {
            return Some(n);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    None
}
