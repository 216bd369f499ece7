//! Names that cannot be mistaken, over TCP: one name in every case,
//! look-alike letter and Unicode form, from both sides (logging in and
//! addressing); the registered spelling is what others see.

use crate::util::{Client, TestServer, start};

/// Cyrillic а followed by Latin "lice".
const CYRILLIC_ALICE: &str = "\u{0430}lice";
/// Fullwidth Ａ followed by Latin "lice".
const FULLWIDTH_ALICE: &str = "\u{FF21}lice";
/// zoë with a precomposed ë (NFC).
const ZOE_NFC: &str = "zo\u{00EB}";
/// zoë as e plus a combining diaeresis (NFD).
const ZOE_NFD: &str = "zoe\u{0308}";

/// Logs in as `typed` and expects to be welcomed as `spelled`.
async fn login_as(server: &TestServer, typed: &str, spelled: &str) -> Client {
    let mut client = server.connect().await;
    client.send(typed).await;
    client
        .expect_prefix(&format!("server: welcome {spelled} "))
        .await;
    client.name = spelled.to_owned();
    client
}

#[tokio::test]
async fn every_spelling_of_an_online_name_is_refused() {
    let server = start();
    let mut alice = server.login("Alice").await;
    let mut other = server.connect().await;
    for typed in ["alice", "ALICE", CYRILLIC_ALICE, FULLWIDTH_ALICE] {
        other.send(typed).await;
        other
            .expect(&format!(
                "error: the name '{typed}' is taken (it is the same name as 'Alice'), choose another"
            ))
            .await;
    }
    other.send("Alice").await;
    other
        .expect("error: the name 'Alice' is taken, choose another")
        .await;
    // Still in the login state: another name works.
    other.send("alicia").await;
    other.expect_prefix("server: welcome alicia ").await;
    alice.sync().await;
}

#[tokio::test]
async fn any_spelling_reaches_the_registered_one_and_from_lines_show_it() {
    let server = start();
    let mut alice = server.login("Alice").await;
    let mut bob = server.login("bob").await;
    for typed in ["alice", "ALICE", CYRILLIC_ALICE, FULLWIDTH_ALICE] {
        bob.send(&format!("{typed}: hi from bob")).await;
        alice.expect("from bob: hi from bob").await;
    }
    alice.send("BOB: hi back").await;
    bob.expect("from Alice: hi back").await;
    // One person named twice in two spellings gets the line once.
    bob.send("alice, Alice, ALICE: once").await;
    alice.expect("from bob: once").await;
    alice.sync().await;
    // What is not online is named as typed.
    bob.send("c\u{0430}rol: anyone?").await;
    bob.expect("error: not online: c\u{0430}rol (message not delivered to them)")
        .await;
}

#[tokio::test]
async fn who_shows_the_spellings() {
    let server = start();
    let mut alice = server.login("Alice").await;
    let _zoe = login_as(&server, ZOE_NFD, ZOE_NFC).await;
    alice.send("/who").await;
    alice.expect("server: 2 online:").await;
    alice.expect(&format!("server: Alice, {ZOE_NFC}")).await;
}

#[tokio::test]
async fn precomposed_and_decomposed_are_one_name_both_ways() {
    let server = start();
    let mut zoe = login_as(&server, ZOE_NFD, ZOE_NFC).await;
    let mut other = server.connect().await;
    other.send(ZOE_NFC).await;
    other
        .expect(&format!(
            "error: the name '{ZOE_NFC}' is taken, choose another"
        ))
        .await;
    let mut bob = server.login("bob").await;
    for typed in [ZOE_NFC, ZOE_NFD] {
        bob.send(&format!("{typed}: hi")).await;
        zoe.expect("from bob: hi").await;
    }
    zoe.send("bob: hi").await;
    bob.expect(&format!("from {ZOE_NFC}: hi")).await;
}

#[tokio::test]
async fn names_that_are_not_confusable_stay_different_people() {
    let server = start();
    let mut zoe = server.login("zoe").await;
    let mut zoe2 = server.login(ZOE_NFC).await;
    let mut japanese = server.login("日本語").await;
    let mut japan = server.login("日本").await;
    let mut anna = server.login("anna").await;
    let mut cyrillic = server.login("\u{0430}\u{043D}\u{0430}").await;
    zoe.send(&format!("{ZOE_NFC}, 日本語, \u{0430}\u{043D}\u{0430}: hi"))
        .await;
    zoe2.expect("from zoe: hi").await;
    japanese.expect("from zoe: hi").await;
    cyrillic.expect("from zoe: hi").await;
    for client in [&mut zoe, &mut japan, &mut anna] {
        client.sync().await;
    }
}

#[tokio::test]
async fn reserved_names_are_reserved_in_every_spelling() {
    let server = start();
    let mut client = server.connect().await;
    for (typed, reserved) in [
        ("Server", "server"),
        ("\u{0455}erver", "server"),
        ("\u{FF25}RROR", "error"),
        ("fr\u{043E}m", "from"),
    ] {
        client.send(typed).await;
        client
            .expect(&format!(
                "error: invalid name: the name '{reserved}' is reserved for the server; send another name"
            ))
            .await;
    }
    client.send("servers").await;
    client.expect_prefix("server: welcome servers ").await;
}
