//! Registered names: `/register`, logging in with a password, `/password`,
//! `/unregister`, the store across a restart, the guessing back-off, the
//! login rate per address, and that no password reaches the logs.

use std::path::Path;
use std::time::Duration;

use achat::Config;
use achat::accounts::{AccountsConfig, AccountsStore, BackoffPolicy, RatePolicy};

use crate::util::{Binary, Client, TestServer, WAIT, start, start_with, test_config};

/// A server keeping its accounts in `dir`.
pub(crate) fn with_accounts(dir: &Path) -> Config {
    Config {
        accounts: AccountsConfig {
            store: AccountsStore::File(dir.join("accounts.sqlite3")),
            ..AccountsConfig::default()
        },
        ..test_config()
    }
}

/// The answer to a wrong password at login.
const WRONG: &str = "error: wrong password; send a name to log in";

/// A back-off of `free` free failures, then always `wait`.
fn backoff(free: u32, wait: Duration) -> BackoffPolicy {
    BackoffPolicy {
        free_failures: free,
        first_wait: wait,
        max_wait: wait,
    }
}

/// A new connection that sent `name`, got the password prompt, and sent
/// `password`.
async fn send_password(server: &TestServer, name: &str, password: &str) -> Client {
    let mut client = server.connect().await;
    client.send(name).await;
    client
        .expect(&format!(
            "server: '{name}' is registered: send its password"
        ))
        .await;
    client.send(password).await;
    client
}

/// Logs in as `name` with `password`, answering the password prompt.
async fn login_with_password(server: &TestServer, name: &str, password: &str) -> Client {
    let mut client = send_password(server, name, password).await;
    client
        .expect_prefix(&format!("server: welcome {name} "))
        .await;
    client.name = name.to_owned();
    client
}

/// Logs in as `name`, registers it with `password`, quits.
pub(crate) async fn register(server: &TestServer, name: &str, password: &str) {
    let mut client = server.login(name).await;
    client.send(&format!("/register {password}")).await;
    client
        .expect(&format!(
            "server: '{name}' is registered: logging in with it now asks for the password"
        ))
        .await;
    quit(client).await;
}

async fn quit(mut client: Client) {
    client.send("/quit").await;
    client.expect("server: bye").await;
    client.expect_closed().await;
}

#[tokio::test]
async fn register_log_in_change_unregister_and_the_file_outlives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(with_accounts(dir.path()));
    register(&server, "alice", "hunter2hunter2").await;

    // A wrong password: back at the name prompt, and nothing else said.
    let mut mallory = server.connect().await;
    mallory.send("alice").await;
    mallory
        .expect("server: 'alice' is registered: send its password")
        .await;
    mallory.send("hunter3hunter3").await;
    mallory.expect(WRONG).await;
    // The prompt is the name prompt again: an unregistered name logs in.
    mallory.send("mallory").await;
    mallory.expect_prefix("server: welcome mallory ").await;

    // The right one; the name as typed now, folded to the same account.
    let mut alice = login_with_password(&server, "Alice", "hunter2hunter2").await;
    alice.send("/password hunter2hunter2 correct-horse").await;
    alice.expect("server: password changed").await;
    alice.send("/password hunter2hunter2 another-one").await;
    alice.expect("error: wrong password, nothing changed").await;
    alice.send("/register whatever-else").await;
    alice.expect("error: 'Alice' is already registered").await;
    quit(alice).await;
    quit(mallory).await;
    server.shutdown().await;

    // Restarted on the same file: the registration and the new password.
    let server = start_with(with_accounts(dir.path()));
    let mut alice = login_with_password(&server, "alice", "correct-horse").await;
    alice.send("/unregister correct-horse").await;
    alice
        .expect("server: 'alice' is no longer registered")
        .await;
    alice.send("/unregister correct-horse").await;
    alice.expect("error: 'alice' is not registered").await;
    quit(alice).await;
    // Free again: no password asked.
    let alice = server.login("alice").await;
    quit(alice).await;
    server.shutdown().await;
}

