//! The command line: one subcommand per scenario (each with the common
//! options), `compare` (which takes a scenario as its own subcommand) and
//! `relay` (a minimal reference server).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

mod cluster;
mod hostile;

pub(crate) use cluster::{CrowdArgs, HoldArgs};
pub(crate) use hostile::{
    ATTACK, AttackArgs, BroadcastArgs, ListsArgs, NONREADERS_ATTACK, NonreadersArgs, PacedArgs,
    WhoBatchArgs, WhospamArgs,
};

/// achat's load generator: drives a chat server over TCP and measures it.
#[derive(Parser, Debug)]
#[command(
    name = "load",
    about,
    after_help = "Run through cargo: cargo bench --bench load -- <SCENARIO> [OPTIONS]. See benches/README.md."
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    #[command(flatten)]
    Scenario(Scenario),
    /// Start two servers, run a scenario against each in turn, print medians and ratios (a/b).
    Compare(CompareArgs),
    /// Run a minimal single-threaded relay of the tutorial protocol with batched writes
    /// (a reference point, and a way to see what the generator itself can drive).
    Relay(RelayArgs),
}

/// The scenarios.
#[derive(Subcommand, Debug, Clone)]
pub(crate) enum Scenario {
    /// N clients; client i sends M messages to client i+1, at most W un-received per sender.
    Ring(RingArgs),
    /// S senders each send M messages addressed to the same K recipients.
    Fanout(FanoutArgs),
    /// C idle logged-in connections (memory per connection, logins/s), then random pairs.
    Conns(ConnsArgs),
    /// A client that never reads is flooded; two bystanders chat meanwhile.
    Slow(SlowArgs),
    /// A client floods a reading peer as fast as it can; two bystanders chat meanwhile.
    Flood(FloodArgs),
    /// Sessions connect, log in, chat briefly and leave (some by reset) at a steady rate.
    Churn(ChurnArgs),
    /// Hostile: K clients never read while one broadcasts 4 KB lines to all; bystanders chat.
    Nonreaders(NonreadersArgs),
    /// Hostile: N reading clients, one floods `*:` lines at them; bystanders chat.
    Broadcast(BroadcastArgs),
    /// Hostile: readers reading at a fixed rate are flooded with 4 KB lines.
    Paced(PacedArgs),
    /// Hostile: one client asks /who W times in one write, with P clients online.
    WhoBatch(WhoBatchArgs),
    /// Hostile: one client floods lines with 4 KB recipient lists; bystanders on both workers.
    Lists(ListsArgs),
    /// Hostile: U idle users online, S clients each keep W /who in flight; bystanders chat.
    Whospam(WhospamArgs),
    /// Cluster: holds C idle logged-in connections (echoing what they receive) until stdin ends.
    Hold(HoldArgs),
    /// Cluster: one `hold` process per node address, then probes between random cross-node pairs.
    Crowd(CrowdArgs),
}

