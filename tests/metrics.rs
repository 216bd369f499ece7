//! `GET /metrics`: after known traffic over TCP and WebSocket the counts
//! say exactly that, and the scrape is valid Prometheus text (checked by
//! `promtool check metrics` from Debian's `prometheus` package; `.ci/run`
//! installs it, and without it the check says it is skipped unless
//! `ACHAT_REQUIRE_PROMTOOL` is set).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use crate::util::{Deadline, start_web, test_config};
use crate::websocket::{Next, Ws, http_get};

/// One scrape: every sample by its name and labels as written
/// (`achat_logins_total`, `achat_connections_open{transport="tcp"}`).
pub(crate) struct Scrape {
    pub(crate) text: String,
    samples: BTreeMap<String, f64>,
}

impl Scrape {
    /// Scrapes `/metrics` on `http`.
    pub(crate) async fn of(http: SocketAddr) -> Scrape {
        let (status, text) = http_get(http, "/metrics", "").await;
        assert!(status.contains(" 200 "), "{status}");
        let samples = text
            .lines()
            .filter(|line| !line.starts_with('#') && !line.is_empty())
            .map(|line| {
                let (name, value) = line.rsplit_once(' ').expect("a sample line");
                (name.to_owned(), value.parse().expect("a number"))
            })
            .collect();
        Scrape { text, samples }
    }

    /// The value of a sample; panics if there is none.
    pub(crate) fn get(&self, sample: &str) -> u64 {
        match self.samples.get(sample) {
            Some(value) => *value as u64,
            None => panic!("no sample {sample} in\n{}", self.text),
        }
    }

    /// Slow consumers cut off: (`outbox_full`, `stalled`).
    pub(crate) fn cut_off(&self) -> (u64, u64) {
        let reason = |why| {
            self.get(&format!(
                "achat_slow_consumers_cut_off_total{{reason=\"{why}\"}}"
            ))
        };
        (reason("outbox_full"), reason("stalled"))
    }

