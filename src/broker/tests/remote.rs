//! The broker in cluster mode, with a stand-in for the cluster actor: lines
//! for remote users go to their node with the sender's credit, lines from
//! other nodes reach local users, `/who` counts everyone.

use super::*;
use crate::cluster::wire;
use crate::messages::cluster::{
    Claim, ClaimRefused, ClusterLink, Incoming, LocalRoster, NodeRoster, Outgoing, Reject,
    RosterUpdate,
};

/// What the stand-in cluster actor was sent.
#[derive(Debug)]
enum Sent {
    Roster(String, bool),
    Outgoing(String, Vec<u8>, Vec<Credit>),
    Reject(String, u64, String),
}

struct FakeCluster(UnboundedSender<Sent>);

impl Actor for FakeCluster {
    type Context = Context<Self>;
}

impl Handler<Claim> for FakeCluster {
    type Result = Result<(), ClaimRefused>;
    fn handle(&mut self, msg: Claim, _: &mut Context<Self>) -> Self::Result {
        if msg.folded == protocol::Folded::of("carol") {
            return Err(ClaimRefused::Taken);
        }
        match &*msg.name {
            "unlucky" => Err(ClaimRefused::Unavailable),
            "held" => Err(ClaimRefused::HeldByLostNode(30)),
            _ => Ok(()),
        }
    }
}

impl Handler<LocalRoster> for FakeCluster {
    type Result = ();
    fn handle(&mut self, msg: LocalRoster, _: &mut Context<Self>) {
        let _ = self.0.send(Sent::Roster(msg.name.to_string(), msg.online));
    }
}

impl Handler<Outgoing> for FakeCluster {
    type Result = ();
    fn handle(&mut self, msg: Outgoing, _: &mut Context<Self>) {
        let _ = self.0.send(Sent::Outgoing(
            msg.node.to_string(),
            msg.records,
            msg.credits,
        ));
    }
}

impl Handler<Reject> for FakeCluster {
    type Result = ();
    fn handle(&mut self, msg: Reject, _: &mut Context<Self>) {
        let _ = self
            .0
            .send(Sent::Reject(msg.node.to_string(), msg.conn, msg.names));
    }
}

fn start_clustered() -> (Addr<Broker>, UnboundedReceiver<Sent>) {
    let (tx, rx) = unbounded_channel();
    let fake = FakeCluster(tx).start();
    let link = ClusterLink {
        node: Arc::from("a"),
        claim: fake.clone().recipient(),
        roster: fake.clone().recipient(),
        outgoing: fake.clone().recipient(),
        reject: fake.recipient(),
    };
    let limits = OutboxLimits {
        per_peer: 1 << 20,
        total: 1 << 30,
    };
    let broker = Broker::new(limits, Arc::new(RosterGauge::default()))
        .in_cluster(link)
        .start();
    (broker, rx)
}

async fn sent(rx: &mut UnboundedReceiver<Sent>) -> Sent {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("nothing sent to the cluster in time")
        .expect("fake cluster gone")
}

fn node_b(names: &[&str]) -> NodeRoster {
    NodeRoster {
        node: Arc::from("b"),
        update: RosterUpdate::Replace(names.iter().map(|n| Name::from(*n)).collect()),
    }
}

/// Hands the broker a frame of `records` from node b.
async fn from_node_b(broker: &Addr<Broker>, records: Vec<u8>) {
    broker
        .send(Incoming {
            from: Arc::from("b"),
            payload: bytes::Bytes::from(records),
            offset: 0,
            credit: Credit::unlimited(),
        })
        .await
        .unwrap();
}

#[actix::test]
async fn a_line_for_a_remote_user_goes_to_its_node_holding_the_senders_credit() {
    let (broker, mut cluster) = start_clustered();
    let _alice = login(&broker, 1, "alice", true).await;
    assert!(matches!(sent(&mut cluster).await, Sent::Roster(n, true) if n == "alice"));
    broker.send(node_b(&["bob", "carol"])).await.unwrap();
    let semaphore = Arc::new(tokio::sync::Semaphore::new(1));
    let permit = semaphore.clone().try_acquire_owned().unwrap();
    broker
        .send(Route {
            from: 1,
            batch: batch("alice", &["bob, carol: hi"]),
            credit: Credit::new(permit),
        })
        .await
        .unwrap();
    let Sent::Outgoing(node, records, credits) = sent(&mut cluster).await else {
        panic!("expected a frame");
    };
    assert_eq!(node, "b");
    let records: Vec<_> = wire::records(&records).collect::<Result<_, _>>().unwrap();
    assert_eq!(records.len(), 1, "one record for both names on one node");
    assert_eq!(records[0].conn, 1);
    assert_eq!(
        records[0].recipients().collect::<Vec<_>>(),
        ["bob", "carol"]
    );
    assert_eq!(records[0].line, b"from alice: hi\n");
    // The credit is out until node b has handled the frame.
    assert_eq!(semaphore.available_permits(), 0);
    drop(credits);
    assert_eq!(semaphore.available_permits(), 1);
}