#[tokio::test]
async fn an_account_answer_keeps_its_place_among_the_other_lines() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(with_accounts(dir.path()));
    let mut alice = server.login("alice").await;
    // One write: the answer to /register comes between the two others.
    alice
        .send_raw(b"nobody: before\n/register hunter2hunter2\nnobody: after\n")
        .await;
    alice
        .expect("error: not online: nobody (message not delivered to them)")
        .await;
    alice.expect_prefix("server: 'alice' is registered: ").await;
    alice
        .expect("error: not online: nobody (message not delivered to them)")
        .await;
    // Bad words are refused before anything is checked.
    alice.send("/password short").await;
    alice.expect("error: usage: /password OLD NEW").await;
    alice.send("/password hunter2hunter2 short").await;
    alice
        .expect("error: a password has at least 8 characters")
        .await;
    quit(alice).await;
    server.shutdown().await;
}

#[tokio::test]
async fn with_registration_off_the_commands_say_so() {
    let server = start();
    let mut alice = server.login("alice").await;
    alice.send("/register hunter2hunter2").await;
    alice
        .expect("error: registration is off on this server")
        .await;
    alice.send("/unregister hunter2hunter2").await;
    alice
        .expect("error: registration is off on this server")
        .await;
    quit(alice).await;
    server.shutdown().await;
}

/// Tries `password` for `name` on a new connection; the line it gets back.
async fn try_password(server: &TestServer, name: &str, password: &str) -> String {
    send_password(server, name, password).await.line().await
}

#[tokio::test]
async fn wrong_passwords_for_a_name_back_off_and_the_wait_ends() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = with_accounts(dir.path());
    // One free failure, then a long wait: the refusals are certain.
    config.accounts.per_name = backoff(1, Duration::from_secs(60));
    let server = start_with(config);
    register(&server, "alice", "hunter2hunter2").await;
    register(&server, "bob", "bobbobbobbob").await;
    assert_eq!(try_password(&server, "alice", "guess-one").await, WRONG);
    assert_eq!(try_password(&server, "alice", "guess-two").await, WRONG);
    // Now even the right password is refused, unchecked.
    let refused = "error: too many wrong passwords: try again in 60 s";
    assert_eq!(
        try_password(&server, "alice", "hunter2hunter2").await,
        refused
    );
    // Another name is not affected.
    login_with_password(&server, "bob", "bobbobbobbob").await;
    server.shutdown().await;

    // A short wait, to see it end: retried until let in, bounded.
    let mut config = with_accounts(dir.path());
    config.accounts.per_name = backoff(0, Duration::from_millis(300));
    let server = start_with(config);
    assert_eq!(try_password(&server, "alice", "guess-one").await, WRONG);
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut refusals = 0;
    loop {
        let answer = try_password(&server, "alice", "hunter2hunter2").await;
        if answer.starts_with("server: welcome alice ") {
            break;
        }
        assert_eq!(answer, "error: too many wrong passwords: try again in 1 s");
        refusals += 1;
        assert!(tokio::time::Instant::now() < deadline, "never let in");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(refusals > 0, "the wait was skipped");
    server.shutdown().await;
}

#[tokio::test]
async fn wrong_passwords_from_one_address_back_off_across_names() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = with_accounts(dir.path());
    config.accounts.per_address = backoff(2, Duration::from_secs(60));
    let server = start_with(config);
    for name in ["ann", "ben", "cat"] {
        register(&server, name, "good-password").await;
    }
    assert_eq!(try_password(&server, "ann", "guess").await, WRONG);
    assert_eq!(try_password(&server, "ben", "guess").await, WRONG);
    assert_eq!(try_password(&server, "ben", "guess").await, WRONG);
    // A third name, never guessed at, with its right password: the
    // address is backing off.
    assert_eq!(
        try_password(&server, "cat", "good-password").await,
        "error: too many wrong passwords: try again in 60 s"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn login_attempts_per_address_are_rate_limited() {
    let server = start_with(Config {
        login_rate: RatePolicy {
            burst: 3,
            per_second: 1,
        },
        ..test_config()
    });
    let mut clients = Vec::new();
    for name in ["a1", "a2"] {
        clients.push(server.login(name).await);
    }
    // A taken name is an attempt too.
    let mut late = server.connect().await;
    late.send("a1").await;
    late.expect("error: the name 'a1' is taken, choose another")
        .await;
    late.send("a3").await;
    late.expect("error: too many login attempts from your address: try again in 1 s")
        .await;
    // Lines that ask for no login cost nothing.
    late.send("/help").await;
    late.expect("server: first send your name to log in").await;
    server.shutdown().await;
}

#[tokio::test]
async fn no_password_ever_appears_in_the_logs() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("accounts.sqlite3");
    let file = file.to_str().unwrap();
    let server = Binary::start_logging(&[], &["--accounts", file], "trace").await;
    let secrets = ["first-SECRET-1", "wrong-SECRET-2", "second-SECRET-3"];
    let mut alice = server.login("alice").await;
    alice.send(&format!("/register {}", secrets[0])).await;
    alice.expect_prefix("server: 'alice' is registered").await;
    quit(alice).await;
    let mut alice = Client::connect(server.addr).await;
    alice.send("alice").await;
    alice
        .expect("server: 'alice' is registered: send its password")
        .await;
    alice.send(secrets[1]).await;
    alice.expect_prefix("error: wrong password").await;
    alice.send("alice").await;
    alice.expect_prefix("server: 'alice' is registered").await;
    alice.send(secrets[0]).await;
    alice.expect_prefix("server: welcome alice ").await;
    alice
        .send(&format!("/password {} {}", secrets[0], secrets[2]))
        .await;
    alice.expect("server: password changed").await;
    alice.send(&format!("/unregister {}", secrets[2])).await;
    alice
        .expect("server: 'alice' is no longer registered")
        .await;
    quit(alice).await;
    server.wait_for_log("alice left").await;
    server.signal("TERM");
    let (status, log) = server.exit_status_and_log().await;
    assert!(status.success(), "exit status {status}");
    // The log is there, at trace level ...
    assert!(log.contains("logged in as alice"), "{log}");
    assert!(log.contains("TRACE"), "{log}");
    // ... and holds none of the passwords.
    assert!(!log.contains("SECRET"), "a password in the log:\n{log}");
}

