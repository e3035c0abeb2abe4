//! The OpenAPI document cannot drift from the router: its paths and methods are exactly the
//! public routes the router serves, every error it documents is an `ErrorResponse`, admin
//! operations require the bearer token, and what the routes answer is documented.

mod common;

use axum::body::Body;
use axum::http::{Method, StatusCode};
use axum::Router;
use common::TestNode;
use lightkeeper_api::error::ErrorResponse;
use lightkeeper_gateway::routes::openapi::{self, BEARER, LAYER_ERRORS};
use lightkeeper_gateway::routes::INTERNAL_PREFIX;
use std::collections::{BTreeMap, BTreeSet};
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::schema::Schema;
use utoipa::openapi::security::{HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{OpenApi, RefOr, Response};
use utoipa::ToSchema;

/// Methods a route could be registered for (HEAD is answered by every GET route).
const METHODS: [Method; 6] = [Method::GET, Method::POST, Method::PUT, Method::DELETE, Method::PATCH, Method::OPTIONS];

/// The path templates registered in an axum router, read from its `Debug` output (axum has no
/// other way to list them): `Node { paths: {RouteId(3): "/v1/cluster", ...} }`. The fallback
/// router's own paths come after `fallback_router` and are not routes.
fn registered_paths(app: &Router) -> BTreeSet<String> {
    let debug = format!("{app:?}");
    let routes = debug.split("fallback_router").next().expect("split yields one part");
    let paths: BTreeSet<String> = routes
        .split("RouteId(")
        .skip(1)
        .filter_map(|s| {
            let (id, rest) = s.split_once(')')?;
            id.parse::<u32>().ok()?;
            let (path, _) = rest.strip_prefix(": \"")?.split_once('"')?;
            Some(path.to_owned())
        })
        .collect();
    assert!(
        paths.contains("/healthz") && paths.contains("/v1/internal/raft/vote"),
        "axum's Debug output changed; registered_paths needs updating: {paths:?}"
    );
    paths
}

/// A concrete request path for a template: each `{param}` gets a harmless value.
fn concrete(template: &str) -> String {
    template.replace("{key}", "x").replace("{partition}", "0").replace("{id}", "node-1")
}

fn operations(item: &PathItem) -> Vec<(Method, &Operation)> {
    [
        (Method::GET, &item.get),
        (Method::PUT, &item.put),
        (Method::POST, &item.post),
        (Method::DELETE, &item.delete),
        (Method::OPTIONS, &item.options),
        (Method::HEAD, &item.head),
        (Method::PATCH, &item.patch),
        (Method::TRACE, &item.trace),
    ]
    .into_iter()
    .filter_map(|(m, op)| op.as_ref().map(|op| (m, op)))
    .collect()
}

fn all_operations(spec: &OpenApi) -> Vec<(String, Method, &Operation)> {
    spec.paths
        .paths
        .iter()
        .flat_map(|(p, item)| operations(item).into_iter().map(|(m, op)| (p.clone(), m, op)))
        .collect()
}

fn error_ref() -> String {
    format!("#/components/schemas/{}", ErrorResponse::name())
}

/// True when `schema` is the `ErrorResponse` schema: a reference to it, or a `oneOf` (possibly
/// behind a reference) with it among the alternatives.
fn is_error_response(spec: &OpenApi, schema: &RefOr<Schema>) -> bool {
    match schema {
        RefOr::Ref(r) if r.ref_location == error_ref() => true,
        RefOr::Ref(r) => {
            let name = r.ref_location.trim_start_matches("#/components/schemas/");
            let resolved = spec.components.as_ref().and_then(|c| c.schemas.get(name));
            resolved.is_some_and(|s| is_error_response(spec, s))
        }
        RefOr::T(Schema::OneOf(one_of)) => one_of.items.iter().any(|s| is_error_response(spec, s)),
        // A superset: an `error` object beside other fields (the registry's Confluent fields).
        RefOr::T(Schema::Object(o)) => o
            .properties
            .get("error")
            .is_some_and(|e| matches!(e, RefOr::Ref(r) if r.ref_location.ends_with("/ErrorBody"))),
        RefOr::T(_) => false,
    }
}

fn response(op: &Operation, status: u16) -> Option<&Response> {
    match op.responses.responses.get(&status.to_string())? {
        RefOr::T(r) => Some(r),
        RefOr::Ref(r) => panic!("response {status} is a reference ({}); resolve it here", r.ref_location),
    }
}

async fn served_spec(n: &TestNode) -> OpenApi {
    let a = n.get("/openapi.json").await;
    assert_eq!(a.status, StatusCode::OK);
    a.json()
}

/// Paths and methods of the document are the router's public routes, probed on the real router:
/// a method is routed unless the router answers it with its own 405 `method_not_allowed`.
/// A public route added without `#[utoipa::path]` (a plain `.route`) fails here; so does a
/// documented operation the router does not serve.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_and_methods_are_the_public_routes() {
    // Probed as a node (the cluster token holds every scope): access control answers before
    // the router's 405, so an anonymous probe would take a refusal for a route.
    const PROBE: &str = "probe-token";
    let n = TestNode::start(|c| c.cluster.admin_token = Some(PROBE.into())).await;
    let a = n.get("/openapi.json").await;
    let served: serde_json::Value = a.json();
    assert_eq!(served, serde_json::to_value(openapi::spec()).unwrap(), "/openapi.json serves openapi::spec()");
    let spec: OpenApi = a.json();

    let registered = registered_paths(&n.app);
    // The document writes axum's wildcard segment `{*name}` as OpenAPI's `{name}`.
    let public: BTreeSet<String> =
        registered.iter().filter(|p| !p.starts_with(INTERNAL_PREFIX)).map(|p| p.replace("{*", "{")).collect();
    let documented: BTreeSet<String> = spec.paths.paths.keys().cloned().collect();
    assert_eq!(documented, public, "documented paths vs the router's public paths");
    assert!(registered.len() > public.len(), "the internal routes exist, and are left out");

    let mut routed = BTreeSet::new();
    for path in &public {
        for method in METHODS {
            let req = axum::http::Request::builder()
                .method(method.clone())
                .uri(concrete(path))
                .header(axum::http::header::AUTHORIZATION, format!("Bearer {PROBE}"))
                .body(Body::empty())
                .unwrap();
            let a = n.call(req).await;
            let refused = a.status == StatusCode::METHOD_NOT_ALLOWED
                && serde_json::from_slice::<ErrorResponse>(&a.body).is_ok_and(|e| e.error.code == "method_not_allowed");
            if !refused {
                routed.insert((method.to_string(), path.clone()));
            }
        }
    }
    let documented: BTreeSet<(String, String)> =
        all_operations(&spec).into_iter().map(|(p, m, _)| (m.to_string(), p)).collect();
    assert_eq!(documented, routed, "documented (method, path) vs the router's");
    n.stop().await;
}

