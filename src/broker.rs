//! The broker: the one actor that knows who is online.
//!
//! It owns the table of connections and the table of names, and nothing
//! else touches them: there is no mutex around the peers because the
//! broker's mailbox is the one serialization point. "Bob sends to Alice"
//! and "Alice joins" are two messages in that mailbox, handled one after
//! the other, so every session sees the same order of events.
//!
//! Three habits keep the single thread this runs on from becoming the
//! bottleneck or a hazard:
//! - It never waits for a session. Output goes out with `do_send`, and each
//!   session's [`Backlog`] (bytes sent to it but not yet written to its
//!   socket) is checked against `--max-outbox-bytes`: a peer that passes it
//!   is evicted, so a reader that stopped reading costs nobody else anything.
//! - It batches. Output for a session accumulates in that connection's
//!   `pending` buffer and goes out as one [`Deliver`] once the mailbox is
//!   empty (or enough has piled up), so one busy recipient receives one
//!   message per round, not one per line.
//! - Where a line goes is decided in one function, `Broker::route`; a
//!   future cluster mode adds remote routes there and nowhere else.

use std::collections::HashMap;

/// The broker's tables hash with foldhash: several times faster than the
/// standard SipHash on short keys, and still seeded at random per table,
/// since names are chosen by clients.
type Table<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
use std::sync::Arc;

use actix::prelude::*;
use log::{debug, info, warn};
use tokio::sync::mpsc;

use crate::messages::{
    Backlog, Batch, ConnId, Connect, Control, Credit, DELIVER_OVERHEAD, Deliver, DrainGuard,
    Drained, Leave, LoginError, Name, NewPeer, Op, Route, SessionLink, Shutdown,
};
use crate::protocol;

/// Pending output is sent without waiting for the mailbox to empty once
/// this many bytes have piled up, bounding both memory and latency when
/// the mailbox never empties.
const FLUSH_AT_BYTES: usize = 256 * 1024;

/// The broker actor: the owner of who is online. It handles [`NewPeer`]
/// (take a name) and [`Route`] (messages to deliver) among others, one at
/// a time from its mailbox: that mailbox is the one serialization point, so
/// no mutex guards the peers. See the module documentation.
pub struct Broker {
    /// Every open connection, logged in or not, so shutdown reaches all.
    conns: Table<ConnId, Conn>,
    /// Who is logged in under which name.
    names: Table<Name, ConnId>,
    /// Output queued in the connections' `pending` buffers.
    out: Outbound,
    /// A flush is queued to run once the mailbox is empty.
    flush_queued: bool,
    phase: Phase,
}

/// Where the broker is in its life.
enum Phase {
    Running,
    /// Shutdown phase one: sessions are draining their input. A weak handle
    /// on the drain channel lets a connection that registers now join in.
    Draining(mpsc::WeakSender<()>),
    /// Shutdown phase two: every session was told goodbye.
    Closing,
}

/// What the broker knows of one connection.
struct Conn {
    link: SessionLink,
    backlog: Backlog,
    /// Set once logged in.
    name: Option<Name>,
    /// Evicted as a slow consumer: no longer routed to, its name still
    /// reserved until its [`Leave`] arrives.
    evicted: bool,
    /// Output not yet handed to the session.
    pending: Vec<u8>,
    /// Credits of senders to hold up, handed over with `pending`.
    held: Vec<Credit>,
}

/// The bookkeeping of pending output. A field of its own so that a
/// connection borrowed from `conns` can be updated together with it.
struct Outbound {
    /// Connections whose `pending` is not empty.
    dirty: Vec<ConnId>,
    /// Bytes in all `pending` buffers together.
    bytes: usize,
    /// A connection is evicted when its backlog would pass this.
    max_outbox_bytes: usize,
    /// Half of it: a connection whose backlog reaches this holds up the
    /// senders that fill it (their credits go to it).
    high_water: usize,
    /// The first connection the current batch filled past `high_water`.
    filled: Option<ConnId>,
}

impl Conn {
    fn is_online(&self) -> bool {
        self.name.is_some() && !self.evicted
    }