impl Scenario {
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Scenario::Ring(_) => "ring",
            Scenario::Fanout(_) => "fanout",
            Scenario::Conns(_) => "conns",
            Scenario::Slow(_) => "slow",
            Scenario::Flood(_) => "flood",
            Scenario::Churn(_) => "churn",
            Scenario::Nonreaders(_) => "nonreaders",
            Scenario::Broadcast(_) => "broadcast",
            Scenario::Paced(_) => "paced",
            Scenario::WhoBatch(_) => "who-batch",
            Scenario::Lists(_) => "lists",
            Scenario::Whospam(_) => "whospam",
            Scenario::Hold(_) => "hold",
            Scenario::Crowd(_) => "crowd",
        }
    }

    pub(crate) fn common(&self) -> &Common {
        match self {
            Scenario::Ring(a) => &a.common,
            Scenario::Fanout(a) => &a.common,
            Scenario::Conns(a) => &a.common,
            Scenario::Slow(a) => &a.common,
            Scenario::Flood(a) => &a.common,
            Scenario::Churn(a) => &a.common,
            Scenario::Nonreaders(a) => &a.common,
            Scenario::Broadcast(a) => &a.common,
            Scenario::Paced(a) => &a.common,
            Scenario::WhoBatch(a) => &a.common,
            Scenario::Lists(a) => &a.common,
            Scenario::Whospam(a) => &a.common,
            Scenario::Hold(a) => &a.common,
            Scenario::Crowd(a) => &a.common,
        }
    }

    /// A bound on the whole run (logins, traffic, draining, closing), for
    /// the hostile scenarios: a server that stops answering must not hang
    /// the generator (or compare mode) [default: the scenario's own
    /// bounds only]. `--timeout` replaces the margin beyond the duration.
    pub(crate) fn run_bound(&self) -> Option<Duration> {
        let traffic = match self {
            Scenario::Nonreaders(a) => a.attack.duration_or(NONREADERS_ATTACK),
            Scenario::Broadcast(a) => a.attack.duration_or(ATTACK),
            Scenario::Paced(a) => a.duration,
            Scenario::WhoBatch(_) => Duration::ZERO,
            Scenario::Lists(a) => a.attack.duration_or(ATTACK),
            Scenario::Whospam(a) => a.attack.duration_or(ATTACK),
            _ => return None,
        };
        let common = self.common();
        let margin = common.timeout.unwrap_or(Duration::from_secs(60));
        Some(traffic + margin + 2 * common.login_timeout)
    }

    /// Source addresses to spread the client side over, unless `--sources`
    /// says otherwise: enough that no address holds more than
    /// [`CLIENTS_PER_SOURCE`] of the clients open at once, so that a server
    /// at its default `--max-connections-per-ip` (64) lets them all in; none
    /// (the kernel's choice, 127.0.0.1) when that many fit on one.
    ///
    /// Spreading also keeps tens of thousands of connections from
    /// exhausting one address's ephemeral ports. Binding each socket to a
    /// source address makes the kernel search that address's bind table
    /// for a free port: with 8 addresses, `churn` fell to 1,400 sessions/s
    /// after 40,000 sessions, each address holding 5,000 ports in
    /// TIME_WAIT. Its defaults (2,000 in flight, 1,000 names verified) now
    /// spread it over 94 addresses, a tenth as many each (not measured
    /// since).
    ///
    /// A scenario that logs in at a steady rate (`churn`) is spread too so
    /// that no address logs in more than [`LOGINS_PER_SOURCE_PER_S`] a
    /// second, half the server's default `--login-rate` (16): at 2,000
    /// sessions/s over 94 addresses, 5% of churn's logins were refused.
    pub(crate) fn default_sources(&self) -> u16 {
        let per_source = CLIENTS_PER_SOURCE;
        let for_rate = match self {
            Scenario::Churn(a) => (a.rate / LOGINS_PER_SOURCE_PER_S).ceil() as usize,
            _ => 0,
        };
        match self.clients_at_once().div_ceil(per_source).max(for_rate) {
            0 | 1 => 0,
            n => u16::try_from(n).unwrap_or(u16::MAX),
        }
    }

    /// The most client connections the scenario holds open at once,
    /// counting its bystanders and helpers (an upper bound).
    fn clients_at_once(&self) -> usize {
        // The two bystanders, a flooder or a sender, and a spare.
        const HELPERS: usize = 4;
        match self {
            Scenario::Ring(a) => a.clients,
            Scenario::Fanout(a) => a.senders + a.recipients,
            Scenario::Conns(a) => a.conns + HELPERS,
            Scenario::Slow(_) | Scenario::Flood(_) | Scenario::Lists(_) => 2 * HELPERS,
            Scenario::Churn(a) => a.max_inflight + a.verify_names.min(a.max_inflight) + HELPERS,
            Scenario::Nonreaders(a) => a.nonreaders + HELPERS,
            Scenario::Broadcast(a) => a.readers + HELPERS,
            Scenario::Paced(a) => a.readers + HELPERS,
            Scenario::WhoBatch(a) => a.idle + HELPERS,
            Scenario::Whospam(a) => a.users + a.spammers + HELPERS,
            Scenario::Hold(a) => a.conns,
            // Its own probes; the held connections are the hold
            // processes', each spreading its own.
            Scenario::Crowd(a) => a.probes + HELPERS,
        }
    }
}