/// What each public route answers to a plain request is documented: the status, and the
/// content type as a media type of that response. (`/v1/ws` is left out: a request without the
/// WebSocket upgrade headers gets axum's plain-text rejection, which is not documented.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_are_documented() {
    let n = TestNode::start(|_| {}).await;
    let spec = served_spec(&n).await;
    for (path, method, op) in all_operations(&spec) {
        if path == "/v1/ws" {
            continue;
        }
        let a = n.request(method.clone(), &concrete(&path), Body::empty()).await;
        let what = format!("{method} {path} answered {}", a.status);
        let documented = response(op, a.status.as_u16()).unwrap_or_else(|| panic!("{what}: undocumented status"));
        assert!(documented.content.contains_key(a.content_type()), "{what} as {:?}: undocumented", a.content_type());
    }
    n.stop().await;
}

#[test]
fn every_error_is_an_error_response() {
    let spec = openapi::spec();
    let mut checked = 0;
    for (path, method, op) in all_operations(&spec) {
        for (status, r) in &op.responses.responses {
            let code: u16 = status.parse().unwrap_or_else(|_| panic!("{method} {path}: status {status:?}"));
            if code < 400 {
                continue;
            }
            let RefOr::T(r) = r else { panic!("{method} {path} {status} is a reference") };
            let json = r.content.get("application/json");
            let schema = json.and_then(|c| c.schema.as_ref());
            assert!(
                schema.is_some_and(|s| is_error_response(&spec, s)),
                "{method} {path} {status}: the body is not an ErrorResponse"
            );
            checked += 1;
        }
        for (status, _) in LAYER_ERRORS {
            assert!(response(op, status).is_some(), "{method} {path}: the layers' {status} is documented");
        }
    }
    assert!(checked > 40, "only {checked} error responses");
    // Every reference resolves.
    let json = serde_json::to_value(&spec).unwrap();
    let mut refs = Vec::new();
    collect_refs(&json, &mut refs);
    let schemas = spec.components.as_ref().map(|c| &c.schemas).expect("components");
    for r in refs {
        let name = r.strip_prefix("#/components/schemas/").unwrap_or_else(|| panic!("unexpected reference {r}"));
        assert!(schemas.contains_key(name), "{r} is not in components.schemas");
    }
}

