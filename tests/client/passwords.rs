//! `achat-client` and registered names: the password from `ACHAT_PASSWORD`
//! or `--password-file` with `--name`, a wrong or missing one (exit 3), and
//! at a terminal the password typed with nothing on the screen and nothing
//! in the history. Each test registers `alice` through a raw TCP client on
//! a server keeping its accounts in a temporary directory.

use crate::accounts::{register, with_accounts};
use crate::util::{TestServer, start_with};

use super::harness::{Tty, addr_arg, client, cursor_row, run_command};

const PASSWORD: &str = "hunter2hunter2";

/// A server with accounts on which `alice` is registered with [`PASSWORD`];
/// the directory must outlive the server.
async fn server_with_alice() -> (tempfile::TempDir, TestServer) {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(with_accounts(dir.path()));
    register(&server, "alice", PASSWORD).await;
    (dir, server)
}

#[tokio::test]
async fn name_with_achat_password_logs_in_to_a_registered_name_and_chats() {
    let (_dir, server) = server_with_alice().await;
    let mut bob = server.login("bob").await;
    let addr = addr_arg(server.addr);
    let mut command = client(&[&addr, "--name", "alice"]);
    command.env("ACHAT_PASSWORD", PASSWORD);
    let finished = run_command(command, b"bob: hi from a registered name\n").await;
    assert_eq!(finished.code(), 0, "{}", finished.stderr);
    // The client answered the prompt: only the welcome is printed.
    assert_eq!(
        finished.stdout,
        "server: welcome alice (2 online, /help for help)\n"
    );
    assert_eq!(finished.stderr, "");
    bob.expect("from alice: hi from a registered name").await;
}

#[tokio::test]
async fn a_password_file_outranks_the_environment() {
    let (dir, server) = server_with_alice().await;
    let file = dir.path().join("password");
    // Its first line, trimmed; the rest of the file is not read as one.
    std::fs::write(&file, format!("  {PASSWORD} \nnot-the-password\n")).unwrap();
    let addr = addr_arg(server.addr);
    let file = file.to_str().unwrap();
    let mut command = client(&[&addr, "--name", "Alice", "--password-file", file]);
    command.env("ACHAT_PASSWORD", "wrong-password");
    let finished = run_command(command, b"").await;
    assert_eq!(finished.code(), 0, "{}", finished.stderr);
    assert_eq!(
        finished.stdout,
        "server: welcome Alice (1 online, /help for help)\n"
    );
}

#[tokio::test]
async fn a_wrong_password_exits_3_with_the_servers_error() {
    let (_dir, server) = server_with_alice().await;
    let addr = addr_arg(server.addr);
    let mut command = client(&[&addr, "--name", "alice"]);
    command.env("ACHAT_PASSWORD", "not-hunter2");
    let finished = run_command(command, b"bob: never sent\n").await;
    assert_eq!(finished.code(), 3, "{}", finished.stderr);
    assert_eq!(
        finished.stderr,
        "achat-client: login refused by the server: wrong password; send a name to log in\n"
    );
    assert_eq!(finished.stdout, "");
}

#[tokio::test]
async fn a_registered_name_without_a_password_exits_3_saying_how_to_give_one() {
    let (dir, server) = server_with_alice().await;
    let addr = addr_arg(server.addr);
    // Standard input is a pipe: nobody to ask.
    let finished = run_command(client(&[&addr, "--name", "alice"]), b"").await;
    assert_eq!(finished.code(), 3, "{}", finished.stderr);
    finished.assert_one_clean_line();
    for needle in ["'alice' is registered", "--password-file", "ACHAT_PASSWORD"] {
        assert!(finished.stderr.contains(needle), "{}", finished.stderr);
    }
    // A password file that cannot be read is a usage error.
    let missing = dir.path().join("missing");
    let missing = missing.to_str().unwrap();
    let args = [&addr, "--name", "alice", "--password-file", missing];
    let finished = run_command(client(&args), b"").await;
    assert_eq!(finished.code(), 2, "{}", finished.stderr);
    assert!(
        finished
            .stderr
            .starts_with("achat-client: cannot read the password file "),
        "{}",
        finished.stderr
    );
}

#[tokio::test]
async fn in_a_pipe_the_password_is_the_line_after_the_name() {
    let (_dir, server) = server_with_alice().await;
    let mut bob = server.login("bob").await;
    let addr = addr_arg(server.addr);
    let input = format!("alice\n{PASSWORD}\nbob: hi from a pipe\n");
    let finished = run_command(client(&[&addr]), input.as_bytes()).await;
    assert_eq!(finished.code(), 0, "{}", finished.stderr);
    assert_eq!(
        finished.stdout,
        "server: 'alice' is registered: send its password\n\
         server: welcome alice (2 online, /help for help)\n"
    );
    bob.expect("from alice: hi from a pipe").await;
}

