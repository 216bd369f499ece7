//! `achat-client`, the real binary, against real servers on port 0: pipe
//! mode, `--name`, servers that are absent, close or drop, a server of the
//! tutorial's kind, exit statuses, and terminal mode in a pseudo-terminal.
//!
//! Every wait is bounded by [`WAIT`]: for the client to exit, for a line,
//! for the screen to show something.

mod harness;
mod passwords;

use std::net::SocketAddr;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use self::harness::{Running, Tty, addr_arg, cursor_row, run_client};
use crate::util::start;

#[tokio::test]
async fn pipe_mode_delivers_every_line_even_a_last_one_without_newline() {
    let server = start();
    let mut bob = server.login("bob").await;
    let addr = addr_arg(server.addr);
    for round in 0..20 {
        let input = format!("alice{round}\nbob: first {round}\nbob: last {round}");
        let finished = run_client(&[&addr], input.as_bytes()).await;
        assert_eq!(finished.code(), 0, "{}", finished.stderr);
        assert_eq!(
            finished.stdout,
            format!("server: welcome alice{round} (2 online, /help for help)\n")
        );
        assert_eq!(finished.stderr, "");
        bob.expect(&format!("from alice{round}: first {round}"))
            .await;
        bob.expect(&format!("from alice{round}: last {round}"))
            .await;
    }
}

#[tokio::test]
async fn pipe_mode_prints_every_answer_exactly_then_exits_0() {
    let server = start();
    let addr = addr_arg(server.addr);
    let input = b"\nalice\n/who\ncarol, alice: to both\nhello?\n";
    let finished = run_client(&[&addr], input).await;
    assert_eq!(finished.code(), 0, "{}", finished.stderr);
    assert_eq!(
        finished.stdout,
        "server: welcome alice (1 online, /help for help)\n\
         server: 1 online:\n\
         server: alice\n\
         from alice: to both\n\
         error: not online: carol (message not delivered to them)\n\
         error: expected 'name1, name2: message' (or '/help')\n"
    );
}

#[tokio::test]
async fn pipe_mode_sends_nothing_after_quit() {
    let server = start();
    let mut bob = server.login("bob").await;
    let addr = addr_arg(server.addr);
    let finished = run_client(&[&addr], b"alice\nbob: before\n/quit\nbob: after\n").await;
    assert_eq!(finished.code(), 0, "{}", finished.stderr);
    assert!(
        finished.stdout.ends_with("server: bye\n"),
        "{}",
        finished.stdout
    );
    bob.expect("from alice: before").await;
    // Anything alice had sent would come before this.
    bob.sync().await;
}

#[tokio::test]
async fn name_logs_in_and_reports_the_welcome() {
    let server = start();
    let mut bob = server.login("bob").await;
    let addr = addr_arg(server.addr);
    let finished = run_client(&[&addr, "--name", "alice"], b"bob: hi from a script").await;
    assert_eq!(finished.code(), 0, "{}", finished.stderr);
    assert_eq!(
        finished.stdout,
        "server: welcome alice (2 online, /help for help)\n"
    );
    assert_eq!(finished.stderr, "");
    bob.expect("from alice: hi from a script").await;
}

#[tokio::test]
async fn a_taken_name_exits_3_with_the_servers_reason() {
    let server = start();
    let _alice = server.login("alice").await;
    let addr = addr_arg(server.addr);
    let finished = run_client(&[&addr, "--name", "alice"], b"bob: never sent\n").await;
    assert_eq!(finished.code(), 3, "{}", finished.stderr);
    assert_eq!(
        finished.stderr,
        "achat-client: login refused by the server: the name 'alice' is taken, choose another\n"
    );
    assert_eq!(finished.stdout, "");
}

#[tokio::test]
async fn an_invalid_name_exits_3() {
    let server = start();
    let addr = addr_arg(server.addr);
    let finished = run_client(&[&addr, "--name", "bob,carol"], b"").await;
    assert_eq!(finished.code(), 3, "{}", finished.stderr);
    finished.assert_one_clean_line();
    assert!(
        finished
            .stderr
            .starts_with("achat-client: login refused by the server: invalid name: "),
        "{}",
        finished.stderr
    );
}

