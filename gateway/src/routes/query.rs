//! Finding objects: `GET /v1/cone`, `GET /v1/objects` and `GET /v1/fields`, and the internal
//! per-partition routes the scatter-gather forwards to (see [`crate::query`]).

use crate::error::ApiError;
use crate::query::params::{ConeQuery, ObjectsQuery};
use crate::query::scatter::{self, Scattered};
use crate::query::stats::StatsQuery;
use crate::routing::{mark_stale, read_options, route_partition, ReadOptions};
use crate::state::AppState;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use lightkeeper_api::error::ErrorResponse;
use lightkeeper_api::filter::{fields as all_fields, Fields};
use lightkeeper_api::query::{ConeAnswer, ObjectsPage};
use lightkeeper_api::stats::StatsAnswer;

#[utoipa::path(get, path = "/v1/cone", tag = "find",
    params(
        ("ra" = f64, Query, description = "centre right ascension, degrees (0 to 360)"),
        ("dec" = f64, Query, description = "centre declination, degrees (-90 to 90)"),
        ("radius_arcsec" = f64, Query, description = "radius, arcsec: above 0, at most 3600"),
        ("where" = Option<String>, Query, description = "a filter (the filter language; fields from GET /v1/fields)"),
        ("limit" = Option<usize>, Query, description = "at most this many objects (default 100, at most 10000): the nearest"),
        ("partial" = Option<bool>, Query, description = "answer even if some partitions cannot (they are listed in missing_partitions); otherwise that is a 503"),
        ("max_lag" = Option<u64>, Query, description = "allow standbys at most this many changelog records behind to answer")
    ),
    responses(
        (status = 200, description = "the objects within the radius from every partition, nearest first (ties by key), each with its exact distance", body = ConeAnswer,
            headers(("x-lightkeeper-stale" = String, description = "present when a partition's master answered without reaching its logs (a broker outage): `partitions [p, …]: why`; the answer may miss changes made meanwhile"))),
        (status = 400, description = "`invalid_query` (out-of-range coordinates, radius over 3600 arcsec, bad limit, unknown parameter) or `bad_filter` (the message says where and what)", body = ErrorResponse),
        (status = 503, description = "`unavailable`: a partition could not answer within cluster.route_deadline_ms (the message names it)", body = ErrorResponse)
    ))]
pub async fn cone(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Scattered<ConeAnswer>, ApiError> {
    let (opts, rest) = read_options(raw.as_deref(), &headers)?;
    let q = ConeQuery::parse(rest.as_deref())?;
    scatter::cone(&state, q, opts, raw.as_deref()).await
}

#[utoipa::path(get, path = "/v1/objects", tag = "find",
    params(
        ("where" = Option<String>, Query, description = "a filter (the filter language; fields from GET /v1/fields); all objects when absent"),
        ("order" = Option<String>, Query, description = "a field name, then optionally asc or desc (default: key asc). Objects with no value of the field are left out. key and last_mjd are indexed; other orders scan"),
        ("limit" = Option<usize>, Query, description = "objects per page (default 100, at most 10000)"),
        ("cursor" = Option<String>, Query, description = "the previous page's next_cursor: this page starts strictly after it"),
        ("partial" = Option<bool>, Query, description = "answer even if some partitions cannot (listed in missing_partitions); otherwise that is a 503"),
        ("max_lag" = Option<u64>, Query, description = "allow standbys at most this many changelog records behind to answer")
    ),
    responses(
        (status = 200, description = "one page of the matching objects from every partition, in order; next_cursor is null on the last page", body = ObjectsPage,
            headers(("x-lightkeeper-stale" = String, description = "present when a partition's master answered without reaching its logs (a broker outage): `partitions [p, …]: why`; the answer may miss changes made meanwhile"))),
        (status = 400, description = "`bad_filter` (says where and what), `invalid_query` (bad order, limit or parameter) or `invalid_cursor`", body = ErrorResponse),
        (status = 503, description = "`unavailable`: a partition could not answer within cluster.route_deadline_ms (the message names it)", body = ErrorResponse)
    ))]
