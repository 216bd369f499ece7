//! Commands: `/who`, `/quit`, `/help`, and the rest.

use crate::util::{Client, Deadline, start};

#[tokio::test]
async fn who_lists_the_online_peers_sorted_with_a_count() {
    let server = start();
    let mut carol = server.login("carol").await;
    let _alice = server.login("alice").await;
    let _bob = server.login("bob").await;
    let _anon = server.connect().await; // not logged in: not listed
    carol.send("/who").await;
    carol.expect("server: 3 online:").await;
    carol.expect("server: alice, bob, carol").await;
    carol.send("  /who these arguments are ignored").await;
    carol.expect("server: 3 online:").await;
    carol.expect("server: alice, bob, carol").await;
}

#[tokio::test]
async fn a_very_long_who_list_is_cut_and_says_so() {
    let server = start();
    let total = achat::protocol::WHO_MAX_NAMES + 10;
    let mut peers: Vec<Client> = Vec::new();
    for i in 0..total {
        peers.push(server.login(&format!("p{i:04}")).await);
    }
    let asker = &mut peers[0];
    asker.send("/who").await;
    asker.expect(&format!("server: {total} online:")).await;
    let mut listed = 0;
    loop {
        let line = asker.expect_prefix("server: ").await;
        if line.starts_with("server: list cut: ") {
            assert_eq!(line, "server: list cut: 10 more not shown (at most 500)");
            break;
        }
        listed += line.trim_start_matches("server: ").split(", ").count();
    }
    assert_eq!(listed, achat::protocol::WHO_MAX_NAMES);
}

#[tokio::test]
async fn quit_says_bye_closes_and_frees_the_name() {
    let server = start();
    let mut alice = server.login("alice").await;
    let mut bob = server.login("bob").await;
    alice.send("bob: before").await;
    alice.send("/quit").await;
    alice.expect("server: bye").await;
    alice.expect_closed().await;
    bob.expect("from alice: before").await;
    let mut again = server.login("alice").await;
    bob.send("alice: welcome back").await;
    again.expect("from bob: welcome back").await;
}

#[tokio::test]
async fn lines_after_quit_are_ignored() {
    let server = start();
    let mut alice = server.login("alice").await;
    let mut bob = server.login("bob").await;
    alice.send_raw(b"bob: one\n/quit\nbob: never\n").await;
    alice.expect("server: bye").await;
    alice.expect_closed().await;
    bob.expect("from alice: one").await;
    // bob sees alice gone, and never gets the line after /quit.
    let deadline = Deadline::new("alice is offline");
    loop {
        bob.send("alice: ping").await;
        let line = bob.line().await;
        assert!(!line.contains("never"), "{line}");
        if line.starts_with("error: not online: alice") {
            break;
        }
        deadline.check();
    }
}

#[tokio::test]
async fn help_explains_the_syntax() {
    let server = start();
    let mut alice = server.login("alice").await;
    alice.send("/help").await;
    for line in achat::protocol::HELP {
        alice.expect(&format!("server: {line}")).await;
    }
    alice.sync().await;
}

#[tokio::test]
async fn unknown_commands_are_errors() {
    let server = start();
    let mut alice = server.login("alice").await;
    alice.send("/nick bob").await;
    alice
        .expect("error: unknown command '/nick', try /help")
        .await;
    alice.send("/").await;
    alice.expect("error: unknown command '/', try /help").await;
}
