//! The accounts actor on its own, with an SQLite file in a temporary
//! directory: what it answers, and that guesses made side by side are
//! counted as if made one after another.

use std::net::IpAddr;
use std::time::Duration;

use futures_util::future::join_all;

use super::*;

fn config(per_name: BackoffPolicy) -> AccountsConfig {
    AccountsConfig {
        store: AccountsStore::Off,
        per_name,
        per_address: BackoffPolicy {
            free_failures: 1000,
            ..BackoffPolicy::PER_ADDRESS
        },
    }
}

async fn start(dir: &tempfile::TempDir, per_name: BackoffPolicy) -> Addr<Accounts> {
    let store = Store::Sqlite(Arc::new(
        SqliteStore::open(&dir.path().join("a.sqlite3")).unwrap(),
    ));
    let index = store.local_index().await.unwrap();
    let index = index.map(|names| Arc::new(RegisteredNames::new(names)));
    Accounts::start(store, index, &config(per_name), &Arbiter::current())
}

async fn ask(
    accounts: &Addr<Accounts>,
    name: &str,
    op: AccountOp,
) -> Result<AccountAnswer, AccountError> {
    let from: IpAddr = "192.0.2.1".parse().unwrap();
    accounts
        .send(AccountRequest {
            from,
            name: name.into(),
            op,
        })
        .await
        .unwrap()
}

fn pw(text: &str) -> Password {
    Password::new(text)
}

/// Look-ups are answered from the in-memory index; it must follow
/// registrations and outlive a restart (it is rebuilt from the file).
#[actix::test]
async fn lookups_follow_registrations_and_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let accounts = start(&dir, BackoffPolicy::PER_NAME).await;
    let register = AccountOp::Register(pw("one-password"));
    assert_eq!(
        ask(&accounts, "Bob", register).await,
        Ok(AccountAnswer::Done)
    );
    assert_eq!(
        ask(&accounts, "bob", AccountOp::Lookup).await,
        Ok(AccountAnswer::Registered)
    );
    let again = start(&dir, BackoffPolicy::PER_NAME).await;
    assert_eq!(
        ask(&again, "BOB", AccountOp::Lookup).await,
        Ok(AccountAnswer::Registered)
    );
    let unregister = AccountOp::Unregister(pw("one-password"));
    assert_eq!(
        ask(&again, "bob", unregister).await,
        Ok(AccountAnswer::Done)
    );
    assert_eq!(
        ask(&again, "bob", AccountOp::Lookup).await,
        Ok(AccountAnswer::NotRegistered)
    );
}

#[actix::test]
async fn the_life_of_an_account() {
    let dir = tempfile::tempdir().unwrap();
    let accounts = start(&dir, BackoffPolicy::PER_NAME).await;
    let lookup = async |name| ask(&accounts, name, AccountOp::Lookup).await;
    assert_eq!(lookup("alice").await, Ok(AccountAnswer::NotRegistered));
    assert_eq!(
        ask(&accounts, "Alice", AccountOp::Register(pw("one-password"))).await,
        Ok(AccountAnswer::Done)
    );
    // One account for every spelling of the name.
    assert_eq!(lookup("ALICE").await, Ok(AccountAnswer::Registered));
    assert_eq!(
        ask(&accounts, "alice", AccountOp::Register(pw("two-password"))).await,
        Err(AccountError::AlreadyRegistered)
    );
    assert_eq!(
        ask(&accounts, "alice", AccountOp::LogIn(pw("one-passwort"))).await,
        Err(AccountError::WrongPassword)
    );
    assert_eq!(
        ask(&accounts, "alice", AccountOp::LogIn(pw("one-password"))).await,
        Ok(AccountAnswer::Done)
    );
    let change = AccountOp::Change {
        old: pw("one-password"),
        new: pw("two-password"),
    };
    assert_eq!(
        ask(&accounts, "alice", change).await,
        Ok(AccountAnswer::Done)
    );
    assert_eq!(
        ask(
            &accounts,
            "alice",
            AccountOp::Unregister(pw("one-password"))
        )
        .await,
        Err(AccountError::WrongPassword)
    );
    assert_eq!(
        ask(
            &accounts,
            "alice",
            AccountOp::Unregister(pw("two-password"))
        )
        .await,
        Ok(AccountAnswer::Done)
    );
    assert_eq!(lookup("alice").await, Ok(AccountAnswer::NotRegistered));
    // A login for a name unregistered meanwhile goes on as unregistered.
    assert_eq!(
        ask(&accounts, "alice", AccountOp::LogIn(pw("anything"))).await,
        Ok(AccountAnswer::NotRegistered)
    );
    assert_eq!(
        ask(&accounts, "bob", AccountOp::Unregister(pw("anything"))).await,
        Err(AccountError::NotRegistered)
    );
}

#[actix::test]
async fn guesses_side_by_side_get_no_more_free_tries_than_one_by_one() {
    let dir = tempfile::tempdir().unwrap();
    let per_name = BackoffPolicy {
        free_failures: 3,
        first_wait: Duration::from_secs(60),
        max_wait: Duration::from_secs(60),
    };
    let accounts = start(&dir, per_name).await;
    let registered = ask(
        &accounts,
        "alice",
        AccountOp::Register(pw("right-password")),
    )
    .await;
    assert_eq!(registered, Ok(AccountAnswer::Done));
    let guesses = (0..12).map(|i| {
        let op = AccountOp::LogIn(pw(&format!("guess-{i}")));
        ask(&accounts, "alice", op)
    });
    let answers = join_all(guesses).await;
    let checked = answers
        .iter()
        .filter(|a| **a == Err(AccountError::WrongPassword))
        .count();
    // The three free failures and the fourth, after which the wait starts.
    assert_eq!(checked, 4, "{answers:?}");
    assert!(
        answers[4..]
            .iter()
            .all(|a| matches!(a, Err(AccountError::TooManyFailures(_)))),
        "{answers:?}"
    );
    // The right password is refused too while the name waits.
    assert!(matches!(
        ask(&accounts, "alice", AccountOp::LogIn(pw("right-password"))).await,
        Err(AccountError::TooManyFailures(wait)) if wait > Duration::from_secs(50)
    ));
}
