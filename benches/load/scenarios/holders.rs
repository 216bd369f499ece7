//! The `hold` processes `crowd` starts, one per node: each a child of this
//! binary (`hold --addr <node> ...`), with descriptors of its own. It says
//! `READY` on its standard output once its users are logged in, holds them
//! until its standard input is closed, then prints its report.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::scenarios::Ctx;
use crate::scenarios::hold::READY;

/// One `hold` child process.
pub(crate) struct Holder {
    pub(crate) node: usize,
    child: Child,
    stdin: Option<ChildStdin>,
    ready: Option<oneshot::Receiver<()>>,
    output: JoinHandle<Vec<String>>,
}

/// What a `hold` process said at the end.
pub(crate) struct Said {
    /// Its report's summary lines (login barrier, what was held).
    pub(crate) lines: Vec<String>,
    /// Lines it echoed.
    pub(crate) echoed: u64,
    /// Why it failed, if it did.
    pub(crate) failures: Vec<String>,
}

impl Holder {
    /// The name `hold` gives user `i` of node `node` in a crowd tagged `tag`.
    pub(crate) fn user_name(tag: &str, node: usize, i: usize) -> String {
        format!("h{i}-{tag}n{node}")
    }

    /// Starts `hold` with `conns` users on `addr` (the crowd's node `node`).
    pub(crate) fn spawn(
        ctx: &Ctx,
        conns: usize,
        node: usize,
        addr: SocketAddr,
    ) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("finding this binary")?;
        let login_timeout = ctx.login_options_for(conns).timeout;
        let mut command = Command::new(exe);
        command
            .arg("hold")
            .args(["--addr", &addr.to_string()])
            .args(["--conns", &conns.to_string()])
            .args(["--role", "h"])
            .args(["--tag", &format!("{}n{node}", ctx.tag)])
            .args([
                "--login-concurrency",
                &ctx.common.login_concurrency.to_string(),
            ])
            .args(["--login-timeout", &format!("{}s", login_timeout.as_secs())])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        if let Some(sources) = ctx.common.sources {
            command.args(["--sources", &sources.to_string()]);
        }
        let mut child = command.spawn().context("starting a hold process")?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().context("the hold process's output")?;
        let (tell, ready) = oneshot::channel();
        let output = tokio::spawn(async move {
            let mut tell = Some(tell);
            let mut lines = BufReader::new(stdout).lines();
            let mut said = Vec::new();
            while let Ok(Some(line)) = lines.next_line().await {
                if line.starts_with(READY)
                    && let Some(tell) = tell.take()
                {
                    let _ = tell.send(());
                }
                said.push(line);
            }
            said
        });
        Ok(Holder {
            node,
            child,
            stdin,
            ready: Some(ready),
            output,
        })
    }

    /// Waits until it says its users are logged in.
    pub(crate) async fn ready(&mut self, until: Instant) -> Result<(), String> {
        let Some(ready) = self.ready.take() else {
            return Ok(());
        };
        match tokio::time::timeout_at(until.into(), ready).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(format!(
                "hold {}: ended before its users were logged in",
                self.node
            )),
            Err(_) => Err(format!(
                "hold {}: its users were not logged in in time",
                self.node
            )),
        }
    }

    /// Closes its standard input, waits for it to end (killing it after
    /// 30 s), and reads its report.
    pub(crate) async fn finish(mut self) -> Said {
        drop(self.stdin.take());
        let ended = tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await;
        let mut failures = Vec::new();
        match ended {
            Ok(Ok(status)) if status.success() => {}
            Ok(Ok(status)) => failures.push(format!("exited with {status}")),
            Ok(Err(e)) => failures.push(format!("waiting for it: {e}")),
            Err(_) => {
                let _ = self.child.kill().await;
                failures.push("did not end within 30 s of its input closing; killed".into());
            }
        }
        let output = self.output.await.unwrap_or_default();
        let report = output
            .iter()
            .find_map(|l| l.strip_prefix("JSON "))
            .and_then(|json| serde_json::from_str::<serde_json::Value>(json).ok());
        let echoed = report
            .as_ref()
            .and_then(|r| r["results"]["held"]["echoed"].as_u64())
            .unwrap_or(0);
        match &report {
            Some(r) => {
                if let Some(list) = r["failures"].as_array() {
                    failures.extend(list.iter().filter_map(|f| f.as_str()).map(String::from));
                }
            }
            None => failures.push("printed no report".into()),
        }
        let lines = output
            .iter()
            .filter(|l| l.starts_with("  login barrier") || l.starts_with("  held "))
            .map(|l| l.trim_start_matches(' ').to_string())
            .map(|l| format!(" {l}"))
            .collect();
        Said {
            lines,
            echoed,
            failures,
        }
    }
}
