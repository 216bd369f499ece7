//! The web listener (`--http`): the browser client, its WebSocket, and
//! the operator's endpoints, on actix-web.
//!
//! Routes:
//! - `GET /`, `/app.js`, `/app.css`: the web client, built into the
//!   binary (`page.rs`, the files in `page/`);
//! - `GET /ws`: a WebSocket whose text frames carry protocol lines; each
//!   one is a full chat connection, a [`Session`](crate::Session) like a
//!   TCP one (`ws.rs`, over [`crate::transport::websocket`]);
//! - `GET /healthz`: 200 while the server takes connections, 503 once its
//!   shutdown has begun;
//! - `GET /metrics`: the server's counts in the Prometheus text format
//!   ([`crate::metrics`]; docs/OPERATIONS.md lists them).
//!
//! actix-web runs its own workers (as many as `--workers`), each an
//! arbiter of the server's actix `System`: a WebSocket session lives on
//! the worker that took its HTTP connection, and the broker sees no
//! difference. The listener serves HTTPS with the TLS listener's
//! certificate when there is one.

mod origin;
mod page;
mod ws;

use std::io;
use std::net::TcpListener as StdTcpListener;
use std::sync::Arc;

use actix_web::{App, HttpResponse, HttpServer, web};
use tokio_rustls::TlsAcceptor;

use crate::server::Gate;
pub use origin::{OriginError, Origins, normalize_origin};

/// What every request handler shares.
#[derive(Clone)]
pub struct WebState {
    /// Admission, shared with the TCP accept loop.
    pub gate: Arc<Gate>,
    /// Who may open `/ws`.
    pub origins: Origins,
    /// Whether the listener serves HTTPS (the own origin's scheme).
    pub secure: bool,
}

/// Starts the web listener on `listener` (HTTPS given an acceptor) with
/// `workers` workers; runs until the returned server is stopped.
pub fn start(
    listener: StdTcpListener,
    tls: Option<TlsAcceptor>,
    state: WebState,
    workers: usize,
    max_connections: usize,
) -> io::Result<actix_web::dev::Server> {
    let server = HttpServer::new(move || {
        // The factory runs on each worker: sessions started there find
        // their read buffer ready.
        crate::session::prepare_worker_thread();
        App::new()
            .app_data(web::Data::new(state.clone()))
            .route("/", web::get().to(page::index))
            .route("/app.js", web::get().to(page::script))
            .route("/app.css", web::get().to(page::style))
            .route("/ws", web::get().to(ws::open))
            .route("/healthz", web::get().to(healthz))
            .route("/metrics", web::get().to(metrics))
    })
    .workers(workers.max(1))
    // The server's own signal handling starts the ordered shutdown.
    .disable_signals()
    .shutdown_timeout(1)
    // WebSocket sessions count against `--max-connections` at the gate;
    // this only bounds what actix-web holds per worker.
    .max_connections(max_connections.max(1));
    let server = match tls {
        Some(acceptor) => {
            server.listen_rustls_0_23(listener, acceptor.config().as_ref().clone())?
        }
        None => server.listen(listener)?,
    };
    Ok(server.run())
}

/// `GET /metrics`: the scrape.
async fn metrics(state: web::Data<WebState>) -> HttpResponse {
    let env = &state.gate.session_env;
    match crate::metrics::render(&env.metrics, &env.gauge) {
        Ok(text) => HttpResponse::Ok()
            .content_type(crate::metrics::CONTENT_TYPE)
            .body(text),
        Err(_) => HttpResponse::InternalServerError()
            .content_type("text/plain")
            .body("the metrics could not be written\n"),
    }
}

/// `GET /healthz`: 200 `ok` while connections are taken, 503 `shutting
/// down` once the shutdown has begun.
async fn healthz(state: web::Data<WebState>) -> HttpResponse {
    if state.gate.is_accepting() {
        HttpResponse::Ok().content_type("text/plain").body("ok\n")
    } else {
        HttpResponse::ServiceUnavailable()
            .content_type("text/plain")
            .body("shutting down\n")
    }
}
