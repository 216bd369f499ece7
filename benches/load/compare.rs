//! `compare`: starts server a and server b (each from a command with
//! `{port}` replaced by a free port), runs the same scenario against each
//! in turn (a, b, a, b, ...: alternating spreads the machine's drift over
//! both), killing each server after its run, then prints every numeric
//! result per run, the medians, and the ratio of the medians (a/b).
//! Because it started the servers it knows their pids, so memory and CPU
//! figures are always there.
//!
//! A command runs as `sh -c 'exec env <command>'`: leading `VAR=value`
//! assignments work, and the pid is the server's own. `relay` is short for
//! this binary's built-in relay.

use std::fs::File;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Map, Value, json};

use crate::args::CompareArgs;
use crate::report::Report;
use crate::run_scenario;

/// Per side, per run: the numeric results as `(path, value)`, or `None`
/// for a failed run.
type Flat = Vec<Vec<Option<Vec<(String, f64)>>>>;

/// A server started for one run.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    /// Starts `template` on a free port, output to `log`, and waits until
    /// it accepts connections.
    fn start(template: &str, log: &std::path::Path, timeout: Duration) -> anyhow::Result<Self> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .context("finding a free port")?
            .port();
        let command = if template.trim() == "relay" {
            let me = std::env::current_exe().context("finding this binary")?;
            format!("'{}' relay --bind 127.0.0.1:{port}", me.display())
        } else if template.contains("{port}") {
            template.replace("{port}", &port.to_string())
        } else {
            bail!("the server command must contain {{port}}: {template}");
        };
        let out = File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone()?;
        let child = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("exec env {command}"))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting {command}"))?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut server = Server { child, addr };
        let until = Instant::now() + timeout;
        loop {
            if let Some(status) = server.child.try_wait()? {
                bail!(
                    "{command} exited ({status}) before accepting; see {}",
                    log.display()
                );
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                // Let the server see that probe connection go.
                std::thread::sleep(Duration::from_millis(100));
                return Ok(server);
            }
            if Instant::now() >= until {
                server.stop();
                bail!(
                    "{command} did not accept connections within {timeout:?}; see {}",
                    log.display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it is still running.
    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

pub(crate) fn run(c: &CompareArgs) -> anyhow::Result<bool> {
    std::fs::create_dir_all(&c.logs).with_context(|| format!("creating {}", c.logs.display()))?;
    let scenario = c.scenario.name();
    let servers = [("a", c.a.as_str()), ("b", c.b.as_str())];
    let mut results: [Vec<Option<Map<String, Value>>>; 2] = [Vec::new(), Vec::new()];
    let mut all_ok = true;
    let mut outcomes: [Vec<bool>; 2] = [Vec::new(), Vec::new()];
    for run in 1..=c.runs.max(1) {
        for (k, (label, command)) in servers.iter().enumerate() {
            let log = c.logs.join(format!("{scenario}-{label}-run{run}.log"));
            eprintln!(
                "compare: {scenario} run {run}/{}: {label} = {command}",
                c.runs
            );
            let report = match Server::start(command, &log, c.start_timeout) {
                Ok(mut server) => {
                    let mut report = run_scenario(
                        &c.scenario,
                        Some((server.addr, Some(server.pid()))),
                        Some(format!("{label} run {run}")),
                    );
                    if !server.alive() {
                        report.fail(format!(
                            "the server died during the run; see {}",
                            log.display()
                        ));
                    }
                    server.stop();
                    report
                }
                Err(e) => {
                    let mut report = Report::new(scenario);
                    report.label = Some(format!("{label} run {run}"));
                    report.fail(format!("{e:#}"));
                    report
                }
            };
            report.print();
            all_ok &= report.ok();
            // A failed run's figures still count (they are often the point),
            // unless it has none.
            results[k].push((!report.results.is_empty()).then(|| report.results.clone()));
            outcomes[k].push(report.ok());
            // Let TIME_WAIT sockets and the machine settle between runs.
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    summarize(c, scenario, &results, &outcomes);
    Ok(all_ok)
}

/// Prints the per-run figures, medians and ratios, and the JSON line.
fn summarize(
    c: &CompareArgs,
    scenario: &str,
    results: &[Vec<Option<Map<String, Value>>>; 2],
    outcomes: &[Vec<bool>; 2],
) {
    let mut keys: Vec<String> = Vec::new();
    let flat: Flat = results
        .iter()
        .map(|runs| {
            runs.iter()
                .map(|r| {
                    r.as_ref().map(|m| {
                        let mut out = Vec::new();
                        flatten("", &Value::Object(m.clone()), &mut out);
                        out
                    })
                })
                .collect()
        })
        .collect();
    for side in &flat {
        for (key, _) in side.iter().flatten().flatten() {
            if !keys.contains(key) {
                keys.push(key.clone());
            }
        }
    }
    println!("== compare {scenario}: a = {} ; b = {} ==", c.a, c.b);
    println!(
        "{:<40} {:>14} {:>14} {:>9}   runs a | runs b",
        "result", "median a", "median b", "a/b"
    );
    let mut medians = [Map::new(), Map::new()];
    let mut ratios = Map::new();
    for key in &keys {
        let values: Vec<Vec<f64>> = flat
            .iter()
            .map(|side| {
                side.iter()
                    .flatten()
                    .filter_map(|run| run.iter().find(|(k, _)| k == key).map(|(_, v)| *v))
                    .collect()
            })
            .collect();
        // Rows that say nothing (all zero, sample counts) stay in the JSON only.
        let quiet = key.ends_with(".count") || values.iter().flatten().all(|v| *v == 0.0);
        let m: Vec<Option<f64>> = values.iter().map(|v| median(v)).collect();
        let ratio = match (m[0], m[1]) {
            (Some(a), Some(b)) if b != 0.0 => Some(a / b),
            _ => None,
        };
        for (side, med) in m.iter().enumerate() {
            medians[side].insert(key.clone(), json!(med));
        }
        ratios.insert(key.clone(), json!(ratio));
        if quiet {
            continue;
        }
        let show = |v: Option<f64>| v.map_or("-".to_string(), short);
        let runs = |v: &[f64]| v.iter().map(|x| short(*x)).collect::<Vec<_>>().join(" ");
        println!(
            "{key:<40} {:>14} {:>14} {:>9}   {} | {}",
            show(m[0]),
            show(m[1]),
            ratio.map_or("-".to_string(), |r| format!("{r:.3}")),
            runs(&values[0]),
            runs(&values[1])
        );
    }
    let verdicts = |side: &[bool]| {
        side.iter()
            .map(|ok| if *ok { "ok" } else { "FAILED" })
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!(
        "{:<40} {:>40}   {} | {}",
        "run outcome",
        "",
        verdicts(&outcomes[0]),
        verdicts(&outcomes[1])
    );
    let failed: Vec<usize> = outcomes
        .iter()
        .map(|o| o.iter().filter(|ok| !**ok).count())
        .collect();
    if failed.iter().any(|&f| f > 0) {
        println!(
            "(failed runs count in the medians when they measured anything; their FAILED lines above say why)"
        );
    }
    let out = json!({
        "mode": "compare",
        "scenario": scenario,
        "runs": c.runs,
        "a": {"command": c.a, "median": medians[0], "failed_runs": failed[0]},
        "b": {"command": c.b, "median": medians[1], "failed_runs": failed[1]},
        "ratio_a_over_b": ratios,
    });
    println!("JSON {out}");
}

/// Numeric leaves of `value` as `path.to.leaf`, skipping example lists.
fn flatten(prefix: &str, value: &Value, out: &mut Vec<(String, f64)>) {
    match value {
        Value::Number(n) => {
            if let Some(x) = n.as_f64() {
                out.push((prefix.to_string(), x));
            }
        }
        Value::Object(map) => {
            for (k, v) in map {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&path, v, out);
            }
        }
        _ => {}
    }
}

fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    })
}

/// A number in a few characters.
fn short(x: f64) -> String {
    let a = x.abs();
    if a >= 1e9 {
        format!("{:.2}G", x / 1e9)
    } else if a >= 1e6 {
        format!("{:.2}M", x / 1e6)
    } else if a >= 1e4 {
        format!("{:.1}k", x / 1e3)
    } else if a >= 100.0 || x == x.trunc() {
        format!("{x:.0}")
    } else {
        format!("{x:.3}")
    }
}