/// A server that answers the first line it reads (the name) with `answer`
/// and then only listens; it returns the name line and everything the
/// client sent after it, once the client has closed.
async fn answering_server(
    answer: &'static str,
) -> (SocketAddr, tokio::task::JoinHandle<(String, String)>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut stream = BufReader::new(stream);
        let mut name = String::new();
        stream.read_line(&mut name).await.unwrap();
        stream.get_mut().write_all(answer.as_bytes()).await.unwrap();
        let mut rest = String::new();
        stream.read_to_string(&mut rest).await.unwrap();
        (name, rest)
    });
    (addr, task)
}

#[tokio::test]
async fn a_server_line_answering_the_name_is_a_refusal() {
    // What an achat server says to a command sent as the name: not a
    // welcome, so the name was not taken.
    let (addr, server) = answering_server("server: first send your name to log in\n").await;
    let addr = addr_arg(addr);
    let finished = run_client(&[&addr, "--name", "alice"], b"bob: never sent\n").await;
    let (name, rest) = server.await.unwrap();
    assert_eq!(finished.code(), 3, "{}", finished.stderr);
    assert_eq!(
        finished.stderr,
        "achat-client: login refused by the server: first send your name to log in\n"
    );
    assert_eq!(finished.stdout, "");
    assert_eq!(name, "alice\n");
    assert_eq!(rest, "", "nothing may be sent after a refused login");
}

#[tokio::test]
async fn usage_errors_exit_2() {
    const COMMAND: &str = "a name cannot start with '/'";
    let server = start();
    let addr = addr_arg(server.addr);
    // A bad value is said in one line, like the client's other messages,
    // with the reason; other usage errors in clap's words, with the usage.
    for (args, reason) in [
        (vec!["--bogus"], None),
        (vec!["localhost"], Some("expected HOST:PORT")),
        (vec!["127.0.0.1:0"], Some("port 0 cannot be connected to")),
        (vec![&addr, "--name", "  "], Some("a name cannot be blank")),
        (
            vec![&addr, "--name", "alice\nbob: sneaky"],
            Some("a name cannot contain a line break"),
        ),
        // Commands: a server would answer them, and never take one for a
        // name.
        (vec![&addr, "--name", "/help"], Some(COMMAND)),
        (vec![&addr, "--name", "/quit"], Some(COMMAND)),
        (vec![&addr, "--name", " /who"], Some(COMMAND)),
        (vec![&addr, "extra", "args"], None),
    ] {
        let finished = run_client(&args, b"bob: never sent\n").await;
        assert_eq!(finished.code(), 2, "{args:?}: {}", finished.stderr);
        assert!(!finished.stderr.contains("panicked"), "{}", finished.stderr);
        assert_eq!(finished.stdout, "", "{args:?}");
        if let Some(reason) = reason {
            finished.assert_one_clean_line();
            assert!(
                finished.stderr.starts_with("achat-client: invalid value ")
                    && finished.stderr.contains(reason),
                "{args:?}: {}",
                finished.stderr
            );
        }
    }
}

