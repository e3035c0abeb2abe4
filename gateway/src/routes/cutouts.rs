//! Cutouts and original packets: `…/cutouts`, `…/cutouts/{alert_id}/{kind}` and
//! `…/alerts/{alert_id}/packet`.
//!
//! **Where stamps live.** Not in RocksDB and not in the changelog: an alert's packet — and its
//! three stamps, ~30–100 kB in all — stays in the input topic, at the (topic, partition,
//! offset) its [`AlertRef`] records. Every replica has that pointer (it is part of the object
//! state the changelog carries), so any replica, and a new master after a failover, serves a
//! stamp by reading the one record back ([`Topic::read_at`]) and taking the stamp out of it.
//! The changelog costs nothing extra, standbys copy nothing, and retention is the input topic's
//! (`topics.input_retention_hours`, applied when the node creates the topic); past it the
//! routes answer 410 `packet_expired`. Renderings are kept in the node's bounded response cache
//! like every other object read, so a stamp a dashboard shows is read from the log once.
//!
//! The record read back is decoded and must be the alert asked for (same object and alert id):
//! a topic deleted and recreated reuses offsets, and must not serve another alert's images.

use super::objects::{cached, encoding, no_other_params, path_and_query, Rendered};
use super::web::Encoding;
use crate::error::ApiError;
use crate::routing::{read_options, route};
use crate::stamps;
use crate::state::AppState;
use axum::extract::rejection::PathRejection;
use axum::extract::{OriginalUri, Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use lightkeeper_api::error::ErrorResponse;
use lightkeeper_api::objects::{AlertCutouts, Cutouts};
use lightkeeper_storage::codec::Decoder;
use lightkeeper_storage::log::Topic;
use lightkeeper_storage::model::{validate_key, CutoutKind};
use lightkeeper_storage::object::ObjectState;
use std::sync::Arc;
use std::time::Duration;

/// How long reading a packet back from the log may take.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

pub const FITS: &str = "application/fits";
pub const PNG: &str = "image/png";
/// An alert packet: an Avro object container file (ZTF) or one Confluent wire-format message.
pub const PACKET: &str = "application/octet-stream";

/// `format=fits|png` of a stamp.
#[derive(Debug, Clone, Copy, PartialEq)]
enum StampFormat {
    Fits,
    Png,
}

fn stamp_format(raw: Option<String>) -> Result<StampFormat, ApiError> {
    let Some(raw) = raw else { return Ok(StampFormat::Fits) };
    let mut format = StampFormat::Fits;
    for (k, v) in form_urlencoded::parse(raw.as_bytes()) {
        match (&*k, &*v) {
            ("format", "fits") => format = StampFormat::Fits,
            ("format", "png") => format = StampFormat::Png,
            ("format", other) => {
                return Err(ApiError::bad_request("invalid_query", format!("format {other:?}: expected fits or png")))
            }
            (other, _) => {
                return Err(ApiError::bad_request(
                    "invalid_query",
                    format!("unknown query parameter {other:?}; only format and max_lag"),
                ))
            }
        }
    }
    Ok(format)
}

fn parse_alert_id(raw: &str) -> Result<i64, ApiError> {
    raw.parse().map_err(|_| ApiError::bad_request("invalid_path", format!("alert id {raw:?} is not an integer")))
}

/// Reads alert `alert_id` of `obj` back from the input log and checks that it is that alert.
/// Runs on the blocking pool.
fn packet_of(obj: &ObjectState, alert_id: i64, input: &dyn Topic) -> Result<Vec<u8>, ApiError> {
    let alert =
        obj.alerts.iter().find(|a| a.alert_id == alert_id).ok_or_else(|| {
            ApiError::not_found("alert_not_found", format!("object {} has no alert {alert_id}", obj.key))
        })?;
    let src = &alert.source;
    let gone = |why: String| ApiError::Gone { code: "packet_expired", message: why };
    if src.topic != input.name() {
        return Err(gone(format!(
            "alert {alert_id} was read from topic {:?}, which this node no longer reads",
            src.topic
        )));
    }
    let record = input
        .read_at(src.partition, src.offset, READ_TIMEOUT)
        .map_err(|e| ApiError::Unavailable(format!("reading alert {alert_id} back from {}: {e}", src.topic)))?
        .ok_or_else(|| {
            gone(format!(
                "alert {alert_id} ({} partition {} offset {}) is past the input topic's retention",
                src.topic, src.partition, src.offset
            ))
        })?;
    Ok(record.payload)
}

/// Checks that a packet read back is alert `alert_id` of object `key`.
fn check_is(alert: &lightkeeper_storage::model::Alert, key: &str, alert_id: i64) -> Result<(), ApiError> {
    if alert.key == key && alert.alert_id == alert_id {
        return Ok(());
    }
    Err(ApiError::Gone {
        code: "packet_expired",
        message: format!(
            "the input log no longer holds alert {alert_id} where it was read (it now holds alert {} of {}); \
             the topic was recreated",
            alert.alert_id, alert.key
        ),
    })
}

fn undecodable(alert_id: i64, e: impl std::fmt::Display) -> ApiError {
    ApiError::Gone {
        code: "packet_expired",
        message: format!("the input log's record for alert {alert_id} does not decode any more ({e})"),
    }
}

#[utoipa::path(get, path = "/v1/objects/{key}/cutouts", tag = "cutouts",
    params(
        ("key" = String, Path, description = "survey-qualified key, e.g. ztf:ZTF21abiuvdk"),
        ("max_lag" = Option<u64>, Query, description = "allow a standby at most this many changelog records behind to answer")
    ),
    responses(
        (status = 200, description = "the stamps kept for the object, per alert", body = Cutouts),
        (status = 304, description = "not modified: `If-None-Match` named the current `ETag`"),
        (status = 400, description = "`invalid_key`, `invalid_path` or `invalid_query`", body = ErrorResponse),
        (status = 404, description = "`object_not_found`", body = ErrorResponse),
        (status = 503, description = "`unavailable`: no replica could serve", body = ErrorResponse)
    ))]
