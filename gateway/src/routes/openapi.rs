//! The OpenAPI document of API v1, generated from the router.
//!
//! `routes::public_routes` registers every public route from its handler's `#[utoipa::path]`
//! (`utoipa_axum::routes!`), so the paths and methods of this document are the router's: a route
//! cannot be served without being documented, nor documented without being served. What is
//! common to every route is added here: the info, the `bearer` security scheme (required by the
//! admin operations), and the errors the router's layers can answer on any route.
//! Internal node-to-node routes (`/v1/internal/*`) are not part of the document.

use axum::Json;
use lightkeeper_api::error::ErrorResponse;
use std::sync::LazyLock;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, ToSchema};

/// Name of the security scheme of the admin operations: `Authorization: Bearer <token>` with
/// `cluster.admin_token`.
pub const BEARER: &str = "bearer";

/// Errors that the router's layers (`routes::router`) answer on any route, as
/// `(status, description)`; each is an [`ErrorResponse`].
pub const LAYER_ERRORS: [(u16, &str); 3] = [
    (408, "`timeout`: the request took longer than limits.request_timeout_ms; reads are safe to retry"),
    (500, "`internal`: an internal error; the request may be retried"),
    (503, "`unavailable`: too many requests in flight (limits.max_concurrent_requests); retry later"),
];

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Lightkeeper API",
        version = "1",
        description = "Stateful data API for astronomical alert streams. Every 4xx/5xx answer has the body {\"error\":{\"code\",\"message\"}} (ErrorResponse). WebSocket: GET /v1/ws (see API.md). Node-to-node routes (/v1/internal/*) are not part of this document."
    ),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, api: &mut OpenApi) {
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .description(Some("the cluster's admin token (cluster.admin_token)"))
            .build();
        api.components.get_or_insert_with(Default::default).add_security_scheme(BEARER, SecurityScheme::Http(scheme));
    }
}

/// The document: the public routes' operations, plus [`LAYER_ERRORS`] on every operation.
pub fn spec() -> OpenApi {
    let (_router, mut api) = super::public_routes().split_for_parts();
    // A wildcard segment is `{*name}` to axum and `{name}` to OpenAPI (which has no wildcards:
    // the parameter's description says it may hold slashes).
    let wildcards: Vec<String> = api.paths.paths.keys().filter(|p| p.contains("{*")).cloned().collect();
    for path in wildcards {
        if let Some(item) = api.paths.paths.remove(&path) {
            api.paths.paths.insert(path.replace("{*", "{"), item);
        }
    }
    for item in api.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.options,
            &mut item.head,
            &mut item.patch,
            &mut item.trace,
        ];
        for op in operations.into_iter().flatten() {
            add_layer_errors(op);
        }
    }
    api
}

/// Adds each of [`LAYER_ERRORS`] to `op`: as a response of its own, or appended to the
/// description of the operation's own response with that status.
fn add_layer_errors(op: &mut Operation) {
    for (status, why) in LAYER_ERRORS {
        match op.responses.responses.get_mut(&status.to_string()) {
            Some(RefOr::T(own)) => own.description = format!("{}; or {why}", own.description),
            Some(RefOr::Ref(_)) => {}
            None => {
                let body = ContentBuilder::new().schema(Some(Ref::from_schema_name(ErrorResponse::name()))).build();
                let response = ResponseBuilder::new().description(why).content("application/json", body).build();
                op.responses.responses.insert(status.to_string(), RefOr::T(response));
            }
        }
    }
}

static SPEC: LazyLock<OpenApi> = LazyLock::new(spec);

#[utoipa::path(get, path = "/openapi.json", tag = "meta", operation_id = "openapi",
    responses((status = 200, description = "this document", body = Object)))]
pub async fn serve() -> Json<&'static OpenApi> {
    Json(&SPEC)
}
