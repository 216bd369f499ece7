//! What a run prints: progress on standard error while it runs, then a
//! human summary and exactly one `JSON {...}` line on standard output
//! (`grep '^JSON '` finds it). The JSON line has `scenario`, `ok`,
//! `failures`, `config` (what was asked), `results` (what was measured:
//! compare mode takes its medians and ratios from here) and `targets`
//! (the goals, met or not).

use std::io::IsTerminal;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::{Map, Value, json};

use crate::state::Shared;

/// The summary of one scenario run.
pub(crate) struct Report {
    pub(crate) scenario: &'static str,
    /// Set in compare mode: which server, which run.
    pub(crate) label: Option<String>,
    human: Vec<String>,
    config: Map<String, Value>,
    pub(crate) results: Map<String, Value>,
    failures: Vec<String>,
    targets: Vec<Value>,
    target_lines: Vec<String>,
}

impl Report {
    pub(crate) fn new(scenario: &'static str) -> Self {
        Report {
            scenario,
            label: None,
            human: Vec::new(),
            config: Map::new(),
            results: Map::new(),
            failures: Vec::new(),
            targets: Vec::new(),
            target_lines: Vec::new(),
        }
    }

    /// A line of the human summary.
    pub(crate) fn line(&mut self, text: impl Into<String>) {
        self.human.push(text.into());
    }

    /// An input of the run.
    pub(crate) fn config(&mut self, key: &str, value: impl Into<Value>) {
        self.config.insert(key.to_string(), value.into());
    }

    /// A measurement.
    pub(crate) fn result(&mut self, key: &str, value: impl Into<Value>) {
        self.results.insert(key.to_string(), value.into());
    }

    /// Something expected did not happen: the run fails.
    pub(crate) fn fail(&mut self, why: impl Into<String>) {
        self.failures.push(why.into());
    }

    /// One of the goals; `--strict` turns a missed one into a failure.
    pub(crate) fn target(&mut self, name: &str, met: Option<bool>, detail: String) {
        let mark = match met {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "unknown",
        };
        self.target_lines
            .push(format!("  target {name}: {mark} ({detail})"));
        self.targets
            .push(json!({"name": name, "met": met, "detail": detail}));
    }

    /// Makes every missed target a failure.
    pub(crate) fn strict(&mut self) {
        let missed: Vec<String> = self
            .targets
            .iter()
            .filter(|t| t["met"] == json!(false))
            .map(|t| format!("target missed: {}", t["name"].as_str().unwrap_or("?")))
            .collect();
        self.failures.extend(missed);
    }

    pub(crate) fn ok(&self) -> bool {
        self.failures.is_empty()
    }

    /// Prints the summary and the JSON line.
    pub(crate) fn print(&self) {
        let title = match &self.label {
            Some(label) => format!("== {} [{label}] ==", self.scenario),
            None => format!("== {} ==", self.scenario),
        };
        println!("{title}");
        for line in self.human.iter().chain(&self.target_lines) {
            println!("{line}");
        }
        for why in &self.failures {
            println!("FAILED: {why}");
        }
        let mut out = json!({
            "scenario": self.scenario,
            "ok": self.ok(),
            "failures": self.failures,
            "config": self.config,
            "results": self.results,
            "targets": self.targets,
        });
        if let Some(label) = &self.label {
            out["label"] = json!(label);
        }
        println!("JSON {out}");
    }
}

