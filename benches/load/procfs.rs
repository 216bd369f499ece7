//! Reading a process from `/proc`: the server's resident memory (VmRSS in
//! `/proc/<pid>/status`, summed over a cluster's nodes), the CPU time of
//! the server, of each of its threads, of the processes it depends on
//! (NATS), and of the generator itself (`/proc/<pid>/stat`, so one can
//! tell whether the generator was the bottleneck), and the kernel's memory
//! for TCP (`/proc/net/sockstat`). A sampler polls VmRSS or the TCP memory
//! every 100 ms so a scenario reports the peak, not only the end.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::task::JoinHandle;

/// Clock ticks per second of `/proc/<pid>/stat` times (USER_HZ, 100 on
/// Linux everywhere that matters).
const TICKS_PER_SECOND: f64 = 100.0;

/// VmRSS of `pid`, in bytes.
pub(crate) fn vm_rss(pid: u32) -> std::io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map(|kb| kb * 1024)
        .ok_or_else(|| std::io::Error::other(format!("no VmRSS in /proc/{pid}/status")))
}

/// User plus system CPU seconds of `pid` (`None`: this process).
pub(crate) fn cpu_seconds(pid: Option<u32>) -> Option<f64> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_string(),
    };
    stat_cpu_seconds(&path)
}

/// CPU seconds so far of each thread of `pid`: `(tid, name, seconds)`.
pub(crate) fn thread_cpu(pid: u32) -> Vec<(u32, String, f64)> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|task| {
            let tid: u32 = task.file_name().to_str()?.parse().ok()?;
            let dir = task.path();
            let name = std::fs::read_to_string(dir.join("comm")).ok()?;
            let secs = stat_cpu_seconds(dir.join("stat").to_str()?)?;
            Some((tid, name.trim().to_string(), secs))
        })
        .collect()
}

/// User plus system CPU seconds in a `stat` file of `/proc`.
fn stat_cpu_seconds(path: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(path).ok()?;
    // The command name (field 2) may hold spaces; fields after it are plain.
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / TICKS_PER_SECOND)
}

/// Busy CPU seconds of the whole machine so far (all cores: the first
/// line of `/proc/stat`, less idle and iowait).
pub(crate) fn machine_busy_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu = stat.lines().next()?.strip_prefix("cpu ")?;
    let ticks: Vec<f64> = cpu
        .split_whitespace()
        .filter_map(|t| t.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is in user).
    let total: f64 = ticks.iter().take(8).sum();
    let idle = ticks.get(3)? + ticks.get(4)?;
    Some((total - idle) / TICKS_PER_SECOND)
}

/// The processes of a server: one, or one per node of a cluster
/// (`--server-pid a,b,c`); or the processes it depends on (`--aux-pid`:
/// a cluster's NATS servers). Their memory and CPU are reported as sums.
#[derive(Clone, Debug, Default)]
pub(crate) struct Pids(Vec<u32>);

impl Pids {
    pub(crate) fn new(pids: Vec<u32>) -> Self {
        Pids(pids)
    }

    pub(crate) fn list(&self) -> &[u32] {
        &self.0
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The pid, when there is exactly one.
    pub(crate) fn single(&self) -> Option<u32> {
        match self.0[..] {
            [pid] => Some(pid),
            _ => None,
        }
    }

    /// The sum of their VmRSS (`None`: no pid given).
    pub(crate) fn vm_rss(&self) -> Option<std::io::Result<u64>> {
        (!self.0.is_empty()).then(|| self.0.iter().map(|&pid| vm_rss(pid)).sum())
    }

    /// For a report's config: the pid, a list of them, or null.
    pub(crate) fn json(&self) -> Value {
        match self.0[..] {
            [] => Value::Null,
            [pid] => json!(pid),
            _ => json!(self.0),
        }
    }

    fn cpu_each(&self) -> Vec<Option<f64>> {
        self.0.iter().map(|&pid| cpu_seconds(Some(pid))).collect()
    }
}

/// CPU each process of `pids` used since `before`, and their sum (`None`
/// if any is unknown, or there are none).
fn cpu_since(pids: &Pids, before: &[Option<f64>]) -> (Vec<Option<f64>>, Option<f64>) {
    let each: Vec<Option<f64>> = pids
        .cpu_each()
        .into_iter()
        .zip(before)
        .map(|(now, then)| now.zip(*then).map(|(b, a)| b - a))
        .collect();
    let sum = if each.is_empty() {
        None
    } else {
        each.iter().copied().sum()
    };
    (each, sum)
}

/// CPU used by the generator, the server (summed over its processes) and
/// the whole machine over a stretch of time, and by the processes the
/// server depends on when given. The machine is shared: what none of them
/// used ("others", including the kernel's network work done outside their
/// system calls) says whether a run was disturbed.
pub(crate) struct CpuMeter {
    server: Pids,
    aux: Pids,
    own0: Option<f64>,
    server0: Vec<Option<f64>>,
    aux0: Vec<Option<f64>>,
    machine0: Option<f64>,
    began: std::time::Instant,
}

impl CpuMeter {
    pub(crate) fn start(server: &Pids, aux: &Pids) -> Self {
        CpuMeter {
            own0: cpu_seconds(None),
            server0: server.cpu_each(),
            aux0: aux.cpu_each(),
            server: server.clone(),
            aux: aux.clone(),
            machine0: machine_busy_seconds(),
            began: std::time::Instant::now(),
        }
    }

