//! Names are unique by their folded form and reached by it: `Alice` is
//! refused to a second `alice`, `alice: hi` reaches `Alice`, and a line
//! naming one person in two spellings reaches them once.

use super::*;

/// Cyrillic а followed by Latin "lice": looks like `alice`.
const CYRILLIC_ALICE: &str = "\u{0430}lice";

#[actix::test]
async fn another_spelling_of_an_online_name_is_refused_with_the_spelling_online() {
    let broker = start();
    let _alice = login(&broker, 1, "Alice", true).await;
    let _other = connect(&broker, 2, true);
    for typed in ["alice", "ALICE", CYRILLIC_ALICE, "\u{FF21}lice"] {
        assert_eq!(
            ask(&broker, 2, typed).await,
            Err(LoginError::TakenAs {
                name: protocol::spelling(typed),
                online: "Alice".into(),
            }),
            "{typed}"
        );
    }
    assert_eq!(
        ask(&broker, 2, "Alice").await,
        Err(LoginError::Taken("Alice".into()))
    );
}

#[actix::test]
async fn a_name_is_free_in_every_spelling_once_its_owner_left() {
    let broker = start();
    let _alice = login(&broker, 1, "Alice", true).await;
    broker.do_send(Leave {
        id: 1,
        reason: LeaveReason::Gone,
    });
    let mut alice = login(&broker, 2, "ALICE", true).await;
    let mut bob = login(&broker, 3, "bob", true).await;
    // The old spelling reaches the new owner by its fold.
    send(&broker, &bob, "bob", &["Alice: hi"]).await;
    assert_eq!(alice.line().await, "from bob: hi");
    bob.nothing_more(&broker).await;
}

#[actix::test]
async fn a_name_is_reached_in_any_spelling_and_errors_name_what_was_typed() {
    let broker = start();
    let mut alice = login(&broker, 1, "Alice", true).await;
    let mut bob = login(&broker, 2, "bob", true).await;
    send(
        &broker,
        &bob,
        "bob",
        &[
            "alice: one",
            "ALICE: two",
            &format!("{CYRILLIC_ALICE}: three"),
        ],
    )
    .await;
    assert_eq!(alice.line().await, "from bob: one");
    assert_eq!(alice.line().await, "from bob: two");
    assert_eq!(alice.line().await, "from bob: three");
    send(&broker, &alice, "Alice", &["BOB, c\u{0430}rol: hi"]).await;
    assert_eq!(bob.line().await, "from Alice: hi");
    assert_eq!(
        alice.line().await,
        "error: not online: c\u{0430}rol (message not delivered to them)"
    );
    bob.nothing_more(&broker).await;
}

#[actix::test]
async fn one_person_named_in_several_spellings_gets_the_line_once() {
    let broker = start();
    let mut alice = login(&broker, 1, "Alice", true).await;
    let mut bob = login(&broker, 2, "bob", true).await;
    let mut carol = login(&broker, 3, "carol", true).await;
    for line in [
        "alice, Alice: 1",
        "Alice, alice: 2",
        "alice, ALICE, carol: 3",
        "ALICE, carol, alice, Alice: 4",
    ] {
        send(&broker, &bob, "bob", &[line]).await;
    }
    for n in 1..=4 {
        assert_eq!(alice.line().await, format!("from bob: {n}"));
    }
    assert_eq!(carol.line().await, "from bob: 3");
    assert_eq!(carol.line().await, "from bob: 4");
    alice.nothing_more(&broker).await;
    carol.nothing_more(&broker).await;
    // With `*`, the sender named in two spellings gets it once too.
    send(&broker, &alice, "Alice", &["*, alice, ALICE: all"]).await;
    assert_eq!(alice.line().await, "from Alice: all");
    assert_eq!(bob.line().await, "from Alice: all");
    alice.nothing_more(&broker).await;
    bob.nothing_more(&broker).await;
}

#[actix::test]
async fn who_lists_the_spellings() {
    let broker = start();
    let mut alice = login(&broker, 1, "Alice", true).await;
    let _zoe = login(&broker, 2, "Zo\u{00EB}", true).await;
    send(&broker, &alice, "Alice", &["/who"]).await;
    assert_eq!(alice.line().await, "server: 2 online:");
    assert_eq!(alice.line().await, "server: Alice, Zo\u{00EB}");
}

#[actix::test]
async fn names_that_only_resemble_each_other_loosely_stay_apart() {
    let broker = start();
    let mut zoe = login(&broker, 1, "zoe", true).await;
    let mut zoe2 = login(&broker, 2, "zo\u{00EB}", true).await;
    let _japanese = login(&broker, 3, "日本語", true).await;
    send(&broker, &zoe, "zoe", &["zoe\u{0308}: hi"]).await;
    assert_eq!(zoe2.line().await, "from zoe: hi");
    zoe.nothing_more(&broker).await;
}
