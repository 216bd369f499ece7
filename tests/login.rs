//! Logging in: the first non-blank line is the name.

use std::time::Duration;

use crate::util::{WAIT, start, start_with, test_config};

#[tokio::test]
async fn a_valid_name_is_welcomed() {
    let server = start();
    let mut alice = server.connect().await;
    alice.send("alice").await;
    alice
        .expect("server: welcome alice (1 online, /help for help)")
        .await;
}

#[tokio::test]
async fn blank_lines_before_the_name_are_skipped_and_the_name_trimmed() {
    let server = start();
    let mut alice = server.connect().await;
    alice.send_raw(b"\n   \n\t\n  alice  \n").await;
    alice.expect_prefix("server: welcome alice ").await;
}

#[tokio::test]
async fn crlf_line_endings_work() {
    let server = start();
    let mut alice = server.connect().await;
    alice.send_raw(b"alice\r\n").await;
    alice.expect_prefix("server: welcome alice ").await;
    alice.send_raw(b"alice: hi\r\n").await;
    alice.expect("from alice: hi").await;
}

#[tokio::test]
async fn invalid_names_are_refused_and_the_connection_may_retry() {
    let server = start();
    let mut client = server.connect().await;
    let cases = [
        (
            "bob smith",
            "a name may not contain spaces or other whitespace",
        ),
        ("bob,carol", "a name may not contain ','"),
        ("bob:", "a name may not contain ':'"),
        ("*", "a name may not contain '*'"),
        ("a*b", "a name may not contain '*'"),
        ("x\u{7}y", "a name may not contain control characters"),
    ];
    for (name, reason) in cases {
        client.send(name).await;
        let line = client.line().await;
        assert!(
            line.starts_with("error: invalid name: ") && line.contains(reason),
            "{name:?}: {line}"
        );
        assert!(line.ends_with("send another name"), "{line}");
    }
    let too_long = "x".repeat(33);
    client.send(&too_long).await;
    client
        .expect("error: invalid name: a name has at most 32 characters, this one has 33; send another name")
        .await;
    client.send("bob").await;
    client.expect_prefix("server: welcome bob ").await;
}

#[tokio::test]
async fn names_count_characters_not_bytes() {
    let server = start();
    let name: String = "é".repeat(32);
    let mut client = server.connect().await;
    client.send(&name).await;
    client
        .expect_prefix(&format!("server: welcome {name} "))
        .await;
    let mut other = server.connect().await;
    other.send(&"é".repeat(33)).await;
    other
        .expect_prefix("error: invalid name: a name has at most 32 characters")
        .await;
}

#[tokio::test]
async fn a_name_online_already_is_taken_and_the_connection_may_retry() {
    let server = start();
    let _alice = server.login("alice").await;
    let mut other = server.connect().await;
    other.send("alice").await;
    other
        .expect("error: the name 'alice' is taken, choose another")
        .await;
    other.send("alicia").await;
    other.expect_prefix("server: welcome alicia ").await;
}

#[tokio::test]
async fn a_message_sent_after_the_welcome_is_delivered() {
    let server = start();
    let mut bob = server.login("bob").await;
    for i in 0..20 {
        let name = format!("new{i}");
        let mut newcomer = server.connect().await;
        newcomer.send(&name).await;
        newcomer.expect_prefix("server: welcome ").await;
        // The instant the welcome is seen, the name must be reachable.
        bob.send(&format!("{name}: hello {i}")).await;
        newcomer.expect(&format!("from bob: hello {i}")).await;
    }
}

#[tokio::test]
async fn lines_right_behind_the_name_wait_for_the_login() {
    let server = start();
    let mut bob = server.login("bob").await;
    let mut alice = server.connect().await;
    alice.send_raw(b"alice\nbob: one\nbob: two\n").await;
    alice.expect_prefix("server: welcome alice ").await;
    bob.expect("from alice: one").await;
    bob.expect("from alice: two").await;
}

#[tokio::test]
async fn when_the_name_is_taken_the_next_line_is_another_attempt() {
    let server = start();
    let mut bob = server.login("bob").await;
    let mut other = server.connect().await;
    other.send_raw(b"bob\ncarol\nbob: hi\n").await;
    other
        .expect("error: the name 'bob' is taken, choose another")
        .await;
    other.expect_prefix("server: welcome carol ").await;
    bob.expect("from carol: hi").await;
}

#[tokio::test]
async fn no_login_within_the_timeout_closes_the_connection() {
    let server = start_with(achat::Config {
        login_timeout: Duration::from_millis(300),
        ..test_config()
    });
    let mut idle = server.connect().await;
    idle.expect("error: no login within 300ms, closing").await;
    idle.expect_closed().await;
    // A connection that logs in in time is not affected.
    let mut alice = server.login("alice").await;
    tokio::time::timeout(WAIT, async {
        // Outlive the login timeout by an event, not a sleep: wait until a
        // later connection has been timed out.
        let mut late = server.connect().await;
        late.expect_prefix("error: no login within").await;
    })
    .await
    .expect("second timeout");
    alice.sync().await;
}

#[tokio::test]
async fn commands_before_login() {
    let server = start();
    let mut client = server.connect().await;
    client.send("/help").await;
    client
        .expect("server: first send your name to log in")
        .await;
    for _ in protocol_help() {
        client.expect_prefix("server: ").await;
    }
    client.send("/who").await;
    client.expect("error: log in first: send your name").await;
    client.send("/quit").await;
    client.expect("server: bye").await;
    client.expect_closed().await;
}

fn protocol_help() -> &'static [&'static str] {
    achat::protocol::HELP
}

#[tokio::test]
async fn end_of_input_before_login_flushes_answers_and_closes() {
    let server = start();
    let mut client = server.connect().await;
    client.send("bad name").await;
    client.shutdown_write().await;
    client.expect_prefix("error: invalid name").await;
    client.expect_closed().await;
}
