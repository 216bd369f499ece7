//! The session: one actor per connection, plain TCP or TLS.
//!
//! A session owns its socket, both directions, as a
//! [`crate::transport::Stream`] (TLS connections are handshaken
//! before their session starts). It reads lines, handles the
//! login itself, and turns every later read into one
//! [`Route`](crate::messages::Route) batch for the broker. It writes what
//! the broker [`Deliver`]s.
//!
//! The folder holds its three parts:
//! - `mod.rs`: the actor, its life (`Phase`) and its message handlers;
//! - `input.rs`: reading with a credit in hand (`credits.rs`), taking turns
//!   on the worker (`turn.rs`), draining at shutdown, the end of input;
//!   what was read goes to
//! - `login.rs`: the login exchange (with a password for a registered
//!   name), or
//! - `chat.rs`: after login, turning a read into a `Route` for the broker;
//! - `account.rs`: after login, the account commands (`/register` ...),
//!   sent to the accounts actor, their answers routed through the broker;
//! - `outbox.rs`: writing, the `Outbox` of unwritten bytes with its
//!   backlog, the senders' credits it holds and the stall clock, and
//!   closing.
//!
//! Reading and writing are two small [`ActorFuture`]s spawned into the
//! actor's context (`READ_INPUT` and `WRITE_OUTPUT`), which poll the socket
//! through the actor's own fields. This is what actix's `StreamHandler` and
//! `FramedWrite` would do, with three differences that matter here:
//! - **Flow control.** A session reads only with a
//!   [`Credit`](crate::messages::Credit) in hand (two per session) and
//!   sends it along with the batch; the broker drops it once the batch is
//!   handled. A client that floods is read at the broker's pace and TCP
//!   pushes back on it; its lines never pile up in memory. (A
//!   `StreamHandler` reads as fast as the socket allows.)
//! - **No idle buffers.** Reads go into one buffer per worker thread,
//!   borrowed for the length of one read; the output buffer exists only
//!   while there is output. An idle connection holds neither.
//! - **A capped outbox, and back-pressure to senders.** `FramedWrite`'s
//!   high-water mark never triggers on tokio sockets, which return `Pending`
//!   rather than `WouldBlock`; here the broker counts each session's
//!   unwritten bytes ([`Backlog`](crate::messages::Backlog)) and evicts the
//!   session when they pass `--max-outbox-bytes`. Past half of that, the
//!   broker hands the session the credits of the senders filling it
//!   ([`Deliver::held`]); the session holds them until it has written its
//!   way back below half, so a flooder slows to its reader's pace. A
//!   session that holds credits and writes nothing at all for
//!   [`STALL_LIMIT`] is not reading: it cuts itself off, which frees its
//!   senders.
//!
//! Who writes what, so lines never overtake each other: before login the
//! session writes its own answers (nothing else writes to a connection that
//! is not logged in). From the login on, everything goes through the broker,
//! even the session's own error lines (as [`Op::Echo`](crate::batch::Op)),
//! because the broker's mailbox is the one place where all of a connection's
//! output is put in order.

mod account;
mod chat;
mod credits;
mod input;
mod login;
mod outbox;
mod turn;

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{self, Poll};
use std::time::Duration;

use actix::prelude::*;
use log::{debug, info};

use crate::accounts::{AccountsLink, LoginRate};
use crate::messages::{
    BrokerLink, ConnId, Connect, Control, Deliver, Leave, LeaveReason, Name, RosterGauge,
    SessionLink,
};
use crate::metrics::{CutOff, Metrics, Shard};
use crate::protocol::Reply;
use crate::transport::Stream;
use account::PendingCommand;
use input::Input;
use login::Login;
use outbox::Outbox;

pub use chat::DELIVERY_BUDGET;
pub use input::prepare_worker_thread;
pub use outbox::{CLOSE_LINGER, STALL_LIMIT};

/// The limits a session enforces; shared by all sessions of a server.
#[derive(Debug, Clone)]
pub struct SessionLimits {
    /// Longest accepted line, in bytes, terminator excluded.
    pub max_line_bytes: usize,
    /// Cap on output waiting to be written. The broker checks it for
    /// everything it delivers; the session itself for what it writes
    /// before login (and its goodbye).
    pub max_outbox_bytes: usize,
    /// How long a connection may take to log in.
    pub login_timeout: Duration,
    /// How long closing may spend writing the last output to a client
    /// that reads slowly or not at all (`--shutdown-grace`).
    pub flush_timeout: Duration,
}

