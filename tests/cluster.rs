//! Cluster mode end to end: three nats-servers (cluster + JetStream, see
//! `nats.rs`) and several achat nodes, with real TCP clients on each.
//!
//! Nodes run in this process (each its own server thread) with shortened
//! failure clocks ([`fast`]); the node killed with SIGKILL is a real
//! `achat-server` process. Every wait is bounded.

#![allow(unreachable_pub)]

use std::net::SocketAddr;
use std::time::Duration;

use achat::cluster::{ClusterConfig, Timing};

use crate::nats::NatsCluster;
use crate::util::{Client, Deadline, TestServer, start_with, test_config};

/// Failure clocks short enough for tests, in the same proportions as the
/// defaults.
pub fn fast() -> Timing {
    Timing {
        beat: Duration::from_millis(200),
        down_after: Duration::from_millis(1000),
        lease_every: Duration::from_millis(400),
        cut_off_after: Duration::from_secs(4),
        free_after: Duration::from_secs(6),
        janitor_every: Duration::from_millis(500),
        request_timeout: Duration::from_secs(2),
    }
}

/// A NATS cluster and achat nodes on it.
pub struct Fixture {
    pub nats: NatsCluster,
    pub nodes: Vec<TestServer>,
}

/// A node's configuration: on NATS server(s) `urls`, node id `id`.
pub fn node_config(urls: String, id: &str) -> achat::Config {
    achat::Config {
        cluster: Some(ClusterConfig {
            urls,
            cluster_name: "t".into(),
            node_id: id.into(),
            timing: fast(),
        }),
        ..test_config()
    }
}

impl Fixture {
    /// Three nats-servers and `n` nodes, node i connected to server i % 3,
    /// and waits until every node hears every other. `None`: no
    /// nats-server here (the test is skipped).
    pub async fn start(n: usize) -> Option<Fixture> {
        let nats = NatsCluster::start(3).await?;
        let nodes = (0..n)
            .map(|i| start_with(node_config(nats.url(i % 3), &format!("n{i}"))))
            .collect();
        let fixture = Fixture { nats, nodes };
        fixture.wait_converged().await;
        Some(fixture)
    }

    pub fn addr(&self, i: usize) -> SocketAddr {
        self.nodes[i].addr
    }

    pub async fn login(&self, node: usize, name: &str) -> Client {
        TestServer::client_for(self.addr(node), name).await
    }

    /// Waits until a user on each node sees the users of all the others.
    async fn wait_converged(&self) {
        let mut probes = Vec::new();
        for i in 0..self.nodes.len() {
            probes.push(self.login(i, &format!("probe{i}")).await);
        }
        for probe in &mut probes {
            wait_who(probe, self.nodes.len()).await;
        }
        for probe in probes {
            quit(probe).await;
        }
    }
}

