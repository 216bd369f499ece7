//! The broker with small test actors in place of sessions: each records
//! what it is sent into a channel the test reads.

mod folding;
mod remote;
mod slices;

use super::*;
use crate::batch::Batch;
use crate::messages::{
    Backlog, Credit, DELIVER_OVERHEAD, Deliver, LoginError, NewPeer, SessionLink, Shutdown,
    SliceShare,
};
use crate::protocol::{self, LoginName, Request, parse_request};
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
    /// Whether to keep the slices of wide fan-outs (as a session that has
    /// not run yet would) until told to [`LetGo`].
    keep_slices: bool,
    kept: Vec<SliceShare>,
}

/// Tells a probe to drop the slices it kept.
#[derive(Message)]
#[rtype(result = "()")]
struct LetGo;

impl Handler<LetGo> for Probe {
    type Result = ();
    fn handle(&mut self, _: LetGo, _: &mut Context<Self>) {
        self.kept.clear();
    }
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
        if self.keep_slices {
            self.kept.extend(msg.slice);
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

struct TestPeer {
    id: ConnId,
    seen: UnboundedReceiver<Seen>,
    probe: Addr<Probe>,
}

impl TestPeer {
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

fn connect(broker: &Addr<Broker>, id: ConnId, reading: bool) -> TestPeer {
    connect_keeping(broker, id, reading, false)
}

/// As [`connect`], with a probe that keeps its slices if `keep_slices`.
fn connect_keeping(
    broker: &Addr<Broker>,
    id: ConnId,
    reading: bool,
    keep_slices: bool,
) -> TestPeer {
    let (tx, rx) = unbounded_channel();
    let backlog = Backlog::default();
    let probe = Probe {
        seen: tx,
        backlog: backlog.clone(),
        reading,
        keep_slices,
        kept: Vec::new(),
    }
    .start();
    broker.do_send(Connect {
        id,
        session: SessionLink::new(&probe),
        backlog,
    });
    TestPeer {
        id,
        seen: rx,
        probe,
    }
}

/// Asks the broker for `name` on behalf of connection `id`.
async fn ask(broker: &Addr<Broker>, id: ConnId, name: &str) -> Result<(), LoginError> {
    broker
        .send(NewPeer {
            id,
            name: LoginName::new(name).unwrap(),
        })
        .await
        .unwrap()
}

async fn login(broker: &Addr<Broker>, id: ConnId, name: &str, reading: bool) -> TestPeer {
    let mut peer = connect(broker, id, reading);
    ask(broker, id, name).await.unwrap();
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

async fn send(broker: &Addr<Broker>, from: &TestPeer, name: &str, lines: &[&str]) {
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
    start_with(1 << 20, 1 << 30)
}

/// A broker with these caps on output, per peer and in all.
fn start_with(per_peer: usize, total: usize) -> Addr<Broker> {
    let limits = OutboxLimits { per_peer, total };
    Broker::new(limits, Arc::new(RosterGauge::default())).start()
}

#[actix::test]
async fn register_and_welcome() {
    let broker = start();
    let mut alice = connect(&broker, 1, true);
    ask(&broker, 1, "alice").await.unwrap();
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
    let answer = ask(&broker, 2, "alice").await;
    assert_eq!(answer, Err(LoginError::Taken("alice".into())));
    // The same connection may try another name.
    ask(&broker, 2, "alicia").await.unwrap();
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
        reason: LeaveReason::Quit,
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
        reason: LeaveReason::Gone,
    });
    let _alice2 = login(&broker, 2, "alice", true).await;
    // A second, stale Leave for connection 1 changes nothing.
    broker.do_send(Leave {
        id: 1,
        reason: LeaveReason::Gone,
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
    let broker = start_with(10_000, 1 << 30);
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
    let answer = ask(&broker, 4, "late").await;
    assert_eq!(answer, Err(LoginError::ShuttingDown));
}

#[actix::test]
async fn who_follows_the_roster_and_the_gauge_is_published() {
    let gauge = Arc::new(RosterGauge::default());
    let limits = OutboxLimits {
        per_peer: 1 << 20,
        total: 1 << 30,
    };
    let broker = Broker::new(limits, gauge.clone()).start();
    let mut alice = login(&broker, 1, "alice", true).await;
    let _carol = login(&broker, 3, "carol", true).await;
    let _bob = login(&broker, 2, "bob", true).await;
    assert_eq!(gauge.online(), 3);
    send(&broker, &alice, "alice", &["/who", "/who"]).await;
    for _ in 0..2 {
        assert_eq!(alice.line().await, "server: 3 online:");
        assert_eq!(alice.line().await, "server: alice, bob, carol");
    }
    // The answer's size is published once it has been built.
    assert_eq!(
        gauge.who_bytes(),
        "server: 3 online:\nserver: alice, bob, carol\n".len()
    );
    broker.do_send(Leave {
        id: 2,
        reason: LeaveReason::Gone,
    });
    send(&broker, &alice, "alice", &["/who"]).await;
    assert_eq!(alice.line().await, "server: 2 online:");
    assert_eq!(alice.line().await, "server: alice, carol");
    assert_eq!(gauge.online(), 2);
}

#[actix::test]
async fn past_the_total_cap_the_heaviest_peer_is_evicted_first() {
    // Each peer may hold up to 1 MiB; all together only 30 KB.
    let broker = start_with(1 << 20, 30_000);
    let mut alice = login(&broker, 1, "alice", true).await;
    let mut heavy = login(&broker, 2, "heavy", false).await;
    let mut light = login(&broker, 3, "light", false).await;
    let text = "x".repeat(1000);
    for _ in 0..5 {
        send(&broker, &alice, "alice", &[&format!("light: {text}")]).await;
    }
    for _ in 0..30 {
        send(&broker, &alice, "alice", &[&format!("heavy: {text}")]).await;
    }
    // The heavy one was told to go, the light one was not.
    loop {
        match heavy.next().await {
            Seen::Line(_) => continue,
            Seen::Evict => break,
            other => panic!("{other:?}"),
        }
    }
    for _ in 0..5 {
        assert!(light.line().await.ends_with(&text));
    }
    light.nothing_more(&broker).await;
    // Offline for everyone from then on; the light one still online.
    sync(&broker).await;
    while alice.seen.try_recv().is_ok() {}
    send(&broker, &alice, "alice", &["/who"]).await;
    assert_eq!(alice.line().await, "server: 2 online:");
    assert_eq!(alice.line().await, "server: alice, light");
}
