//! `GET /ws`: a chat connection over WebSocket.
//!
//! The handshake is checked (a plain `GET /ws` gets 400), then the
//! `Origin` (a page from a foreign site gets 403, before any upgrade), then
//! the connection goes through the same [`Gate`](crate::server::Gate) as
//! a TCP one. Admitted, it becomes a [`Session`] on this actix-web worker,
//! reading and writing a [`WebSocket`]; refused, it is upgraded all the
//! same and told why the way `nc` is, with the `error:` line, then a close
//! frame (1013, try again later): a browser shows no reason for a failed
//! handshake.

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};

use actix_http::ws::{hash_key, verify_handshake};
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::Bytes;
use log::info;

use super::WebState;
use crate::Session;
use crate::metrics::ConnectionRefusal;
use crate::transport::{Stream, WebSocket, websocket};

/// Opens a chat connection, or says why not.
pub(super) async fn open(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<WebState>,
) -> HttpResponse {
    if let Err(e) = verify_handshake(request.head()) {
        return HttpResponse::BadRequest()
            .content_type("text/plain")
            .body(format!(
                "{e}: /ws is a WebSocket; open / for the web client\n"
            ));
    }
    // Behind a proxy this is the proxy's address: per-address limits then
    // count the proxy (forwarded headers are not trusted).
    let peer = request
        .peer_addr()
        .unwrap_or(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)));
    let headers = request.headers();
    let text = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    let origin = text(header::ORIGIN);
    if !state
        .origins
        .allows(origin, text(header::HOST), state.secure)
    {
        info!(
            "refused a WebSocket from {peer}: origin {} is not allowed",
            origin.unwrap_or("?")
        );
        state
            .gate
            .session_env
            .metrics
            .refused(ConnectionRefusal::Origin);
        return HttpResponse::Forbidden().content_type("text/plain").body(
            "pages from this origin may not open chat connections here (see --allowed-origin)\n",
        );
    }
    let (frames, body) = websocket::channel();
    match state.gate.admit(peer.ip()) {
        Ok((id, slot)) => {
            let env = state.gate.session_env.clone();
            let socket = WebSocket::new(payload.into_inner(), frames, env.limits.max_line_bytes);
            let login_timeout = env.limits.login_timeout;
            Session::start(
                Stream::WebSocket(Box::new(socket)),
                peer,
                id,
                env,
                slot,
                login_timeout,
            );
        }
        Err(why) => {
            let line = state.gate.refusal_line(why, peer).to_bytes();
            // The channel is new and empty: this cannot wait.
            let _ = frames.try_send(websocket::refusal(&line));
        }
    }
    upgraded(&request, body)
}

/// The 101 response whose body is the connection's output.
fn upgraded(request: &HttpRequest, mut body: websocket::Frames) -> HttpResponse {
    let accept = request
        .headers()
        .get(header::SEC_WEBSOCKET_KEY)
        .map(|key| hash_key(key.as_bytes()));
    let mut response = HttpResponse::SwitchingProtocols();
    response.upgrade("websocket");
    if let Some(accept) = accept
        && let Ok(accept) = HeaderValue::from_bytes(&accept)
    {
        response.insert_header((header::SEC_WEBSOCKET_ACCEPT, accept));
    }
    response.streaming(futures_util::stream::poll_fn(move |cx| {
        body.poll_recv(cx)
            .map(|chunk| chunk.map(Ok::<Bytes, Infallible>))
    }))
}