/// At most this many of a scenario's clients share a source address by
/// default: half the server's default `--max-connections-per-ip`.
pub(crate) const CLIENTS_PER_SOURCE: usize = 32;

/// At most this many logins a second come from one source address by
/// default: half the server's default `--login-rate`.
pub(crate) const LOGINS_PER_SOURCE_PER_S: f64 = 8.0;

/// Options every scenario takes.
#[derive(Args, Debug, Clone)]
pub(crate) struct Common {
    /// The server's address (loopback only); several, comma-separated, are
    /// the nodes of a cluster: client i connects to the (i mod n)-th.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR[,ADDR...]")]
    pub(crate) addr: String,
    /// The server's pid: memory (VmRSS) and CPU figures are read from /proc/<pid>;
    /// several, comma-separated (one per node, in --addr's order), are summed.
    #[arg(long, value_name = "PID[,PID...]", value_delimiter = ',')]
    pub(crate) server_pid: Vec<u32>,
    /// Processes the server depends on (a cluster's NATS servers): their CPU
    /// and memory are reported beside the server's, not in them.
    #[arg(long, value_name = "PID[,PID...]", value_delimiter = ',')]
    pub(crate) aux_pid: Vec<u32>,
    /// Generator threads; 1 runs everything on one current-thread runtime (plus the bystanders' thread).
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub(crate) threads: usize,
    /// Bound on the traffic phase [default: per scenario, about a minute beyond the expected time].
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    pub(crate) timeout: Option<Duration>,
    /// Fail when no expected delivery arrived for this long.
    #[arg(long, default_value = "10s", value_name = "DUR", value_parser = parse_duration)]
    pub(crate) stall: Duration,
    /// Bound on the login barrier.
    #[arg(long, default_value = "30s", value_name = "DUR", value_parser = parse_duration)]
    pub(crate) login_timeout: Duration,
    /// Logins in progress at once.
    #[arg(long, default_value_t = 200, value_name = "N")]
    pub(crate) login_concurrency: usize,
    /// Spread client sockets over this many source addresses 127.0.0.2, 127.0.0.3, ...,
    /// 127.0.1.0, ... (0: one, chosen by the kernel) [default: enough for at most 32 clients
    /// open at once on each, 0 when 32 or fewer].
    #[arg(long, value_name = "N")]
    pub(crate) sources: Option<u16>,
    /// Exit non-zero also when one of the targets is missed.
    #[arg(long)]
    pub(crate) strict: bool,
    /// Suffix making this run's login names unique [default: random].
    #[arg(long, value_name = "TAG")]
    pub(crate) tag: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub(crate) struct RingArgs {
    /// Clients in the ring.
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub(crate) clients: usize,
    /// Messages each client sends.
    #[arg(long, default_value_t = 2000, value_name = "M")]
    pub(crate) messages: u64,
    /// Messages a sender may have in flight (sent, not yet received).
    #[arg(long, default_value_t = 64, value_name = "W")]
    pub(crate) window: u64,
    /// Text length in bytes (padding after the numbers; 0: just the numbers, about 20 bytes).
    #[arg(long, default_value_t = 0, value_name = "BYTES")]
    pub(crate) size: usize,
    #[command(flatten)]
    pub(crate) common: Common,
}

#[derive(Args, Debug, Clone)]
pub(crate) struct FanoutArgs {
    /// Senders.
    #[arg(long, default_value_t = 10, value_name = "S")]
    pub(crate) senders: usize,
    /// Recipients, each addressed by every message.
    #[arg(long, default_value_t = 100, value_name = "K")]
    pub(crate) recipients: usize,
    /// Messages each sender sends.
    #[arg(long, default_value_t = 1000, value_name = "M")]
    pub(crate) messages: u64,
    /// Messages a sender may have in flight (not yet received by all recipients).
    #[arg(long, default_value_t = 64, value_name = "W")]
    pub(crate) window: u64,
    /// Text length in bytes (0: just the numbers).
    #[arg(long, default_value_t = 0, value_name = "BYTES")]
    pub(crate) size: usize,
    #[command(flatten)]
    pub(crate) common: Common,
}

#[derive(Args, Debug, Clone)]
pub(crate) struct ConnsArgs {
    /// Idle logged-in connections to hold (at most about 19,900: the descriptor limit).
    #[arg(long, default_value_t = 1000, value_name = "C")]
    pub(crate) conns: usize,
    /// Messages between random pairs once all are logged in.
    #[arg(long, default_value_t = 10_000, value_name = "M")]
    pub(crate) messages: u64,
    /// Random-pair messages in flight at once.
    #[arg(long, default_value_t = 1000, value_name = "W")]
    pub(crate) window: u64,
    /// Seed of the random pairs.
    #[arg(long, default_value_t = 1)]
    pub(crate) seed: u64,
    #[command(flatten)]
    pub(crate) common: Common,
}

#[derive(Args, Debug, Clone)]
pub(crate) struct SlowArgs {
    /// Bytes to flood at the client that does not read (1GiB, 64MiB, 100000...).
    #[arg(long, default_value = "1GiB", value_name = "BYTES", value_parser = parse_bytes)]
    pub(crate) flood_bytes: u64,
    /// Stop flooding after this long even if the bytes are not all sent.
    #[arg(long, default_value = "30s", value_name = "DUR", value_parser = parse_duration)]
    pub(crate) duration: Duration,
    /// Text length of a flood message.
    #[arg(long, default_value_t = 1000, value_name = "BYTES")]
    pub(crate) size: usize,
    /// The server's --max-outbox-bytes (for the "cap passed" estimate and the memory target).
    #[arg(long, default_value = "1MiB", value_name = "BYTES", value_parser = parse_bytes)]
    pub(crate) max_outbox_bytes: u64,
    /// SO_RCVBUF of the slow client's socket [default: the kernel's].
    #[arg(long, value_name = "BYTES")]
    pub(crate) slow_rcvbuf: Option<u32>,
    /// Each bystander sends one message to the other this often.
    #[arg(long, default_value = "1ms", value_name = "DUR", value_parser = parse_duration)]
    pub(crate) bystander_interval: Duration,
    /// Flood at most this many bytes per second [default: as fast as the socket takes it].
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes)]
    pub(crate) rate: Option<u64>,
    #[command(flatten)]
    pub(crate) common: Common,
}