/// Everything a session needs from the server besides its socket; one is
/// shared by all sessions of a server.
#[derive(Clone)]
pub struct SessionEnv {
    /// The broker.
    pub broker: BrokerLink,
    /// What the broker publishes about who is online (to price batches).
    pub gauge: Arc<RosterGauge>,
    /// The limits.
    pub limits: SessionLimits,
    /// The accounts; `None` when registration is off.
    pub accounts: Option<AccountsLink>,
    /// Login attempts per source address, shared by every session.
    pub login_rate: Arc<LoginRate>,
    /// The server's counts.
    pub metrics: Arc<Metrics>,
}

/// Held by a session for as long as it lives (and by a TLS connection
/// during its handshake); dropping it frees the connection's slot under
/// `--max-connections` and its count under `--max-connections-per-ip`, and
/// tells the server one session fewer is alive (the server waits for all
/// of them at shutdown).
pub struct ConnectionSlot {
    /// The slot under `--max-connections`.
    pub slot: tokio::sync::OwnedSemaphorePermit,
    /// A clone of the server's "sessions alive" sender.
    pub alive: tokio::sync::mpsc::Sender<()>,
    /// The count under `--max-connections-per-ip`.
    pub source: crate::sources::SourceGuard,
}

/// The session actor. See the module documentation.
pub struct Session {
    id: ConnId,
    /// The client's address: login attempts and wrong passwords are
    /// counted per address.
    peer: IpAddr,
    stream: Stream,
    env: Arc<SessionEnv>,
    phase: Phase,
    input: Input,
    outbox: Outbox,
    /// This connection's entry at the broker, until its one [`Leave`] is
    /// sent: taking it out is sending it.
    membership: Option<Membership>,
    /// This thread's counts (sessions never leave their thread).
    counts: Arc<Shard>,
    _slot: ConnectionSlot,
}

/// Where a session is in its life.
enum Phase {
    /// Not logged in; the login timer runs (for the whole exchange, a
    /// password included); `login` says which step it is at.
    LoggingIn { timer: SpawnHandle, login: Login },
    /// Logged in under `name`. `command` is an account command being
    /// carried out: input waits for its answer.
    Online {
        name: Name,
        command: Option<PendingCommand>,
    },
    /// Input is over for good: the last output is written, then the
    /// connection is closed (see [`CloseStep`]).
    Closing(CloseStep),
}

/// How far closing has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CloseStep {
    /// Writing the last output.
    Flushing,
    /// Output written and FIN sent; waiting (at most [`CLOSE_LINGER`]) for
    /// the client to close its side.
    Lingering,
}

/// A connection the broker knows of (it was sent [`Connect`]); spent by
/// sending the one [`Leave`].
struct Membership;

impl Session {
    /// Starts a session for a connection, on the current arbiter (the one
    /// its socket was registered with, see [`crate::transport::adopt`]).
    /// `login_time` is what is left of the login timeout (a TLS handshake
    /// has used some of it).
    pub fn start(
        stream: Stream,
        peer: SocketAddr,
        id: ConnId,
        env: Arc<SessionEnv>,
        slot: ConnectionSlot,
        login_time: Duration,
    ) -> Addr<Session> {
        let via = match stream.transport() {
            crate::transport::Transport::Tcp => "",
            crate::transport::Transport::Tls => " (TLS)",
            crate::transport::Transport::WebSocket => " (WebSocket)",
        };
        info!("conn {id}: connected from {peer}{via}");
        Session::create(move |ctx| {
            let timer = ctx.run_later(login_time, Session::login_timed_out);
            let counts = env.metrics.shard();
            counts.opened.of(stream.transport()).add(1);
            Session {
                id,
                peer: peer.ip(),
                stream,
                input: Input::new(env.limits.max_line_bytes),
                env,
                phase: Phase::LoggingIn {
                    timer,
                    login: Login::Name,
                },
                outbox: Outbox::default(),
                membership: None,
                counts,
                _slot: slot,
            }
        })
    }

    /// Tells the broker this connection is ending, the first time only.
    fn leave(&mut self, reason: LeaveReason) {
        if let Some(Membership) = self.membership.take() {
            self.env.broker.leave.do_send(Leave {
                id: self.id,
                reason,
            });
        }
    }

