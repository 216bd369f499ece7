//! The web client's files, built into the binary: no build step, no
//! third-party scripts, nothing to install beside the server.
//!
//! The Content-Security-Policy allows scripts and styles from this server
//! only, and no inline script: even if a message's text ever reached the
//! page as HTML, nothing in it would run.

use actix_web::HttpResponse;
use actix_web::http::header;

const INDEX: &str = include_str!("page/index.html");
const SCRIPT: &str = include_str!("page/app.js");
const STYLE: &str = include_str!("page/app.css");

const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

fn file(content_type: &'static str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CONTENT_SECURITY_POLICY, POLICY))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(body)
}

/// `GET /`: the page.
pub(super) async fn index() -> HttpResponse {
    file("text/html; charset=utf-8", INDEX)
}

/// `GET /app.js`: its script.
pub(super) async fn script() -> HttpResponse {
    file("text/javascript; charset=utf-8", SCRIPT)
}

/// `GET /app.css`: its style.
pub(super) async fn style() -> HttpResponse {
    file("text/css; charset=utf-8", STYLE)
}