    /// Scrapes until `sample` has `value` (the counts of a session that is
    /// closing arrive a moment after its client sees the close).
    pub(crate) async fn when(http: SocketAddr, sample: &str, value: u64) -> Scrape {
        let deadline = Deadline::new(&format!("{sample} to reach {value}"));
        loop {
            let scrape = Scrape::of(http).await;
            if scrape.get(sample) == value {
                return scrape;
            }
            deadline.check();
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Reads a WebSocket to its close, counting what arrives.
async fn ws_to_close(ws: &mut Ws) {
    while let Next::Line(_) = ws.next().await {}
}

#[tokio::test]
async fn after_known_traffic_the_counters_say_exactly_that() {
    let server = start_web(achat::Config {
        max_connections: 4,
        login_timeout: Duration::from_secs(3),
        ..test_config()
    });
    let http = server.http_addr.expect("a web listener");

    let mut alice = server.login("alice").await;
    let mut bob = server.login("bob").await;
    let mut carol = Ws::login(&server, "carol").await;
    // Refused twice: a taken name, then an invalid one; never logs in.
    let mut dave = server.connect().await;
    dave.send("alice").await;
    dave.expect("error: the name 'alice' is taken, choose another")
        .await;
    dave.send("bad name").await;
    dave.expect_prefix("error: invalid name").await;
    // The fifth connection is over --max-connections.
    let mut fifth = server.connect().await;
    fifth.expect_prefix("error: server full").await;

    let during = Scrape::of(http).await;
    assert_eq!(during.get(r#"achat_connections_open{transport="tcp"}"#), 3);
    assert_eq!(
        during.get(r#"achat_connections_open{transport="websocket"}"#),
        1
    );
    assert_eq!(during.get("achat_users_logged_in"), 3);
    assert_eq!(during.get("achat_users_online"), 3);
    // (Well within the login timeout.)
    dave.send("/quit").await;
    dave.read_to_close().await;

    // Three chat lines: to one, to everyone (two others), to two.
    alice.send("bob: hi").await;
    bob.expect("from alice: hi").await;
    bob.send("*: all").await;
    alice.expect("from bob: all").await;
    carol.expect("from bob: all").await;
    carol.send("alice, bob: x").await;
    alice.expect("from carol: x").await;
    bob.expect("from carol: x").await;
    // A command is not a chat line.
    alice.send("/who").await;
    alice.expect("server: 3 online:").await;
    alice.expect("server: alice, bob, carol").await;

    // Once dave's place is free, one that never logs in times out.
    let mut idle = Scrape::when(http, r#"achat_connections_open{transport="tcp"}"#, 2)
        .await
        .get("achat_connections_total{transport=\"tcp\"}");
    assert_eq!(idle, 3);
    let mut silent = server.connect().await;
    silent.expect_prefix("error: no login within").await;
    silent.read_to_close().await;
    idle += 1;

    for client in [&mut alice, &mut bob] {
        client.send("/quit").await;
        client.read_to_close().await;
    }
    carol.send("/quit").await;
    ws_to_close(&mut carol).await;

    let end = Scrape::when(http, r#"achat_connections_open{transport="tcp"}"#, 0).await;
    let end = match end.get(r#"achat_connections_open{transport="websocket"}"#) {
        0 => end,
        _ => Scrape::when(http, r#"achat_connections_open{transport="websocket"}"#, 0).await,
    };
    assert_eq!(end.get(r#"achat_connections_total{transport="tcp"}"#), idle);
    assert_eq!(end.get(r#"achat_connections_total{transport="tls"}"#), 0);
    assert_eq!(
        end.get(r#"achat_connections_total{transport="websocket"}"#),
        1
    );
    assert_eq!(
        end.get(r#"achat_connections_refused_total{reason="full"}"#),
        1
    );
    assert_eq!(
        end.get(r#"achat_connections_refused_total{reason="origin"}"#),
        0
    );
    assert_eq!(end.get("achat_users_logged_in"), 0);
    assert_eq!(end.get("achat_users_online"), 0);
    assert_eq!(end.get("achat_logins_total"), 3);
    assert_eq!(end.get(r#"achat_logins_refused_total{reason="taken"}"#), 1);
    assert_eq!(
        end.get(r#"achat_logins_refused_total{reason="invalid_name"}"#),
        1
    );
    assert_eq!(
        end.get(r#"achat_logins_refused_total{reason="wrong_password"}"#),
        0
    );
    assert_eq!(end.get("achat_login_timeouts_total"), 1);
    assert_eq!(end.get("achat_lines_routed_total"), 3);
    assert_eq!(end.get("achat_deliveries_total"), 5);
    // Every byte each side sent and received, the refused fifth's aside
    // (it never became a session).
    let tcp = [&alice, &bob, &dave, &silent];
    let sent: u64 = tcp.iter().map(|c| c.sent).sum();
    let received: u64 = tcp.iter().map(|c| c.received).sum();
    assert_eq!(end.get(r#"achat_read_bytes_total{transport="tcp"}"#), sent);
    assert_eq!(
        end.get(r#"achat_written_bytes_total{transport="tcp"}"#),
        received
    );
    assert_eq!(
        end.get(r#"achat_read_bytes_total{transport="websocket"}"#),
        carol.sent
    );
    assert_eq!(
        end.get(r#"achat_written_bytes_total{transport="websocket"}"#),
        carol.received
    );
    assert_eq!(end.cut_off(), (0, 0));
    // The first batch is always timed, then one in sixteen: three batches
    // of chat lines and one `/who`.
    assert_eq!(end.get("achat_broker_batch_seconds_count"), 1);
    assert_eq!(
        end.get(r#"achat_broker_batch_seconds_bucket{le="+Inf"}"#),
        1
    );
    promtool_check(&end.text).await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_websocket_from_a_foreign_origin_is_counted_as_refused() {
    let server = start_web(test_config());
    let http = server.http_addr.expect("a web listener");
    assert!(
        Ws::connect_from(http, Some("https://evil.example"))
            .await
            .is_err()
    );
    let scrape = Scrape::of(http).await;
    assert_eq!(
        scrape.get(r#"achat_connections_refused_total{reason="origin"}"#),
        1
    );
    assert_eq!(
        scrape.get(r#"achat_connections_total{transport="websocket"}"#),
        0
    );
    server.shutdown().await;
}

/// `promtool check metrics` on a scrape: the format is right and the
/// names follow Prometheus's conventions.
pub(crate) async fn promtool_check(text: &str) {
    use tokio::io::AsyncWriteExt;
    let spawned = tokio::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => {
            assert!(
                std::env::var_os("ACHAT_REQUIRE_PROMTOOL").is_none(),
                "promtool is required (apt-get install prometheus): {e}"
            );
            eprintln!("skipped: no promtool ({e})");
            return;
        }
    };
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(text.as_bytes()).await.expect("to promtool");
    drop(stdin);
    let output = tokio::time::timeout(crate::util::WAIT, child.wait_with_output())
        .await
        .expect("promtool within the wait bound")
        .expect("promtool ran");
    assert!(
        output.status.success(),
        "promtool check metrics failed:\n{}{}\n{text}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