    /// `{generator_cpu_s, generator_cores, server_cpu_s, server_cores, ...}`:
    /// seconds of CPU, and that divided by the wall time; with several
    /// server processes also each one's cores, with aux processes theirs.
    pub(crate) fn stop(&self) -> (Value, String) {
        let wall = self.began.elapsed().as_secs_f64().max(1e-9);
        let own = cpu_seconds(None).zip(self.own0).map(|(b, a)| b - a);
        let (server_each, server) = cpu_since(&self.server, &self.server0);
        let (aux_each, aux) = cpu_since(&self.aux, &self.aux0);
        let machine = machine_busy_seconds()
            .zip(self.machine0)
            .map(|(b, a)| b - a);
        let others = machine.map(|m| {
            (m - own.unwrap_or(0.0) - server.unwrap_or(0.0) - aux.unwrap_or(0.0)).max(0.0)
        });
        let fmt = |cpu: Option<f64>| match cpu {
            Some(s) => format!("{s:.2} s ({:.2} cores)", s / wall),
            None => "unknown".to_string(),
        };
        let cores = |each: &[Option<f64>]| -> Vec<Option<f64>> {
            each.iter().map(|s| s.map(|s| s / wall)).collect()
        };
        let fmt_each = |each: &[Option<f64>]| {
            let list: Vec<String> = each
                .iter()
                .map(|s| s.map_or("?".into(), |s| format!("{:.2}", s / wall)))
                .collect();
            format!(" (each: {} cores)", list.join(", "))
        };
        let mut human = format!("  cpu: generator {}, server {}", fmt(own), fmt(server));
        if server_each.len() > 1 {
            human.push_str(&fmt_each(&server_each));
        }
        if !aux_each.is_empty() {
            human.push_str(&format!(", aux processes {}", fmt(aux)));
            human.push_str(&fmt_each(&aux_each));
        }
        human.push_str(&format!(", everything else on the machine {}", fmt(others)));
        let mut value = json!({
            "wall_s": wall,
            "generator_cpu_s": own,
            "generator_cores": own.map(|s| s / wall),
            "server_cpu_s": server,
            "server_cores": server.map(|s| s / wall),
            "others_cores": others.map(|s| s / wall),
        });
        if server_each.len() > 1 {
            value["server_cores_each"] = json!(cores(&server_each));
        }
        if !aux_each.is_empty() {
            value["aux_cpu_s"] = json!(aux);
            value["aux_cores"] = json!(aux.map(|s| s / wall));
            value["aux_cores_each"] = json!(cores(&aux_each));
        }
        (value, human)
    }
}

/// Kernel memory held by all TCP sockets of the machine, in bytes: the
/// `mem` field (pages) of `/proc/net/sockstat`'s `TCP:` line, times the
/// page size. System-wide: the generator's sockets count too (a client
/// that does not read holds its unread bytes in its receive queue).
pub(crate) fn tcp_kernel_bytes() -> std::io::Result<u64> {
    let sockstat = std::fs::read_to_string("/proc/net/sockstat")?;
    let pages = sockstat
        .lines()
        .find_map(|line| line.strip_prefix("TCP:"))
        .and_then(|rest| {
            let mut words = rest.split_whitespace();
            while let Some(word) = words.next() {
                if word == "mem" {
                    return words.next()?.parse::<u64>().ok();
                }
            }
            None
        })
        .ok_or_else(|| std::io::Error::other("no TCP mem in /proc/net/sockstat"))?;
    Ok(pages * page_size())
}

/// Kernel memory held by the TCP sockets whose local port is `port` (the
/// server's own, on the server's side of each connection), in bytes: the
/// sum of `skmem`'s `r` (receive queue), `w` (send queue) and `f` (memory
/// reserved ahead) over `ss -tmnHa '( sport = :PORT )'` (iproute2). The
/// figure `/proc/net/sockstat` gives counts the clients' sockets as well,
/// and an attacker's unread receive queues are on the attacker's side.
pub(crate) fn server_socket_bytes(port: u16) -> std::io::Result<u64> {
    let out = std::process::Command::new("ss")
        .args(["-tmnHa", &format!("( sport = :{port} )")])
        .stderr(std::process::Stdio::null())
        .output()?;
    if !out.status.success() {
        return Err(std::io::Error::other("ss failed"));
    }
    Ok(sum_skmem(&String::from_utf8_lossy(&out.stdout)))
}

/// Sums `r`, `w` and `f` of every `skmem:(...)` in `ss -m` output.
fn sum_skmem(text: &str) -> u64 {
    let socket = |skmem: &str| -> u64 {
        let fields = skmem.split(')').next().unwrap_or("");
        fields
            .split(',')
            .filter_map(|field| {
                let (key, value) = field.split_at(field.find(|c: char| c.is_ascii_digit())?);
                let counted = matches!(key, "r" | "w" | "f");
                counted.then(|| value.parse::<u64>().ok()).flatten()
            })
            .sum()
    };
    text.split("skmem:(").skip(1).map(socket).sum()
}

/// The kernel's page size (`/proc/net/sockstat` counts in pages): the
/// `AT_PAGESZ` entry of this process's auxiliary vector (pairs of native
/// words), 4096 if it cannot be read.
fn page_size() -> u64 {
    const AT_PAGESZ: u64 = 6;
    let Ok(auxv) = std::fs::read("/proc/self/auxv") else {
        return 4096;
    };
    auxv.chunks_exact(16)
        .find_map(|entry| {
            let word = |at: usize| {
                let mut b = [0u8; 8];
                b.copy_from_slice(&entry[at..at + 8]);
                u64::from_ne_bytes(b)
            };
            (word(0) == AT_PAGESZ).then(|| word(8))
        })
        .unwrap_or(4096)
}

/// The CPU each thread of a process used over a stretch of time (which
/// server worker did the work).
pub(crate) struct ThreadMeter {
    pid: u32,
    began: std::time::Instant,
    before: Vec<(u32, String, f64)>,
}

impl ThreadMeter {
    pub(crate) fn start(pid: Option<u32>) -> Option<Self> {
        let pid = pid?;
        Some(ThreadMeter {
            pid,
            began: std::time::Instant::now(),
            before: thread_cpu(pid),
        })
    }

