//! Micro-benchmarks of the hot paths that involve no network, so a
//! regression shows without sockets or a second process:
//! - `session_read`: what a session does with one 64 KiB read: cut it into
//!   lines, parse each, build the `Route` batch for the broker;
//! - `broker_route`: the broker handling such batches through its mailbox
//!   and handing the output to (in-process, discarding) sessions.
//!
//! `cargo bench --bench hot_paths` (criterion; HTML reports under
//! target/criterion).

use std::hint::black_box;

use achat::Broker;
use achat::batch::Batch;
use achat::broker::OutboxLimits;
use achat::line_reader::{Frame, LineReader};
use achat::messages::{
    Backlog, Connect, Control, Credit, DELIVER_OVERHEAD, Deliver, NewPeer, Route, SessionLink,
};
use achat::protocol::{self, LoginName, Request};
use actix::prelude::*;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

/// 64 KiB of typical chat lines, as one read would return them.
fn a_read() -> Vec<u8> {
    let mut input = Vec::new();
    let mut i = 0;
    while input.len() < 64 * 1024 {
        input
            .extend_from_slice(format!("r{}: message number {i} of the run\n", i % 100).as_bytes());
        i += 1;
    }
    input
}

/// The session's work on one read (see `Session::consume`).
fn session_read(reader: &mut LineReader, mut input: &[u8]) -> Batch {
    let mut batch = Batch::for_input(input.len());
    while let Some(frame) = reader.next_frame(&mut input) {
        if let Frame::Line(line) = frame
            && let Ok(Request::Chat(chat)) = protocol::parse_request(line)
        {
            batch.push_chat("sender", &chat);
        }
    }
    batch
}

/// 64 KiB of 1000-byte messages, as a flooding client sends them.
fn a_read_of_long_lines() -> Vec<u8> {
    let line = format!("r1: {}\n", "x".repeat(995));
    line.repeat(64 * 1024 / line.len()).into_bytes()
}

fn bench_session_read(c: &mut Criterion) {
    let mut group = c.benchmark_group("session_read");
    for (name, input) in [
        ("64KiB_of_chat_lines", a_read()),
        ("64KiB_of_1000_byte_lines", a_read_of_long_lines()),
    ] {
        let lines = input.iter().filter(|&&b| b == b'\n').count() as u64;
        group.throughput(Throughput::Elements(lines));
        group.bench_function(name, |b| {
            let mut reader = LineReader::new(4096);
            b.iter(|| black_box(session_read(&mut reader, black_box(&input))));
        });
    }
    group.finish();
}

/// Stands in for a session: counts output as written at once.
struct Sink {
    backlog: Backlog,
}

impl Actor for Sink {
    type Context = Context<Self>;
}

impl Handler<Deliver> for Sink {
    type Result = ();
    fn handle(&mut self, msg: Deliver, _: &mut Context<Self>) {
        self.backlog.sub(msg.bytes.len() + DELIVER_OVERHEAD);
    }
}

impl Handler<Control> for Sink {
    type Result = ();
    fn handle(&mut self, _: Control, _: &mut Context<Self>) {}
}

/// A broker with `peers` logged-in sinks named r0, r1, ...
fn broker_with_peers(system: &SystemRunner, peers: u64) -> Addr<Broker> {
    system.block_on(async {
        let limits = OutboxLimits {
            per_peer: 1 << 30,
            total: 1 << 40,
        };
        let broker = Broker::new(limits, Default::default()).start();
        for id in 0..peers {
            let backlog = Backlog::default();
            let sink = Sink {
                backlog: backlog.clone(),
            }
            .start();
            broker.do_send(Connect {
                id,
                session: SessionLink::new(&sink),
                backlog,
            });
            let Ok(name) = LoginName::new(&format!("r{id}")) else {
                continue;
            };
            let _ = broker.send(NewPeer { id, name }).await;
        }
        broker
    })
}

fn bench_broker_route(c: &mut Criterion) {
    let system = System::new();
    let broker = broker_with_peers(&system, 100);
    let mut reader = LineReader::new(4096);
    let input = a_read();
    // One read's worth of lines, spread over 100 recipients.
    let spread = session_read(&mut reader, &input);
    let lines = spread.ops().len() as u64;
    let mut group = c.benchmark_group("broker_route");
    group.throughput(Throughput::Elements(lines));
    group.bench_function("batch_to_100_recipients", |b| {
        b.iter_batched(
            || clone_batch(&input, &mut reader),
            |batch| {
                system.block_on(async {
                    let credit = Credit::unlimited();
                    let _ = broker
                        .send(Route {
                            from: 0,
                            batch,
                            credit,
                        })
                        .await;
                })
            },
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

fn clone_batch(input: &[u8], reader: &mut LineReader) -> Batch {
    session_read(reader, input)
}

criterion_group!(benches, bench_session_read, bench_broker_route);
criterion_main!(benches);