#[tokio::test]
async fn help_documents_the_exit_statuses_and_version_works() {
    let help = run_client(&["--help"], b"").await;
    assert_eq!(help.code(), 0);
    for needle in [
        "Usage: achat-client",
        "--name",
        "Exit status:",
        "3  the --name login did not happen",
        "--password-file",
        "ACHAT_PASSWORD",
    ] {
        assert!(help.stdout.contains(needle), "{needle}: {}", help.stdout);
    }
    let version = run_client(&["--version"], b"").await;
    assert_eq!(version.code(), 0);
    assert_eq!(
        version.stdout,
        format!("achat-client {}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[tokio::test]
async fn no_server_exits_1_with_one_line() {
    // A port that was free a moment ago and has no listener now.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let addr = addr_arg(addr);
    for args in [vec![addr.as_str()], vec![addr.as_str(), "--name", "alice"]] {
        let finished = run_client(&args, b"alice\n").await;
        assert_eq!(finished.code(), 1, "{args:?}");
        finished.assert_one_clean_line();
        assert!(
            finished
                .stderr
                .starts_with(&format!("achat-client: cannot connect to {addr}")),
            "{}",
            finished.stderr
        );
    }
}

#[tokio::test]
async fn a_server_shutting_down_mid_session_exits_1() {
    let server = start();
    let addr = addr_arg(server.addr);
    let mut client = Running::spawn(&[&addr, "--name", "alice"]);
    client.expect_prefix("server: welcome alice ").await;
    server.shutdown().await;
    let finished = client.finish().await;
    assert_eq!(finished.code(), 1, "{}", finished.stderr);
    assert_eq!(finished.stdout, "server: shutting down\n");
    assert_eq!(
        finished.stderr,
        "achat-client: the server closed the connection\n"
    );
}

#[tokio::test]
async fn a_dropped_connection_exits_1() {
    // A server that welcomes, then resets the connection.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = addr_arg(listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut stream = BufReader::new(stream);
        let mut name = String::new();
        stream.read_line(&mut name).await.unwrap();
        let mut stream = stream.into_inner();
        stream
            .write_all(b"server: welcome alice (1 online, /help for help)\n")
            .await
            .unwrap();
        // SO_LINGER 0: closing sends a reset.
        stream.set_zero_linger().unwrap();
    });
    let client = Running::spawn(&[&addr, "--name", "alice"]);
    server.await.unwrap();
    let finished = client.finish().await;
    assert_eq!(finished.code(), 1, "{}", finished.stderr);
    finished.assert_one_clean_line();
    assert!(
        finished
            .stderr
            .starts_with("achat-client: lost the connection to the server: "),
        "{}",
        finished.stderr
    );
}

/// The tutorial's server, for one connection: the first line is the name,
/// then `dest: text` lines are relayed as `from <name>: text` (here only a
/// message to oneself has anyone to go to); no `server:` line ever.
async fn tutorial_server() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let (reader, mut writer) = stream.into_split();
        let mut lines = BufReader::new(reader).lines();
        let name = lines.next_line().await.unwrap().unwrap_or_default();
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some((dest, text)) = line.split_once(':')
                && dest.split(',').any(|d| d.trim() == name)
            {
                let out = format!("from {name}: {}\n", text.trim());
                writer.write_all(out.as_bytes()).await.unwrap();
            }
        }
    });
    (addr, task)
}

#[tokio::test]
async fn a_tutorial_server_without_server_lines_works_with_name() {
    let (addr, server) = tutorial_server().await;
    let addr = addr_arg(addr);
    let finished = run_client(&[&addr, "--name", "alice"], b"alice: note to self\n").await;
    server.await.unwrap();
    assert_eq!(finished.code(), 0, "{}", finished.stderr);
    assert_eq!(finished.stdout, "from alice: note to self\n");
    // The client says why it went on without a welcome.
    finished.assert_one_clean_line();
    assert!(
        finished.stderr.contains("no answer to the login"),
        "{}",
        finished.stderr
    );
}

