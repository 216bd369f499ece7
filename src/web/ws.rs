//! `GET /ws`: a chat connection over WebSocket.

use actix_web::{HttpResponse, web};

use super::WebState;

/// Opens a chat connection (not yet).
pub(super) async fn open(_state: web::Data<WebState>) -> HttpResponse {
    HttpResponse::NotImplemented().finish()
}
