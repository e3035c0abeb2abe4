//! The browser dashboard and client library, embedded in the binary so `lightkeeper demo` works
//! from any directory.
//!
//! Every file under `js/dashboard/` (the page, its scripts and the vendored plotting library
//! with its license) is compiled in with `include_dir` and served under `/dashboard/`. While
//! working on the dashboard, set `LIGHTKEEPER_DASHBOARD_DIR=js/dashboard` to serve the files
//! from disk instead, so a page edit needs a reload and not a rebuild.

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::Path;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use include_dir::{include_dir, Dir};
use std::borrow::Cow;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

static DASHBOARD: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/../js/dashboard");
const CLIENT_JS: &str = include_str!("../../../js/lightkeeper.js");

/// Files are served from here instead of the embedded copy when set (development only).
const DEV_DIR_ENV: &str = "LIGHTKEEPER_DASHBOARD_DIR";

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";

/// The media type for a file name. Browsers refuse module scripts served with any type but a
/// JavaScript one, so `.js` must be exact.
fn content_type(name: &str) -> &'static str {
    match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => HTML,
        Some("js" | "mjs") => JS,
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("json") => "application/json",
        Some("txt" | "md") | None => "text/plain; charset=utf-8",
        Some(_) => "application/octet-stream",
    }
}

/// One dashboard file, from the development directory when it is set, else from the binary.
fn dashboard_file(name: &str) -> Option<Cow<'static, [u8]>> {
    // Names come from the URL: only plain relative paths inside the directory.
    if name.is_empty() || name.split('/').any(|part| part.is_empty() || part == "." || part == "..") {
        return None;
    }
    if let Some(dir) = std::env::var_os(DEV_DIR_ENV) {
        return std::fs::read(std::path::Path::new(&dir).join(name)).ok().map(Cow::Owned);
    }
    DASHBOARD.get_file(name).map(|f| Cow::Borrowed(f.contents()))
}

fn serve(name: &str) -> Result<Response, ApiError> {
    let body = dashboard_file(name)
        .ok_or_else(|| ApiError::not_found("file_not_found", format!("the dashboard has no file {name:?}")))?;
    Ok(([(header::CONTENT_TYPE, content_type(name)), (header::CACHE_CONTROL, "no-cache")], body).into_response())
}

#[utoipa::path(get, path = "/", tag = "dashboard", operation_id = "dashboard",
    responses((status = 200, description = "the dashboard page", body = String, content_type = HTML)))]
async fn root() -> Result<Response, ApiError> {
    serve("index.html")
}

/// A file of the dashboard, at any depth (`vendor/…` holds the plotting library).
#[utoipa::path(get, path = "/dashboard/{*file}", tag = "dashboard", operation_id = "dashboard_file",
    params(("file" = String, Path, description = "a file of the dashboard: `index.html`, its scripts and styles, `vendor/…` (the plotting library and its license)")),
    responses(
        (status = 200, description = "the file", body = String),
        (status = 404, description = "`file_not_found`", body = lightkeeper_api::error::ErrorResponse),
    ))]
async fn file(Path(file): Path<String>) -> Result<Response, ApiError> {
    serve(&file)
}

#[utoipa::path(get, path = "/js/lightkeeper.js", tag = "dashboard", operation_id = "client_js",
    responses((status = 200, description = "the JavaScript client library", body = String, content_type = JS)))]
async fn client_js() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, JS), (header::CACHE_CONTROL, "no-cache")], CLIENT_JS)
}

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::default().routes(routes!(root)).routes(routes!(client_js)).routes(routes!(file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_embedded_file_is_found_and_paths_cannot_escape() {
        assert!(dashboard_file("index.html").is_some());
        assert!(dashboard_file("dashboard.js").is_some());
        assert!(
            dashboard_file("vendor/LICENSE-plotly.js.txt").is_some(),
            "the plotting library ships with its license"
        );
        for bad in ["", "../Cargo.toml", "a/../../x", "/etc/passwd", "./index.html"] {
            assert!(dashboard_file(bad).is_none(), "{bad:?} must not be served");
        }
        assert_eq!(content_type("dashboard.js"), JS);
        assert_eq!(content_type("index.html"), HTML);
    }
}
