//! End-to-end tests: real servers on port 0, real TCP clients.
//!
//! One test binary; each module covers one surface of the protocol. Add a
//! test to the module whose name says what it checks; `util` is the shared
//! harness (servers, clients, bounded waits).

// Test code: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod util;

mod accounts;
mod browser;
mod chaos;
mod chat;
mod cluster;
mod cluster_faults;
// They run the achat-client binary, built only with the `client` feature.
#[cfg(feature = "client")]
mod client;
mod commands;
mod disconnect;
mod faults;
mod folding;
mod hostile;
mod limits;
mod login;
mod metrics;
mod names;
mod nats;
mod netcat;
mod per_ip;
mod shutdown;
#[cfg(feature = "client")]
mod tls;
mod websocket;
