//! The Confluent Schema Registry API of a node: the schemas it decodes with, by id, and
//! registration of new Rubin versions (admin).
//!
//! One subject, `<input topic>-value` (Confluent's topic-name strategy for the topic Lightkeeper
//! writes alerts to), whose versions are the schema ids: 701 is version 701. Rubin's ids are
//! given by the schema's name (major×100+minor), so the same id means the same schema on every
//! node, in every mirror and upstream that follows the convention, and versions never renumber.
//! Schemas are served self-contained (Parsing Canonical Form, named types inlined).
//!
//! Errors carry Lightkeeper's `{"error":{…}}` and Confluent's `error_code`/`message` together, so
//! both kinds of client read them.

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use lightkeeper_api::pipeline::RECORD_SCHEMA_ID;
use lightkeeper_api::registry::{RegisterSchema, RegisteredId, RegistryErrorResponse, SchemaById, SubjectVersion};
use lightkeeper_partition::pipeline::writers::record_schema;
use lightkeeper_storage::registry::{RegisteredSchema, RegistryError};
use std::sync::Arc;

/// An [`ApiError`] with the Confluent error code that goes with it.
pub struct RegistryApiError(ApiError, u32);

impl IntoResponse for RegistryApiError {
    fn into_response(self) -> Response {
        let RegistryApiError(e, code) = self;
        let body = RegistryErrorResponse { error: e.body(), error_code: code, message: e.to_string() };
        let mut resp = (e.status(), Json(body)).into_response();
        e.add_headers(&mut resp);
        resp
    }
}

impl From<ApiError> for RegistryApiError {
    fn from(e: ApiError) -> Self {
        let code = match e.status().as_u16() {
            401 => 40101,
            403 => 40301,
            status if status >= 500 => 50001,
            status => status as u32 * 100,
        };
        RegistryApiError(e, code)
    }
}

/// An access denial on a registry route, in the registry's error format (Confluent's clients
/// read `error_code`).
pub(crate) fn denial(e: ApiError) -> Response {
    RegistryApiError::from(e).into_response()
}

fn schema_not_found(id: u32) -> RegistryApiError {
    RegistryApiError(
        ApiError::not_found("schema_not_found", format!("schema id {id} is not known to this node")),
        40403,
    )
}

/// The node serves one subject; any other is a 404 (Confluent 40401).
fn check_subject(state: &AppState, subject: &str) -> Result<(), RegistryApiError> {
    if subject == state.schema_subject {
        return Ok(());
    }
    Err(RegistryApiError(
        ApiError::not_found(
            "subject_not_found",
            format!("subject {subject:?} does not exist; this node serves {:?}", state.schema_subject),
        ),
        40401,
    ))
}

/// The schema `id` from the node's registry, read off the runtime (a registered schema may
/// need a read of the schemas topic).
async fn lookup(state: &AppState, id: u32) -> Result<Arc<RegisteredSchema>, RegistryApiError> {
    let registry = state.decoder.registry().clone();
    match tokio::task::spawn_blocking(move || registry.get(id)).await.map_err(ApiError::from)? {
        Ok(s) => Ok(s),
        Err(RegistryError::NotFound(_)) => Err(schema_not_found(id)),
        Err(e) => Err(ApiError::Unavailable(format!("schema registry: {e}")).into()),
    }
}

/// Registry answers are `application/json`, which Confluent's clients read like their own
/// `application/vnd.schemaregistry.v1+json`.
fn content<T: serde::Serialize>(body: T) -> Response {
    Json(body).into_response()
}

/// The schema registered under an id.
#[utoipa::path(get, path = "/schemas/ids/{id}", tag = "registry",
    params(("id" = u32, Path, description = "schema id (Rubin: major×100+minor)")),
    responses(
        (status = 200, description = "the schema, self-contained", body = SchemaById),
        (status = 404, description = "`schema_not_found` (Confluent 40403)", body = RegistryErrorResponse),
        (status = 400, description = "`invalid_path`", body = RegistryErrorResponse)
    ))]
pub async fn schema_by_id(
    State(state): State<AppState>,
    id: Result<Path<u32>, PathRejection>,
) -> Result<Response, RegistryApiError> {
    let Path(id) = id.map_err(ApiError::from)?;
    if id == RECORD_SCHEMA_ID {
        return Ok(content(SchemaById { schema: record_schema().canonical_form() }));
    }
    let s = lookup(&state, id).await?;
    Ok(content(SchemaById { schema: s.canonical.clone() }))
}

/// The subjects this node serves: one, `<input topic>-value`.
#[utoipa::path(get, path = "/subjects", tag = "registry",
    responses((status = 200, description = "subject names", body = Vec<String>)))]
pub async fn subjects(State(state): State<AppState>) -> Response {
    content(vec![state.schema_subject.clone()])
}

/// The versions of the subject: the schema ids the node knows, ascending.
#[utoipa::path(get, path = "/subjects/{subject}/versions", tag = "registry",
    params(("subject" = String, Path, description = "`<input topic>-value`")),
    responses(
        (status = 200, description = "versions (= schema ids)", body = Vec<u32>),
        (status = 404, description = "`subject_not_found` (Confluent 40401)", body = RegistryErrorResponse)
    ))]
