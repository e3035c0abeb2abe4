//! Object reads: summary, light curve (JSON or CSV) and alert history.
//!
//! RocksDB reads run on the blocking pool, never on the async runtime.

use crate::cache::Cached;
use crate::error::ApiError;
use crate::routing::{read_options, route};
use crate::state::AppState;
use axum::extract::rejection::PathRejection;
use axum::extract::{OriginalUri, Path, RawQuery, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use lightkeeper_api::error::ErrorResponse;
pub use lightkeeper_api::objects::{AlertHistory, Lightcurve};
use lightkeeper_storage::model::{validate_key, Band, LightPoint, PointKind};
use lightkeeper_storage::object::{ObjectState, ObjectSummary};
use serde::Serialize;

#[utoipa::path(get, path = "/v1/objects/{key}", tag = "objects",
    params(
        ("key" = String, Path, description = "survey-qualified key, e.g. ztf:ZTF21abiuvdk"),
        ("max_lag" = Option<u64>, Query, description = "allow a standby at most this many changelog records behind to answer; the x-lightkeeper-served-by, -role and -lag headers say who did")
    ),
    responses(
        (status = 200, description = "the object's summary", body = ObjectSummary,
            headers(
                ("x-lightkeeper-served-by" = String, description = "the node whose replica answered"),
                ("x-lightkeeper-role" = String, description = "that replica's role: master, standby or restoring"),
                ("x-lightkeeper-lag" = u64, description = "that replica's changelog lag, in records (0 for the master)"),
                ("x-lightkeeper-partition" = u32, description = "the object's partition")
            )),
        (status = 400, description = "`invalid_key`, `invalid_path` or `invalid_query`", body = ErrorResponse),
        (status = 404, description = "`object_not_found`: the object is not known", body = ErrorResponse),
        (status = 503, description = "`unavailable`: no replica could serve within cluster.route_deadline_ms; or `not_master`, to a forwarded read", body = ErrorResponse)
    ))]
pub async fn summary(
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
        cached(&state, key, "summary".into(), |obj| json_body(&obj.summary()))
    })
    .await
}

fn path_and_query(uri: &OriginalUri) -> String {
    uri.path_and_query().map_or_else(|| uri.path().to_owned(), |p| p.as_str().to_owned())
}

fn no_other_params(rest: Option<String>) -> Result<(), ApiError> {
    match rest {
        None => Ok(()),
        Some(q) => Err(ApiError::bad_request("invalid_query", format!("unknown query parameters {q:?}; only max_lag"))),
    }
}

const JSON: &str = "application/json";
const CSV: &str = "text/csv; charset=utf-8";

fn json_body<T: Serialize>(v: &T) -> Result<Cached, ApiError> {
    Ok(Cached { content_type: JSON, body: serde_json::to_vec(v).map_err(ApiError::internal)?.into() })
}

/// Serves a rendering of `key` from the response cache, or reads the object, renders it with
/// `render` (both on the blocking pool: decoding and serializing a large light curve takes
/// milliseconds) and caches the result. 404 for unknown objects is never cached.
async fn cached<F>(state: &AppState, key: String, variant: String, render: F) -> Result<Response, ApiError>
where
    F: FnOnce(ObjectState) -> Result<Cached, ApiError> + Send + 'static,
{
    let respond = |c: Cached| ([(header::CONTENT_TYPE, c.content_type)], c.body).into_response();
    if let Some(c) = state.cache.get(&key, &variant) {
        return Ok(respond(c));
    }
    let generation = state.cache.generation(&key);
    let store = state.store.clone();
    let k = key.clone();
    let rendered = tokio::task::spawn_blocking(move || -> Result<Cached, ApiError> {
        let obj = store.get(&k)?.ok_or_else(|| ApiError::NotFound {
            code: "object_not_found",
            message: format!("object {k} is not known"),
        })?;
        render(obj)
    })
    .await??;
    state.cache.insert(&key, &variant, generation, rendered.clone());
    Ok(respond(rendered))
}

/// Light-curve query: `since_mjd`, `until_mjd`, `band` and `kind` (repeatable or
/// comma-separated), `format` (`json` or `csv`).
#[derive(Debug, Default, PartialEq)]
pub struct LightcurveQuery {
    pub since_mjd: Option<f64>,
    pub until_mjd: Option<f64>,
    pub bands: Vec<Band>,
    pub kinds: Vec<PointKind>,
    pub csv: bool,
}