    /// Queues `bytes` for this connection, or evicts it if they would take
    /// its backlog past the cap.
    fn push(&mut self, id: ConnId, bytes: &[u8], out: &mut Outbound) {
        if self.evicted {
            return;
        }
        let backlog = self.backlog.get() + self.pending.len() + bytes.len();
        if backlog > out.max_outbox_bytes {
            self.evict(id, backlog);
            out.bytes -= self.pending.len();
            self.pending = Vec::new();
            // Senders held up by it go free.
            self.held.clear();
            return;
        }
        if self.pending.is_empty() {
            out.dirty.push(id);
        }
        self.pending.extend_from_slice(bytes);
        out.bytes += bytes.len();
        if backlog >= out.high_water && out.filled.is_none() {
            out.filled = Some(id);
        }
    }

    fn evict(&mut self, id: ConnId, backlog: usize) {
        self.evicted = true;
        warn!(
            "conn {id} ({}): disconnected as a slow consumer (its unwritten output would reach {backlog} bytes)",
            self.name.as_deref().unwrap_or("not logged in")
        );
        self.link.control.do_send(Control::Evict);
    }

    /// Hands the pending output to the session.
    fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let bytes = std::mem::take(&mut self.pending);
        let held = std::mem::take(&mut self.held);
        self.backlog.add(bytes.len() + DELIVER_OVERHEAD);
        // A session that is gone has its `Leave` on the way; nothing to do
        // (the credits, dropped with the message, go back to their senders).
        self.link.deliver.do_send(Deliver { bytes, held });
    }
}

impl Broker {
    /// A broker that evicts peers whose unwritten output passes
    /// `max_outbox_bytes`.
    pub fn new(max_outbox_bytes: usize) -> Self {
        Broker {
            conns: Table::default(),
            names: Table::default(),
            out: Outbound {
                dirty: Vec::new(),
                bytes: 0,
                max_outbox_bytes,
                high_water: max_outbox_bytes / 2,
                filled: None,
            },
            flush_queued: false,
            phase: Phase::Running,
        }
    }

    /// Queues output for one connection (if it is still there).
    fn push_to(&mut self, id: ConnId, bytes: &[u8]) {
        if let Some(conn) = self.conns.get_mut(&id) {
            conn.push(id, bytes, &mut self.out);
        }
    }

    /// Decides which sessions get `line`, sent by `from` to `names` (and to
    /// everyone else online if `everyone`), and queues it for them. Names
    /// that are not online are reported to the sender in one `error:` line.
    ///
    /// This is the routing decision, in one place.
    fn route<'n>(
        &mut self,
        from: ConnId,
        everyone: bool,
        names: impl Iterator<Item = &'n str>,
        line: &[u8],
    ) {
        let mut reached = 0usize;
        if everyone {
            for (&id, conn) in &mut self.conns {
                if id != from && conn.is_online() {
                    conn.push(id, line, &mut self.out);
                    reached += 1;
                }
            }
        }
        let mut missing: Vec<&str> = Vec::new();
        for name in names {
            let online = self
                .names
                .get(name)
                .and_then(|&id| Some(id).zip(self.conns.get_mut(&id)))
                .filter(|(_, conn)| conn.is_online());
            let Some((id, conn)) = online else {
                missing.push(name);
                continue;
            };
            // With `*`, everyone but the sender has it already.
            if !everyone || id == from {
                conn.push(id, line, &mut self.out);
            }
            reached += 1;
        }
        if !missing.is_empty() {
            let mut err = Vec::new();
            protocol::write_error(
                &mut err,
                format_args!(
                    "not online: {} (message not delivered to {})",
                    protocol::printable(&missing.join(", ")),
                    if missing.len() == 1 { "them" } else { "those" }
                ),
            );
            self.push_to(from, &err);
        } else if reached == 0 {
            let mut err = Vec::new();
            protocol::write_error(&mut err, "no one else is online, message not delivered");
            self.push_to(from, &err);
        }
    }

    /// The answer to `/who`.
    fn who(&self) -> Vec<u8> {
        let online: Vec<&str> = self
            .names
            .iter()
            .filter(|(_, id)| self.conns.get(id).is_some_and(Conn::is_online))
            .map(|(name, _)| &**name)
            .collect();
        let mut out = Vec::new();
        protocol::write_who(&mut out, online.len(), online.into_iter());
        out
    }

    /// Sends all pending output now.
    fn flush(&mut self) {
        for id in self.out.dirty.drain(..) {
            if let Some(conn) = self.conns.get_mut(&id) {
                conn.flush();
            }
        }
        self.out.bytes = 0;
    }

    /// Sends pending output soon: once the mailbox is empty, so that what
    /// the messages waiting there produce goes out together, or right away
    /// if a lot has piled up.
    fn flush_soon(&mut self, ctx: &mut Context<Self>) {
        if self.out.bytes >= FLUSH_AT_BYTES {
            self.flush();
        } else if !self.out.dirty.is_empty() && !self.flush_queued {
            self.flush_queued = true;
            // `notify` runs after the mailbox has been emptied (see actix's
            // ContextFut::poll: mailbox first, then spawned items).
            ctx.notify(Flush);
        }
    }

    /// Shutdown, phase two: every session gets `Goodbye` after all the
    /// output queued for it.
    fn say_goodbye(&mut self) {
        self.flush();
        self.phase = Phase::Closing;
        info!(
            "shutdown: saying goodbye to {} connections",
            self.conns.len()
        );
        for conn in self.conns.values() {
            conn.link.control.do_send(Control::Goodbye);
        }
    }
}