pub async fn versions(
    State(state): State<AppState>,
    Path(subject): Path<String>,
) -> Result<Response, RegistryApiError> {
    check_subject(&state, &subject)?;
    Ok(content(state.decoder.registry().known_ids()))
}

/// One version of the subject (`latest`: the highest id).
#[utoipa::path(get, path = "/subjects/{subject}/versions/{version}", tag = "registry",
    params(
        ("subject" = String, Path, description = "`<input topic>-value`"),
        ("version" = String, Path, description = "a schema id, or `latest`")
    ),
    responses(
        (status = 200, description = "the version", body = SubjectVersion),
        (status = 404, description = "`subject_not_found` (40401), `version_not_found` (40402)", body = RegistryErrorResponse),
        (status = 422, description = "`invalid_version` (42202): neither a number nor `latest`", body = RegistryErrorResponse)
    ))]
pub async fn version(
    State(state): State<AppState>,
    Path((subject, version)): Path<(String, String)>,
) -> Result<Response, RegistryApiError> {
    check_subject(&state, &subject)?;
    let id = if version == "latest" {
        state.decoder.registry().known_ids().into_iter().max()
    } else {
        Some(version.parse::<u32>().map_err(|_| {
            RegistryApiError(
                ApiError::Unprocessable {
                    code: "invalid_version",
                    message: format!("version {version:?} is neither a schema id nor \"latest\""),
                },
                42202,
            )
        })?)
    };
    let not_found = |v: &str| {
        RegistryApiError(
            ApiError::not_found("version_not_found", format!("subject {subject:?} has no version {v}")),
            40402,
        )
    };
    let id = id.ok_or_else(|| not_found(&version))?;
    let s = lookup(&state, id).await.map_err(|_| not_found(&version))?;
    Ok(content(SubjectVersion { subject: subject.clone(), version: id, id, schema: s.canonical.clone() }))
}

/// Registers a Rubin alert schema (admin): its id is the one its name gives
/// (`lsst.vM_m.alert` → M×100+m), the same on every node. Registering a schema already known
/// under that id answers that id; a different schema under a known id is a 409.
#[utoipa::path(post, path = "/subjects/{subject}/versions", tag = "registry",
    params(("subject" = String, Path, description = "`<input topic>-value`")),
    request_body(content = RegisterSchema, description = "sent as application/json or application/vnd.schemaregistry.v1+json"),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "registered (or already was)", body = RegisteredId),
        (status = 401, description = "`unauthorized`: no or a wrong admin token (40101)", body = RegistryErrorResponse),
        (status = 404, description = "`subject_not_found` (40401)", body = RegistryErrorResponse),
        (status = 409, description = "`schema_conflict`: the id holds a different schema; `external_registry`: this cluster's registry is `schemas.registry_url`; `admin_disabled`", body = RegistryErrorResponse),
        (status = 422, description = "`invalid_schema` (42201): not JSON, not Avro, not a Rubin alert schema, or with references", body = RegistryErrorResponse),
        (status = 503, description = "`unavailable`: the schemas topic could not be read or written; retry", body = RegistryErrorResponse)
    ))]
pub async fn register(
    State(state): State<AppState>,
    Path(subject): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<RegisteredId>, RegistryApiError> {
    check_subject(&state, &subject)?;
    let Some(registered) = state.registered_schemas.clone() else {
        return Err(ApiError::Conflict {
            code: "external_registry",
            message: "this cluster's schema registry is schemas.registry_url: register schemas there".into(),
        }
        .into());
    };
    let invalid =
        |message: String| RegistryApiError(ApiError::Unprocessable { code: "invalid_schema", message }, 42201);
    let body = body.map_err(|r| ApiError::from_body(r, state.limits.max_body_bytes))?;
    let req: RegisterSchema =
        serde_json::from_slice(&body).map_err(|e| invalid(format!("the body is not a registration: {e}")))?;
    if req.schema_type.as_deref().is_some_and(|t| t != "AVRO") {
        return Err(invalid(format!("schemaType {:?}: only AVRO schemas are kept", req.schema_type)));
    }
    if !req.references.is_empty() {
        return Err(invalid(
            "schema references are not supported: send the schema with its named types inlined".into(),
        ));
    }
    let schema = req.schema;
    let outcome = tokio::task::spawn_blocking(move || registered.register(&schema)).await.map_err(ApiError::from)?;
    match outcome {
        Ok(r) => {
            tracing::info!(
                id = r.id(),
                new = matches!(r, lightkeeper_storage::registry::Registered::New(_)),
                "schema registered"
            );
            Ok(Json(RegisteredId { id: r.id() }))
        }
        Err(RegistryError::Conflict { id }) => Err(conflict(id)),
        Err(e @ (RegistryError::Invalid { .. } | RegistryError::Rejected(_))) => Err(invalid(e.to_string())),
        Err(e) => Err(ApiError::Unavailable(format!("schema registry: {e}")).into()),
    }
}

fn conflict(id: u32) -> RegistryApiError {
    RegistryApiError(
        ApiError::Conflict {
            code: "schema_conflict",
            message: format!("schema id {id} is already registered with a different schema"),
        },
        409,
    )
}
