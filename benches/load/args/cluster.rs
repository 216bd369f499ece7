//! The options of the cluster scenarios: `hold` (one process's share of
//! a crowd of idle users) and `crowd` (several `hold` processes, one per
//! node, then probes between random cross-node pairs).

use std::time::Duration;

use clap::Args;

use super::{Common, parse_duration};

#[derive(Args, Debug, Clone)]
pub(crate) struct HoldArgs {
    /// Idle logged-in connections to hold (at most about 19,900: the descriptor limit).
    #[arg(long, default_value_t = 1000, value_name = "C")]
    pub(crate) conns: usize,
    /// Name role: the clients are `<role><i>-<tag>`.
    #[arg(long, default_value = "h", value_name = "ROLE")]
    pub(crate) role: String,
    /// Let go after this long even if standard input has not ended.
    #[arg(long, default_value = "10m", value_name = "DUR", value_parser = parse_duration)]
    pub(crate) max_hold: Duration,
    #[command(flatten)]
    pub(crate) common: Common,
}

#[derive(Args, Debug, Clone)]
pub(crate) struct CrowdArgs {
    /// Idle users held on each node (one `hold` process per --addr).
    #[arg(long, default_value_t = 19_000, value_name = "N")]
    pub(crate) per_node: usize,
    /// Probe clients, spread round-robin over the nodes.
    #[arg(long, default_value_t = 300, value_name = "P")]
    pub(crate) probes: usize,
    /// Probe messages, each from a random probe client to a random held
    /// user on another node, which echoes it back.
    #[arg(long, default_value_t = 30_000, value_name = "M")]
    pub(crate) messages: u64,
    /// Probe messages in flight (sent, echo not yet back).
    #[arg(long, default_value_t = 500, value_name = "W")]
    pub(crate) window: u64,
    /// Seed of the random pairs.
    #[arg(long, default_value_t = 1)]
    pub(crate) seed: u64,
    /// How long every node may take to list every user in `/who`.
    #[arg(long, default_value = "60s", value_name = "DUR", value_parser = parse_duration)]
    pub(crate) presence_timeout: Duration,
    #[command(flatten)]
    pub(crate) common: Common,
}
