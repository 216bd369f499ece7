//! A person at two `nc` windows (Debian's netcat-openbsd), for real.

use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::util::{WAIT, start};

struct Nc {
    _child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl Nc {
    fn spawn(addr: std::net::SocketAddr, flags: &[&str]) -> Nc {
        let mut child = Command::new("nc")
            .args(flags)
            .arg(addr.ip().to_string())
            .arg(addr.port().to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("cannot run nc: install Debian's netcat-openbsd (.ci/run does)");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
        Nc {
            _child: child,
            stdin,
            stdout,
        }
    }

    async fn type_line(&mut self, line: &str) {
        self.stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .expect("write to nc");
        self.stdin.flush().await.expect("flush");
    }

    async fn expect(&mut self, expected: &str) {
        let line = tokio::time::timeout(WAIT, self.stdout.next_line())
            .await
            .expect("nc printed nothing in time")
            .expect("read nc")
            .expect("nc exited");
        assert_eq!(line, expected);
    }

    async fn expect_prefix(&mut self, prefix: &str) {
        let line = tokio::time::timeout(WAIT, self.stdout.next_line())
            .await
            .expect("nc printed nothing in time")
            .expect("read nc")
            .expect("nc exited");
        assert!(
            line.starts_with(prefix),
            "expected {prefix:?}..., got {line:?}"
        );
    }
}

/// Whether `nc` can run here. Without it the test says it is skipped;
/// `.ci/run` installs netcat-openbsd and sets `ACHAT_REQUIRE_NC=1`, under
/// which a missing `nc` fails the test instead.
fn nc_available() -> bool {
    let found = std::process::Command::new("nc")
        .arg("-h")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        assert!(
            std::env::var_os("ACHAT_REQUIRE_NC").is_none(),
            "nc is required (ACHAT_REQUIRE_NC is set) but cannot be run"
        );
        eprintln!("SKIPPED: nc not installed (apt-get install netcat-openbsd)");
    }
    found
}

#[tokio::test]
async fn two_people_chat_through_nc() {
    if !nc_available() {
        return;
    }
    let server = start();
    let mut alice = Nc::spawn(server.addr, &[]);
    // bob's terminal sends CRLF, like telnet.
    let mut bob = Nc::spawn(server.addr, &["-C"]);
    alice.type_line("alice").await;
    alice
        .expect("server: welcome alice (1 online, /help for help)")
        .await;
    bob.type_line("alice").await;
    bob.expect("error: the name 'alice' is taken, choose another")
        .await;
    bob.type_line("bob").await;
    bob.expect("server: welcome bob (2 online, /help for help)")
        .await;
    alice.type_line("bob: hi bob!").await;
    bob.expect("from alice: hi bob!").await;
    bob.type_line("alice, carol: hello both").await;
    alice.expect("from bob: hello both").await;
    bob.expect("error: not online: carol (message not delivered to them)")
        .await;
    alice.type_line("/who").await;
    alice.expect("server: 2 online:").await;
    alice.expect("server: alice, bob").await;
    bob.type_line("/quit").await;
    bob.expect("server: bye").await;
    alice.type_line("bob: still there?").await;
    alice.expect_prefix("error: not online: bob").await;
}