#[actix::test]
async fn a_frame_from_another_node_reaches_local_users_and_missing_names_go_back() {
    let (broker, mut cluster) = start_clustered();
    let mut alice = login(&broker, 1, "alice", true).await;
    let _ = sent(&mut cluster).await;
    let mut records = Vec::new();
    wire::write_record(
        &mut records,
        7,
        false,
        ["alice", "ghost"].into_iter(),
        b"from bob: hi\n",
    );
    wire::write_record(
        &mut records,
        7,
        true,
        std::iter::empty(),
        b"from bob: all\n",
    );
    from_node_b(&broker, records).await;
    assert_eq!(alice.line().await, "from bob: hi");
    assert_eq!(alice.line().await, "from bob: all");
    let Sent::Reject(node, conn, names) = sent(&mut cluster).await else {
        panic!("expected a rejection");
    };
    assert_eq!((node.as_str(), conn, names.as_str()), ("b", 7, "ghost,"));
}

#[actix::test]
async fn who_counts_remote_users_and_a_node_going_down_takes_them_off() {
    let (broker, _cluster) = start_clustered();
    let mut alice = login(&broker, 1, "alice", true).await;
    broker.send(node_b(&["bob", "carol"])).await.unwrap();
    send(&broker, &alice, "alice", &["/who"]).await;
    assert_eq!(alice.line().await, "server: 3 online:");
    assert_eq!(alice.line().await, "server: alice, bob, carol");
    broker
        .send(NodeRoster {
            node: Arc::from("b"),
            update: RosterUpdate::Down,
        })
        .await
        .unwrap();
    send(&broker, &alice, "alice", &["bob: gone?"]).await;
    assert_eq!(
        alice.line().await,
        "error: not online: bob (message not delivered to them)"
    );
}

#[actix::test]
async fn the_name_service_decides_a_login() {
    let (broker, mut cluster) = start_clustered();
    let _p = connect(&broker, 1, true);
    assert_eq!(
        ask(&broker, 1, "unlucky").await,
        Err(LoginError::Unavailable)
    );
    assert_eq!(
        ask(&broker, 1, "held").await,
        Err(LoginError::HeldByLostNode(30))
    );
    // A name listed on another node is still asked for (the list may be
    // stale): here the name service says yes.
    broker.send(node_b(&["bob"])).await.unwrap();
    assert_eq!(ask(&broker, 1, "bob").await, Ok(()));
    assert!(matches!(sent(&mut cluster).await, Sent::Roster(n, true) if n == "bob"));
}

#[actix::test]
async fn a_user_who_came_and_went_in_one_announcement_is_gone() {
    let (broker, _cluster) = start_clustered();
    let mut alice = login(&broker, 1, "alice", true).await;
    let x = || Name::from("x");
    broker
        .send(NodeRoster {
            node: Arc::from("b"),
            update: RosterUpdate::Changes(vec![(true, x()), (false, x()), (true, Name::from("y"))]),
        })
        .await
        .unwrap();
    send(&broker, &alice, "alice", &["/who"]).await;
    assert_eq!(alice.line().await, "server: 2 online:");
    assert_eq!(alice.line().await, "server: alice, y");
    send(&broker, &alice, "alice", &["x: there?"]).await;
    assert_eq!(
        alice.line().await,
        "error: not online: x (message not delivered to them)"
    );
}

#[actix::test]
async fn a_remote_user_is_reached_in_any_spelling_under_the_spelling_its_node_knows() {
    let (broker, mut cluster) = start_clustered();
    let alice = login(&broker, 1, "alice", true).await;
    let _ = sent(&mut cluster).await;
    broker.send(node_b(&["Bob", "carol"])).await.unwrap();
    send(
        &broker,
        &alice,
        "alice",
        &["bob, BOB, Bob, c\u{0430}rol: hi"],
    )
    .await;
    let Sent::Outgoing(node, records, _) = sent(&mut cluster).await else {
        panic!("expected a frame");
    };
    assert_eq!(node, "b");
    let records: Vec<_> = wire::records(&records).collect::<Result<_, _>>().unwrap();
    assert_eq!(
        records[0].recipients().collect::<Vec<_>>(),
        ["Bob", "carol"],
        "each once, spelled as registered"
    );
}

#[actix::test]
async fn a_name_online_elsewhere_in_another_spelling_is_refused_naming_that_spelling() {
    let (broker, _cluster) = start_clustered();
    broker.send(node_b(&["carol"])).await.unwrap();
    let _conn = connect(&broker, 1, true);
    assert_eq!(
        ask(&broker, 1, "CAROL").await,
        Err(LoginError::TakenAs {
            name: "CAROL".into(),
            online: "carol".into()
        })
    );
}

#[actix::test]
async fn a_record_for_an_old_spelling_reaches_the_new_one() {
    let (broker, mut cluster) = start_clustered();
    let mut alice = login(&broker, 1, "ALICE", true).await;
    let _ = sent(&mut cluster).await;
    let mut records = Vec::new();
    wire::write_record(
        &mut records,
        7,
        false,
        ["Alice"].into_iter(),
        b"from bob: hi\n",
    );
    from_node_b(&broker, records).await;
    assert_eq!(alice.line().await, "from bob: hi");
    alice.nothing_more(&broker).await;
}