#[derive(Args, Debug, Clone)]
pub(crate) struct FloodArgs {
    /// How long to flood.
    #[arg(long, default_value = "5s", value_name = "DUR", value_parser = parse_duration)]
    pub(crate) duration: Duration,
    /// Stop earlier after this many bytes [default: no limit].
    #[arg(long, default_value = "1TiB", value_name = "BYTES", value_parser = parse_bytes)]
    pub(crate) flood_bytes: u64,
    /// Text length of a flood message.
    #[arg(long, default_value_t = 100, value_name = "BYTES")]
    pub(crate) size: usize,
    /// Each bystander sends one message to the other this often.
    #[arg(long, default_value = "1ms", value_name = "DUR", value_parser = parse_duration)]
    pub(crate) bystander_interval: Duration,
    /// Server memory growth still counted as bounded (the target).
    #[arg(long, default_value = "64MiB", value_name = "BYTES", value_parser = parse_bytes)]
    pub(crate) max_growth: u64,
    /// Flood at most this many bytes per second [default: as fast as the socket takes it].
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes)]
    pub(crate) rate: Option<u64>,
    #[command(flatten)]
    pub(crate) common: Common,
}

#[derive(Args, Debug, Clone)]
pub(crate) struct ChurnArgs {
    /// Sessions in all.
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    pub(crate) sessions: usize,
    /// Sessions started per second.
    #[arg(long, default_value_t = 1000.0, value_name = "PER_S")]
    pub(crate) rate: f64,
    /// Messages each session sends (each to the anchor and to itself).
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub(crate) chat: u64,
    /// Percentage of sessions that leave by a reset instead of a close.
    #[arg(long, default_value_t = 20, value_name = "PCT")]
    pub(crate) reset_percent: u8,
    /// Sessions in progress at once, at most.
    #[arg(long, default_value_t = 2000, value_name = "N")]
    pub(crate) max_inflight: usize,
    /// Churned names logged in again afterwards to check they were freed.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub(crate) verify_names: usize,
    /// How long the server may sit idle after the churn before its memory is
    /// read as "after": allocators hand freed memory back to the system
    /// lazily (achat's within about a second).
    #[arg(long, default_value = "5s", value_name = "DUR", value_parser = parse_duration)]
    pub(crate) settle: Duration,
    #[command(flatten)]
    pub(crate) common: Common,
}

