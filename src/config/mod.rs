//! The server's settings: the command line as typed ([`ServerArgs`], parsed
//! by clap) and the validated [`Config`] the rest of the crate uses.
//!
//! Two types, as in ripgrep: the library's API ([`crate::server::run`])
//! takes a `Config`, which tests build directly without a command line.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::accounts::{AccountsConfig, AccountsStore, DEFAULT_ACCOUNTS_FILE, RatePolicy};
use crate::cluster::{ClusterConfig, Timing, keys};
use crate::sched::BrokerSched;

/// The validated settings of a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Worker arbiters (threads) the sessions are spread over.
    pub workers: usize,
    /// Open connections allowed at once, logged in or not.
    pub max_connections: usize,
    /// Open connections allowed at once from one source address (IPv4
    /// address, IPv6 /64 prefix; see [`crate::sources`]); 0: no limit.
    pub max_connections_per_ip: usize,
    /// Longest line accepted, in bytes, terminator excluded.
    pub max_line_bytes: usize,
    /// Cap on a connection's output not yet written to its socket; a peer
    /// that passes it is disconnected as a slow consumer.
    pub max_outbox_bytes: usize,
    /// Cap on the output not yet written for all connections together;
    /// past it, those holding the most are disconnected first.
    pub max_total_outbox_bytes: usize,
    /// Time a new connection has to log in.
    pub login_timeout: Duration,
    /// Time a shutdown may take before the remaining connections are cut.
    pub shutdown_grace: Duration,
    /// How the broker's thread is scheduled.
    pub broker_sched: BrokerSched,
    /// Cluster mode: the cluster to join (`None`: a single node, no NATS).
    pub cluster: Option<ClusterConfig>,
    /// Registered names: where they are kept (off by default here;
    /// `achat-server` defaults to a file) and the guessing back-off.
    pub accounts: AccountsConfig,
    /// Login attempts allowed per source address.
    pub login_rate: RatePolicy,
    /// Origins, besides the server's own, whose pages may open a chat
    /// connection on `/ws` (`--allowed-origin`).
    pub allowed_origins: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            workers: default_workers(),
            max_connections: 100_000,
            max_connections_per_ip: crate::sources::DEFAULT_MAX_PER_SOURCE,
            max_line_bytes: 4096,
            max_outbox_bytes: 1 << 20,
            max_total_outbox_bytes: 512 << 20,
            login_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(5),
            broker_sched: BrokerSched::Batch,
            cluster: None,
            accounts: AccountsConfig::default(),
            login_rate: RatePolicy::DEFAULT,
            allowed_origins: Vec::new(),
        }
    }
}

/// One worker per CPU the process may use.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// `achat-server`: a chat server; log in with a name, send lines to names.
#[derive(Debug, Parser)]
#[command(name = "achat-server", version, about, long_about = None)]
pub struct ServerArgs {
    /// Address to listen on for plain TCP (port 0 picks a free port; "off": TLS only).
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
    pub bind: String,

    /// Address to listen on for TLS (with --tls-cert and --tls-key).
    #[arg(long, value_name = "ADDR")]
    pub tls_bind: Option<String>,

    /// The TLS certificate chain, PEM, the server's certificate first.
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,

    /// The TLS certificate's private key, PEM (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,

    /// Address for the web client, /ws, /healthz and /metrics (HTTPS with --tls-cert); "off": no web.
    #[arg(long, default_value = "127.0.0.1:8081", value_name = "ADDR")]
    pub http: String,

    /// An origin (scheme, host, port: `https://chat.example.com`) whose pages may open /ws besides the server's own; repeatable.
    #[arg(long = "allowed-origin", value_name = "ORIGIN")]
    pub allowed_origins: Vec<String>,

    /// Worker threads for the sessions [default: number of CPUs].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub workers: Option<u16>,

    /// Open connections allowed at once (lowered to fit the file-descriptor limit).
    #[arg(long, default_value_t = 100_000, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub max_connections: u64,

    /// Open connections allowed at once from one source address (an IPv4 address, an IPv6 /64); 0: no limit.
    #[arg(long, default_value_t = crate::sources::DEFAULT_MAX_PER_SOURCE as u64, value_name = "N")]
    pub max_connections_per_ip: u64,

    /// Longest line accepted, in bytes, terminator excluded.
    #[arg(long, default_value_t = 4096, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=(16 << 20)))]
    pub max_line_bytes: u64,

