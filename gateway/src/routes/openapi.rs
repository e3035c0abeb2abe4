//! The OpenAPI document of API v1, generated from the router.
//!
//! `routes::public_routes` registers every public route from its handler's `#[utoipa::path]`
//! (`utoipa_axum::routes!`), so the paths and methods of this document are the router's: a route
//! cannot be served without being documented, nor documented without being served. What is
//! common to every route is added here: the info, the `bearer` security scheme and each
//! operation's requirement of it (from `access::need`, the table access control enforces), and
//! the errors the router's layers and access control can answer.
//! Internal node-to-node routes (`/v1/internal/*`) are not part of the document.

use crate::access::{self, Need};
use axum::http::Method;
use axum::Json;
use lightkeeper_api::error::ErrorResponse;
use std::sync::LazyLock;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, ToSchema};

/// Name of the security scheme: `Authorization: Bearer <token>` (API.md, "Access").
pub const BEARER: &str = "bearer";

/// The answers of access control (`crate::access`) on an operation that needs a scope.
const ACCESS_ERRORS: [(u16, &str); 3] = [
    (401, "`unauthorized`: no token where this operation needs one (anonymous callers are refused), or a token this node does not know"),
    (403, "`forbidden`: the token does not have the scope this operation needs"),
    (429, "`rate_limited`: the caller is over its request rate; the `Retry-After` header says in how many seconds to retry"),
];

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
            .description(Some(
                "a token from access.tokens with the scope the operation needs (read, ingest or admin), or the cluster's token (cluster.admin_token); the WebSocket also takes it as the access_token query parameter",
            ))
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
    for (path, item) in api.paths.paths.iter_mut() {
        let operations = [
            (Method::GET, &mut item.get),
            (Method::PUT, &mut item.put),
            (Method::POST, &mut item.post),
            (Method::DELETE, &mut item.delete),
            (Method::OPTIONS, &mut item.options),
            (Method::HEAD, &mut item.head),
            (Method::PATCH, &mut item.patch),
            (Method::TRACE, &mut item.trace),
        ];
        for (method, op) in operations {
            let Some(op) = op else { continue };
            add_errors(op, &LAYER_ERRORS);
            if let Need::Scope(scope) = access::need(&method, Some(path)) {
                add_errors(op, &ACCESS_ERRORS);
                // Reads may be anonymous (access.anonymous_reads), and so may ingest
                // (access.anonymous_ingest): the token is then optional.
                let mut security = vec![SecurityRequirement::new(BEARER, [scope.as_str()])];
                if scope != access::Scope::Admin {
                    security.insert(0, SecurityRequirement::default());
                }
                op.security = Some(security);
            }
        }
    }
    api
}

/// Adds each of `errors` to `op`: as a response of its own, or appended to the description of
/// the operation's own response with that status.
fn add_errors(op: &mut Operation, errors: &[(u16, &str)]) {
    for &(status, why) in errors {
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
