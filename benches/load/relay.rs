//! `relay`: a minimal server of the tutorial protocol (first line the
//! name, then `bob, carol: text`, relayed as `from alice: text`), on one
//! thread, with batched writes: each peer's output accumulates in a buffer
//! that its writer task flushes in one `write` whenever it gets to run.
//!
//! It is a reference point, not a chat server: no limits, unbounded
//! buffers, no `server:` lines. Two uses: a ceiling for what a relay can
//! do on this machine, and a trivial server to see how many deliveries per
//! second the generator itself can drive.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use anyhow::Context;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

use crate::args::RelayArgs;
use crate::lines::LineReader;

/// A connected peer's pending output.
struct Peer {
    out: RefCell<Vec<u8>>,
    wake: Notify,
}

type Peers = Rc<RefCell<HashMap<Vec<u8>, Rc<Peer>>>>;

pub(crate) fn run(a: &RelayArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, serve(&a.bind))
}

async fn serve(bind: &str) -> anyhow::Result<()> {
    let listener = TcpListener::bind(bind)
        .await
        .with_context(|| format!("cannot listen on {bind}"))?;
    println!("listening on {}", listener.local_addr()?);
    let peers: Peers = Rc::default();
    let stop = tokio::signal::ctrl_c();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::task::spawn_local(connection(stream, peers.clone()));
                }
                Err(e) => {
                    eprintln!("relay: accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            _ = &mut stop => return Ok(()),
        }
    }
}

async fn connection(stream: TcpStream, peers: Peers) {
    let _ = stream.set_nodelay(true);
    let (mut read, mut write) = stream.into_split();
    let me = Rc::new(Peer {
        out: RefCell::new(Vec::new()),
        wake: Notify::new(),
    });
    let writer = {
        let me = me.clone();
        tokio::task::spawn_local(async move {
            let mut buf = Vec::new();
            loop {
                if me.out.borrow().is_empty() {
                    me.wake.notified().await;
                    continue;
                }
                std::mem::swap(&mut *me.out.borrow_mut(), &mut buf);
                if write.write_all(&buf).await.is_err() {
                    return;
                }
                buf.clear();
            }
        })
    };
    let mut reader = LineReader::new(256 * 1024, &[]);
    let mut name: Option<Vec<u8>> = None;
    while let Ok(n) = reader.fill(&mut read).await {
        if n == 0 {
            break;
        }
        while let Some(line) = reader.next_line() {
            let Some(from) = &name else {
                let login = line.trim_ascii().to_vec();
                peers
                    .borrow_mut()
                    .entry(login.clone())
                    .or_insert_with(|| me.clone());
                name = Some(login);
                continue;
            };
            let Some(colon) = line.iter().position(|&b| b == b':') else {
                continue;
            };
            let text = line[colon + 1..].trim_ascii();
            let peers = peers.borrow();
            for dest in line[..colon].split(|&b| b == b',') {
                if let Some(peer) = peers.get(dest.trim_ascii()) {
                    let mut out = peer.out.borrow_mut();
                    out.extend_from_slice(b"from ");
                    out.extend_from_slice(from);
                    out.extend_from_slice(b": ");
                    out.extend_from_slice(text);
                    out.push(b'\n');
                    peer.wake.notify_one();
                }
            }
        }
    }
    if let Some(login) = name {
        let mut peers = peers.borrow_mut();
        if peers.get(&login).is_some_and(|p| Rc::ptr_eq(p, &me)) {
            peers.remove(&login);
        }
    }
    writer.abort();
}