/// Gives back a table's memory once a burst of connections is over: a hash
/// map keeps its largest capacity otherwise. Shrinking only below a quarter
/// full, to half full, keeps this amortized O(1) per removal.
fn shrink_when_sparse<K: std::hash::Hash + Eq, V>(table: &mut Table<K, V>) {
    if table.capacity() > 64 && table.len() < table.capacity() / 4 {
        table.shrink_to(table.len() * 2);
    }
}

impl Actor for Broker {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Unbounded for `send` too: every session has at most one request
        // in flight (it waits for the answer before reading on), so the
        // mailbox is bounded by the number of connections already. actix's
        // own bound would park senders on a shared `Recipient` instead.
        ctx.set_mailbox_capacity(0);
    }
}

/// Self-message: send pending output (see [`Broker::flush_soon`]).
#[derive(Message)]
#[rtype(result = "()")]
struct Flush;

impl Handler<Flush> for Broker {
    type Result = ();

    fn handle(&mut self, _: Flush, _: &mut Context<Self>) {
        self.flush_queued = false;
        self.flush();
    }
}

impl Handler<Connect> for Broker {
    type Result = ();

    fn handle(&mut self, msg: Connect, _: &mut Context<Self>) {
        let Connect {
            id,
            session,
            backlog,
        } = msg;
        // A connection accepted just before shutdown joins the shutdown.
        match &self.phase {
            Phase::Running => {}
            Phase::Draining(weak) => {
                // If the upgrade fails, draining is over and `say_goodbye`
                // is about to run; it will reach this connection too.
                if let Some(guard) = weak.upgrade() {
                    session.control.do_send(Control::Drain(DrainGuard(guard)));
                }
            }
            Phase::Closing => {
                session.control.do_send(Control::Goodbye);
            }
        }
        self.conns.insert(
            id,
            Conn {
                link: session,
                backlog,
                name: None,
                evicted: false,
                pending: Vec::new(),
                held: Vec::new(),
            },
        );
    }
}

impl Handler<NewPeer> for Broker {
    type Result = Result<(), LoginError>;

    fn handle(&mut self, msg: NewPeer, ctx: &mut Context<Self>) -> Self::Result {
        let NewPeer { id, name } = msg;
        if matches!(self.phase, Phase::Closing) {
            return Err(LoginError::ShuttingDown);
        }
        if self.names.contains_key(name.as_str()) {
            return Err(LoginError::Taken(name));
        }
        let Some(conn) = self.conns.get_mut(&id) else {
            // Its `Connect` always comes first; a missing entry means the
            // connection has already left.
            return Err(LoginError::ShuttingDown);
        };
        let name: Name = Arc::from(name);
        conn.name = Some(name.clone());
        self.names.insert(name.clone(), id);
        info!("conn {id}: logged in as {name}");
        let mut welcome = Vec::new();
        protocol::write_server(
            &mut welcome,
            format_args!(
                "welcome {name} ({} online, /help for help)",
                self.names.len()
            ),
        );
        self.push_to(id, &welcome);
        self.flush_soon(ctx);
        Ok(())
    }
}

