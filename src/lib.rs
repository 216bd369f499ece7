//! achat: the chat server of the async-std book's a-chat tutorial, built on
//! the actix actor framework and hardened against whatever a network or a
//! client does.
//!
//! People connect with `nc`, telnet or `achat-client`, send a name, then
//! send lines such as `bob, carol: hello`. The protocol is specified in
//! `docs/PROTOCOL.md`, the design explained in `docs/ARCHITECTURE.md`.
//!
//! # Map of the crate
//!
//! Pure parts (no I/O, tested on plain values):
//! - [`protocol`]: what a line means (names, chat lines, commands) and
//!   every line the server writes ([`protocol::Reply`]);
//! - [`line_reader`]: cutting a byte stream into lines, with the line limit,
//!   `\r\n` and invalid UTF-8 handled;
//! - [`batch`]: the requests of one read, laid out for the broker;
//! - [`config`]: the command line and the validated [`Config`].
//!
//! The actors, and the messages between them:
//! - [`messages`]: every message the broker and the sessions exchange (so
//!   neither imports the other);
//! - [`broker`]: the [`Broker`] actor, owner of the online peers, the one
//!   serialization point;
//! - [`session`]: the [`Session`] actor, one per connection, owner of its
//!   socket.
//!
//! Putting it together:
//! - [`server`]: binding, the accept loop, worker placement, the signals,
//!   start and the ordered shutdown; [`server::run`] takes bound listeners
//!   (plain, TLS or both) and a shutdown future;
//! - [`limits`]: fitting `--max-connections` to the descriptor limit;
//! - [`sched`]: the broker thread's scheduling policy;
//! - [`tcp`]: a connection's capped send buffer, and its unsent bytes
//!   (with `sched`, the crate's two `unsafe` system calls);
//! - [`accounts`]: registered names: the [`accounts::Accounts`] actor
//!   (on an arbiter of its own) that checks passwords on the blocking
//!   pool and keeps registrations in SQLite, the guessing back-off and
//!   the login rate per address;
//! - [`transport`]: a session's socket, plain TCP or TLS, as one
//!   [`transport::Stream`];
//! - [`tls`]: loading the certificate and key, the TLS handshake;
//! - [`sources`]: connections counted per source address
//!   (`--max-connections-per-ip`);
//! - [`cluster`]: cluster mode over NATS: the [`cluster::Cluster`] actor
//!   (on an arbiter of its own) that carries lines and presence between
//!   nodes, and the name service on JetStream;
//! - [`web`]: the web listener on actix-web: the browser client, chat over
//!   WebSocket, `/healthz`, `/metrics`;
//! - [`metrics`]: what `/metrics` reports, counted per thread without a
//!   lock on any hot path;
//!
//! `achat-server` (`src/bin/achat-server.rs`) is thin: parse the command
//! line, set up logging, bind, call the library. `achat-client`
//! (`src/bin/achat-client/`, behind the default `client` feature) is a
//! program of its own that uses only [`protocol`], to read the server's
//! lines.

pub mod accounts;
pub mod batch;
pub mod broker;
pub mod cluster;
pub mod config;
pub mod limits;
pub mod line_reader;
pub mod messages;
pub mod metrics;
pub mod protocol;
pub mod sched;
pub mod server;
pub mod session;
pub mod sources;
pub mod tcp;
pub mod tls;
pub mod transport;
pub mod web;

pub use broker::Broker;
pub use config::Config;
pub use server::{ServerHandle, run, spawn};
pub use session::Session;
