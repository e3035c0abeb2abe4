//! Object reads: summary, light curve (JSON, CSV or VOTable; `formats`) and alert history, with ETags and cached compressed renderings (`routes::web`).
//!
//! RocksDB reads run on the blocking pool, never on the async runtime.

use super::web::{self, Encoding};
use crate::cache::{Cached, Flight};
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
                ("x-lightkeeper-partition" = u32, description = "the object's partition"),
                ("x-lightkeeper-stale" = String, description = "present when the master answered without reaching its logs (a broker outage): why; the answer may miss changes made meanwhile"),
                ("etag" = String, description = "weak entity tag of the object's version, W/\"v<version>\"; send it back in If-None-Match for a 304 while the object is unchanged")
            )),
        (status = 304, description = "not modified: `If-None-Match` named the current `ETag` (the object's version)"),
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
        cached(&state, key, "summary".into(), encoding(&state, &headers), |obj| json_body(&obj.summary()))
    })
    .await
}

pub(super) fn path_and_query(uri: &OriginalUri) -> String {
    uri.path_and_query().map_or_else(|| uri.path().to_owned(), |p| p.as_str().to_owned())
}

pub(super) fn no_other_params(rest: Option<String>) -> Result<(), ApiError> {
    match rest {
        None => Ok(()),
        Some(q) => Err(ApiError::bad_request("invalid_query", format!("unknown query parameters {q:?}; only max_lag"))),
    }
}

use crate::formats::{self, Format, Times, CSV, JSON, VOTABLE};

