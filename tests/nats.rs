//! A real NATS cluster for the cluster-mode tests: `nats-server` processes
//! on free loopback ports, with JetStream, in a temporary directory.
//!
//! The cluster tests need what no mock gives: raft replication, leader
//! elections, quorum loss and a server's log replayed on restart. So the
//! harness runs Debian's `nats-server` (never on 4222, where a system
//! service may listen) and waits, bounded, until every server takes clients
//! and JetStream answers, so a test starts on a usable cluster and never
//! sleeps in place of waiting.
//!
//! Without `nats-server` the tests that need it say they are skipped;
//! `.ci/run` installs it and sets `ACHAT_REQUIRE_NATS=1`, under which a
//! missing server fails them instead (as `ACHAT_REQUIRE_NC` does for `nc`).

#![allow(dead_code, unreachable_pub)]

use std::fmt::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// The binary the harness runs: `NATS_SERVER` if set, else `nats-server`
/// from the `PATH` (Debian installs it as /usr/sbin/nats-server).
fn binary() -> PathBuf {
    std::env::var_os("NATS_SERVER").map_or_else(|| PathBuf::from("nats-server"), PathBuf::from)
}

/// The bound on a cluster's (or a restarted server's) start: three servers
/// electing a JetStream meta leader take one to three seconds here.
pub const START_WAIT: Duration = Duration::from_secs(30);

/// How long one readiness probe may take before it counts as "not yet".
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// The pause between two readiness probes.
const PROBE_INTERVAL: Duration = Duration::from_millis(50);

/// The port a local NATS service may already use; never given to a test
/// server.
const SYSTEM_PORT: u16 = 4222;

/// One `nats-server` of the cluster: its ports and files stay the same
/// across [`NatsCluster::restart`].
struct Server {
    port: u16,
    config: PathBuf,
    log: PathBuf,
    /// `None` while killed.
    child: Option<Child>,
}

/// `n` nats-server processes forming one NATS cluster with JetStream,
/// killed when dropped (a failing test included).
pub struct NatsCluster {
    servers: Vec<Server>,
    // Dropped after the servers are killed (field order): the store
    // directories must outlive the processes writing them.
    dir: TempDir,
}

/// Whether `nats-server` can run here. Without it the caller should skip
/// its test (this prints a note); with `ACHAT_REQUIRE_NATS` set, a missing
/// server panics instead.
pub fn nats_available() -> bool {
    let found = Command::new(binary())
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !found {
        assert!(
            std::env::var_os("ACHAT_REQUIRE_NATS").is_none(),
            "nats-server is required (ACHAT_REQUIRE_NATS is set) but cannot be run \
             (apt-get install nats-server, or set NATS_SERVER to its path)"
        );
        eprintln!("SKIPPED: nats-server not installed (apt-get install nats-server)");
    }
    found
}

/// `count` distinct free ports of 127.0.0.1, none of them 4222. All are
/// held open until every one is chosen, so none is handed out twice; a
/// port can still be taken by someone else before the server binds it,
/// which on a test machine's loopback does not happen in practice.
fn free_ports(count: usize) -> Vec<u16> {
    let mut held = Vec::new();
    while held.len() < count {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
        let port = listener.local_addr().expect("local addr").port();
        if port != SYSTEM_PORT {
            held.push((port, listener));
        }
    }
    held.into_iter().map(|(port, _)| port).collect()
}

/// The configuration of server `i`: cluster block only when there is a
/// cluster to form (a one-server "cluster" is a plain JetStream server).
fn config_text(i: usize, port: u16, cluster_ports: &[u16], dir: &Path) -> String {
    let store = dir.join(format!("n{i}-store"));
    let log = dir.join(format!("n{i}.log"));
    let mut text = format!(
        "server_name: n{i}\nlisten: 127.0.0.1:{port}\nlog_file: {log:?}\n\
         jetstream {{\n  store_dir: {store:?}\n}}\n"
    );
    if cluster_ports.len() > 1 {
        let routes: Vec<String> = cluster_ports
            .iter()
            .enumerate()
            .filter(|&(j, _)| j != i)
            .map(|(_, p)| format!("    nats-route://127.0.0.1:{p}"))
            .collect();
        let _ = write!(
            text,
            "cluster {{\n  name: achat_test\n  listen: 127.0.0.1:{}\n  routes: [\n{}\n  ]\n}}\n",
            cluster_ports[i],
            routes.join("\n")
        );
    }
    text
}

