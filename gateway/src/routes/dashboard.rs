//! The browser dashboard and client library, embedded in the binary so `lightkeeper demo` works
//! from any directory.

use crate::state::AppState;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

const INDEX: &str = include_str!("../../../js/dashboard/index.html");
const DASHBOARD_JS: &str = include_str!("../../../js/dashboard/dashboard.js");
const STYLE: &str = include_str!("../../../js/dashboard/style.css");
const CLIENT_JS: &str = include_str!("../../../js/lightkeeper.js");

fn file(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "no-cache")], body)
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { file("text/html; charset=utf-8", INDEX) }))
        .route("/dashboard/index.html", get(|| async { file("text/html; charset=utf-8", INDEX) }))
        .route("/dashboard/dashboard.js", get(|| async { file("text/javascript; charset=utf-8", DASHBOARD_JS) }))
        .route("/dashboard/style.css", get(|| async { file("text/css; charset=utf-8", STYLE) }))
        .route("/js/lightkeeper.js", get(|| async { file("text/javascript; charset=utf-8", CLIENT_JS) }))
}
