//! The browser dashboard and client library, embedded in the binary so `lightkeeper demo` works
//! from any directory.

use crate::state::AppState;
use axum::http::header;
use axum::response::IntoResponse;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

const INDEX: &str = include_str!("../../../js/dashboard/index.html");
const DASHBOARD_JS: &str = include_str!("../../../js/dashboard/dashboard.js");
const STYLE: &str = include_str!("../../../js/dashboard/style.css");
const CLIENT_JS: &str = include_str!("../../../js/lightkeeper.js");

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

fn file(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "no-cache")], body)
}

#[utoipa::path(get, path = "/", tag = "dashboard", operation_id = "dashboard",
    responses((status = 200, description = "the dashboard page", body = String, content_type = HTML)))]
async fn root() -> impl IntoResponse {
    file(HTML, INDEX)
}

#[utoipa::path(get, path = "/dashboard/index.html", tag = "dashboard", operation_id = "dashboard_index",
    responses((status = 200, description = "the dashboard page", body = String, content_type = HTML)))]
async fn index() -> impl IntoResponse {
    file(HTML, INDEX)
}

#[utoipa::path(get, path = "/dashboard/dashboard.js", tag = "dashboard", operation_id = "dashboard_js",
    responses((status = 200, description = "the dashboard's script", body = String, content_type = JS)))]
async fn dashboard_js() -> impl IntoResponse {
    file(JS, DASHBOARD_JS)
}

#[utoipa::path(get, path = "/dashboard/style.css", tag = "dashboard", operation_id = "dashboard_css",
    responses((status = 200, description = "the dashboard's style sheet", body = String, content_type = CSS)))]
async fn style() -> impl IntoResponse {
    file(CSS, STYLE)
}

#[utoipa::path(get, path = "/js/lightkeeper.js", tag = "dashboard", operation_id = "client_js",
    responses((status = 200, description = "the JavaScript client library", body = String, content_type = JS)))]
async fn client_js() -> impl IntoResponse {
    file(JS, CLIENT_JS)
}

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::default()
        .routes(routes!(root))
        .routes(routes!(index))
        .routes(routes!(dashboard_js))
        .routes(routes!(style))
        .routes(routes!(client_js))
}