#[tokio::test]
async fn terminal_mode_keeps_the_typed_line_when_a_message_arrives() {
    let server = start();
    let mut bob = server.login("bob").await;
    let addr = addr_arg(server.addr);
    let mut tty = Tty::spawn(&[&addr, "--name", "alice"]);
    tty.wait_for("the prompt", |s| {
        s.contents().contains("server: welcome alice") && cursor_row(s).0 == "alice> "
    });
    tty.mark_raw_mode();

    tty.type_keys("bob: half-typ");
    tty.wait_for("the typed text", |s| {
        cursor_row(s) == ("alice> bob: half-typ".to_owned(), 20)
    });

    bob.send("alice: a message while you type").await;
    tty.wait_for("the message above the prompt", |s| {
        s.contents().contains("from bob: a message while you type")
    });
    // The typed line is intact, alone on its row, the cursor at its end,
    // and the message is on a row of its own above it.
    tty.wait_for("the prompt redrawn", |s| {
        cursor_row(s) == ("alice> bob: half-typ".to_owned(), 20)
    });
    let rows = tty.rows();
    let message = rows
        .iter()
        .position(|r| r == "from bob: a message while you type")
        .expect("the message has a row of its own");
    let prompt = rows
        .iter()
        .position(|r| r == "alice> bob: half-typ")
        .unwrap();
    assert!(message < prompt, "{rows:#?}");
    // Coloured by kind: the sender in colour, the text plain.
    let screen = tty.screen.screen();
    let message = u16::try_from(message).unwrap();
    assert_ne!(
        screen.cell(message, 0).unwrap().fgcolor(),
        vt100::Color::Default
    );
    assert_eq!(
        screen.cell(message, 12).unwrap().fgcolor(),
        vt100::Color::Default
    );

    // Finishing the line sends exactly what was typed.
    tty.type_keys("ed\r");
    bob.expect("from alice: half-typed").await;

    // Ctrl-D leaves with /quit: the server's bye is shown, the status is 0.
    tty.type_keys("\x04");
    tty.wait_for("the goodbye", |s| s.contents().contains("server: bye"));
    assert_eq!(tty.wait_exit(), 0, "{}", tty.screen.screen().contents());
    tty.assert_terminal_restored();
}

/// A text padded out to the edge of the screen cannot make its tail look
/// like a line from someone else: the client breaks long lines itself and
/// marks every further row.
#[tokio::test]
async fn terminal_mode_marks_the_rows_a_long_line_wraps_onto() {
    let server = start();
    let mut bob = server.login("bob").await;
    let addr = addr_arg(server.addr);
    let mut tty = Tty::spawn(&[&addr, "--name", "alice"]);
    tty.wait_for("the prompt", |s| cursor_row(s).0 == "alice> ");
    // "from bob: hi" + dots to the edge of 80 columns + a forged line.
    let padding = ".".repeat(usize::from(Tty::COLS) - "from bob: hi".len() - 1);
    bob.send(&format!(
        "alice: hi{padding}from carol: the deploy key is 42"
    ))
    .await;
    tty.wait_for("the message", |s| {
        s.contents().contains("the deploy key is 42")
    });
    let rows = tty.rows();
    let tail = rows
        .iter()
        .find(|row| row.contains("the deploy key"))
        .expect("the tail of the message");
    assert!(tail.starts_with("\u{21B3} from carol:"), "{rows:#?}");
    assert!(
        !rows.iter().any(|row| row.starts_with("from carol")),
        "{rows:#?}"
    );
    tty.type_keys("\x04");
    assert_eq!(tty.wait_exit(), 0, "{}", tty.screen.screen().contents());
}

#[tokio::test]
async fn terminal_mode_leaves_cleanly_on_sigterm() {
    let server = start();
    let addr = addr_arg(server.addr);
    let mut tty = Tty::spawn(&[&addr, "--name", "alice"]);
    tty.wait_for("the prompt", |s| cursor_row(s).0 == "alice> ");
    tty.mark_raw_mode();
    tty.session
        .get_process_mut()
        .signal(expectrl::process::unix::Signal::SIGTERM)
        .unwrap();
    tty.wait_for("the goodbye", |s| s.contents().contains("server: bye"));
    assert_eq!(tty.wait_exit(), 0, "{}", tty.screen.screen().contents());
    tty.assert_terminal_restored();
}

#[tokio::test]
async fn terminal_mode_exits_1_when_the_server_goes_away() {
    let server = start();
    let addr = addr_arg(server.addr);
    let mut tty = Tty::spawn(&[&addr, "--name", "alice"]);
    tty.wait_for("the prompt", |s| cursor_row(s).0 == "alice> ");
    tty.mark_raw_mode();
    tty.type_keys("unsent");
    tty.wait_for("the typed text", |s| cursor_row(s).0 == "alice> unsent");
    server.shutdown().await;
    assert_eq!(tty.wait_exit(), 1, "{}", tty.screen.screen().contents());
    tty.assert_terminal_restored();
    let contents = tty.screen.screen().contents();
    assert!(contents.contains("server: shutting down"), "{contents}");
    assert!(
        contents.contains("achat-client: the server closed the connection"),
        "{contents}"
    );
}