impl Handler<Route> for Broker {
    type Result = ();

    fn handle(&mut self, msg: Route, ctx: &mut Context<Self>) {
        let Route {
            from,
            batch,
            credit,
        } = msg;
        self.out.filled = None;
        for op in batch.ops() {
            // Checked per op: a sender evicted halfway through its own
            // output (say, a thousand `/who`s) is not served further.
            if !self.conns.get(&from).is_some_and(Conn::is_online) {
                debug!("conn {from}: batch dropped, sender no longer online");
                break;
            }
            self.apply(from, &batch, op);
        }
        // The credit goes back to the sender when it is dropped: now, or,
        // if the batch filled someone's outbox past half its cap, when that
        // session has written enough (end-to-end back-pressure: a flooder
        // slows to its reader's pace instead of getting the reader cut off).
        let filled = self.out.filled.take();
        if let Some(conn) = filled.and_then(|id| self.conns.get_mut(&id))
            && !conn.evicted
        {
            conn.held.push(credit);
        }
        self.flush_soon(ctx);
    }
}

impl Handler<Drained> for Broker {
    type Result = ();

    /// Everything the session read was handled before this message (one
    /// mailbox, in order): dropping its guard says so to the shutdown.
    fn handle(&mut self, msg: Drained, _: &mut Context<Self>) {
        drop(msg.guard);
    }
}

impl Broker {
    fn apply(&mut self, from: ConnId, batch: &Batch, op: &Op) {
        match op {
            Op::Send {
                everyone,
                names,
                line,
            } => {
                log::trace!(
                    "conn {from}: {:?}",
                    String::from_utf8_lossy(batch.bytes(line.clone()))
                );
                self.route(
                    from,
                    *everyone,
                    batch.names(names.clone()),
                    batch.bytes(line.clone()),
                );
            }
            Op::Who => {
                let who = self.who();
                self.push_to(from, &who);
            }
            Op::Echo(range) => self.push_to(from, batch.bytes(range.clone())),
        }
    }
}

impl Handler<Leave> for Broker {
    type Result = ();

    fn handle(&mut self, msg: Leave, _: &mut Context<Self>) {
        let Leave { id, farewell } = msg;
        let Some(mut conn) = self.conns.remove(&id) else {
            return;
        };
        if let Some(name) = &conn.name {
            // Only this connection's own registration is removed, never a
            // newer connection that took the name since.
            if self.names.get(name) == Some(&id) {
                self.names.remove(name);
            }
            info!("conn {id}: {name} left");
        }
        shrink_when_sparse(&mut self.conns);
        shrink_when_sparse(&mut self.names);
        self.out.bytes = self.out.bytes.saturating_sub(conn.pending.len());
        if let Some(text) = farewell {
            protocol::write_server(&mut conn.pending, text);
        }
        // Its last output first, then the word to close after it.
        conn.flush();
        conn.link.control.do_send(Control::Close);
    }
}

impl Handler<Shutdown> for Broker {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, msg: Shutdown, _: &mut Context<Self>) -> Self::Result {
        info!(
            "shutdown: draining input of {} connections",
            self.conns.len()
        );
        self.flush();
        let (guard, mut drained) = mpsc::channel::<()>(1);
        for conn in self.conns.values() {
            conn.link
                .control
                .do_send(Control::Drain(DrainGuard(guard.clone())));
        }
        self.phase = Phase::Draining(guard.downgrade());
        drop(guard);
        let deadline = tokio::time::Instant::from_std(msg.drain_deadline);
        let all_drained = async move {
            // `recv` yields `None` once every guard has been dropped.
            let waited = tokio::time::timeout_at(deadline, drained.recv()).await;
            if waited.is_err() {
                warn!("shutdown: not every connection drained its input in time");
            }
        };
        Box::pin(
            all_drained
                .into_actor(self)
                .map(|(), broker, _| broker.say_goodbye()),
        )
    }
}

#[cfg(test)]
mod tests {
    //! The broker with small test actors in place of sessions: each records
    //! what it is sent into a channel the test reads.

