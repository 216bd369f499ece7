//! `load`: achat's load generator ("the instrument").
//!
//! `cargo bench --bench load -- <scenario> [options]` drives any server
//! that speaks the tutorial protocol (achat, or the baseline, which sends
//! no `server:` lines) over TCP on this machine and measures it; `compare`
//! starts two servers and runs the same scenario against each in turn.
//! Every scenario prints a human summary and one `JSON {...}` line, and
//! exits non-zero when something expected was not delivered in time.
//! benches/README.md has the commands.
//!
//! The generator shares a 2-core machine with the server, so it is built
//! to be cheap: one current-thread tokio runtime by default, batched
//! writes, large reads cut with memchr, no allocation per message, the
//! shared state touched once per read.
//!
//! Map: `args` (command line), `lines` (wire format and payload), `net`
//! (connecting), `login` (the login barrier), `state` (what a run shares),
//! `traffic` (receive and send loops), `bystanders`, `sidethread`, `procfs` (memory and
//! CPU), `report` (output), `scenarios/` (one file each; `nonreaders`,
//! `broadcast`, `paced`, `who_batch`, `lists` and `whospam` are hostile
//! clients; `hold` and `crowd` are for a cluster), `compare`, `relay`.
//!
//! `--addr a,b,c` spreads the clients over a cluster's nodes, client i on
//! the (i mod n)-th; `--server-pid` then takes one pid per node.

mod args;
mod bystanders;
mod compare;
mod lines;
mod login;
mod net;
mod procfs;
mod relay;
mod report;
mod scenarios;
mod sidethread;
mod state;
mod traffic;

use std::ffi::OsString;
use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;

use crate::args::{Cli, Command, Scenario};
use crate::procfs::Pids;
use crate::report::Report;
use crate::scenarios::Ctx;

fn main() -> ExitCode {
    // cargo bench appends --bench; a bare `cargo bench` (all benches) must
    // not fail here.
    let args: Vec<OsString> = std::env::args_os().filter(|a| a != "--bench").collect();
    if args.len() <= 1 {
        println!("load: no scenario given, nothing to do (cargo bench --bench load -- --help)");
        return ExitCode::SUCCESS;
    }
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match run(cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("load: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<bool> {
    if let Err(e) = net::raise_fd_limit() {
        eprintln!("load: warning: {e:#}");
    }
    match cli.command {
        Command::Scenario(scenario) => {
            let report = run_scenario(&scenario, None, None);
            report.print();
            Ok(report.ok())
        }
        Command::Compare(c) => compare::run(&c),
        Command::Relay(r) => relay::run(&r).map(|()| true),
    }
}

/// Runs `scenario` once on a fresh runtime, against `target` (address and
/// pid) or the scenario's own `--addr` and `--server-pid`. A run that could
/// not even start (login refused, say) is a failed report.
pub(crate) fn run_scenario(
    scenario: &Scenario,
    target: Option<(SocketAddr, Option<u32>)>,
    label: Option<String>,
) -> Report {
    let mut report = match try_scenario(scenario, target) {
        Ok(report) => report,
        Err(e) => {
            let mut report = Report::new(scenario.name());
            report.fail(format!("{e:#}"));
            report
        }
    };
    if scenario.common().strict {
        report.strict();
    }
    report.label = label;
    report
}

fn try_scenario(
    scenario: &Scenario,
    target: Option<(SocketAddr, Option<u32>)>,
) -> anyhow::Result<Report> {
    let common = scenario.common();
    let (addrs, pids) = match target {
        Some((addr, pid)) => (vec![addr], Pids::new(pid.into_iter().collect())),
        None => (
            net::resolve_all(&common.addr)?,
            Pids::new(common.server_pid.clone()),
        ),
    };
    let sources = common.sources.unwrap_or_else(|| scenario.default_sources());
    let ctx = Ctx {
        net: net::Net::new(addrs, sources)?,
        pids,
        aux: Pids::new(common.aux_pid.clone()),
        common: common.clone(),
        tag: common.tag.clone().unwrap_or_else(random_tag),
    };
    let runtime = if common.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(common.threads)
            .enable_all()
            .build()?
    };
    let work = async {
        match scenario {
            Scenario::Ring(a) => scenarios::ring::run(&ctx, a).await,
            Scenario::Fanout(a) => scenarios::fanout::run(&ctx, a).await,
            Scenario::Conns(a) => scenarios::conns::run(&ctx, a).await,
            Scenario::Slow(a) => scenarios::slow::run(&ctx, a).await,
            Scenario::Flood(a) => scenarios::flood::run(&ctx, a).await,
            Scenario::Churn(a) => scenarios::churn::run(&ctx, a).await,
            Scenario::Nonreaders(a) => scenarios::nonreaders::run(&ctx, a).await,
            Scenario::Broadcast(a) => scenarios::broadcast::run(&ctx, a).await,
            Scenario::Paced(a) => scenarios::paced::run(&ctx, a).await,
            Scenario::WhoBatch(a) => scenarios::who_batch::run(&ctx, a).await,
            Scenario::Lists(a) => scenarios::lists::run(&ctx, a).await,
            Scenario::Whospam(a) => scenarios::whospam::run(&ctx, a).await,
            Scenario::Hold(a) => scenarios::hold::run(&ctx, a).await,
            Scenario::Crowd(a) => scenarios::crowd::run(&ctx, a).await,
        }
    };
    let outcome = match scenario.run_bound() {
        Some(bound) => runtime.block_on(async {
            tokio::time::timeout(bound, work).await.unwrap_or_else(|_| {
                Err(anyhow::anyhow!(
                    "the run did not end within its bound of {bound:?}; abandoned"
                ))
            })
        }),
        None => runtime.block_on(work),
    };
    // An abandoned run may leave threads behind (bystanders waiting on a
    // server that does not answer): do not wait for them.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    let mut report = outcome?;
    let addrs: Vec<String> = ctx.net.addrs().iter().map(|a| a.to_string()).collect();
    report.config("server", addrs.join(","));
    report.config("server_pid", ctx.pids.json());
    if !ctx.aux.is_empty() {
        report.config("aux_pid", ctx.aux.json());
    }
    report.config("generator_threads", common.threads);
    report.config("sources", sources);
    Ok(report)
}

/// Four base-36 characters from the clock and the pid.
fn random_tag() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() as u64 ^ d.as_secs());
    let mut x =
        (nanos ^ (u64::from(std::process::id()) << 20)).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 20;
    let mut tag = String::new();
    for _ in 0..4 {
        let d = (x % 36) as u32;
        tag.push(char::from_digit(d, 36).unwrap_or('x'));
        x /= 36;
    }
    tag
}
