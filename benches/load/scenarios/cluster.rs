//! What the scenarios need of a cluster (`--addr a,b,c`): a user logged
//! in on one node can be addressed from another only once that node has
//! heard of the login (a presence announcement over NATS), so a scenario
//! spread over several nodes waits, after its login barrier, until every
//! node's `/who` lists every user.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::lines::{Line, LineReader, classify};
use crate::net::Net;
use crate::report::Report;
use crate::traffic::who_count;

/// Logs in at `addr` as `name`, asks `/who` and returns the online count
/// (which counts the asker); `None` if refused or not answered within 5 s.
/// Then says `/quit` and waits for the server to close the connection, so
/// the asker is gone from that node before the next count.
pub(crate) async fn who_on(addr: SocketAddr, name: &str) -> Option<u64> {
    let ask = async {
        let mut stream = TcpStream::connect(addr).await.ok()?;
        stream
            .write_all(format!("{name}\n/who\n").as_bytes())
            .await
            .ok()?;
        let mut reader = LineReader::new(64 * 1024, &[]);
        loop {
            while let Some(line) = reader.next_line() {
                match classify(line) {
                    Line::Server(text) => {
                        if let Some(n) = who_count(text) {
                            let _ = stream.write_all(b"/quit\n").await;
                            let mut rest = [0u8; 4096];
                            while let Ok(got) = stream.read(&mut rest).await
                                && got > 0
                            {}
                            return Some(n);
                        }
                    }
                    Line::Error(_) => return None,
                    _ => {}
                }
            }
            match reader.fill(&mut stream).await {
                Ok(n) if n > 0 => {}
                _ => return None,
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), ask)
        .await
        .ok()
        .flatten()
}

/// Waits until every node of `net` lists at least `expected` users
/// besides the asker (each ask logs in a fresh name made from `tag`);
/// returns how long it took, or the counts last seen.
pub(crate) async fn await_presence(
    net: &Net,
    tag: &str,
    expected: u64,
    timeout: Duration,
) -> Result<Duration, String> {
    let began = Instant::now();
    let mut attempt = 0u32;
    loop {
        let mut counts = Vec::with_capacity(net.nodes());
        for (node, addr) in net.addrs().iter().enumerate() {
            attempt += 1;
            let name = format!("who{node}x{attempt}-{tag}");
            counts.push(who_on(*addr, &name).await);
        }
        // A count includes the asker.
        if counts.iter().all(|c| c.is_some_and(|c| c > expected)) {
            return Ok(began.elapsed());
        }
        if began.elapsed() >= timeout {
            let seen: Vec<String> = counts
                .iter()
                .map(|c| c.map_or("no answer".into(), |c| c.saturating_sub(1).to_string()))
                .collect();
            return Err(format!(
                "not every node listed the {expected} users within {timeout:?}: \
                 the nodes listed {} (besides the asker)",
                seen.join(", ")
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// For a scenario spread over several nodes: waits for presence (see
/// [`await_presence`]) and reports it under `presence`. Does nothing
/// against a single server.
pub(crate) async fn settle_presence(
    net: &Net,
    tag: &str,
    expected: u64,
    timeout: Duration,
    report: &mut Report,
) -> anyhow::Result<()> {
    if net.nodes() < 2 {
        return Ok(());
    }
    let took = await_presence(net, tag, expected, timeout)
        .await
        .map_err(anyhow::Error::msg)?;
    report.line(format!(
        "  presence: all {} nodes listed the {expected} users {:.2}s after the login barrier",
        net.nodes(),
        took.as_secs_f64()
    ));
    report.result(
        "presence",
        json!({"nodes": net.nodes(), "users": expected, "seconds": took.as_secs_f64()}),
    );
    Ok(())
}