pub async fn list(
    State(state): State<AppState>,
    key: Result<Path<String>, PathRejection>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    uri: OriginalUri,
) -> Result<Response, ApiError> {
    let Path(key) = key?;
    let (opts, rest) = read_options(raw.as_deref(), &headers)?;
    no_other_params(rest)?;
    validate_key(&key).map_err(|m| ApiError::bad_request("invalid_key", m))?;
    route(&state, &key.clone(), &path_and_query(&uri), opts, || {
        cached(&state, key, "cutouts".into(), encoding(&state, &headers), |obj| {
            let alerts = obj
                .alerts
                .iter()
                .map(|a| AlertCutouts {
                    alert_id: a.alert_id,
                    mjd: a.mjd,
                    kinds: CutoutKind::carried_by(obj.survey, &a.schema_version),
                })
                .collect();
            super::objects::json_body(&Cutouts { key: obj.key, version: obj.version, alerts })
        })
    })
    .await
}

#[utoipa::path(get, path = "/v1/objects/{key}/cutouts/{alert_id}/{kind}", tag = "cutouts",
    params(
        ("key" = String, Path, description = "survey-qualified key, e.g. ztf:ZTF21abiuvdk"),
        ("alert_id" = String, Path, description = "the alert (ZTF candid, LSST alert id / diaSourceId)"),
        ("kind" = CutoutKind, Path, description = "which stamp"),
        ("format" = Option<String>, Query, description = "`fits` (default: the packet's FITS image, decompressed, byte for byte) or `png` (zscale-stretched, NaN transparent, north up)"),
        ("max_lag" = Option<u64>, Query, description = "allow a standby at most this many changelog records behind to answer")
    ),
    responses(
        (status = 200, description = "the stamp", content(
            (Vec<u8> = "application/fits"),
            (Vec<u8> = "image/png"),
        )),
        (status = 304, description = "not modified: `If-None-Match` named the current `ETag`"),
        (status = 400, description = "`invalid_key`, `invalid_path` or `invalid_query`", body = ErrorResponse),
        (status = 404, description = "`object_not_found`, `alert_not_found`, or `cutout_not_found` (the packet has no such stamp)", body = ErrorResponse),
        (status = 410, description = "`packet_expired`: the packet is past the input topic's retention", body = ErrorResponse),
        (status = 422, description = "`cutout_unreadable`: the stamp is not an image that can be rendered as PNG", body = ErrorResponse),
        (status = 503, description = "`unavailable`: no replica could serve, or the log could not be read", body = ErrorResponse)
    ))]