/// Waits for the hidden prompt, the cursor right after it.
fn wait_for_password_prompt(tty: &mut Tty) {
    const PROMPT: &str = "password for alice (not shown): ";
    tty.wait_for("the password prompt", |s| {
        let (row, col) = cursor_row(s);
        row == PROMPT && usize::from(col) == PROMPT.len()
    });
}

/// Waits for the welcome and the editor's prompt, then checks that the
/// password is nowhere on the screen.
fn expect_logged_in_unseen(tty: &mut Tty) {
    tty.wait_for("the welcome and the prompt", |s| {
        s.contents().contains("server: welcome alice") && cursor_row(s).0 == "alice> "
    });
    let contents = tty.screen.screen().contents();
    assert!(!contents.contains(PASSWORD), "{contents}");
}

#[tokio::test]
async fn at_a_terminal_the_password_is_not_shown_nor_kept_in_the_history() {
    let (_dir, server) = server_with_alice().await;
    let mut bob = server.login("bob").await;
    let addr = addr_arg(server.addr);
    let mut tty = Tty::spawn(&[&addr]);
    tty.wait_for("the prompt", |s| cursor_row(s).0 == "> ");
    tty.mark_raw_mode();
    tty.type_keys("alice\r");
    tty.wait_for("the server's prompt", |s| {
        s.contents()
            .contains("server: 'alice' is registered: send its password")
    });
    wait_for_password_prompt(&mut tty);
    tty.type_keys(PASSWORD);
    tty.type_keys("\r");
    expect_logged_in_unseen(&mut tty);

    // The history holds the name, not the password.
    tty.type_keys("\x1b[A");
    tty.wait_for("the last line of the history", |s| {
        cursor_row(s).0 == "alice> alice"
    });
    tty.type_keys("\x1b[B");
    tty.wait_for("an empty line", |s| cursor_row(s).0 == "alice> ");

    tty.type_keys("bob: logged in with a password\r");
    bob.expect("from alice: logged in with a password").await;
    tty.type_keys("\x04");
    tty.wait_for("the goodbye", |s| s.contents().contains("server: bye"));
    assert_eq!(tty.wait_exit(), 0, "{}", tty.screen.screen().contents());
    tty.assert_terminal_restored();
    let contents = tty.screen.screen().contents();
    assert!(!contents.contains(PASSWORD), "{contents}");
}

/// Keys typed before the server's prompt arrived are read hidden too: the
/// editor reads no keys while a login line waits for its answer.
#[tokio::test]
async fn at_a_terminal_a_password_typed_ahead_is_not_shown() {
    let (_dir, server) = server_with_alice().await;
    let addr = addr_arg(server.addr);
    let mut tty = Tty::spawn(&[&addr]);
    tty.wait_for("the prompt", |s| cursor_row(s).0 == "> ");
    tty.type_keys(&format!("alice\r{PASSWORD}\r"));
    expect_logged_in_unseen(&mut tty);
    tty.type_keys("\x04");
    assert_eq!(tty.wait_exit(), 0, "{}", tty.screen.screen().contents());
}

#[tokio::test]
async fn name_at_a_terminal_asks_for_the_password_unechoed() {
    let (_dir, server) = server_with_alice().await;
    let addr = addr_arg(server.addr);
    let mut tty = Tty::spawn(&[&addr, "--name", "alice"]);
    wait_for_password_prompt(&mut tty);
    tty.type_keys(PASSWORD);
    tty.type_keys("\r");
    expect_logged_in_unseen(&mut tty);
    tty.type_keys("\x04");
    assert_eq!(tty.wait_exit(), 0, "{}", tty.screen.screen().contents());
}

#[tokio::test]
async fn sigterm_at_the_name_password_prompt_restores_the_terminal() {
    let (_dir, server) = server_with_alice().await;
    let addr = addr_arg(server.addr);
    let mut tty = Tty::spawn(&[&addr, "--name", "alice"]);
    wait_for_password_prompt(&mut tty);
    tty.mark_raw_mode();
    tty.session
        .get_process_mut()
        .signal(expectrl::process::unix::Signal::SIGTERM)
        .unwrap();
    assert_eq!(tty.wait_exit(), 3, "{}", tty.screen.screen().contents());
    tty.assert_terminal_restored();
    let contents = tty.screen.screen().contents();
    assert!(contents.contains("no password given"), "{contents}");
}