impl Server {
    fn spawn(&mut self) {
        let child = Command::new(binary())
            .arg("-c")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            // Everything goes to log_file; stderr only gets what happens
            // before the config is read.
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot run nats-server (see nats_available)");
        self.child = Some(child);
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGKILL: no shutdown, no final snapshot, as in a crash.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl NatsCluster {
    /// Starts `n` servers (n = 1: one JetStream server without a cluster
    /// block) and waits until every one takes clients and answers
    /// JetStream requests, and (for n > 1) until a stream replicated on
    /// min(3, n) servers can be created. `None` when nats-server is not
    /// installed (see [`nats_available`]: the test should return).
    /// Panics if the cluster is not ready within [`START_WAIT`].
    pub async fn start(n: usize) -> Option<NatsCluster> {
        assert!(n >= 1, "a cluster needs a server");
        if !nats_available() {
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("achat-nats-")
            .tempdir()
            .expect("temp dir");
        let ports = free_ports(2 * n);
        let (client_ports, cluster_ports) = ports.split_at(n);
        let servers = (0..n)
            .map(|i| {
                let config = dir.path().join(format!("n{i}.conf"));
                std::fs::write(
                    &config,
                    config_text(i, client_ports[i], cluster_ports, dir.path()),
                )
                .expect("write config");
                Server {
                    port: client_ports[i],
                    config,
                    log: dir.path().join(format!("n{i}.log")),
                    child: None,
                }
            })
            .collect();
        let mut cluster = NatsCluster { servers, dir };
        for server in &mut cluster.servers {
            server.spawn();
        }
        let deadline = Instant::now() + START_WAIT;
        for i in 0..n {
            cluster.wait_jetstream(i, deadline).await;
        }
        cluster.wait_stream_creatable(deadline).await;
        Some(cluster)
    }

    /// How many servers the cluster has (killed ones included).
    pub fn len(&self) -> usize {
        self.servers.len()
    }

    /// Every server's client URL, comma-separated.
    pub fn urls(&self) -> String {
        let urls: Vec<String> = self.servers.iter().map(Server::url).collect();
        urls.join(",")
    }

    /// Server `i`'s client URL.
    pub fn url(&self, i: usize) -> String {
        self.servers[i].url()
    }

    /// Where server `i` logs.
    pub fn log_path(&self, i: usize) -> &Path {
        &self.servers[i].log
    }

    /// Kills server `i` with SIGKILL (as in a crash: no final snapshot)
    /// and waits for the process to exit. Killing a killed server does
    /// nothing.
    pub fn kill(&mut self, i: usize) {
        self.servers[i].kill();
    }

    /// Starts server `i` again (killing it first if it runs) on the same
    /// ports with the same store, and waits until it takes clients and
    /// answers JetStream requests: its streams may still be catching up.
    /// JetStream answers only with a quorum of servers up: to bring back a
    /// majority at once use [`Self::restart_all`].
    pub async fn restart(&mut self, i: usize) {
        self.servers[i].kill();
        self.servers[i].spawn();
        self.wait_jetstream(i, Instant::now() + START_WAIT).await;
    }

    /// Kills every server (SIGKILL) and starts them all again, then waits
    /// as [`Self::restart`] does for each.
    pub async fn restart_all(&mut self) {
        for server in &mut self.servers {
            server.kill();
        }
        for server in &mut self.servers {
            server.spawn();
        }
        let deadline = Instant::now() + START_WAIT;
        for i in 0..self.servers.len() {
            self.wait_jetstream(i, deadline).await;
        }
    }

    /// A client of server `i` alone (it does not fail over to the others,
    /// so a test knows which server it talks to), with short timeouts.
    pub async fn client(&self, i: usize) -> async_nats::Client {
        connect_one(&self.url(i), Duration::from_secs(2))
            .await
            .unwrap_or_else(|e| panic!("connect to {}: {e}", self.url(i)))
    }

    /// Polls server `i` until a `$JS.API.INFO` request gets an answer
    /// without an error, or panics at `deadline`.
    async fn wait_jetstream(&self, i: usize, deadline: Instant) {
        let url = self.url(i);
        if let Err(last) = poll(deadline, || probe_jetstream(&url)).await {
            panic!(
                "nats-server n{i} not ready within {START_WAIT:?}: {last}\n{}",
                self.log_tails()
            );
        }
    }

    /// Polls until a stream replicated min(3, n) times can be created
    /// (the JetStream meta leader is elected and enough peers are known),
    /// then deletes it; panics at `deadline`.
    async fn wait_stream_creatable(&self, deadline: Instant) {
        if self.servers.len() == 1 {
            return;
        }
        let replicas = self.servers.len().min(3);
        let url = self.url(0);
        if let Err(last) = poll(deadline, || probe_stream(&url, replicas)).await {
            panic!(
                "no R{replicas} stream could be created within {START_WAIT:?}: {last}\n{}",
                self.log_tails()
            );
        }
    }

    /// The last lines of every server's log, for a failure message.
    fn log_tails(&self) -> String {
        let mut out = String::new();
        for (i, server) in self.servers.iter().enumerate() {
            let text = std::fs::read_to_string(&server.log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(30)..];
            let _ = writeln!(out, "--- n{i} ({}), last lines:", server.log.display());
            for line in tail {
                let _ = writeln!(out, "{line}");
            }
        }
        out
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for server in &mut self.servers {
            server.kill();
        }
        if std::thread::panicking() {
            eprintln!(
                "NATS cluster in {} (removed now):\n{}",
                self.dir.path().display(),
                self.log_tails()
            );
        }
    }
}

/// Runs `probe` until it succeeds; at `deadline`, its last error.
async fn poll<F, Fut>(deadline: Instant, mut probe: F) -> Result<(), String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let mut last = String::from("no attempt");
    while Instant::now() < deadline {
        match probe().await {
            Ok(()) => return Ok(()),
            Err(e) => last = e,
        }
        tokio::time::sleep(PROBE_INTERVAL).await;
    }
    Err(last)
}

/// A client of `url` only, every wait bounded by `timeout`.
async fn connect_one(
    url: &str,
    timeout: Duration,
) -> Result<async_nats::Client, async_nats::ConnectError> {
    async_nats::ConnectOptions::new()
        .connection_timeout(timeout)
        .request_timeout(Some(timeout))
        .ignore_discovered_servers()
        .connect(url)
        .await
}

/// One readiness probe: connect, ask `$JS.API.INFO`, expect no error.
async fn probe_jetstream(url: &str) -> Result<(), String> {
    let client = connect_one(url, PROBE_TIMEOUT)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let answer = client
        .request("$JS.API.INFO", "".into())
        .await
        .map_err(|e| format!("$JS.API.INFO: {e}"))?;
    let info: serde_json::Value =
        serde_json::from_slice(&answer.payload).map_err(|e| format!("$JS.API.INFO: {e}"))?;
    match info.get("error") {
        None => Ok(()),
        Some(error) => Err(format!("$JS.API.INFO: {error}")),
    }
}

/// One probe of the cluster: create and delete a replicated stream.
async fn probe_stream(url: &str, replicas: usize) -> Result<(), String> {
    let client = connect_one(url, PROBE_TIMEOUT * 4)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let js = async_nats::jetstream::new(client);
    let name = "HARNESS_READY";
    js.create_stream(async_nats::jetstream::stream::Config {
        name: name.to_owned(),
        subjects: vec!["harness.ready".to_owned()],
        num_replicas: replicas,
        ..Default::default()
    })
    .await
    .map_err(|e| format!("create stream: {e}"))?;
    js.delete_stream(name)
        .await
        .map_err(|e| format!("delete stream: {e}"))?;
    Ok(())
}

#[tokio::test]
async fn one_server_takes_jetstream_requests() {
    let Some(cluster) = NatsCluster::start(1).await else {
        return;
    };
    assert_eq!(cluster.urls(), cluster.url(0));
    probe_stream(&cluster.url(0), 1).await.expect("R1 stream");
}

#[tokio::test]
async fn three_servers_survive_a_kill_and_a_restart() {
    let Some(mut cluster) = NatsCluster::start(3).await else {
        return;
    };
    assert_eq!(cluster.urls().split(',').count(), 3);
    assert!(!cluster.urls().contains(":4222"));
    let js = async_nats::jetstream::new(cluster.client(0).await);
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "T".to_owned(),
        subjects: vec!["t".to_owned()],
        num_replicas: 3,
        ..Default::default()
    })
    .await
    .expect("R3 stream");
    cluster.kill(2);
    // Two of three keep the quorum: the stream takes a message (once a
    // leader is there again, if n2 led it: so poll, bounded).
    let deadline = Instant::now() + START_WAIT;
    loop {
        let ack = match js.publish("t", "x".into()).await {
            Ok(ack) => ack.await,
            Err(e) => Err(e),
        };
        match ack {
            Ok(_) => break,
            Err(e) if Instant::now() > deadline => panic!("no quorum with 2 of 3: {e}"),
            Err(_) => tokio::time::sleep(PROBE_INTERVAL).await,
        }
    }
    cluster.restart(2).await;
    probe_jetstream(&cluster.url(2))
        .await
        .expect("restarted server answers");
}
