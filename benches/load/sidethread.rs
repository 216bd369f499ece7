//! A receiving client on a thread and runtime of its own, for a reader
//! that must not share a thread with the load it measures: the sink of
//! `flood` keeps up with the flood only if the flooder's writes do not
//! take its turns.
//!
//! The connection moves over as a `std::net::TcpStream` and is registered
//! again with the new runtime (a tokio socket stays tied to the runtime
//! that registered it, and the main runtime's reactor only runs when the
//! main thread is idle).

use std::sync::Arc;

use anyhow::Context;
use tokio::sync::watch;

use crate::lines::LineReader;
use crate::login::Client;
use crate::state::Shared;
use crate::traffic::receive;

/// A receive loop running on its own thread.
pub(crate) struct ReaderThread {
    stop: watch::Sender<bool>,
    thread: std::thread::JoinHandle<()>,
}

impl ReaderThread {
    /// Moves `client` to a new thread that runs its receive loop (latencies
    /// into `class`) until [`ReaderThread::stop`].
    pub(crate) fn start(
        shared: &Arc<Shared>,
        client: Client,
        class: usize,
        buffer: usize,
    ) -> anyhow::Result<Self> {
        let std_stream = client.stream.into_std().context("detaching a socket")?;
        let (stop, mut stopped) = watch::channel(false);
        let shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("reader".into())
            .spawn(move || {
                let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    shared.note(|| "cannot start a reader thread's runtime".to_string());
                    return;
                };
                runtime.block_on(async move {
                    let stream = match tokio::net::TcpStream::from_std(std_stream) {
                        Ok(stream) => stream,
                        Err(e) => {
                            shared.note(|| format!("cannot register a socket: {e}"));
                            return;
                        }
                    };
                    let (read, write) = stream.into_split();
                    let reader = LineReader::new(buffer, &client.leftover);
                    tokio::select! {
                        () = receive(shared.clone(), client.index, class, read, reader, false) => {}
                        _ = stopped.wait_for(|s| *s) => {}
                    }
                    drop(write);
                });
            })
            .context("starting a reader thread")?;
        Ok(ReaderThread { stop, thread })
    }

    /// Stops the loop and closes the connection.
    pub(crate) async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = tokio::task::spawn_blocking(move || self.thread.join()).await;
    }
}