pub async fn objects(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Scattered<ObjectsPage>, ApiError> {
    let (opts, rest) = read_options(raw.as_deref(), &headers)?;
    let q = ObjectsQuery::parse(rest.as_deref())?;
    scatter::objects(&state, q, opts, raw.as_deref()).await
}

#[utoipa::path(get, path = "/v1/stats", tag = "stats",
    params(
        ("step" = Option<String>, Query, description = "bucket width: `minute` (default), `hour`, or `night` (24 h from 12:00 UTC, Rubin's dayObs convention)"),
        ("since" = Option<String>, Query, description = "first bucket: ms since the Unix epoch or ISO 8601 UTC; default an hour (minute), two days (hour) or thirty nights (night) before `until`"),
        ("until" = Option<String>, Query, description = "last bucket: the one holding this time (default: now)"),
        ("partial" = Option<bool>, Query, description = "answer even if some partitions cannot (listed in missing_partitions); otherwise that is a 503"),
        ("max_lag" = Option<u64>, Query, description = "allow standbys at most this many changelog records behind to answer")
    ),
    responses(
        (status = 200, description = "alerts, new objects, detections and dead letters per bucket, survey and band, over every partition; time is when each alert entered the input log; minute buckets are kept two days", body = StatsAnswer,
            headers(("x-lightkeeper-stale" = String, description = "present when a partition's master answered without reaching its logs (a broker outage): `partitions [p, …]: why`; the answer may miss changes made meanwhile"))),
        (status = 400, description = "`invalid_query`: bad step or time, since not before until, or more than 10080 buckets", body = ErrorResponse),
        (status = 503, description = "`unavailable`: a partition could not answer within cluster.route_deadline_ms", body = ErrorResponse)
    ))]
pub async fn stats(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Scattered<StatsAnswer>, ApiError> {
    let (opts, rest) = read_options(raw.as_deref(), &headers)?;
    let q = StatsQuery::parse(rest.as_deref(), now_ms())?;
    scatter::stats(&state, q, opts, raw.as_deref()).await
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

#[utoipa::path(get, path = "/v1/fields", tag = "find",
    responses((status = 200, description = "every field of the filter language, with its type and meaning", body = Fields)))]
pub async fn fields() -> Json<Fields> {
    Json(Fields { fields: all_fields() })
}

fn partition_of(state: &AppState, p: Result<Path<u32>, PathRejection>) -> Result<u32, ApiError> {
    let Path(p) = p?;
    if p >= state.partition_count {
        return Err(ApiError::NotFound {
            code: "no_such_partition",
            message: format!("partition {p} does not exist; there are {}", state.partition_count),
        });
    }
    Ok(p)
}

/// The options of an internal part: served here or refused (`not_master`), never forwarded.
fn internal_options(raw: Option<&str>, headers: &HeaderMap) -> Result<(ReadOptions, Option<String>), ApiError> {
    let (opts, rest) = read_options(raw, headers)?;
    Ok((ReadOptions { forwarded: true, ..opts }, rest))
}

/// Internal: one partition's part of a cone search, from this node's replica.
pub async fn partition_cone(
    State(state): State<AppState>,
    p: Result<Path<u32>, PathRejection>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let p = partition_of(&state, p)?;
    let (opts, rest) = internal_options(raw.as_deref(), &headers)?;
    let q = ConeQuery::parse(rest.as_deref())?;
    let part = route_partition(&state, p, "", opts, || scatter::local_cone(&state, p, q)).await?;
    Ok(mark_stale(Json(part.value).into_response(), part.stale.as_deref()))
}

/// Internal: one partition's part of a page, from this node's replica.
pub async fn partition_objects(
    State(state): State<AppState>,
    p: Result<Path<u32>, PathRejection>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let p = partition_of(&state, p)?;
    let (opts, rest) = internal_options(raw.as_deref(), &headers)?;
    let q = ObjectsQuery::parse(rest.as_deref())?;
    let part = route_partition(&state, p, "", opts, || scatter::local_page(&state, p, q)).await?;
    Ok(mark_stale(Json(part.value).into_response(), part.stale.as_deref()))
}

/// Internal: one partition's statistics buckets, from this node's replica. The internal call
/// carries the gateway's resolved range, so every partition answers for the same buckets.
pub async fn partition_stats(
    State(state): State<AppState>,
    p: Result<Path<u32>, PathRejection>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let p = partition_of(&state, p)?;
    let (opts, rest) = internal_options(raw.as_deref(), &headers)?;
    let q = StatsQuery::parse(rest.as_deref(), now_ms())?;
    let part = route_partition(&state, p, "", opts, || scatter::local_stats(&state, p, q)).await?;
    Ok(mark_stale(Json(part.value).into_response(), part.stale.as_deref()))
}