fn collect_refs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                match v {
                    serde_json::Value::String(s) if k == "$ref" => out.push(s.clone()),
                    _ => collect_refs(v, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

#[test]
fn operations_document_the_scope_they_need() {
    let spec = openapi::spec();
    let schemes = &spec.components.as_ref().expect("components").security_schemes;
    match schemes.get(BEARER) {
        Some(SecurityScheme::Http(h)) => assert!(h.scheme == HttpAuthScheme::Bearer, "bearer is HTTP bearer"),
        _ => panic!("no http security scheme {BEARER:?}"),
    }
    let anonymous = SecurityRequirement::default();
    let (mut admin, mut optional) = (0, 0);
    for (path, method, op) in all_operations(&spec) {
        let security = op.security.clone().unwrap_or_default();
        let needs = |scope: &str| security.contains(&SecurityRequirement::new(BEARER, [scope]));
        // Registering a schema is an admin call too.
        let registers = path == "/subjects/{subject}/versions" && method.to_string().eq_ignore_ascii_case("post");
        let open = ["/healthz", "/readyz", "/openapi.json", "/", "/js/lightkeeper.js"].contains(&path.as_str())
            || path.starts_with("/dashboard/");
        if path.starts_with("/v1/admin/")
            || path.starts_with("/v1/pipelines")
            || path.starts_with("/v1/watchlists")
            || registers
        {
            admin += 1;
            assert!(needs("admin") && !security.contains(&anonymous), "{method} {path} requires an admin token");
        } else if open {
            assert!(security.is_empty(), "{method} {path} needs no token");
            continue;
        } else {
            optional += 1;
            let scope = if path == "/v1/alerts" { "ingest" } else { "read" };
            assert!(needs(scope) && security.contains(&anonymous), "{method} {path}: {scope}, or anonymous");
        }
        for status in [401, 403, 429] {
            assert!(response(op, status).is_some(), "{method} {path} documents {status}");
        }
    }
    // promote, drain, drain node, decommission, register; pipelines and watch lists: list,
    // get, put, delete.
    assert_eq!(admin, 13);
    assert!(optional > 15, "{optional} reads and ingest");
}

#[test]
fn routed_reads_document_who_served_them() {
    let spec = openapi::spec();
    use lightkeeper_gateway::routing::{LAG, ROLE, SERVED_BY};
    for path in ["/v1/objects/{key}", "/v1/objects/{key}/lightcurve", "/v1/objects/{key}/alerts"] {
        let op = spec.paths.paths[path].get.as_ref().expect("GET");
        let ok = response(op, 200).expect("200");
        for h in [SERVED_BY, ROLE, LAG] {
            assert!(ok.headers.contains_key(h), "GET {path} 200 documents {h}");
        }
        let params: BTreeSet<&str> = op.parameters.iter().flatten().map(|p| p.name.as_str()).collect();
        assert!(params.contains("key") && params.contains("max_lag"), "GET {path}: {params:?}");
    }
    // Internal headers are not part of the contract.
    let internal = [lightkeeper_gateway::peers::HOP_HEADER, lightkeeper_gateway::routing::FORWARDED];
    let json = serde_json::to_string(&spec).unwrap();
    for h in internal {
        assert!(!json.contains(h), "{h} is internal");
    }
}

#[test]
fn lightcurve_is_json_csv_or_votable() {
    let spec = openapi::spec();
    let op = spec.paths.paths["/v1/objects/{key}/lightcurve"].get.as_ref().expect("GET");
    let media: BTreeSet<&str> = response(op, 200).expect("200").content.keys().map(String::as_str).collect();
    assert_eq!(media, BTreeSet::from(["application/json", "text/csv; charset=utf-8", "application/x-votable+xml"]));
    let params: BTreeMap<&str, _> = op.parameters.iter().flatten().map(|p| (p.name.as_str(), p)).collect();
    for q in ["since_mjd", "until_mjd", "band", "kind", "format", "times"] {
        assert!(params.contains_key(q), "lightcurve documents ?{q}");
    }
}

#[test]
fn operation_ids_are_unique() {
    let spec = openapi::spec();
    let mut seen = BTreeSet::new();
    for (path, method, op) in all_operations(&spec) {
        let id = op.operation_id.clone().unwrap_or_else(|| panic!("{method} {path} has no operation id"));
        assert!(seen.insert(id.clone()), "operation id {id} is used twice");
    }
}

/// The check above sees a route added with plain axum `.route` (no `#[utoipa::path]`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undocumented_route_is_seen() {
    let n = TestNode::start(|_| {}).await;
    let extended = n.app.clone().route("/v1/undocumented", axum::routing::get(|| async { "hidden" }));
    let added: Vec<String> = registered_paths(&extended).difference(&registered_paths(&n.app)).cloned().collect();
    assert_eq!(added, ["/v1/undocumented"]);
    assert!(!openapi::spec().paths.paths.contains_key("/v1/undocumented"));
    n.stop().await;
}