impl LightcurveQuery {
    pub fn parse(raw: Option<&str>) -> Result<LightcurveQuery, ApiError> {
        let mut q = LightcurveQuery::default();
        let bad = |m: String| ApiError::bad_request("invalid_query", m);
        let mjd = |name: &str, v: &str| -> Result<f64, ApiError> {
            v.parse::<f64>()
                .ok()
                .filter(|x| x.is_finite())
                .ok_or_else(|| bad(format!("{name} must be a number (MJD), got {v:?}")))
        };
        for (k, v) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
            match k.as_ref() {
                "since_mjd" => q.since_mjd = Some(mjd("since_mjd", &v)?),
                "until_mjd" => q.until_mjd = Some(mjd("until_mjd", &v)?),
                "band" => {
                    for b in v.split(',').filter(|s| !s.is_empty()) {
                        q.bands.push(
                            Band::parse(b)
                                .ok_or_else(|| bad(format!("unknown band {b:?}; expected one of u g r i z y")))?,
                        );
                    }
                }
                "kind" => {
                    for b in v.split(',').filter(|s| !s.is_empty()) {
                        q.kinds.push(PointKind::parse(b).ok_or_else(|| {
                            bad(format!("unknown kind {b:?}; expected detection, upper_limit or forced"))
                        })?);
                    }
                }
                "format" => {
                    q.csv = match v.as_ref() {
                        "json" => false,
                        "csv" => true,
                        other => return Err(bad(format!("unknown format {other:?}; expected json or csv"))),
                    }
                }
                other => return Err(bad(format!("unknown query parameter {other:?}"))),
            }
        }
        if let (Some(a), Some(b)) = (q.since_mjd, q.until_mjd) {
            if a > b {
                return Err(bad(format!("since_mjd {a} is after until_mjd {b}")));
            }
        }
        Ok(q)
    }

    fn keeps(&self, p: &LightPoint) -> bool {
        self.since_mjd.is_none_or(|s| p.mjd >= s)
            && self.until_mjd.is_none_or(|u| p.mjd <= u)
            && (self.bands.is_empty() || self.bands.contains(&p.band))
            && (self.kinds.is_empty() || self.kinds.contains(&p.kind))
    }
}

#[utoipa::path(get, path = "/v1/objects/{key}/lightcurve", tag = "objects",
    params(
        ("key" = String, Path, description = "survey-qualified key, e.g. ztf:ZTF21abiuvdk"),
        ("max_lag" = Option<u64>, Query, description = "allow a standby at most this many changelog records behind to answer; the x-lightkeeper-served-by, -role and -lag headers say who did"),
        ("since_mjd" = Option<f64>, Query, description = "earliest point, MJD"),
        ("until_mjd" = Option<f64>, Query, description = "latest point, MJD"),
        ("band" = Option<Vec<Band>>, Query, explode, description = "repeatable or comma-separated: u g r i z y"),
        ("kind" = Option<Vec<PointKind>>, Query, explode, description = "repeatable or comma-separated: detection, upper_limit, forced"),
        ("format" = Option<String>, Query, description = "json (default) or csv")
    ),
    responses(
        (status = 200, description = "the light curve, sorted by time: JSON, or with format=csv a header line and one row per point (the point's fields)",
            content((Lightcurve = JSON), (String = CSV)),
            headers(
                ("x-lightkeeper-served-by" = String, description = "the node whose replica answered"),
                ("x-lightkeeper-role" = String, description = "that replica's role: master, standby or restoring"),
                ("x-lightkeeper-lag" = u64, description = "that replica's changelog lag, in records (0 for the master)"),
                ("x-lightkeeper-partition" = u32, description = "the object's partition")
            )),
        (status = 400, description = "`invalid_key`, `invalid_path` or `invalid_query`", body = ErrorResponse),
        (status = 404, description = "`object_not_found`: the object is not known", body = ErrorResponse),
        (status = 503, description = "`unavailable`: no replica could serve within cluster.route_deadline_ms; or `not_master`, to a forwarded read", body = ErrorResponse)
    ))]