    /// `(thread name and id, cores)` of each thread, busiest first.
    pub(crate) fn stop(&self) -> Vec<(String, f64)> {
        let wall = self.began.elapsed().as_secs_f64().max(1e-9);
        let mut used: Vec<(String, f64)> = thread_cpu(self.pid)
            .into_iter()
            .map(|(tid, name, secs)| {
                let before = self
                    .before
                    .iter()
                    .find(|(t, _, _)| *t == tid)
                    .map_or(0.0, |(_, _, s)| *s);
                (format!("{name} ({tid})"), (secs - before) / wall)
            })
            .collect();
        used.sort_by(|a, b| b.1.total_cmp(&a.1));
        used
    }
}

/// Figures of one quantity (bytes) sampled over a stretch of time.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct MemStats {
    pub(crate) first: u64,
    pub(crate) peak: u64,
    pub(crate) last: u64,
    pub(crate) samples: u64,
}

impl MemStats {
    fn add(&mut self, value: u64) {
        self.peak = self.peak.max(value);
        self.last = value;
        self.samples += 1;
    }
}

/// What a sampler reads: a process's VmRSS, or the kernel's TCP memory.
type Probe = Arc<dyn Fn() -> std::io::Result<u64> + Send + Sync>;

/// Polls a quantity (a process's VmRSS, the kernel's TCP memory) every
/// 100 ms (plus the time a sample takes).
pub(crate) struct MemSampler {
    stats: Arc<Mutex<MemStats>>,
    probe: Probe,
    task: JoinHandle<()>,
}

impl MemSampler {
    /// Starts sampling the sum of `pids`' VmRSS (takes the first sample
    /// at once).
    pub(crate) fn processes(pids: &Pids) -> std::io::Result<Self> {
        let pids = pids.clone();
        Self::sample(Arc::new(move || {
            pids.vm_rss()
                .unwrap_or_else(|| Err(std::io::Error::other("no pid")))
        }))
    }

    /// Starts sampling the kernel's TCP memory, machine-wide.
    pub(crate) fn tcp_kernel() -> std::io::Result<Self> {
        Self::sample(Arc::new(tcp_kernel_bytes))
    }

    /// Starts sampling the kernel memory of the sockets on local `port`.
    pub(crate) fn server_sockets(port: u16) -> std::io::Result<Self> {
        Self::sample(Arc::new(move || server_socket_bytes(port)))
    }

    fn sample(probe: Probe) -> std::io::Result<Self> {
        let first = probe()?;
        let stats = Arc::new(Mutex::new(MemStats {
            first,
            peak: first,
            last: first,
            samples: 1,
        }));
        let (shared, polled) = (stats.clone(), probe.clone());
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                // Off the runtime's threads: a probe may run a command.
                let probe = polled.clone();
                let Ok(Ok(value)) = tokio::task::spawn_blocking(move || probe()).await else {
                    return;
                };
                if let Ok(mut s) = shared.lock() {
                    s.add(value);
                }
            }
        });
        Ok(MemSampler { stats, probe, task })
    }

    /// The figures so far.
    pub(crate) fn peek(&self) -> MemStats {
        self.stats.lock().map(|s| *s).unwrap_or_default()
    }

    /// Stops sampling, with one last sample.
    pub(crate) fn stop(self) -> MemStats {
        self.task.abort();
        let mut stats = self.peek();
        if let Ok(value) = (self.probe)() {
            stats.add(value);
        }
        stats
    }
}
