//! `/v1/watchlists`: users' catalogs of positions. Put as CSV (a header row naming `name`,
//! `ra`, `dec` and `radius` or `radius_arcsec`; degrees and arcsec), kept in the settings topic,
//! matched by every partition master against every object's position (see
//! `lightkeeper_partition::watchlist`). A new or changed list is also run over the objects
//! already stored, so the matches are what they would have been had it existed from the start.

use super::admin::authorize;
use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use bytes::Bytes;
use lightkeeper_api::error::ErrorResponse;
use lightkeeper_api::pipeline::{WatchEntry, Watchlist, WatchlistList, WatchlistSize};
use lightkeeper_partition::pipeline::check_name;
use lightkeeper_partition::watchlist::{check_entry, MAX_ENTRIES};
use lightkeeper_storage::settings::{SettingKey, SettingKind, SettingsError};

fn name_of(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    let Path(name) = path?;
    check_name(&name).map_err(|m| ApiError::bad_request("bad_name", m))?;
    Ok(name)
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::bad_request("bad_watchlist", message)
}

/// Reads a CSV catalog: a header naming the columns, then one entry per row.
pub fn parse_csv(body: &[u8]) -> Result<Vec<WatchEntry>, ApiError> {
    let mut rd = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(body);
    let headers = rd.headers().map_err(|e| bad(format!("the header row: {e}")))?.clone();
    let col = |names: &[&str]| headers.iter().position(|h| names.iter().any(|n| h.eq_ignore_ascii_case(n)));
    let (Some(name), Some(ra), Some(dec), Some(radius)) =
        (col(&["name"]), col(&["ra"]), col(&["dec"]), col(&["radius_arcsec", "radius"]))
    else {
        return Err(bad(format!(
            "the header row must name the columns name, ra, dec and radius (or radius_arcsec); it has {:?}",
            headers.iter().collect::<Vec<_>>()
        )));
    };
    let mut entries = Vec::new();
    for (i, row) in rd.records().enumerate() {
        let line = i + 2;
        let row = row.map_err(|e| bad(format!("line {line}: {e}")))?;
        if entries.len() == MAX_ENTRIES {
            return Err(bad(format!("more than {MAX_ENTRIES} entries; split the catalog into several lists")));
        }
        let num = |c: usize, what: &str| -> Result<f64, ApiError> {
            let text = row.get(c).unwrap_or("");
            text.parse::<f64>().map_err(|_| bad(format!("line {line}: {what} {text:?} is not a number")))
        };
        let e = WatchEntry {
            name: row.get(name).unwrap_or("").to_owned(),
            ra: num(ra, "ra")?,
            dec: num(dec, "dec")?,
            radius_arcsec: num(radius, "radius")?,
        };
        check_entry(&e, line).map_err(|m| bad(m.replacen("row", "line", 1)))?;
        entries.push(e);
    }
    if entries.is_empty() {
        return Err(bad("the catalog has no entries"));
    }
    Ok(entries)
}

/// The watch lists and their sizes.
#[utoipa::path(get, path = "/v1/watchlists", tag = "watchlists", operation_id = "list_watchlists",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "watch lists", body = WatchlistList),
        (status = 401, description = "`unauthorized`", body = ErrorResponse),
        (status = 409, description = "`admin_disabled`", body = ErrorResponse)
    ))]
pub async fn list(State(state): State<AppState>, headers: HeaderMap) -> Result<Json<WatchlistList>, ApiError> {
    authorize(&state, &headers)?;
    let snap = state.settings.pipelines.snapshot();
    let watchlists = snap.watch.lists().map(|(name, n)| WatchlistSize { name: name.to_owned(), entries: n }).collect();
    Ok(Json(WatchlistList { watchlists }))
}

/// A watch list's entries.
#[utoipa::path(get, path = "/v1/watchlists/{name}", tag = "watchlists", operation_id = "get_watchlist",
    security(("bearer" = [])),
    params(("name" = String, Path, description = "1 to 64 of a-z A-Z 0-9 _ -")),
    responses(
        (status = 200, description = "the watch list", body = Watchlist),
        (status = 400, description = "`bad_name`", body = ErrorResponse),
        (status = 401, description = "`unauthorized`", body = ErrorResponse),
        (status = 404, description = "`watchlist_not_found`", body = ErrorResponse),
        (status = 409, description = "`admin_disabled`", body = ErrorResponse)
    ))]
