//! The options of the hostile-client scenarios (issue 14): nonreaders,
//! broadcast, paced, who-batch, lists, whospam.

use std::time::Duration;

use clap::Args;

use super::{Common, parse_bytes, parse_duration};

/// How long an attack lasts, and the bystanders' pace meanwhile
/// (nonreaders, broadcast, lists, whospam).
#[derive(Args, Debug, Clone)]
pub(crate) struct AttackArgs {
    /// How long the attack lasts [default: 15s for nonreaders, 10s for the others].
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    pub(crate) duration: Option<Duration>,
    /// Each bystander sends one message to the other this often.
    #[arg(long, default_value = "1ms", value_name = "DUR", value_parser = parse_duration)]
    pub(crate) bystander_interval: Duration,
}

/// How long an attack lasts by default.
pub(crate) const ATTACK: Duration = Duration::from_secs(10);
/// ... and a broadcast at non-readers.
pub(crate) const NONREADERS_ATTACK: Duration = Duration::from_secs(15);

impl AttackArgs {
    /// `--duration`, or `default`.
    pub(crate) fn duration_or(&self, default: Duration) -> Duration {
        self.duration.unwrap_or(default)
    }
}

#[derive(Args, Debug, Clone)]
pub(crate) struct NonreadersArgs {
    /// Logged-in clients that never read after their login.
    #[arg(long, default_value_t = 3000, value_name = "K")]
    pub(crate) nonreaders: usize,
    /// Text length of a broadcast line (`*: <text>`).
    #[arg(long, default_value_t = 4000, value_name = "BYTES")]
    pub(crate) size: usize,
    /// Broadcast at most this many bytes per second [default: as fast as the server takes them].
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes)]
    pub(crate) rate: Option<u64>,
    #[command(flatten)]
    pub(crate) attack: AttackArgs,
    #[command(flatten)]
    pub(crate) common: Common,
}

#[derive(Args, Debug, Clone)]
pub(crate) struct BroadcastArgs {
    /// Logged-in clients reading everything.
    #[arg(long, default_value_t = 5000, value_name = "N")]
    pub(crate) readers: usize,
    /// Text length of a broadcast line (0: just the numbers, about 25 bytes).
    #[arg(long, default_value_t = 0, value_name = "BYTES")]
    pub(crate) size: usize,
    #[command(flatten)]
    pub(crate) attack: AttackArgs,
    #[command(flatten)]
    pub(crate) common: Common,
}

#[derive(Args, Debug, Clone)]
pub(crate) struct PacedArgs {
    /// Readers, each reading at --read-rate.
    #[arg(long, default_value_t = 4, value_name = "R")]
    pub(crate) readers: usize,
    /// Bytes per second each reader reads at most (256KiB, 1MiB...).
    #[arg(long, default_value = "256KiB", value_name = "BYTES", value_parser = parse_bytes)]
    pub(crate) read_rate: u64,
    /// Pause between two reads of a reader (each reads rate x this at most).
    #[arg(long, default_value = "20ms", value_name = "DUR", value_parser = parse_duration)]
    pub(crate) read_interval: Duration,
    /// How long the sender floods.
    #[arg(long, default_value = "10s", value_name = "DUR", value_parser = parse_duration)]
    pub(crate) duration: Duration,
    /// Text length of a flood line.
    #[arg(long, default_value_t = 4000, value_name = "BYTES")]
    pub(crate) size: usize,
    /// Address the lines to `*` instead of naming the readers.
    #[arg(long)]
    pub(crate) everyone: bool,
    #[command(flatten)]
    pub(crate) common: Common,
}

#[derive(Args, Debug, Clone)]
pub(crate) struct WhoBatchArgs {
    /// Idle logged-in clients (the size of every answer).
    #[arg(long, default_value_t = 600, value_name = "P")]
    pub(crate) idle: usize,
    /// `/who` lines sent in one write.
    #[arg(long, default_value_t = 300, value_name = "W")]
    pub(crate) who: usize,
    #[command(flatten)]
    pub(crate) common: Common,
}

#[derive(Args, Debug, Clone)]
pub(crate) struct ListsArgs {
    /// Length of each line's recipient list (`a,a,a,...`).
    #[arg(long, default_value_t = 4000, value_name = "BYTES")]
    pub(crate) list_bytes: usize,
    #[command(flatten)]
    pub(crate) attack: AttackArgs,
    #[command(flatten)]
    pub(crate) common: Common,
}

#[derive(Args, Debug, Clone)]
pub(crate) struct WhospamArgs {
    /// Idle logged-in users (at most about 19,900 with the spammers: the descriptor limit).
    #[arg(long, default_value_t = 15_000, value_name = "U")]
    pub(crate) users: usize,
    /// Clients asking /who.
    #[arg(long, default_value_t = 10, value_name = "S")]
    pub(crate) spammers: usize,
    /// `/who` requests each spammer keeps in flight.
    #[arg(long, default_value_t = 100, value_name = "W")]
    pub(crate) window: u64,
    #[command(flatten)]
    pub(crate) attack: AttackArgs,
    #[command(flatten)]
    pub(crate) common: Common,
}