    use super::*;
    use crate::protocol::{Request, parse_request};
    use std::time::{Duration, Instant};
    use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

    /// What a test session saw.
    #[derive(Debug, PartialEq, Eq)]
    enum Seen {
        Line(String),
        Evict,
        Close,
        Drain,
        Goodbye,
    }

    /// A stand-in for a session: reports everything, writes nothing, and
    /// (like a real one) frees the backlog as soon as output arrives.
    struct Probe {
        seen: UnboundedSender<Seen>,
        backlog: Backlog,
        /// Whether output is "written" at once; off to model a stuck reader.
        reading: bool,
    }

    impl Actor for Probe {
        type Context = Context<Self>;
    }

    impl Handler<Deliver> for Probe {
        type Result = ();
        fn handle(&mut self, msg: Deliver, _: &mut Context<Self>) {
            if self.reading {
                self.backlog.sub(msg.bytes.len() + DELIVER_OVERHEAD);
            }
            for line in String::from_utf8(msg.bytes).unwrap().lines() {
                let _ = self.seen.send(Seen::Line(line.to_owned()));
            }
        }
    }

    impl Handler<Control> for Probe {
        type Result = ();
        fn handle(&mut self, msg: Control, _: &mut Context<Self>) {
            let _ = self.seen.send(match msg {
                Control::Evict => Seen::Evict,
                Control::Close => Seen::Close,
                Control::Drain(_guard) => Seen::Drain,
                Control::Goodbye => Seen::Goodbye,
            });
        }
    }

    struct Peer {
        id: ConnId,
        seen: UnboundedReceiver<Seen>,
    }

    impl Peer {
        /// The next thing this peer saw, waiting at most a few seconds.
        async fn next(&mut self) -> Seen {
            tokio::time::timeout(Duration::from_secs(5), self.seen.recv())
                .await
                .expect("nothing arrived in time")
                .expect("probe gone")
        }

        async fn line(&mut self) -> String {
            match self.next().await {
                Seen::Line(l) => l,
                other => panic!("expected a line, got {other:?}"),
            }
        }

        /// Asserts nothing more arrives (after a round trip through the
        /// broker, so anything queued would have been seen).
        async fn nothing_more(&mut self, broker: &Addr<Broker>) {
            sync(broker).await;
            assert_eq!(self.seen.try_recv().ok(), None);
        }
    }

    /// Waits until the broker has handled everything sent before, and its
    /// queued flush too.
    async fn sync(broker: &Addr<Broker>) {
        broker
            .send(Route {
                from: u64::MAX,
                batch: Batch::new(),
                credit: Credit::unlimited(),
            })
            .await
            .unwrap();
        broker
            .send(Route {
                from: u64::MAX,
                batch: Batch::new(),
                credit: Credit::unlimited(),
            })
            .await
            .unwrap();
        // The probes are on this same thread; let them run.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    fn connect(broker: &Addr<Broker>, id: ConnId, reading: bool) -> Peer {
        let (tx, rx) = unbounded_channel();
        let backlog = Backlog::default();
        let probe = Probe {
            seen: tx,
            backlog: backlog.clone(),
            reading,
        }
        .start();
        broker.do_send(Connect {
            id,
            session: SessionLink::new(&probe),
            backlog,
        });
        Peer { id, seen: rx }
    }

    async fn login(broker: &Addr<Broker>, id: ConnId, name: &str, reading: bool) -> Peer {
        let mut peer = connect(broker, id, reading);
        broker
            .send(NewPeer {
                id,
                name: name.into(),
            })
            .await
            .unwrap()
            .unwrap();
        assert!(
            peer.line()
                .await
                .starts_with(&format!("server: welcome {name}"))
        );
        peer
    }

    fn batch(sender: &str, lines: &[&str]) -> Batch {
        let mut batch = Batch::new();
        for line in lines {
            match parse_request(line).unwrap() {
                Request::Chat(chat) => batch.push_chat(sender, &chat),
                Request::Command(protocol::Command::Who) => batch.push_who(),
                other => panic!("not for the broker: {other:?}"),
            }
        }
        batch
    }

