//! `/v1/pipelines`: processor chains, put as YAML (or JSON) text, kept in the settings topic and
//! run by every partition master of every node (see `lightkeeper_partition::pipeline`).
//!
//! A `PUT` is checked completely before it is stored — a refused definition is a 400
//! `bad_pipeline` whose message names the line and column — and answers once this node runs
//! it; other nodes pick it up within `settings::FOLLOW_EVERY`.

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use bytes::Bytes;
use lightkeeper_api::error::ErrorResponse;
use lightkeeper_api::pipeline::{PipelineInfo, PipelineList};
use lightkeeper_partition::pipeline::{check_name, Pipeline};
use lightkeeper_storage::settings::{SettingKey, SettingKind};

/// Bound on a cluster's pipelines (each runs on every alert, and names metrics).
pub const MAX_PIPELINES: usize = 64;

fn name_of(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    let Path(name) = path?;
    check_name(&name).map_err(|m| ApiError::bad_request("bad_name", m))?;
    Ok(name)
}

fn unavailable(e: impl std::fmt::Display) -> ApiError {
    ApiError::Unavailable(format!("the settings topic: {e}"))
}

/// The names of the pipelines that run.
#[utoipa::path(get, path = "/v1/pipelines", tag = "pipelines", operation_id = "list_pipelines", security(("bearer" = [])),
    responses(
        (status = 200, description = "pipeline names", body = PipelineList),
        (status = 401, description = "`unauthorized`", body = ErrorResponse),
        (status = 409, description = "`admin_disabled`: no cluster.admin_token is configured", body = ErrorResponse)
    ))]
pub async fn list(State(state): State<AppState>) -> Result<Json<PipelineList>, ApiError> {
    let pipelines = state.settings.pipelines.snapshot().pipelines.keys().cloned().collect();
    Ok(Json(PipelineList { pipelines }))
}

/// A pipeline's definition as put, and what each processor did on this node.
#[utoipa::path(get, path = "/v1/pipelines/{name}", tag = "pipelines", operation_id = "get_pipeline", security(("bearer" = [])),
    params(("name" = String, Path, description = "1 to 64 of a-z A-Z 0-9 _ -")),
    responses(
        (status = 200, description = "the pipeline", body = PipelineInfo),
        (status = 400, description = "`bad_name`", body = ErrorResponse),
        (status = 401, description = "`unauthorized`", body = ErrorResponse),
        (status = 404, description = "`pipeline_not_found`", body = ErrorResponse),
        (status = 409, description = "`admin_disabled`", body = ErrorResponse)
    ))]
pub async fn get(
    State(state): State<AppState>,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<PipelineInfo>, ApiError> {
    let name = name_of(name)?;
    state
        .settings
        .pipelines
        .info(&name)
        .map(Json)
        .ok_or_else(|| ApiError::not_found("pipeline_not_found", format!("no pipeline named {name:?}")))
}

/// Creates or replaces a pipeline. The body is its definition, YAML or JSON:
/// `processors:` a list of `{class, params}` (classes `filter`, `solar_system`, `sky_region`,
/// `watchlist`, `kafka`, `file`; see the README). Applied without a restart.
#[utoipa::path(put, path = "/v1/pipelines/{name}", tag = "pipelines", operation_id = "put_pipeline", security(("bearer" = [])),
    params(("name" = String, Path, description = "1 to 64 of a-z A-Z 0-9 _ -")),
    request_body(content = String, description = "the definition, YAML or JSON", content_type = "application/yaml"),
    responses(
        (status = 200, description = "stored, and running on this node", body = PipelineInfo),
        (status = 400, description = "`bad_pipeline`: the message names the line and column and what is wrong; `bad_name`", body = ErrorResponse),
        (status = 401, description = "`unauthorized`", body = ErrorResponse),
        (status = 409, description = "`admin_disabled`; `too_many_pipelines` (at most 64)", body = ErrorResponse),
        (status = 413, description = "`payload_too_large`", body = ErrorResponse),
        (status = 503, description = "`unavailable`: the settings topic could not be written; retry", body = ErrorResponse)
    ))]
pub async fn put(
    State(state): State<AppState>,
    name: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<PipelineInfo>, ApiError> {
    let name = name_of(name)?;
    let body = body.map_err(|r| ApiError::from_body(r, state.limits.max_body_bytes))?;
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::bad_request("bad_pipeline", "the definition is not UTF-8 text"))?
        .to_owned();
    Pipeline::compile(&name, &text).map_err(|e| ApiError::bad_request("bad_pipeline", e.to_string()))?;
    let settings = state.settings.clone();
    let key = SettingKey::new(SettingKind::Pipeline, &name);
    if settings.log.get(&key).is_none() && settings.log.all(SettingKind::Pipeline).len() >= MAX_PIPELINES {
        return Err(ApiError::Conflict {
            code: "too_many_pipelines",
            message: format!("a cluster runs at most {MAX_PIPELINES} pipelines; delete one first"),
        });
    }
    settings.store(key, text.into_bytes()).await.map_err(unavailable)?;
    state
        .settings
        .pipelines
        .info(&name)
        .map(Json)
        .ok_or_else(|| ApiError::Internal(format!("pipeline {name:?} was stored but is not installed")))
}

/// Stops and deletes a pipeline (its outputs stay).
#[utoipa::path(delete, path = "/v1/pipelines/{name}", tag = "pipelines", operation_id = "delete_pipeline", security(("bearer" = [])),
    params(("name" = String, Path, description = "1 to 64 of a-z A-Z 0-9 _ -")),
    responses(
        (status = 204, description = "deleted"),
        (status = 400, description = "`bad_name`", body = ErrorResponse),
        (status = 401, description = "`unauthorized`", body = ErrorResponse),
        (status = 404, description = "`pipeline_not_found`", body = ErrorResponse),
        (status = 409, description = "`admin_disabled`", body = ErrorResponse),
        (status = 503, description = "`unavailable`", body = ErrorResponse)
    ))]
pub async fn delete(
    State(state): State<AppState>,
    name: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let name = name_of(name)?;
    let key = SettingKey::new(SettingKind::Pipeline, &name);
    if state.settings.log.get(&key).is_none() {
        return Err(ApiError::not_found("pipeline_not_found", format!("no pipeline named {name:?}")));
    }
    state.settings.store(key, Vec::new()).await.map_err(unavailable)?;
    Ok(StatusCode::NO_CONTENT)
}