/// Adds the anomaly counters to `report`, failing it for any that the
/// scenario does not allow.
pub(crate) fn counts(
    report: &mut Report,
    shared: &Shared,
    errors_allowed: bool,
    closes_allowed: bool,
) {
    let c = &shared.counts;
    let order = c.order_violations.load(Relaxed);
    let misattributed = c.misattributed.load(Relaxed);
    let unparsed = c.unparsed.load(Relaxed);
    let errors = c.error_lines.load(Relaxed);
    let closed = c.closed_by_server.load(Relaxed);
    report.result(
        "anomalies",
        json!({
            "order_violations": order,
            "misattributed": misattributed,
            "unparsed": unparsed,
            "error_lines": errors,
            "closed_by_server": closed,
            "server_lines": c.server_lines.load(Relaxed),
            "examples": shared.anomalies(),
        }),
    );
    report.line(format!(
        "  checks: {order} order violations, {misattributed} misattributed, {unparsed} unparsed, \
         {errors} error lines, {closed} connections closed by the server"
    ));
    for example in shared.anomalies() {
        report.line(format!("    e.g. {example}"));
    }
    if order > 0 {
        report.fail(format!("{order} messages out of order (see the examples)"));
    }
    if misattributed > 0 {
        report.fail(format!("{misattributed} messages with the wrong sender"));
    }
    if errors > 0 && !errors_allowed {
        report.fail(format!("{errors} unexpected error lines"));
    }
    if closed > 0 && !closes_allowed {
        report.fail(format!("the server closed {closed} connections"));
    }
}

/// A latency histogram (ns) as JSON, in microseconds.
pub(crate) fn latency_json(h: &Histogram<u64>) -> Value {
    if h.is_empty() {
        return json!({"count": 0});
    }
    let us = |ns: u64| (ns as f64 / 100.0).round() / 10.0;
    json!({
        "count": h.len(),
        "p50_us": us(h.value_at_quantile(0.5)),
        "p99_us": us(h.value_at_quantile(0.99)),
        "p999_us": us(h.value_at_quantile(0.999)),
        "max_us": us(h.max()),
        "mean_us": (h.mean() / 100.0).round() / 10.0,
    })
}

/// A latency histogram (ns) for people.
pub(crate) fn latency_line(h: &Histogram<u64>) -> String {
    if h.is_empty() {
        return "no samples".to_string();
    }
    format!(
        "p50 {}  p99 {}  p99.9 {}  max {}  ({} samples)",
        fmt_ns(h.value_at_quantile(0.5)),
        fmt_ns(h.value_at_quantile(0.99)),
        fmt_ns(h.value_at_quantile(0.999)),
        fmt_ns(h.max()),
        fmt_count(h.len())
    )
}

/// 1234 ns as `1.2 µs`, and so on.
pub(crate) fn fmt_ns(ns: u64) -> String {
    let ns = ns as f64;
    if ns < 1e3 {
        format!("{ns:.0} ns")
    } else if ns < 1e6 {
        format!("{:.1} µs", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.2} ms", ns / 1e6)
    } else {
        format!("{:.2} s", ns / 1e9)
    }
}

/// 1234567 as `1,234,567`.
pub(crate) fn fmt_count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Bytes as MiB with one decimal (signed: growth may be negative).
pub(crate) fn fmt_mib(bytes: i64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// A progress line on standard error, from the second second of a wait
/// on: every second on a terminal (rewriting one line), every five seconds
/// otherwise.
pub(crate) struct Progress {
    label: String,
    began: Instant,
    last: Option<Instant>,
    tty: bool,
}

impl Progress {
    pub(crate) fn new(label: &str) -> Self {
        Progress {
            label: label.to_string(),
            began: Instant::now(),
            last: None,
            tty: std::io::stderr().is_terminal(),
        }
    }

    /// Shows `text()` if it is time to.
    pub(crate) fn show(&mut self, text: impl FnOnce() -> String) {
        let elapsed = self.began.elapsed();
        let period = Duration::from_secs(if self.tty { 1 } else { 5 });
        let due = match self.last {
            None => elapsed >= Duration::from_secs(2),
            Some(at) => at.elapsed() >= period,
        };
        if !due {
            return;
        }
        self.last = Some(Instant::now());
        let line = format!("[{} {:.0}s] {}", self.label, elapsed.as_secs_f64(), text());
        if self.tty {
            eprint!("\r\x1b[K{line}");
        } else {
            eprintln!("{line}");
        }
    }

    /// Clears the progress line.
    pub(crate) fn finish(&mut self) {
        if self.tty && self.last.is_some() {
            eprint!("\r\x1b[K");
        }
        self.last = None;
    }
}
