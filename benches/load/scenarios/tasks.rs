//! The reader and sender tasks of a run ([`Tasks`]).

use std::io;
use std::sync::Arc;

use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::task::JoinHandle;

use crate::lines::LineReader;
use crate::login::Client;
use crate::state::Shared;
use crate::traffic::{Windowed, receive, send_windowed};

/// The reader and sender tasks of a run. Write halves stay open until
/// [`Tasks::finish`]: closing one would tell the server the client left.
#[derive(Default)]
pub(crate) struct Tasks {
    readers: Vec<JoinHandle<()>>,
    senders: Vec<JoinHandle<io::Result<OwnedWriteHalf>>>,
    idle: Vec<OwnedWriteHalf>,
}

impl Tasks {
    /// Starts client `me`'s receive loop.
    pub(crate) fn reader(
        &mut self,
        shared: &Arc<Shared>,
        me: u32,
        class: usize,
        read: OwnedReadHalf,
        leftover: &[u8],
        buffer: usize,
    ) {
        self.read_with(shared, me, class, read, LineReader::new(buffer, leftover));
    }

    /// Splits `client`, starts its receive loop (latencies in `class`,
    /// `buffer` bytes of read buffer), and returns its write half.
    pub(crate) fn split(
        &mut self,
        shared: &Arc<Shared>,
        client: Client,
        class: usize,
        buffer: usize,
    ) -> OwnedWriteHalf {
        let (read, write) = client.stream.into_split();
        self.reader(shared, client.index, class, read, &client.leftover, buffer);
        write
    }

    /// Starts client `me`'s receive loop on `reader` (a paced one, say);
    /// returns its number for [`Tasks::reader_ended`].
    pub(crate) fn read_with(
        &mut self,
        shared: &Arc<Shared>,
        me: u32,
        class: usize,
        read: OwnedReadHalf,
        reader: LineReader,
    ) -> usize {
        self.readers.push(tokio::spawn(receive(
            shared.clone(),
            me,
            class,
            read,
            reader,
            false,
        )));
        self.readers.len() - 1
    }

    /// Whether reader `i`'s loop has ended: the server closed its
    /// connection (or the connection failed).
    pub(crate) fn reader_ended(&self, i: usize) -> bool {
        self.readers.get(i).is_some_and(JoinHandle::is_finished)
    }

    /// Starts a windowed sender.
    pub(crate) fn sender(&mut self, shared: &Arc<Shared>, plan: Windowed, write: OwnedWriteHalf) {
        self.senders
            .push(tokio::spawn(send_windowed(shared.clone(), plan, write)));
    }

    /// Keeps a write half open without sending on it.
    pub(crate) fn keep(&mut self, write: OwnedWriteHalf) {
        self.idle.push(write);
    }

    /// Stops everything and closes the connections; returns the senders'
    /// write errors.
    pub(crate) async fn finish(self) -> Vec<String> {
        for r in &self.readers {
            r.abort();
        }
        let mut errors = Vec::new();
        let mut writes = self.idle;
        for s in self.senders {
            if !s.is_finished() {
                s.abort();
                continue;
            }
            match s.await {
                Ok(Ok(w)) => writes.push(w),
                Ok(Err(e)) => errors.push(format!("write failed: {e}")),
                Err(e) => errors.push(format!("sender task: {e}")),
            }
        }
        for r in self.readers {
            let _ = r.await;
        }
        drop(writes);
        errors
    }
}
