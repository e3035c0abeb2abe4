//! The HTTP router: routes, limits as tower layers, request metrics and error logging.

mod admin;
mod alerts;
mod cutouts;
mod dashboard;
mod health;
mod objects;
pub mod openapi;
mod pipelines;
mod query;
mod raft;
mod registry;
mod watchlists;
pub mod web;
mod ws;

pub(crate) use registry::denial as registry_denial;

use crate::error::ApiError;
use crate::state::AppState;
use axum::error_handling::HandleErrorLayer;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{BoxError, Router};
use std::time::{Duration, Instant};
use tower::ServiceBuilder;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The public API. Every route is registered through `routes!` from its `#[utoipa::path]`, so
/// the OpenAPI document (`openapi::spec`, served at `/openapi.json`) lists exactly these routes
/// and methods: a public handler without the annotation does not compile here.
pub fn public_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(objects::summary))
        .routes(routes!(objects::lightcurve))
        .routes(routes!(objects::alerts))
        .routes(routes!(cutouts::list))
        .routes(routes!(cutouts::stamp))
        .routes(routes!(cutouts::packet))
        .routes(routes!(query::cone))
        .routes(routes!(query::objects))
        .routes(routes!(query::fields))
        .routes(routes!(query::stats))
        .routes(routes!(alerts::ingest))
        .routes(routes!(health::cluster))
        .routes(routes!(admin::promote))
        .routes(routes!(admin::drain))
        .routes(routes!(admin::drain_node))
        .routes(routes!(admin::decommission))
        .routes(routes!(ws::upgrade))
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(health::metrics))
        .routes(routes!(openapi::serve))
        .routes(routes!(registry::schema_by_id))
        .routes(routes!(registry::subjects))
        .routes(routes!(registry::versions, registry::register))
        .routes(routes!(registry::version))
        .routes(routes!(pipelines::list))
        .routes(routes!(pipelines::get, pipelines::put, pipelines::delete))
        .routes(routes!(watchlists::list))
        .routes(routes!(watchlists::get, watchlists::put, watchlists::delete))
        .merge(dashboard::routes())
}

/// Path prefix of the node-to-node routes; none of them is in the OpenAPI document.
pub const INTERNAL_PREFIX: &str = "/v1/internal/";

/// Builds the router (no socket: tests drive it with `tower::ServiceExt::oneshot`).
pub fn router(state: AppState) -> Router {
    let limits = state.limits.clone();
    let timeout_ms = limits.request_timeout_ms;
    // The OpenApi half is `openapi::spec()`, built from this same `public_routes()`.
    let (public, _) = public_routes().split_for_parts();
    let router = public
        // Internal: the coordinators' Raft RPCs between nodes (admin token, openraft's own JSON
        // bodies). Plain axum routes, deliberately left out of the public OpenAPI document.
        .route("/v1/internal/raft/append", post(raft::append))
        .route("/v1/internal/raft/vote", post(raft::vote))
        .route("/v1/internal/raft/snapshot", post(raft::snapshot))
        .route("/v1/internal/raft/write", post(raft::write))
        // Internal: one partition's part of a scattered query (see `crate::query`).
        .route("/v1/internal/partitions/{p}/cone", get(query::partition_cone))
        .route("/v1/internal/partitions/{p}/objects", get(query::partition_objects))
        .route("/v1/internal/partitions/{p}/stats", get(query::partition_stats))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(web::catch_panics(state.metrics.http_panics.clone()))
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(move |e: BoxError| async move { layer_error(e, timeout_ms) }))
                .load_shed()
                .concurrency_limit(limits.max_concurrent_requests)
                .timeout(Duration::from_millis(timeout_ms)),
        )
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        // Access before anything else a request costs; inside `observe`, so denials are counted
        // and timed like every answer.
        .layer(middleware::from_fn_with_state(state.clone(), crate::access::enforce))
        .layer(middleware::from_fn_with_state(state.clone(), observe));
    web::wrap(router, &state.http).with_state(state)
}

/// Answers of the layers above, which any route can give; `openapi::spec` adds them to every
/// operation (see `openapi::LAYER_ERRORS`).
fn layer_error(e: BoxError, timeout_ms: u64) -> Response {
    if e.is::<tower::timeout::error::Elapsed>() {
        ApiError::Timeout(timeout_ms).into_response()
    } else if e.is::<tower::load_shed::error::Overloaded>() {
        ApiError::Unavailable("too many requests in flight".into()).into_response()
    } else {
        ApiError::internal(e).into_response()
    }
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound { code: "no_such_route", message: format!("no route for {}", uri.path()) }
}

async fn method_not_allowed(req: Request) -> Response {
    let e =
        ApiError::bad_request("method_not_allowed", format!("{} is not allowed on {}", req.method(), req.uri().path()));
    (axum::http::StatusCode::METHOD_NOT_ALLOWED, e.into_response()).into_response()
}

/// Counts and times every request by route and status; logs 5xx at error and 4xx at debug.
async fn observe(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let method = req.method().clone();
    let forwarded = req.headers().contains_key(crate::routing::FORWARDED);
    let started = Instant::now();
    let resp = next.run(req).await;
    let status = resp.status();
    let labels = vec![("route".to_owned(), route.clone()), ("status".to_owned(), status.as_u16().to_string())];
    state.metrics.requests.get_or_create(&labels).inc();
    state
        .metrics
        .request_seconds
        .get_or_create(&vec![("route".to_owned(), route.clone())])
        .observe(started.elapsed().as_secs_f64());
    // 503 from /readyz is an answer (restoring, or drained), not a failure; nor is a 503 to a
    // forwarded read during a handover (`not_master`): the forwarding node retries elsewhere;
    // nor a 503 to another node's Raft RPC while this node's coordinator starts (the caller's
    // transport treats the peer as unreachable for the moment and says so once).
    let expected = route == "/readyz" || forwarded || route.starts_with(INTERNAL_PREFIX);
    let answer_503 = status == axum::http::StatusCode::SERVICE_UNAVAILABLE && expected;
    if answer_503 {
        tracing::debug!(%method, route, forwarded, "answered 503");
    } else if status.is_server_error() {
        tracing::error!(%method, route, status = status.as_u16(), "request failed");
    } else if status.is_client_error() {
        tracing::debug!(%method, route, status = status.as_u16(), "request rejected");
    }
    resp
}