pub async fn get(
    State(state): State<AppState>,
    name: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Result<Json<Watchlist>, ApiError> {
    authorize(&state, &headers)?;
    let name = name_of(name)?;
    let snap = state.settings.pipelines.snapshot();
    let entries = snap
        .watch
        .list(&name)
        .ok_or_else(|| ApiError::not_found("watchlist_not_found", format!("no watch list named {name:?}")))?;
    Ok(Json(Watchlist { name, entries: entries.to_vec() }))
}

/// Creates or replaces a watch list from a CSV catalog (`name,ra,dec,radius`; degrees,
/// arcsec; at most 10,000 entries, radii up to 3600 arcsec). Every object within an entry's
/// radius is annotated (`watchlists` in its summary, the `watchlist` filter field), the stored
/// objects included.
#[utoipa::path(put, path = "/v1/watchlists/{name}", tag = "watchlists", operation_id = "put_watchlist",
    security(("bearer" = [])),
    params(("name" = String, Path, description = "1 to 64 of a-z A-Z 0-9 _ -")),
    request_body(content = String, description = "the catalog as CSV with a header row", content_type = "text/csv"),
    responses(
        (status = 200, description = "stored; this node's masters are re-annotating their objects", body = Watchlist),
        (status = 400, description = "`bad_watchlist`: the message names the line and what is wrong; `bad_name`", body = ErrorResponse),
        (status = 401, description = "`unauthorized`", body = ErrorResponse),
        (status = 409, description = "`admin_disabled`", body = ErrorResponse),
        (status = 413, description = "`payload_too_large`", body = ErrorResponse),
        (status = 503, description = "`unavailable`: the settings topic could not be written; retry", body = ErrorResponse)
    ))]
pub async fn put(
    State(state): State<AppState>,
    name: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Watchlist>, ApiError> {
    authorize(&state, &headers)?;
    let name = name_of(name)?;
    let body = body.map_err(|r| ApiError::from_body(r, state.limits.max_body_bytes))?;
    if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'<') {
        return Err(bad("VOTable catalogs are not read yet; send the catalog as CSV (name,ra,dec,radius)"));
    }
    let entries = parse_csv(&body)?;
    let bytes = serde_json::to_vec(&entries).expect("entries serialize");
    let settings = state.settings.clone();
    let key = SettingKey::new(SettingKind::Watchlist, &name);
    tokio::task::spawn_blocking(move || {
        let revision = settings.log.put(&key, &bytes)?;
        settings.install(revision);
        Ok::<_, SettingsError>(())
    })
    .await?
    .map_err(|e| match e {
        SettingsError::TooLarge { .. } => bad(e.to_string()),
        e => ApiError::Unavailable(format!("the settings topic: {e}")),
    })?;
    Ok(Json(Watchlist { name, entries }))
}

/// Deletes a watch list; its matches are removed from the objects.
#[utoipa::path(delete, path = "/v1/watchlists/{name}", tag = "watchlists", operation_id = "delete_watchlist",
    security(("bearer" = [])),
    params(("name" = String, Path, description = "1 to 64 of a-z A-Z 0-9 _ -")),
    responses(
        (status = 204, description = "deleted"),
        (status = 400, description = "`bad_name`", body = ErrorResponse),
        (status = 401, description = "`unauthorized`", body = ErrorResponse),
        (status = 404, description = "`watchlist_not_found`", body = ErrorResponse),
        (status = 409, description = "`admin_disabled`", body = ErrorResponse),
        (status = 503, description = "`unavailable`", body = ErrorResponse)
    ))]
pub async fn delete(
    State(state): State<AppState>,
    name: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    authorize(&state, &headers)?;
    let name = name_of(name)?;
    let key = SettingKey::new(SettingKind::Watchlist, &name);
    if state.settings.log.get(&key).is_none() {
        return Err(ApiError::not_found("watchlist_not_found", format!("no watch list named {name:?}")));
    }
    let settings = state.settings.clone();
    tokio::task::spawn_blocking(move || {
        let revision = settings.log.delete(&key)?;
        settings.install(revision);
        Ok::<_, SettingsError>(())
    })
    .await?
    .map_err(|e| ApiError::Unavailable(format!("the settings topic: {e}")))?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_catalogs_are_read_and_checked_by_line() {
        let ok = parse_csv(b"name,ra,dec,radius\nM31, 10.6847, 41.2690, 30\nsn,1,-2,1.5\n").unwrap();
        assert_eq!(ok.len(), 2);
        assert_eq!(ok[0], WatchEntry { name: "M31".into(), ra: 10.6847, dec: 41.269, radius_arcsec: 30.0 });
        let msg = |b: &[u8]| parse_csv(b).unwrap_err().to_string();
        assert!(msg(b"name,ra,dec\nx,1,2\n").contains("radius"));
        assert!(msg(b"name,ra,dec,radius\nx,1,2,3\ny,1,95,3\n").contains("line 3"));
        assert!(msg(b"name,ra,dec,radius\nx,one,2,3\n").contains("line 2: ra \"one\""));
        assert!(msg(b"name,ra,dec,radius\n").contains("no entries"));
    }
}