#[tokio::test]
async fn a_corrupt_or_unusable_accounts_file_stops_the_server_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.sqlite3");
    std::fs::write(&junk, vec![b'x'; 4096]).unwrap();
    let missing = dir.path().join("no/such/dir/a.sqlite3");
    for (file, says) in [
        (&junk, "not an achat accounts database, or damaged"),
        (&missing, "cannot open or create it"),
    ] {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_achat-server"))
            .args(["--bind", "127.0.0.1:0", "--http", "off", "--accounts"])
            .arg(file)
            .env("RUST_LOG", "off")
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(WAIT, out)
            .await
            .expect("the server gave up in time")
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("achat-server: accounts file "), "{err}");
        assert!(err.contains(says), "{err}");
    }
}

#[tokio::test]
async fn in_a_cluster_a_name_registered_on_one_node_asks_its_password_on_another() {
    let Some(nats) = crate::nats::NatsCluster::start(3).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let node = |i: usize| {
        let mut config = crate::cluster::node_config(nats.url(i), &format!("n{i}"));
        // On, but kept in the cluster's JetStream: no file is made.
        config.accounts = with_accounts(dir.path()).accounts;
        start_with(config)
    };
    let (a, b) = (node(0), node(1));
    register(&a, "alice", "hunter2hunter2").await;
    assert!(
        std::fs::read_dir(dir.path()).unwrap().next().is_none(),
        "a file was made in cluster mode"
    );
    // Node b asks for the password; alice's name may take a moment to be
    // given back by node a.
    assert_eq!(try_password(&b, "alice", "wrong-password").await, WRONG);
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut alice = loop {
        let mut client = send_password(&b, "alice", "hunter2hunter2").await;
        let answer = client.line().await;
        if answer.starts_with("server: welcome alice ") {
            break client;
        }
        assert_eq!(answer, "error: the name 'alice' is taken, choose another");
        assert!(tokio::time::Instant::now() < deadline, "never let in");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Changed, unregistered and registered again through node b: an
    // unregistration leaves nothing behind that a registration trips on.
    alice.send("/password hunter2hunter2 second-password").await;
    alice.expect("server: password changed").await;
    alice.send("/unregister second-password").await;
    alice
        .expect("server: 'alice' is no longer registered")
        .await;
    alice.send("/register third-password").await;
    alice.expect_prefix("server: 'alice' is registered").await;
    // Registering from node a and logging in on node b: one account
    // cluster-wide.
    let mut bob = a.login("bob").await;
    bob.send("/register bobbobbobbob").await;
    bob.expect_prefix("server: 'bob' is registered").await;
    let mut again = b.connect().await;
    again.send("bob").await;
    again
        .expect("server: 'bob' is registered: send its password")
        .await;
    a.shutdown().await;
    b.shutdown().await;
}