pub async fn lightcurve(
    State(state): State<AppState>,
    key: Result<Path<String>, PathRejection>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    uri: OriginalUri,
) -> Result<Response, ApiError> {
    let Path(key) = key?;
    let (opts, rest) = read_options(raw.as_deref(), &headers)?;
    let q = LightcurveQuery::parse(rest.as_deref())?;
    validate_key(&key).map_err(|m| ApiError::bad_request("invalid_key", m))?;
    let variant = format!("lightcurve?{}", rest.unwrap_or_default());
    route(&state, &key.clone(), &path_and_query(&uri), opts, || {
        cached(&state, key, variant, move |obj| {
            let points: Vec<LightPoint> = obj.points.into_iter().filter(|p| q.keeps(p)).collect();
            if q.csv {
                return Ok(Cached { content_type: CSV, body: to_csv(&points)?.into() });
            }
            json_body(&Lightcurve { key: obj.key, version: obj.version, points })
        })
    })
    .await
}

fn to_csv(points: &[LightPoint]) -> Result<String, ApiError> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "mjd",
        "time_scale",
        "band",
        "kind",
        "flux_njy",
        "flux_err_njy",
        "mag",
        "mag_err",
        "limiting_mag",
        "source_id",
        "is_negative",
        "reliability",
        "alert_id",
    ])
    .map_err(ApiError::internal)?;
    let f = |v: Option<f64>| v.map(|x| x.to_string()).unwrap_or_default();
    for p in points {
        w.write_record([
            p.mjd.to_string(),
            match p.time_scale {
                lightkeeper_storage::model::TimeScale::Utc => "utc".into(),
                lightkeeper_storage::model::TimeScale::Tai => "tai".into(),
            },
            p.band.as_str().into(),
            p.kind.as_str().into(),
            f(p.flux_njy),
            f(p.flux_err_njy),
            f(p.mag),
            f(p.mag_err),
            f(p.limiting_mag),
            p.source_id.map(|v| v.to_string()).unwrap_or_default(),
            p.is_negative.map(|v| v.to_string()).unwrap_or_default(),
            f(p.reliability),
            p.alert_id.to_string(),
        ])
        .map_err(ApiError::internal)?;
    }
    String::from_utf8(w.into_inner().map_err(ApiError::internal)?).map_err(ApiError::internal)
}

#[utoipa::path(get, path = "/v1/objects/{key}/alerts", tag = "objects",
    params(
        ("key" = String, Path, description = "survey-qualified key, e.g. ztf:ZTF21abiuvdk"),
        ("max_lag" = Option<u64>, Query, description = "allow a standby at most this many changelog records behind to answer; the x-lightkeeper-served-by, -role and -lag headers say who did")
    ),
    responses(
        (status = 200, description = "the alerts that built the object, and where each was read from", body = AlertHistory,
            headers(
                ("x-lightkeeper-served-by" = String, description = "the node whose replica answered"),
                ("x-lightkeeper-role" = String, description = "that replica's role: master, standby or restoring"),
                ("x-lightkeeper-lag" = u64, description = "that replica's changelog lag, in records (0 for the master)"),
                ("x-lightkeeper-partition" = u32, description = "the object's partition")
            )),
        (status = 400, description = "`invalid_key`, `invalid_path` or `invalid_query`", body = ErrorResponse),
        (status = 404, description = "`object_not_found`: the object is not known", body = ErrorResponse),
        (status = 503, description = "`unavailable`: no replica could serve within cluster.route_deadline_ms; or `not_master`, to a forwarded read", body = ErrorResponse)
    ))]
pub async fn alerts(
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
        cached(&state, key, "alerts".into(), |obj| {
            json_body(&AlertHistory { key: obj.key, version: obj.version, alerts: obj.alerts })
        })
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parsing() {
        let q = LightcurveQuery::parse(Some("band=g&band=r,i&kind=detection&since_mjd=59000&format=csv")).unwrap();
        assert_eq!(q.bands, vec![Band::G, Band::R, Band::I]);
        assert_eq!(q.kinds, vec![PointKind::Detection]);
        assert_eq!(q.since_mjd, Some(59000.0));
        assert!(q.csv);
        for bad in ["band=q", "kind=x", "since_mjd=abc", "format=xml", "foo=1", "since_mjd=5&until_mjd=4"] {
            let e = LightcurveQuery::parse(Some(bad)).unwrap_err();
            assert_eq!(e.code(), "invalid_query", "{bad}");
        }
    }
}