/// Sends `/who` until it says `n online` (bounded); returns the names.
pub async fn wait_who(client: &mut Client, n: usize) -> Vec<String> {
    let deadline = Deadline::new(&format!("/who to list {n} online"));
    loop {
        let names = who(client).await;
        if names.len() == n {
            return names;
        }
        deadline.check();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The names `/who` lists.
pub async fn who(client: &mut Client) -> Vec<String> {
    client.send("/who").await;
    let head = client.expect_prefix("server: ").await;
    let count: usize = head
        .trim_start_matches("server: ")
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not a /who answer: {head:?}"));
    let mut names = Vec::new();
    while names.len() < count {
        let line = client.expect_prefix("server: ").await;
        names.extend(line["server: ".len()..].split(", ").map(str::to_owned));
    }
    names.sort();
    names
}

/// `/quit`, and waits for the close.
pub async fn quit(mut client: Client) {
    client.send("/quit").await;
    client.expect("server: bye").await;
    client.expect_closed().await;
}

/// Logs in as `name` on `addr`, retrying (bounded by `within`) while the
/// answer is an error; returns the client and every refusal seen.
pub async fn login_eventually(
    addr: SocketAddr,
    name: &str,
    within: Duration,
) -> (Client, Vec<String>) {
    let mut client = Client::connect(addr).await;
    let deadline = tokio::time::Instant::now() + within;
    let mut refusals = Vec::new();
    loop {
        client.send(name).await;
        let line = client.line().await;
        if line.starts_with(&format!("server: welcome {name} ")) {
            client.name = name.to_owned();
            return (client, refusals);
        }
        assert!(line.starts_with("error: "), "unexpected {line:?}");
        refusals.push(line);
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} not free within {within:?}: {refusals:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn users_on_different_nodes_chat_as_on_one() {
    let Some(f) = Fixture::start(3).await else {
        return;
    };
    let mut alice = f.login(0, "alice").await;
    let mut bob = f.login(1, "bob").await;
    let mut carol = f.login(2, "carol").await;
    for client in [&mut alice, &mut bob, &mut carol] {
        assert_eq!(wait_who(client, 3).await, ["alice", "bob", "carol"]);
    }
    alice.send("bob: hello").await;
    bob.expect("from alice: hello").await;
    bob.send("alice, carol: both of you").await;
    alice.expect("from bob: both of you").await;
    carol.expect("from bob: both of you").await;
    carol.send("*: everyone").await;
    alice.expect("from carol: everyone").await;
    bob.expect("from carol: everyone").await;
    // Errors as on one node: a name nobody has.
    alice.send("bob, dave: hi").await;
    alice
        .expect("error: not online: dave (message not delivered to them)")
        .await;
    bob.expect("from alice: hi").await;
    // The name is taken cluster-wide, and the welcome counts everyone.
    let mut second = Client::connect(f.addr(2)).await;
    second.send("alice").await;
    second
        .expect("error: the name 'alice' is taken, choose another")
        .await;
    second.send("zoë").await;
    second
        .expect("server: welcome zoë (4 online, /help for help)")
        .await;
    // Reachable from another node once the news has arrived there.
    wait_who(&mut alice, 4).await;
    alice.send("zoë: non-ASCII names cross nodes").await;
    second
        .expect("from alice: non-ASCII names cross nodes")
        .await;
    for client in [&mut alice, &mut bob, &mut carol] {
        client.sync().await;
    }
}

#[tokio::test]
async fn per_pair_order_holds_across_nodes() {
    let Some(f) = Fixture::start(3).await else {
        return;
    };
    let mut carol = f.login(2, "carol").await;
    let mut alice = f.login(0, "alice").await;
    let mut bob = f.login(1, "bob").await;
    wait_who(&mut alice, 3).await;
    wait_who(&mut bob, 3).await;
    const N: usize = 3000;
    let send = |mut client: Client, tag: &'static str| async move {
        for i in 0..N {
            client.send(&format!("carol: {tag} {i}")).await;
        }
        client
    };
    let (alice, bob) = tokio::join!(send(alice, "a"), send(bob, "b"));
    let mut next = [0usize; 2];
    while next != [N, N] {
        let line = carol.line().await;
        let (tag, i) = if let Some(rest) = line.strip_prefix("from alice: a ") {
            (0, rest)
        } else if let Some(rest) = line.strip_prefix("from bob: b ") {
            (1, rest)
        } else {
            panic!("unexpected {line:?}");
        };
        let i: usize = i.parse().unwrap();
        assert_eq!(i, next[tag], "out of order from sender {tag}");
        next[tag] += 1;
    }
    // Nothing was reported lost to the senders.
    for mut sender in [alice, bob] {
        sender.sync().await;
    }
}

#[tokio::test]
async fn a_name_raced_for_on_three_nodes_has_one_winner_every_round() {
    let Some(f) = Fixture::start(3).await else {
        return;
    };
    let mut racers = Vec::new();
    for i in 0..3 {
        racers.push(Client::connect(f.addr(i)).await);
    }
    for round in 0..200 {
        for racer in &mut racers {
            racer.send("racer").await;
        }
        let mut winners = Vec::new();
        for (i, racer) in racers.iter_mut().enumerate() {
            let line = racer.line().await;
            if line.starts_with("server: welcome racer ") {
                winners.push(i);
            } else {
                assert_eq!(
                    line, "error: the name 'racer' is taken, choose another",
                    "round {round}"
                );
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: winners {winners:?}");
        let winner = winners[0];
        let mut old = std::mem::replace(&mut racers[winner], Client::connect(f.addr(winner)).await);
        old.send("/quit").await;
        old.expect("server: bye").await;
        old.expect_closed().await;
    }
}

#[tokio::test]
async fn a_name_given_up_on_one_node_is_taken_at_once_on_another() {
    let Some(f) = Fixture::start(2).await else {
        return;
    };
    for round in 0..20 {
        let (from, to) = (round % 2, (round + 1) % 2);
        let alice = f.login(from, "alice").await;
        quit(alice).await;
        // The very next login elsewhere: no "taken" in between.
        let mut again = Client::connect(f.addr(to)).await;
        again.send("alice").await;
        again.expect_prefix("server: welcome alice ").await;
        quit(again).await;
    }
}

#[tokio::test]
async fn who_converges_after_logins_and_leaves_elsewhere() {
    let Some(f) = Fixture::start(2).await else {
        return;
    };
    let mut watcher = f.login(0, "watcher").await;
    let mut others = Vec::new();
    for i in 0..20 {
        others.push(f.login(1, &format!("u{i:02}")).await);
    }
    assert_eq!(wait_who(&mut watcher, 21).await.len(), 21);
    for other in others.drain(..10) {
        quit(other).await;
    }
    let names = wait_who(&mut watcher, 11).await;
    assert!(names.contains(&"u15".to_string()) && !names.contains(&"u05".to_string()));
}

#[tokio::test]
async fn a_name_is_one_name_in_every_spelling_across_nodes() {
    let Some(f) = Fixture::start(2).await else {
        return;
    };
    let mut alice = f.login(0, "Alice").await;
    let mut bob = f.login(1, "bob").await;
    // Once node 1 has heard of Alice, it names her spelling too.
    assert_eq!(wait_who(&mut bob, 2).await, ["Alice", "bob"]);
    let mut other = Client::connect(f.addr(1)).await;
    for typed in ["alice", "\u{0430}lice"] {
        other.send(typed).await;
        other
            .expect(&format!(
                "error: the name '{typed}' is taken (it is the same name as 'Alice'), choose another"
            ))
            .await;
    }
    bob.send("alice: hi across nodes").await;
    alice.expect("from bob: hi across nodes").await;
    bob.send("ALICE, Alice: once").await;
    alice.expect("from bob: once").await;
    alice.send("BOB: hi back").await;
    bob.expect("from Alice: hi back").await;
    alice.sync().await;
    // The claim is the folded name's: given up by Alice, it is free at
    // once for another spelling on the other node.
    quit(alice).await;
    other.send("ALICE").await;
    other.expect_prefix("server: welcome ALICE ").await;
    bob.sync().await;
}