    /// Cap on a connection's unwritten output, in bytes; a peer that passes it is disconnected.
    #[arg(long, default_value_t = 1 << 20, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=(1 << 40)))]
    pub max_outbox_bytes: u64,

    /// Cap on the unwritten output of all connections together, in bytes; past it the heaviest are disconnected first.
    #[arg(long, default_value_t = 512 << 20, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=(1 << 44)))]
    pub max_total_outbox_bytes: u64,

    /// Time a new connection has to log in (e.g. 30s, 500ms, 10).
    #[arg(long, default_value = "30s", value_name = "DUR", value_parser = parse_duration)]
    pub login_timeout: Duration,

    /// Time a shutdown may take to flush and close connections.
    #[arg(long, default_value = "5s", value_name = "DUR", value_parser = parse_duration)]
    pub shutdown_grace: Duration,

    /// Scheduling policy of the broker's thread: batch (SCHED_BATCH, it does not preempt the workers) or normal.
    #[arg(long, value_enum, default_value_t = BrokerSched::Batch, value_name = "POLICY")]
    pub broker_sched: BrokerSched,

    /// Join the cluster served by these NATS servers (comma-separated, e.g. nats://127.0.0.1:4222,nats://10.0.0.2:4222); without it, a single node and no NATS.
    #[arg(long, value_name = "URLS")]
    pub cluster: Option<String>,

    /// Keeps several achat clusters apart on one NATS (letters, digits, - and _).
    #[arg(
        long,
        default_value = "achat",
        value_name = "NAME",
        requires = "cluster"
    )]
    pub cluster_name: String,

    /// This node's id in the cluster, unique (letters, digits, - and _) [default: random, logged at start].
    #[arg(long, value_name = "ID", requires = "cluster")]
    pub node_id: Option<String>,

    /// The SQLite file registered names are kept in, created on first use; `off` disables registration.
    #[arg(long, default_value = DEFAULT_ACCOUNTS_FILE, value_name = "PATH|off")]
    pub accounts: String,

    /// Login attempts one address may make at once (one per name line).
    #[arg(long, default_value_t = RatePolicy::DEFAULT.burst, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub login_burst: u32,

    /// Login attempts one address regains per second.
    #[arg(long, default_value_t = RatePolicy::DEFAULT.per_second, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub login_rate: u32,
}

/// Where the server listens, as validated from the command line: the
/// binary binds these and hands the listeners to [`crate::server::run`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenConfig {
    /// Plain TCP (`--bind`); `None` for `--bind off`.
    pub plain: Option<String>,
    /// TLS (`--tls-bind`, `--tls-cert`, `--tls-key`).
    pub tls: Option<TlsListen>,
    /// The web listener (`--http`); `None` for `--http off`. It serves
    /// HTTPS with the TLS listener's certificate when there is one.
    pub http: Option<String>,
}

/// The TLS listener's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsListen {
    /// Address to listen on.
    pub bind: String,
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// Why a command line was refused after parsing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Some of `--tls-bind`, `--tls-cert`, `--tls-key` given, not all.
    #[error("--tls-bind, --tls-cert and --tls-key go together: {missing} is missing")]
    TlsIncomplete {
        /// The first flag missing.
        missing: &'static str,
    },
    /// `--bind off` without TLS: nothing to listen on.
    #[error("--bind off leaves nothing to listen on: give --tls-bind, --tls-cert and --tls-key")]
    NoListener,
    /// The outbox cap is too small to hold even one relayed line.
    #[error(
        "--max-outbox-bytes ({outbox}) must be at least --max-line-bytes plus 128 ({needed}), or no line could ever be delivered"
    )]
    OutboxTooSmall {
        /// The cap given.
        outbox: u64,
        /// The least that works.
        needed: u64,
    },
    /// A cluster name or node id that cannot be part of a NATS subject.
    #[error("{flag}: {why}")]
    BadId {
        /// The flag.
        flag: &'static str,
        /// What is wrong with it.
        why: keys::IdError,
    },
    /// An `--allowed-origin` that is not an origin.
    #[error("--allowed-origin {origin}: {why}")]
    BadOrigin {
        /// The value given.
        origin: String,
        /// What is wrong with it.
        why: crate::web::OriginError,
    },
    /// The cap for all connections is below the cap for one.
    #[error(
        "--max-total-outbox-bytes ({total}) must be at least --max-outbox-bytes ({outbox}), or one reader could pass it alone"
    )]
    TotalBelowOne {
        /// The total cap given.
        total: u64,
        /// The per-connection cap given.
        outbox: u64,
    },
}

