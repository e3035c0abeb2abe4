//! `POST /v1/alerts`: accept one packet, decode it to find its object key (a packet that does
//! not decode is refused with 400 and the reason — nothing undecodable enters the input topic
//! through the API), and append it to the input topic's partition for that key. 202 means the
//! packet is durably in the input log; materialization follows asynchronously.

use crate::error::ApiError;
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use lightkeeper_api::error::ErrorResponse;
pub use lightkeeper_api::ingest::Accepted;
use lightkeeper_storage::log::Append;
use lightkeeper_storage::partitioner::partition_for;

#[utoipa::path(post, path = "/v1/alerts", tag = "ingest",
    request_body(content = Vec<u8>, content_type = "application/octet-stream",
        description = "one Avro container file (ZTF) or one Confluent wire-format message (LSST)"),
    responses(
        (status = 202, description = "the packet is durably in the input log; materialization follows", body = Accepted),
        (status = 400, description = "`empty_body`, `invalid_body`, or `undecodable_alert`: the packet does not decode; the message says why", body = ErrorResponse),
        (status = 413, description = "`payload_too_large`: larger than limits.max_body_bytes", body = ErrorResponse),
        (status = 503, description = "`unavailable`: the schema registry could not be reached, or the input log refused the append; retry", body = ErrorResponse),
        (status = 507, description = "`disk_budget_exceeded`: the node is over storage.disk_budget_mib and takes no input", body = ErrorResponse)
    ))]
pub async fn ingest(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let body = body.map_err(|r| ApiError::from_body(r, state.limits.max_body_bytes))?;
    if body.is_empty() {
        return Err(ApiError::bad_request("empty_body", "request body is empty; send one alert packet"));
    }
    state.disk.admit()?;
    let app = state.clone();
    let accepted = tokio::task::spawn_blocking(move || -> Result<Accepted, ApiError> {
        let alert = app.decoder.decode(&body).map_err(|e| {
            if e.is_transient() {
                ApiError::Unavailable(format!("cannot decode the packet now: {e}"))
            } else {
                ApiError::bad_request("undecodable_alert", format!("{} ({})", e, e.code()))
            }
        })?;
        let partition = partition_for(alert.key.as_bytes(), app.input.partitions());
        let offsets = app
            .input
            .append(partition, &[Append { key: Some(alert.key.as_bytes()), payload: &body, headers: &[] }])
            .map_err(|e| ApiError::Unavailable(format!("could not append to the input log: {e}")))?;
        Ok(Accepted {
            alert_id: alert.alert_id.to_string(),
            key: alert.key,
            topic: app.input.name().to_owned(),
            partition,
            offset: offsets[0],
        })
    })
    .await??;
    Ok((StatusCode::ACCEPTED, Json(accepted)))
}
