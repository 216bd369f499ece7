//! Clients on threads of their own, apart from the load they measure or
//! make: a receiving client on a thread and runtime of its own
//! ([`ReaderThread`]: the sink of `flood` keeps up with the flood only if
//! the flooder's writes do not take its turns), and an attacker writing
//! one buffer over and over from a blocking thread while another thread
//! reads whatever it is sent ([`Blaster`]: `lists`, whose flood must not
//! share the generator's runtime with anything it measures).
//!
//! The connection moves over as a `std::net::TcpStream` and is registered
//! again with the new runtime (a tokio socket stays tied to the runtime
//! that registered it, and the main runtime's reactor only runs when the
//! main thread is idle).

use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

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

/// How long a blocking read or write of a [`Blaster`] waits before it
/// looks at the stop flag again.
const BLOCKING_POLL: Duration = Duration::from_millis(100);

/// A client writing one buffer again and again, flat out, from a thread
/// of its own, while a second thread reads and counts everything the
/// server sends it.
pub(crate) struct Blaster {
    stop: Arc<AtomicBool>,
    writer: std::thread::JoinHandle<Blasted>,
    reader: std::thread::JoinHandle<Drained>,
}

/// What a [`Blaster`] wrote.
pub(crate) struct Blasted {
    pub(crate) bytes: u64,
    pub(crate) seconds: f64,
    /// The write error that ended it early (the server closed it, say).
    pub(crate) error: Option<String>,
}

/// What a [`Blaster`]'s reader got.
pub(crate) struct Drained {
    pub(crate) bytes: u64,
    pub(crate) lines: u64,
    /// How reading ended: `None` when it was stopped, else the end of
    /// stream or the error the server's side caused.
    pub(crate) ended: Option<String>,
}

impl Blaster {
    /// Moves `client` to two threads: one writes `buffer` over and over
    /// until [`Blaster::stop`] or `until`, the other reads everything.
    pub(crate) fn start(client: Client, buffer: Vec<u8>, until: Instant) -> anyhow::Result<Self> {
        let stream = client.stream.into_std().context("detaching a socket")?;
        stream.set_nonblocking(false)?;
        stream.set_write_timeout(Some(BLOCKING_POLL))?;
        stream.set_read_timeout(Some(BLOCKING_POLL))?;
        let reading = stream.try_clone().context("cloning a socket")?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let writer = std::thread::Builder::new()
            .name("blaster".into())
            .spawn(move || blast(stream, &buffer, until, &stopped))
            .context("starting a writer thread")?;
        let stopped = stop.clone();
        let reader = std::thread::Builder::new()
            .name("blaster-reader".into())
            .spawn(move || drain(reading, &stopped))
            .context("starting a reader thread")?;
        Ok(Blaster {
            stop,
            writer,
            reader,
        })
    }

    /// Whether the writer is done (its time is up, or the server closed).
    pub(crate) fn is_finished(&self) -> bool {
        self.writer.is_finished()
    }

    /// Stops both threads and closes the connection.
    pub(crate) async fn stop(self) -> (Blasted, Drained) {
        self.stop.store(true, Relaxed);
        let joined = tokio::task::spawn_blocking(move || {
            let blasted = self.writer.join();
            let drained = self.reader.join();
            (blasted, drained)
        })
        .await;
        let lost = |what: &str| Blasted {
            bytes: 0,
            seconds: 0.0,
            error: Some(format!("the {what} panicked")),
        };
        match joined {
            Ok((Ok(blasted), Ok(drained))) => (blasted, drained),
            Ok((blasted, drained)) => (
                blasted.unwrap_or_else(|_| lost("writer thread")),
                drained.unwrap_or(Drained {
                    bytes: 0,
                    lines: 0,
                    ended: Some("the reader thread panicked".into()),
                }),
            ),
            Err(_) => (
                lost("blaster's threads"),
                Drained {
                    bytes: 0,
                    lines: 0,
                    ended: None,
                },
            ),
        }
    }
}

/// Writes `buffer` over and over until `until` or `stop`; then closes
/// the connection (both ways, which ends the reader).
fn blast(
    mut stream: std::net::TcpStream,
    buffer: &[u8],
    until: Instant,
    stop: &AtomicBool,
) -> Blasted {
    let began = Instant::now();
    let (mut bytes, mut at) = (0u64, 0usize);
    let mut error = None;
    while !stop.load(Relaxed) && Instant::now() < until {
        match stream.write(&buffer[at..]) {
            Ok(0) => {
                error = Some("the connection took no more bytes".to_string());
                break;
            }
            Ok(n) => {
                bytes += n as u64;
                at += n;
                if at == buffer.len() {
                    at = 0;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            Err(e) => {
                error = Some(e.to_string());
                break;
            }
        }
    }
    let seconds = began.elapsed().as_secs_f64();
    stop.store(true, Relaxed);
    let _ = stream.shutdown(Shutdown::Both);
    Blasted {
        bytes,
        seconds,
        error,
    }
}

/// Reads and counts until the connection ends or `stop` is set.
fn drain(mut stream: std::net::TcpStream, stop: &AtomicBool) -> Drained {
    let mut buf = vec![0u8; 256 * 1024];
    let (mut bytes, mut lines) = (0u64, 0u64);
    let ended = loop {
        match stream.read(&mut buf) {
            Ok(0) if stop.load(Relaxed) => break None,
            Ok(0) => break Some("end of stream".to_string()),
            Ok(n) => {
                bytes += n as u64;
                lines += memchr::memchr_iter(b'\n', &buf[..n]).count() as u64;
            }
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) =>
            {
                if stop.load(Relaxed) {
                    break None;
                }
            }
            Err(_) if stop.load(Relaxed) => break None,
            Err(e) => break Some(e.to_string()),
        }
    };
    Drained {
        bytes,
        lines,
        ended,
    }
}