#[derive(Args, Debug)]
pub(crate) struct CompareArgs {
    /// First server's command; {port} is replaced by a free port. `relay` starts the built-in relay.
    #[arg(long, value_name = "COMMAND")]
    pub(crate) a: String,
    /// Second server's command, as --a.
    #[arg(long, value_name = "COMMAND")]
    pub(crate) b: String,
    /// Runs against each server, alternating a, b, a, b...
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub(crate) runs: usize,
    /// How long a server may take to accept connections.
    #[arg(long, default_value = "20s", value_name = "DUR", value_parser = parse_duration)]
    pub(crate) start_timeout: Duration,
    /// Where the servers' output goes.
    #[arg(long, default_value = "target/load-logs", value_name = "DIR")]
    pub(crate) logs: PathBuf,
    /// The scenario and its options (its --addr and --server-pid are set by compare).
    #[command(subcommand)]
    pub(crate) scenario: Scenario,
}

#[derive(Args, Debug)]
pub(crate) struct RelayArgs {
    /// Address to listen on (port 0 picks one; the address is printed).
    #[arg(long, default_value = "127.0.0.1:9000", value_name = "ADDR")]
    pub(crate) bind: String,
}

/// `30s`, `500ms`, `2m` or a bare number of seconds.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (number, scale) = if let Some(n) = t.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = t.strip_suffix("us") {
        (n, 1e-6)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60.0)
    } else {
        (t, 1.0)
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("'{text}' is not a duration (try 30s, 500ms, 2m)"))?;
    Duration::try_from_secs_f64(value * scale).map_err(|e| format!("'{text}': {e}"))
}

/// `1GiB`, `64MiB`, `512KiB`, `1000` (bytes); `k`, `M`, `G` are powers of 1000.
pub(crate) fn parse_bytes(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let units: [(&str, u64); 8] = [
        ("TiB", 1 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
        ("G", 1_000_000_000),
        ("M", 1_000_000),
        ("k", 1000),
        ("B", 1),
    ];
    let (number, scale) = units
        .iter()
        .find_map(|(suffix, scale)| t.strip_suffix(suffix).map(|n| (n, *scale)))
        .unwrap_or((t, 1));
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("'{text}' is not a size (try 1GiB, 64MiB, 1000)"))?;
    if !(value >= 0.0 && value * scale as f64 <= u64::MAX as f64) {
        return Err(format!("'{text}' is out of range"));
    }
    Ok((value * scale as f64) as u64)
}
