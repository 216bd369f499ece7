//! `hold`: one process's share of a crowd too large for one process's
//! descriptors. Logs in C idle connections (names `<role><i>-<tag>`),
//! prints `READY <C>` on standard output, and then holds them until its
//! standard input ends (or `--max-hold`). Each connection echoes every
//! message it receives back to its sender (`from x: text` is answered
//! with `x: text`), so another process (`crowd`) can probe random users
//! and see every probe come back. Reports how many connections the server
//! closed meanwhile (the run fails if any) and how many lines were echoed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use crate::args::HoldArgs;
use crate::lines::{Line, LineReader, classify};
use crate::report::{Report, fmt_count};
use crate::scenarios::{Ctx, report_logins};
use crate::state::Shared;

/// The standard-output line that says every connection is logged in.
pub(crate) const READY: &str = "READY";

/// What the held connections saw.
#[derive(Default)]
struct Held {
    /// Lines echoed back to their senders.
    echoed: AtomicU64,
    /// `error:` lines received (an echo to someone offline, say).
    errors: AtomicU64,
    /// Connections that ended while held (closed by the server, reset).
    ended: AtomicU64,
}

pub(crate) async fn run(ctx: &Ctx, a: &HoldArgs) -> anyhow::Result<Report> {
    let c = a.conns;
    let names: Vec<String> = (0..c).map(|i| ctx.name(&a.role, i)).collect();
    let shared = Arc::new(Shared::new(names, 1));
    let mut report = Report::new("hold");
    report.config("conns", c);
    report.config("role", a.role.clone());
    report.config("tag", ctx.tag.clone());

    let options = ctx.login_options_for(c);
    let logins = crate::login::login_all(&shared, &ctx.net, 0..c as u32, options).await?;
    report_logins(&mut report, &logins);

    let held = Arc::new(Held::default());
    let mut tasks = JoinSet::new();
    for client in logins.clients {
        tasks.spawn(echo(client.stream, client.leftover, held.clone()));
    }
    println!("{READY} {c}");
    let began = Instant::now();
    // Until standard input ends (the parent closes it), or the bound.
    let stdin_ends = async {
        let mut stdin = tokio::io::stdin();
        let mut buf = [0u8; 256];
        while let Ok(n) = stdin.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    };
    let bounded = tokio::time::timeout(a.max_hold, stdin_ends).await.is_err();
    let ended = held.ended.load(Relaxed);
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}

    let echoed = held.echoed.load(Relaxed);
    let errors = held.errors.load(Relaxed);
    report.line(format!(
        "  held {} connections for {:.1}s{}: {} lines echoed, {errors} error lines, {ended} connections ended while held",
        fmt_count(c as u64),
        began.elapsed().as_secs_f64(),
        if bounded { " (until --max-hold)" } else { "" },
        fmt_count(echoed)
    ));
    report.result(
        "held",
        json!({"conns": c, "seconds": began.elapsed().as_secs_f64(), "echoed": echoed,
               "error_lines": errors, "ended": ended, "until_max_hold": bounded}),
    );
    if ended > 0 {
        report.fail(format!("{ended} held connections ended while held"));
    }
    if errors > 0 {
        report.fail(format!("{errors} error lines on held connections"));
    }
    Ok(report)
}

/// Echoes every message on `stream` back to its sender until the
/// connection ends (counted in `held.ended`) or the task is aborted.
async fn echo(stream: TcpStream, leftover: Vec<u8>, held: Arc<Held>) {
    let (mut read, mut write) = stream.into_split();
    let mut reader = LineReader::new(512, &leftover);
    let mut out = Vec::new();
    loop {
        let mut lines = 0;
        while let Some(line) = reader.next_line() {
            match classify(line) {
                Line::From { name, text } => {
                    out.extend_from_slice(name);
                    out.extend_from_slice(b": ");
                    out.extend_from_slice(text);
                    out.push(b'\n');
                    lines += 1;
                }
                Line::Error(_) => {
                    held.errors.fetch_add(1, Relaxed);
                }
                _ => {}
            }
        }
        if !out.is_empty() {
            if write.write_all(&out).await.is_err() {
                held.ended.fetch_add(1, Relaxed);
                return;
            }
            held.echoed.fetch_add(lines, Relaxed);
            out.clear();
        }
        match reader.fill(&mut read).await {
            Ok(n) if n > 0 => {}
            _ => {
                held.ended.fetch_add(1, Relaxed);
                return;
            }
        }
    }
}