pub async fn stamp(
    State(state): State<AppState>,
    path: Result<Path<(String, String, String)>, PathRejection>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    uri: OriginalUri,
) -> Result<Response, ApiError> {
    let Path((key, alert_id, kind)) = path?;
    let (opts, rest) = read_options(raw.as_deref(), &headers)?;
    let format = stamp_format(rest)?;
    validate_key(&key).map_err(|m| ApiError::bad_request("invalid_key", m))?;
    let alert_id = parse_alert_id(&alert_id)?;
    let kind = CutoutKind::parse(&kind).ok_or_else(|| {
        ApiError::bad_request("invalid_path", format!("cutout kind {kind:?}: expected science, template or difference"))
    })?;
    let input: Arc<dyn Topic> = state.input.clone();
    let decoder: Arc<Decoder> = state.decoder.clone();
    // PNG is compressed already; FITS floats gain a little from gzip or brotli.
    let enc = match format {
        StampFormat::Png => Encoding::Identity,
        StampFormat::Fits => encoding(&state, &headers),
    };
    let variant = format!("cutout|{alert_id}|{}|{format:?}", kind.as_str());
    route(&state, &key.clone(), &path_and_query(&uri), opts, || {
        cached(&state, key.clone(), variant, enc, move |obj| -> Result<Rendered, ApiError> {
            let packet = packet_of(&obj, alert_id, &*input)?;
            let (alert, stamps) = decoder.stamps(&packet).map_err(|e| undecodable(alert_id, e))?;
            check_is(&alert, &key, alert_id)?;
            let fits = stamps.get(kind).ok_or_else(|| {
                ApiError::not_found("cutout_not_found", format!("alert {alert_id} carries no {} stamp", kind.as_str()))
            })?;
            match format {
                StampFormat::Fits => Ok((FITS, fits.to_vec())),
                StampFormat::Png => {
                    stamps::fits_to_png(fits).map(|png| (PNG, png)).map_err(|why| ApiError::Unprocessable {
                        code: "cutout_unreadable",
                        message: format!("the {} stamp of alert {alert_id}: {why}", kind.as_str()),
                    })
                }
            }
        })
    })
    .await
}

#[utoipa::path(get, path = "/v1/objects/{key}/alerts/{alert_id}/packet", tag = "cutouts",
    params(
        ("key" = String, Path, description = "survey-qualified key, e.g. ztf:ZTF21abiuvdk"),
        ("alert_id" = String, Path, description = "the alert (ZTF candid, LSST alert id / diaSourceId)"),
        ("max_lag" = Option<u64>, Query, description = "allow a standby at most this many changelog records behind to answer")
    ),
    responses(
        (status = 200, description = "the packet as it arrived: an Avro object container file (ZTF) or a Confluent wire-format message (LSST)", body = Vec<u8>, content_type = "application/octet-stream"),
        (status = 304, description = "not modified: `If-None-Match` named the current `ETag`"),
        (status = 400, description = "`invalid_key`, `invalid_path` or `invalid_query`", body = ErrorResponse),
        (status = 404, description = "`object_not_found` or `alert_not_found`", body = ErrorResponse),
        (status = 410, description = "`packet_expired`: the packet is past the input topic's retention", body = ErrorResponse),
        (status = 503, description = "`unavailable`: no replica could serve, or the log could not be read", body = ErrorResponse)
    ))]
pub async fn packet(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    uri: OriginalUri,
) -> Result<Response, ApiError> {
    let Path((key, alert_id)) = path?;
    let (opts, rest) = read_options(raw.as_deref(), &headers)?;
    no_other_params(rest)?;
    validate_key(&key).map_err(|m| ApiError::bad_request("invalid_key", m))?;
    let alert_id = parse_alert_id(&alert_id)?;
    let input: Arc<dyn Topic> = state.input.clone();
    let decoder: Arc<Decoder> = state.decoder.clone();
    route(&state, &key.clone(), &path_and_query(&uri), opts, || {
        cached(&state, key.clone(), format!("packet|{alert_id}"), encoding(&state, &headers), move |obj| {
            let packet = packet_of(&obj, alert_id, &*input)?;
            let alert = decoder.decode(&packet).map_err(|e| undecodable(alert_id, e))?;
            check_is(&alert, &key, alert_id)?;
            Ok((PACKET, packet))
        })
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_parsing() {
        assert_eq!(stamp_format(None).unwrap(), StampFormat::Fits);
        assert_eq!(stamp_format(Some("format=png".into())).unwrap(), StampFormat::Png);
        assert_eq!(stamp_format(Some("format=jpeg".into())).unwrap_err().code(), "invalid_query");
        assert_eq!(stamp_format(Some("size=3".into())).unwrap_err().code(), "invalid_query");
        assert_eq!(parse_alert_id("x1").unwrap_err().code(), "invalid_path");
    }
}
