//! The cluster's name service against real nats-servers (tests/nats.rs).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use achat::cluster::names::{ClaimError, Holder, NameService};

use crate::nats::{NatsCluster, START_WAIT};

/// A name service of cluster `t` through server `i`.
async fn service(cluster: &NatsCluster, i: usize) -> NameService {
    NameService::open(cluster.client(i).await, "t", None)
        .await
        .expect("open the name service")
}

/// `claim`, expecting the name to be taken by `holder`.
async fn assert_taken(names: &NameService, name: &str, node: &str, holder: &str) -> u64 {
    match names.claim(name, node).await {
        Err(ClaimError::Taken {
            holder: found,
            revision,
        }) => {
            assert_eq!(found, holder, "holder of {name:?}");
            revision
        }
        other => panic!("{node} claiming {name:?}: expected Taken by {holder}, got {other:?}"),
    }
}

/// Claims `name` for `node` once the stream answers again (after a restart
/// or a leader change): `Unavailable` is retried until [`START_WAIT`].
async fn claim_when_up(names: &NameService, name: &str, node: &str) -> Result<u64, ClaimError> {
    let deadline = Instant::now() + START_WAIT;
    loop {
        match names.claim(name, node).await {
            Err(ClaimError::Unavailable(_)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => return other,
        }
    }
}

#[tokio::test]
async fn claim_release_claim_again() {
    let Some(cluster) = NatsCluster::start(1).await else {
        return;
    };
    let names = service(&cluster, 0).await;
    let first = names.claim("alice", "n1").await.expect("free name");
    let taken = assert_taken(&names, "alice", "n2", "n1").await;
    assert_eq!(taken, first);
    names.release("alice", first).await.expect("release");
    let second = names.claim("alice", "n2").await.expect("released name");
    assert!(second > first);
    // Releasing the first claim again must not free the second one.
    names.release("alice", first).await.expect("stale release");
    assert_taken(&names, "alice", "n1", "n2").await;
    // Nor may a revision of another name.
    let bob = names.claim("bob", "n1").await.expect("bob");
    names
        .release("alice", bob)
        .await
        .expect("other name's revision");
    assert_taken(&names, "bob", "n2", "n1").await;
    assert_taken(&names, "alice", "n1", "n2").await;
}

#[tokio::test]
async fn names_beyond_ascii_and_holders() {
    let Some(cluster) = NatsCluster::start(1).await else {
        return;
    };
    let names = service(&cluster, 0).await;
    let wanted = ["zoë", "黒", "a.b", "=3D", "x>", "*"];
    let mut expected = HashSet::new();
    for (i, name) in wanted.iter().enumerate() {
        let node = format!("n{}", i % 2);
        let revision = names.claim(name, &node).await.expect("claim");
        expected.insert(Holder {
            name: (*name).to_owned(),
            node,
            revision,
        });
    }
    // "zoë" and its encoding are two names.
    names
        .claim("zo=C3=AB", "n9")
        .await
        .expect("the encoding's name");
    let released = names.claim("gone", "n1").await.expect("claim");
    names.release("gone", released).await.expect("release");
    let mut found: HashSet<Holder> = names
        .holders()
        .await
        .expect("holders")
        .into_iter()
        .collect();
    assert!(found.iter().any(|h| h.name == "zo=C3=AB" && h.node == "n9"));
    found.retain(|h| h.name != "zo=C3=AB");
    assert_eq!(found, expected);
    assert!(matches!(
        names.claim("", "n1").await,
        Err(ClaimError::Invalid(_))
    ));
    assert!(matches!(
        names.claim("x", "bad.node").await,
        Err(ClaimError::Invalid(_))
    ));
}

#[tokio::test]
async fn holders_lists_twenty_thousand_names_in_seconds() {
    let Some(cluster) = NatsCluster::start(1).await else {
        return;
    };
    let names = service(&cluster, 0).await;
    const COUNT: usize = 20_000;
    for chunk in (0..COUNT).collect::<Vec<_>>().chunks(500) {
        let claims = chunk.iter().map(|i| {
            let names = names.clone();
            async move { names.claim(&format!("user{i}"), "n1").await }
        });
        for result in futures_util::future::join_all(claims).await {
            result.expect("claim");
        }
    }
    let started = Instant::now();
    let holders = names.holders().await.expect("holders");
    let took = started.elapsed();
    assert_eq!(holders.len(), COUNT);
    assert!(took < Duration::from_secs(5), "holders took {took:?}");
}

#[tokio::test]
async fn leases_are_renewed_listed_and_dropped() {
    let Some(cluster) = NatsCluster::start(1).await else {
        return;
    };
    let names = service(&cluster, 0).await;
    assert_eq!(names.leases().await.expect("no leases"), vec![]);
    let first = names.renew_lease("n1").await.expect("renew");
    let second = names.renew_lease("n1").await.expect("renew again");
    assert!(second > first);
    let other = names.renew_lease("n2").await.expect("renew n2");
    let mut leases = names.leases().await.expect("leases");
    leases.sort();
    assert_eq!(
        leases,
        vec![("n1".to_owned(), second), ("n2".to_owned(), other)]
    );
    names.drop_lease("n1").await.expect("drop");
    names.drop_lease("n1").await.expect("drop again");
    assert_eq!(
        names.leases().await.expect("leases"),
        vec![("n2".to_owned(), other)]
    );
    // A name claim is not a lease, nor the other way round.
    names.claim("n2", "n2").await.expect("claim");
    assert_eq!(names.leases().await.expect("leases").len(), 1);
    assert_eq!(names.holders().await.expect("holders").len(), 1);
}

/// Three nodes, each on its own server of a three-server cluster, race for
/// one name 300 times over: exactly one wins every round, the others are
/// told who, and the winner's release makes the name free for the next.
#[tokio::test]
async fn one_winner_in_every_race_across_three_servers() {
    let Some(cluster) = NatsCluster::start(3).await else {
        return;
    };
    let services = [
        service(&cluster, 0).await,
        service(&cluster, 1).await,
        service(&cluster, 2).await,
    ];
    // Automatic replicas: one per server.
    let js = async_nats::jetstream::new(cluster.client(0).await);
    let mut stream = js.get_stream("KV_achat_t").await.expect("stream");
    assert_eq!(stream.info().await.expect("info").config.num_replicas, 3);
    let nodes = ["a", "b", "c"];
    for round in 0..300 {
        let (ra, rb, rc) = tokio::join!(
            services[0].claim("reused", nodes[0]),
            services[1].claim("reused", nodes[1]),
            services[2].claim("reused", nodes[2]),
        );
        let results = [ra, rb, rc];
        let winners: Vec<(usize, u64)> = results
            .iter()
            .enumerate()
            .filter_map(|(i, r)| r.as_ref().ok().map(|&rev| (i, rev)))
            .collect();
        assert_eq!(winners.len(), 1, "round {round}: {results:?}");
        let (winner, revision) = winners[0];
        for (i, result) in results.iter().enumerate() {
            if i != winner {
                assert_eq!(
                    result,
                    &Err(ClaimError::Taken {
                        holder: nodes[winner].to_owned(),
                        revision
                    }),
                    "round {round}"
                );
            }
        }
        services[winner]
            .release("reused", revision)
            .await
            .expect("release");
    }
}

/// 2.9.10 replays a filtered purge on restart as a purge of everything
/// older: releases must not be purges, or a restart loses other names.
#[tokio::test]
async fn releases_survive_a_restart_of_every_server() {
    let Some(mut cluster) = NatsCluster::start(3).await else {
        return;
    };
    let names = service(&cluster, 0).await;
    names.claim("kept", "n1").await.expect("claim kept");
    let gone = names.claim("gone", "n1").await.expect("claim gone");
    names.release("gone", gone).await.expect("release");
    names.renew_lease("n1").await.expect("lease");
    names.drop_lease("n1").await.expect("drop lease");
    cluster.restart_all().await;
    let names = service(&cluster, 1).await;
    match claim_when_up(&names, "kept", "n2").await {
        Err(ClaimError::Taken { holder, .. }) => assert_eq!(holder, "n1"),
        other => panic!("after the restart, kept: {other:?}"),
    }
    claim_when_up(&names, "gone", "n2")
        .await
        .expect("the released name is free");
}

#[tokio::test]
async fn without_quorum_a_claim_fails_within_its_timeout() {
    let Some(mut cluster) = NatsCluster::start(3).await else {
        return;
    };
    let timeout = Duration::from_secs(1);
    let names = service(&cluster, 0).await.with_timeout(timeout);
    names
        .claim("before", "n1")
        .await
        .expect("claim with quorum");
    cluster.kill(1);
    cluster.kill(2);
    let started = Instant::now();
    let result = names.claim("after", "n1").await;
    let took = started.elapsed();
    assert!(
        matches!(result, Err(ClaimError::Unavailable(_))),
        "{result:?}"
    );
    assert!(took < timeout + Duration::from_millis(500), "took {took:?}");
}