    async fn send(broker: &Addr<Broker>, from: &Peer, name: &str, lines: &[&str]) {
        broker
            .send(Route {
                from: from.id,
                batch: batch(name, lines),
                credit: Credit::unlimited(),
            })
            .await
            .unwrap();
    }

    fn start() -> Addr<Broker> {
        Broker::new(1 << 20).start()
    }

    #[actix::test]
    async fn register_and_welcome() {
        let broker = start();
        let mut alice = connect(&broker, 1, true);
        broker
            .send(NewPeer {
                id: 1,
                name: "alice".into(),
            })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            alice.line().await,
            "server: welcome alice (1 online, /help for help)"
        );
    }

    #[actix::test]
    async fn a_taken_name_is_refused() {
        let broker = start();
        let _alice = login(&broker, 1, "alice", true).await;
        let _other = connect(&broker, 2, true);
        let answer = broker
            .send(NewPeer {
                id: 2,
                name: "alice".into(),
            })
            .await
            .unwrap();
        assert_eq!(answer, Err(LoginError::Taken("alice".into())));
        // The same connection may try another name.
        broker
            .send(NewPeer {
                id: 2,
                name: "alicia".into(),
            })
            .await
            .unwrap()
            .unwrap();
    }

    #[actix::test]
    async fn deliver_to_several_and_to_oneself() {
        let broker = start();
        let mut alice = login(&broker, 1, "alice", true).await;
        let mut bob = login(&broker, 2, "bob", true).await;
        let mut carol = login(&broker, 3, "carol", true).await;
        send(&broker, &alice, "alice", &["bob, carol, alice, bob: hi"]).await;
        assert_eq!(bob.line().await, "from alice: hi");
        assert_eq!(carol.line().await, "from alice: hi");
        assert_eq!(alice.line().await, "from alice: hi");
        bob.nothing_more(&broker).await;
        carol.nothing_more(&broker).await;
    }

    #[actix::test]
    async fn everyone_but_the_sender() {
        let broker = start();
        let mut alice = login(&broker, 1, "alice", true).await;
        let mut bob = login(&broker, 2, "bob", true).await;
        let mut carol = login(&broker, 3, "carol", true).await;
        let mut lurker = connect(&broker, 4, true); // not logged in
        send(&broker, &alice, "alice", &["*, bob: hello all"]).await;
        assert_eq!(bob.line().await, "from alice: hello all");
        assert_eq!(carol.line().await, "from alice: hello all");
        bob.nothing_more(&broker).await;
        alice.nothing_more(&broker).await;
        lurker.nothing_more(&broker).await;
    }

    #[actix::test]
    async fn everyone_with_nobody_else_online_is_an_error() {
        let broker = start();
        let mut alice = login(&broker, 1, "alice", true).await;
        send(&broker, &alice, "alice", &["*: anyone?"]).await;
        assert_eq!(
            alice.line().await,
            "error: no one else is online, message not delivered"
        );
    }

    #[actix::test]
    async fn unknown_recipients_are_named_once_and_others_still_served() {
        let broker = start();
        let mut alice = login(&broker, 1, "alice", true).await;
        let mut bob = login(&broker, 2, "bob", true).await;
        send(&broker, &alice, "alice", &["carol, bob, dave: hi"]).await;
        assert_eq!(bob.line().await, "from alice: hi");
        assert_eq!(
            alice.line().await,
            "error: not online: carol, dave (message not delivered to those)"
        );
        alice.nothing_more(&broker).await;
    }

    #[actix::test]
    async fn leave_frees_the_name_and_closes() {
        let broker = start();
        let mut alice = login(&broker, 1, "alice", true).await;
        let mut bob = login(&broker, 2, "bob", true).await;
        broker.do_send(Leave {
            id: 1,
            farewell: Some("bye"),
        });
        assert_eq!(alice.line().await, "server: bye");
        assert_eq!(alice.next().await, Seen::Close);
        send(&broker, &bob, "bob", &["alice: still there?"]).await;
        assert!(bob.line().await.starts_with("error: not online: alice"));
        let _alice2 = login(&broker, 3, "alice", true).await;
    }

    #[actix::test]
    async fn a_late_leave_never_removes_a_newer_owner_of_the_name() {
        let broker = start();
        let _alice = login(&broker, 1, "alice", true).await;
        broker.do_send(Leave {
            id: 1,
            farewell: None,
        });
        let _alice2 = login(&broker, 2, "alice", true).await;
        // A second, stale Leave for connection 1 changes nothing.
        broker.do_send(Leave {
            id: 1,
            farewell: None,
        });
        let mut bob = login(&broker, 3, "bob", true).await;
        send(&broker, &bob, "bob", &["/who"]).await;
        assert_eq!(bob.line().await, "server: 2 online:");
        assert_eq!(bob.line().await, "server: alice, bob");
    }

    #[actix::test]
    async fn who_lists_online_peers() {
        let broker = start();
        let mut alice = login(&broker, 1, "alice", true).await;
        let _bob = login(&broker, 2, "bob", true).await;
        let _anon = connect(&broker, 3, true);
        send(&broker, &alice, "alice", &["/who"]).await;
        assert_eq!(alice.line().await, "server: 2 online:");
        assert_eq!(alice.line().await, "server: alice, bob");
    }

    #[actix::test]
    async fn order_is_kept_per_sender_and_recipient() {
        let broker = start();
        let alice = login(&broker, 1, "alice", true).await;
        let mut bob = login(&broker, 2, "bob", true).await;
        let lines: Vec<String> = (0..1000).map(|i| format!("bob: {i}")).collect();
        for chunk in lines.chunks(7) {
            let chunk: Vec<&str> = chunk.iter().map(String::as_str).collect();
            send(&broker, &alice, "alice", &chunk).await;
        }
        for i in 0..1000 {
            assert_eq!(bob.line().await, format!("from alice: {i}"));
        }
    }

    #[actix::test]
    async fn a_stuck_reader_is_evicted_and_others_are_not_slowed() {
        let broker = Broker::new(10_000).start();
        let mut alice = login(&broker, 1, "alice", true).await;
        let mut stuck = login(&broker, 2, "stuck", false).await;
        let mut bob = login(&broker, 3, "bob", true).await;
        let text = "x".repeat(1000);
        for _ in 0..20 {
            send(&broker, &alice, "alice", &[&format!("stuck, bob: {text}")]).await;
        }
        for _ in 0..20 {
            assert!(bob.line().await.ends_with(&text));
        }
        // The stuck peer got what fit, then the order to go.
        loop {
            match stuck.next().await {
                Seen::Line(_) => continue,
                Seen::Evict => break,
                other => panic!("{other:?}"),
            }
        }
        // Alice was told of the messages that found it gone.
        sync(&broker).await;
        while let Ok(seen) = alice.seen.try_recv() {
            assert_eq!(
                seen,
                Seen::Line("error: not online: stuck (message not delivered to them)".into())
            );
        }
        // From then on it counts as offline, for routing and for /who.
        send(&broker, &alice, "alice", &["stuck: hello?", "/who"]).await;
        assert!(alice.line().await.starts_with("error: not online: stuck"));
        assert_eq!(alice.line().await, "server: 2 online:");
        stuck.nothing_more(&broker).await;
    }

    #[actix::test]
    async fn shutdown_drains_then_says_goodbye_after_pending_output() {
        let broker = start();
        let alice = login(&broker, 1, "alice", true).await;
        let mut bob = login(&broker, 2, "bob", true).await;
        let mut anon = connect(&broker, 3, true);
        send(&broker, &alice, "alice", &["bob: last words"]).await;
        let deadline = Instant::now() + Duration::from_secs(5);
        let shutdown = broker.send(Shutdown {
            drain_deadline: deadline,
        });
        // The probes drop their drain guards at once, so this completes.
        tokio::time::timeout(Duration::from_secs(5), shutdown)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(bob.line().await, "from alice: last words");
        assert_eq!(bob.next().await, Seen::Drain);
        assert_eq!(bob.next().await, Seen::Goodbye);
        assert_eq!(anon.next().await, Seen::Drain);
        assert_eq!(anon.next().await, Seen::Goodbye);
        // No new logins once closing.
        let _late = connect(&broker, 4, true);
        let answer = broker
            .send(NewPeer {
                id: 4,
                name: "late".into(),
            })
            .await
            .unwrap();
        assert_eq!(answer, Err(LoginError::ShuttingDown));
    }
}