impl ServerArgs {
    /// Where to listen, validated: TLS needs all three of its flags, and
    /// `--bind off` needs TLS.
    pub fn listen(&self) -> Result<ListenConfig, ConfigError> {
        let tls = match (&self.tls_bind, &self.tls_cert, &self.tls_key) {
            (None, None, None) => None,
            (Some(bind), Some(cert), Some(key)) => Some(TlsListen {
                bind: bind.clone(),
                cert: cert.clone(),
                key: key.clone(),
            }),
            (bind, cert, _) => {
                let missing = if bind.is_none() {
                    "--tls-bind"
                } else if cert.is_none() {
                    "--tls-cert"
                } else {
                    "--tls-key"
                };
                return Err(ConfigError::TlsIncomplete { missing });
            }
        };
        let plain = (self.bind != "off").then(|| self.bind.clone());
        if plain.is_none() && tls.is_none() {
            return Err(ConfigError::NoListener);
        }
        let http = (self.http != "off").then(|| self.http.clone());
        Ok(ListenConfig { plain, tls, http })
    }

    /// The validated configuration.
    pub fn config(&self) -> Result<Config, ConfigError> {
        // Room for the longest line plus "from <32 characters>: " and the
        // accounting overhead of one delivery.
        let needed = self.max_line_bytes + 128;
        if self.max_outbox_bytes < needed {
            return Err(ConfigError::OutboxTooSmall {
                outbox: self.max_outbox_bytes,
                needed,
            });
        }
        if self.max_total_outbox_bytes < self.max_outbox_bytes {
            return Err(ConfigError::TotalBelowOne {
                total: self.max_total_outbox_bytes,
                outbox: self.max_outbox_bytes,
            });
        }
        let cluster = match &self.cluster {
            None => None,
            Some(urls) => {
                let bad = |flag| move |why| ConfigError::BadId { flag, why };
                keys::validate_id(&self.cluster_name).map_err(bad("--cluster-name"))?;
                let node_id = self
                    .node_id
                    .clone()
                    .unwrap_or_else(crate::cluster::random_node_id);
                keys::validate_id(&node_id).map_err(bad("--node-id"))?;
                Some(ClusterConfig {
                    urls: urls.clone(),
                    cluster_name: self.cluster_name.clone(),
                    node_id,
                    timing: Timing::default(),
                })
            }
        };
        let store = match self.accounts.as_str() {
            "off" => AccountsStore::Off,
            path => AccountsStore::File(path.into()),
        };
        let allowed_origins = self
            .allowed_origins
            .iter()
            .map(|origin| {
                crate::web::normalize_origin(origin).map_err(|why| ConfigError::BadOrigin {
                    origin: origin.clone(),
                    why,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Config {
            allowed_origins,
            cluster,
            accounts: AccountsConfig {
                store,
                ..AccountsConfig::default()
            },
            login_rate: RatePolicy {
                burst: self.login_burst,
                per_second: self.login_rate,
            },
            workers: self.workers.map_or_else(default_workers, usize::from),
            max_connections: saturate(self.max_connections),
            max_connections_per_ip: saturate(self.max_connections_per_ip),
            max_line_bytes: saturate(self.max_line_bytes),
            max_outbox_bytes: saturate(self.max_outbox_bytes),
            max_total_outbox_bytes: saturate(self.max_total_outbox_bytes),
            login_timeout: self.login_timeout,
            shutdown_grace: self.shutdown_grace,
            broker_sched: self.broker_sched,
        })
    }
}

fn saturate(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// Parses `30s`, `500ms`, `1.5s` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, scale) = if let Some(ms) = text.strip_suffix("ms") {
        (ms, 0.001)
    } else if let Some(s) = text.strip_suffix('s') {
        (s, 1.0)
    } else {
        (text, 1.0)
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("'{text}' is not a duration (try 30s, 500ms or 10)"))?;
    Duration::try_from_secs_f64(value * scale)
        .map_err(|_| format!("'{text}' is not a duration (try 30s, 500ms or 10)"))
}

#[cfg(test)]
mod tests;
