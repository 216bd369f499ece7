//! Chat lines: `<recipients>: <text>`.

use crate::util::start;

#[tokio::test]
async fn a_message_reaches_its_recipient() {
    let server = start();
    let mut alice = server.login("alice").await;
    let mut bob = server.login("bob").await;
    alice.send("bob: hello bob").await;
    bob.expect("from alice: hello bob").await;
    alice.sync().await; // and nothing for the sender
}

#[tokio::test]
async fn several_recipients_and_oneself() {
    let server = start();
    let mut alice = server.login("alice").await;
    let mut bob = server.login("bob").await;
    let mut carol = server.login("carol").await;
    alice.send("bob,carol , alice: hi all").await;
    bob.expect("from alice: hi all").await;
    carol.expect("from alice: hi all").await;
    alice.expect("from alice: hi all").await;
}

#[tokio::test]
async fn names_are_trimmed_empty_entries_skipped_duplicates_delivered_once() {
    let server = start();
    let mut alice = server.login("alice").await;
    let mut bob = server.login("bob").await;
    alice.send(" , bob ,,bob,  bob : once").await;
    bob.expect("from alice: once").await;
    bob.sync().await;
    alice.sync().await;
}

#[tokio::test]
async fn the_text_is_trimmed_and_may_contain_colons() {
    let server = start();
    let mut alice = server.login("alice").await;
    alice.send("alice:   at 10:30: lunch?   ").await;
    alice.expect("from alice: at 10:30: lunch?").await;
    alice.send("alice:").await;
    alice.expect("from alice: ").await;
}

#[tokio::test]
async fn everyone_means_every_other_peer() {
    let server = start();
    let mut alice = server.login("alice").await;
    let mut bob = server.login("bob").await;
    let mut carol = server.login("carol").await;
    let mut lurker = server.connect().await; // not logged in: not a peer
    alice.send("*: hello everyone").await;
    bob.expect("from alice: hello everyone").await;
    carol.expect("from alice: hello everyone").await;
    alice.sync().await;
    lurker.send("lurker").await;
    lurker.expect_prefix("server: welcome lurker").await;
    // `*` with names: each peer once, the sender only if named.
    alice.send("*, bob, alice: again").await;
    bob.expect("from alice: again").await;
    carol.expect("from alice: again").await;
    lurker.expect("from alice: again").await;
    alice.expect("from alice: again").await;
    bob.sync().await;
}

#[tokio::test]
async fn everyone_with_nobody_else_online_is_an_error() {
    let server = start();
    let mut alice = server.login("alice").await;
    alice.send("*: anyone?").await;
    alice
        .expect("error: no one else is online, message not delivered")
        .await;
}

#[tokio::test]
async fn recipients_not_online_are_named_in_one_error_and_the_others_served() {
    let server = start();
    let mut alice = server.login("alice").await;
    let mut bob = server.login("bob").await;
    alice.send("carol, bob, dave: hi").await;
    bob.expect("from alice: hi").await;
    alice
        .expect("error: not online: carol, dave (message not delivered to those)")
        .await;
    alice.send("zed: hi").await;
    alice
        .expect("error: not online: zed (message not delivered to them)")
        .await;
}

#[tokio::test]
async fn lines_that_are_not_chat_lines() {
    let server = start();
    let mut alice = server.login("alice").await;
    for line in ["hello", ": no recipient", " , : still none"] {
        alice.send(line).await;
        alice
            .expect("error: expected 'name1, name2: message' (or '/help')")
            .await;
    }
}

#[tokio::test]
async fn blank_lines_are_ignored() {
    let server = start();
    let mut alice = server.login("alice").await;
    alice.send_raw(b"\n  \n\t\r\n").await;
    alice.sync().await;
}

#[tokio::test]
async fn messages_from_one_sender_arrive_in_order() {
    let server = start();
    let mut alice = server.login("alice").await;
    let mut bob = server.login("bob").await;
    let mut carol = server.login("carol").await;
    let n = 5_000;
    // Written in uneven chunks so lines straddle reads.
    let mut from_alice = Vec::new();
    let mut from_carol = Vec::new();
    for i in 0..n {
        from_alice.extend_from_slice(format!("bob: a{i}\n").as_bytes());
        from_carol.extend_from_slice(format!("bob: c{i}\n").as_bytes());
    }
    let writers = async {
        let mut a = from_alice.chunks(1777);
        let mut c = from_carol.chunks(2311);
        loop {
            let (next_a, next_c) = (a.next(), c.next());
            if next_a.is_none() && next_c.is_none() {
                break;
            }
            if let Some(chunk) = next_a {
                alice.send_raw(chunk).await;
            }
            if let Some(chunk) = next_c {
                carol.send_raw(chunk).await;
            }
        }
    };
    let reader = async {
        let (mut next_a, mut next_c) = (0, 0);
        while next_a < n || next_c < n {
            let line = bob.line().await;
            if let Some(i) = line.strip_prefix("from alice: a") {
                assert_eq!(i.parse::<usize>().unwrap(), next_a);
                next_a += 1;
            } else if let Some(i) = line.strip_prefix("from carol: c") {
                assert_eq!(i.parse::<usize>().unwrap(), next_c);
                next_c += 1;
            } else {
                panic!("unexpected {line:?}");
            }
        }
    };
    tokio::join!(writers, reader);
}

#[tokio::test]
async fn answers_come_in_the_order_of_the_lines() {
    let server = start();
    let mut alice = server.login("alice").await;
    alice
        .send_raw(b"nobody: x\nalice: one\n/who\nnonsense\nalice: two\n")
        .await;
    alice.expect_prefix("error: not online: nobody").await;
    alice.expect("from alice: one").await;
    alice.expect("server: 1 online:").await;
    alice.expect("server: alice").await;
    alice.expect_prefix("error: expected").await;
    alice.expect("from alice: two").await;
}

#[tokio::test]
async fn control_characters_in_a_message_are_refused() {
    let server = start();
    let mut alice = server.login("alice").await;
    let mut bob = server.login("bob").await;
    // An escape sequence would clear bob's screen if he uses nc.
    alice.send_raw(b"bob: \x1b[2J\x1b[Hgotcha\n").await;
    alice
        .expect("error: a message may not contain control characters (only tabs), not delivered")
        .await;
    alice.send_raw(b"bob: tabs\tare fine\n").await;
    bob.expect("from alice: tabs\tare fine").await;
    bob.sync().await;
}