    fn login_timed_out(&mut self, ctx: &mut Context<Self>) {
        if matches!(self.phase, Phase::Closing(_)) {
            return;
        }
        let timeout = self.env.limits.login_timeout;
        info!("conn {}: no login within {timeout:?}, closing", self.id);
        self.counts.login_timeouts.add(1);
        self.reply(&Reply::LoginTimeout(timeout), ctx);
        self.begin_close(ctx);
    }

    /// Cuts a slow consumer off: its output is dropped, and the socket is
    /// closed with a reset, so that the kernel frees at once what it still
    /// held for a client that was not reading (a plain close would leave it
    /// queued behind a closed window until TCP gives up, minutes later).
    fn cut_off(&mut self, why: CutOff, ctx: &mut Context<Self>) {
        self.counts.cut_off(why);
        // (A WebSocket's socket is actix-web's: it is closed when the
        // response body ends, as the session stops.)
        if let Some(tcp) = self.stream.tcp() {
            let _ = socket2::SockRef::from(tcp).set_linger(Some(Duration::ZERO));
        }
        ctx.stop();
    }

    /// Stops input for good, flushes output, closes: bounded by the flush
    /// timeout, then by [`CLOSE_LINGER`] once the last byte is written.
    fn begin_close(&mut self, ctx: &mut Context<Self>) {
        match &self.phase {
            Phase::Closing(_) => return,
            Phase::LoggingIn { timer, .. } => {
                ctx.cancel_future(*timer);
            }
            Phase::Online { .. } => {}
        }
        self.phase = Phase::Closing(CloseStep::Flushing);
        // A drain guard held goes back at once: nothing more is read.
        self.input.stop();
        // A writer that is running sees `Closing` when it has written all.
        self.start_writing(ctx);
        ctx.run_later(self.env.limits.flush_timeout, |session, ctx| {
            debug!("conn {}: close timed out", session.id);
            ctx.stop();
        });
    }
}

impl Actor for Session {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.env.broker.connect.do_send(Connect {
            id: self.id,
            session: SessionLink::new(&ctx.address()),
            backlog: self.outbox.backlog().clone(),
        });
        self.membership = Some(Membership);
        ctx.spawn(READ_INPUT);
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        // Every way a session ends passes here, so the broker always hears.
        self.leave(LeaveReason::Gone);
        self.counts.closed.of(self.stream.transport()).add(1);
        debug!("conn {}: closed", self.id);
    }
}

impl Handler<Deliver> for Session {
    type Result = ();

    fn handle(&mut self, msg: Deliver, ctx: &mut Context<Self>) {
        let Deliver { bytes, held, slice } = msg;
        self.outbox.append(bytes);
        self.hold(held, ctx);
        self.start_writing(ctx);
        // Taken: the broker may hand the next slice of a wide fan-out over
        // (this session writes before its turn on the worker ends).
        drop(slice);
    }
}

impl Handler<Control> for Session {
    type Result = ();

    fn handle(&mut self, msg: Control, ctx: &mut Context<Self>) {
        match msg {
            Control::Evict => self.cut_off(CutOff::OutboxFull, ctx),
            Control::Close => self.begin_close(ctx),
            Control::Drain(guard) => {
                if !matches!(self.phase, Phase::Closing(_)) {
                    self.input.drain(guard, self.stream.tcp());
                }
            }
            Control::Goodbye => {
                self.reply(&Reply::ShuttingDown, ctx);
                self.begin_close(ctx);
            }
        }
    }
}

/// The input side of a session, as a future of its context.
const READ_INPUT: SocketSide<false> = SocketSide;
/// The output side of a session, as a future of its context.
const WRITE_OUTPUT: SocketSide<true> = SocketSide;

/// One side of the session's socket as a future of the actor's context: it
/// polls the socket through the actor's own fields. Zero-sized, so
/// spawning one (the writer is spawned again for every burst of output)
/// allocates nothing.
struct SocketSide<const OUTPUT: bool>;

impl<const OUTPUT: bool> ActorFuture<Session> for SocketSide<OUTPUT> {
    type Output = ();

    fn poll(
        self: Pin<&mut Self>,
        session: &mut Session,
        ctx: &mut Context<Session>,
        task_cx: &mut task::Context<'_>,
    ) -> Poll<()> {
        if OUTPUT {
            session.poll_output(ctx, task_cx)
        } else {
            session.poll_input(ctx, task_cx)
        }
    }
}