/// A rendering: its content type and body.
pub(super) type Rendered = (&'static str, Vec<u8>);

pub(super) fn json_body<T: Serialize>(v: &T) -> Result<Rendered, ApiError> {
    Ok((JSON, serde_json::to_vec(v).map_err(ApiError::internal)?))
}

/// The coding to send an object read in: the client's choice when compression is on.
pub(super) fn encoding(state: &AppState, headers: &HeaderMap) -> Encoding {
    if state.http.compression {
        Encoding::negotiate(headers.get(header::ACCEPT_ENCODING))
    } else {
        Encoding::Identity
    }
}

/// Serves a rendering of `key` in coding `enc` from the response cache, or makes it: reads
/// the object and renders it with `render`, or compresses the cached plain rendering (all on
/// the blocking pool: decoding, serializing and compressing a large light curve take
/// milliseconds each), and caches what it made. Each coding is cached under its own variant,
/// so a hot object is compressed once per version, not per request, and concurrent misses
/// make it once ([`crate::cache::Flights`]). 404 for unknown objects is never cached.
pub(super) async fn cached<F>(
    state: &AppState,
    key: String,
    variant: String,
    enc: Encoding,
    render: F,
) -> Result<Response, ApiError>
where
    F: FnOnce(ObjectState) -> Result<Rendered, ApiError> + Send + 'static,
{
    let mut render = Some(render);
    let compressing = state.http.compression;
    let respond = move |c: Cached, enc: Encoding| {
        let mut resp = ([(header::CONTENT_TYPE, c.content_type)], c.body).into_response();
        let h = resp.headers_mut();
        h.insert(header::ETAG, web::etag(c.version));
        // Revalidate every time: the ETag makes that a 304 while the object has not changed.
        h.insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-cache"));
        if compressing {
            let (name, value) = web::vary_encoding();
            h.insert(name, value);
        }
        if let Some(token) = enc.token() {
            h.insert(header::CONTENT_ENCODING, header::HeaderValue::from_static(token));
        }
        resp
    };
    let coded = enc.token().map(|t| format!("{variant}|{t}"));
    let mut followed = false;
    loop {
        if let Some(c) = coded.as_deref().and_then(|v| state.cache.get(&key, v)) {
            return Ok(respond(c, enc));
        }
        // Noted before the plain rendering is looked up or made: what is cached below was made
        // from state at least this new.
        let generation = state.cache.generation(&key);
        let plain = state.cache.get(&key, &variant);
        if let (Some(c), Encoding::Identity) = (&plain, enc) {
            return Ok(respond(c.clone(), enc));
        }
        // One request makes what is missing; the others wait for it, then look again (once:
        // if it is still missing — the leader failed, or an update raced it — they make it).
        let _leader = if followed {
            None
        } else {
            match state.cache.flights.join(&key, coded.as_deref().unwrap_or(&variant)).await {
                Flight::Lead(leader) => Some(leader),
                Flight::Followed => {
                    followed = true;
                    continue;
                }
            }
        };
        let store = state.store.clone();
        let k = key.clone();
        let render = render.take().expect("rendered at most once");
        let (plain, made, coded_body) = tokio::task::spawn_blocking(move || -> Result<_, ApiError> {
            let (plain, made) = match plain {
                Some(c) => (c, false),
                None => {
                    let obj = store.get(&k)?.ok_or_else(|| ApiError::NotFound {
                        code: "object_not_found",
                        message: format!("object {k} is not known"),
                    })?;
                    let version = obj.version;
                    let (content_type, body) = render(obj)?;
                    (Cached { content_type, body: body.into(), version }, true)
                }
            };
            let coded = match enc {
                Encoding::Identity => None,
                _ if plain.body.len() < web::MIN_COMPRESSED => None,
                _ => Some(enc.encode(&plain.body)?),
            };
            Ok((plain, made, coded))
        })
        .await??;
        if made {
            state.cache.insert(&key, &variant, generation, plain.clone());
        }
        return match (coded, coded_body) {
            (Some(v), Some(body)) => {
                let c = Cached { body, ..plain };
                state.cache.insert(&key, &v, generation, c.clone());
                Ok(respond(c, enc))
            }
            // Too small to be worth it (or not asked for): as it is.
            _ => Ok(respond(plain, Encoding::Identity)),
        };
    }
}

/// Light-curve query: `since_mjd`, `until_mjd`, `band` and `kind` (repeatable or
/// comma-separated), `format` (`json` or `csv`).
#[derive(Debug, Default, PartialEq)]
pub struct LightcurveQuery {
    pub since_mjd: Option<f64>,
    pub until_mjd: Option<f64>,
    pub bands: Vec<Band>,
    pub kinds: Vec<PointKind>,
    pub format: Format,
    pub times: Times,
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
                    q.format = Format::parse(&v)
                        .ok_or_else(|| bad(format!("unknown format {v:?}; expected json, csv or votable")))?;
                }
                "times" => q.times.add(&v).map_err(bad)?,
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
        ("format" = Option<String>, Query, description = "json (default), csv, or votable (IVOA VOTable 1.4, TABLEDATA, with units and UCDs)"),
        ("times" = Option<String>, Query, description = "comma-separated extra time columns: jd (Julian Date, in the point's time_scale) and iso (iso_utc: ISO 8601 in UTC, TAI times converted with leap seconds)")
    ),
    responses(
        (status = 200, description = "the light curve, sorted by time: JSON; with format=csv a header line and one row per point (the point's fields); with format=votable a VOTable with one row per point",
            content((Lightcurve = JSON), (String = CSV), (String = VOTABLE)),
            headers(
                ("x-lightkeeper-served-by" = String, description = "the node whose replica answered"),
                ("x-lightkeeper-role" = String, description = "that replica's role: master, standby or restoring"),
                ("x-lightkeeper-lag" = u64, description = "that replica's changelog lag, in records (0 for the master)"),
                ("x-lightkeeper-partition" = u32, description = "the object's partition"),
                ("x-lightkeeper-stale" = String, description = "present when the master answered without reaching its logs (a broker outage): why; the answer may miss changes made meanwhile"),
                ("etag" = String, description = "weak entity tag of the object's version, W/\"v<version>\"; send it back in If-None-Match for a 304 while the object is unchanged")
            )),
        (status = 304, description = "not modified: `If-None-Match` named the current `ETag` (the object's version)"),
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
        cached(&state, key, variant, encoding(&state, &headers), move |obj| {
            let points: Vec<LightPoint> = obj.points.into_iter().filter(|p| q.keeps(p)).collect();
            formats::render(&obj.key, obj.version, &points, q.format, q.times)
        })
    })
    .await
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
                ("x-lightkeeper-partition" = u32, description = "the object's partition"),
                ("x-lightkeeper-stale" = String, description = "present when the master answered without reaching its logs (a broker outage): why; the answer may miss changes made meanwhile"),
                ("etag" = String, description = "weak entity tag of the object's version, W/\"v<version>\"; send it back in If-None-Match for a 304 while the object is unchanged")
            )),
        (status = 304, description = "not modified: `If-None-Match` named the current `ETag` (the object's version)"),
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
        cached(&state, key, "alerts".into(), encoding(&state, &headers), |obj| {
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
        assert_eq!(q.format, Format::Csv);
        let q = LightcurveQuery::parse(Some("format=votable&times=jd,iso")).unwrap();
        assert_eq!((q.format, q.times), (Format::VoTable, Times { jd: true, iso: true }));
        for bad in ["band=q", "kind=x", "since_mjd=abc", "format=xml", "foo=1", "since_mjd=5&until_mjd=4", "times=gps"]
        {
            let e = LightcurveQuery::parse(Some(bad)).unwrap_err();
            assert_eq!(e.code(), "invalid_query", "{bad}");
        }
    }
}
