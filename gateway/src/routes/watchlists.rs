//! `/v1/watchlists`: users' catalogs of positions. Put as CSV (a header row naming `name`,
//! `ra`, `dec` and `radius` or `radius_arcsec`; degrees and arcsec) or as a VOTable (the same
//! columns, or name, ra and dec found by UCD), kept in the settings topic,
//! matched by every partition master against every object's position (see
//! `lightkeeper_partition::watchlist`). A new or changed list is also run over the objects
//! already stored, so the matches are what they would have been had it existed from the start.

use crate::error::ApiError;
use crate::settings::StoreSettingError;
use crate::state::AppState;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use bytes::Bytes;
use lightkeeper_api::error::ErrorResponse;
use lightkeeper_api::pipeline::{WatchEntry, Watchlist, WatchlistList, WatchlistSize};
use lightkeeper_partition::pipeline::check_name;
use lightkeeper_partition::watchlist::{check_entry, MAX_ENTRIES};
use lightkeeper_storage::settings::{SettingKey, SettingKind, SettingsError};

/// Bound on a cluster's watch lists (every object is matched against all of them).
pub const MAX_WATCHLISTS: usize = 64;

fn name_of(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    let Path(name) = path?;
    check_name(&name).map_err(|m| ApiError::bad_request("bad_name", m))?;
    Ok(name)
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::bad_request("bad_watchlist", message)
}

/// Finds the catalog's columns among `names` (case-insensitive): name, ra, dec, radius.
fn columns(names: &[String], ucds: &[Option<String>]) -> Result<[usize; 4], ApiError> {
    let by_name = |wanted: &[&str]| names.iter().position(|h| wanted.iter().any(|n| h.eq_ignore_ascii_case(n)));
    let by_ucd = |prefix: &str| {
        ucds.iter().position(|u| u.as_deref().is_some_and(|u| u.to_ascii_lowercase().starts_with(prefix)))
    };
    let found = (
        by_name(&["name", "id"]).or_else(|| by_ucd("meta.id")),
        by_name(&["ra", "raj2000", "ra_icrs"]).or_else(|| by_ucd("pos.eq.ra")),
        by_name(&["dec", "dej2000", "de_icrs", "decj2000"]).or_else(|| by_ucd("pos.eq.dec")),
        by_name(&["radius_arcsec", "radius"]),
    );
    match found {
        (Some(n), Some(r), Some(d), Some(rad)) => Ok([n, r, d, rad]),
        _ => Err(bad(format!(
            "the catalog must have the columns name, ra, dec and radius (or radius_arcsec); it has {names:?}"
        ))),
    }
}

/// Reads a VOTable catalog (TABLEDATA, BINARY or BINARY2): its first table's columns found by
/// name (or, for name, ra and dec, by UCD), one entry per row.
pub fn parse_votable(body: &[u8]) -> Result<Vec<WatchEntry>, ApiError> {
    use votable::impls::mem::InMemTableDataRows;
    use votable::impls::VOTableValue as V;
    use votable::table::TableElem;
    let mut vot = votable::votable::VOTableWrapper::<InMemTableDataRows>::from_ivoa_xml_bytes(body)
        .map_err(|e| bad(format!("the VOTable does not read: {e}")))?;
    vot.votable.to_tabledata().map_err(|e| bad(format!("the VOTable's data does not read: {e}")))?;
    let table = vot.votable.get_first_table().ok_or_else(|| bad("the VOTable has no TABLE"))?;
    let fields: Vec<&votable::field::Field> = table
        .elems
        .iter()
        .filter_map(|e| match e {
            TableElem::Field(f) => Some(f),
            _ => None,
        })
        .collect();
    let names: Vec<String> = fields.iter().map(|f| f.name.clone()).collect();
    let ucds: Vec<Option<String>> = fields.iter().map(|f| f.ucd.clone()).collect();
    let [name, ra, dec, radius] = columns(&names, &ucds)?;
    let rows = match table.data.as_ref().map(|d| &d.data) {
        Some(votable::data::DataElem::TableData(t)) => &t.content.rows,
        _ => return Err(bad("the VOTable's first table has no TABLEDATA rows")),
    };
    let text = |v: &V| match v {
        V::String(s) => s.trim().to_owned(),
        V::Int(i) => i.to_string(),
        V::Long(i) => i.to_string(),
        V::Short(i) => i.to_string(),
        other => format!("{other:?}"),
    };
    let num = |v: &V| match v {
        V::Double(x) => Some(*x),
        V::Float(x) => Some(f64::from(*x)),
        V::Int(x) => Some(f64::from(*x)),
        V::Short(x) => Some(f64::from(*x)),
        V::Long(x) => Some(*x as f64),
        V::String(s) => s.trim().parse().ok(),
        _ => None,
    };
    if rows.len() > MAX_ENTRIES {
        return Err(bad(format!("more than {MAX_ENTRIES} entries; split the catalog into several lists")));
    }
    let mut entries = Vec::with_capacity(rows.len());
    for (i, row) in rows.iter().enumerate() {
        let r = i + 1;
        let get = |c: usize, what: &str| {
            row.get(c).and_then(num).ok_or_else(|| bad(format!("row {r}: {what} is not a number")))
        };
        let e = WatchEntry {
            name: row.get(name).map(text).unwrap_or_default(),
            ra: get(ra, "ra")?,
            dec: get(dec, "dec")?,
            radius_arcsec: get(radius, "radius")?,
        };
        check_entry(&e, r).map_err(bad)?;
        entries.push(e);
    }
    if entries.is_empty() {
        return Err(bad("the catalog has no entries"));
    }
    Ok(entries)
}

/// Reads a CSV catalog: a header naming the columns, then one entry per row.
pub fn parse_csv(body: &[u8]) -> Result<Vec<WatchEntry>, ApiError> {
    let mut rd = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(body);
    let headers = rd.headers().map_err(|e| bad(format!("the header row: {e}")))?.clone();
    let names: Vec<String> = headers.iter().map(str::to_owned).collect();
    let [name, ra, dec, radius] = columns(&names, &vec![None; names.len()])?;
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
pub async fn list(State(state): State<AppState>) -> Result<Json<WatchlistList>, ApiError> {
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
) -> Result<Json<Watchlist>, ApiError> {
    let name = name_of(name)?;
    let snap = state.settings.pipelines.snapshot();
    let entries = snap
        .watch
        .list(&name)
        .ok_or_else(|| ApiError::not_found("watchlist_not_found", format!("no watch list named {name:?}")))?;
    Ok(Json(Watchlist { name, entries: entries.to_vec() }))
}

/// Creates or replaces a watch list from a CSV or VOTable catalog (`name,ra,dec,radius`; degrees,
/// arcsec; at most 10,000 entries, radii up to 3600 arcsec). Every object within an entry's
/// radius is annotated (`watchlists` in its summary, the `watchlist` filter field), the stored
/// objects included.
#[utoipa::path(put, path = "/v1/watchlists/{name}", tag = "watchlists", operation_id = "put_watchlist",
    security(("bearer" = [])),
    params(("name" = String, Path, description = "1 to 64 of a-z A-Z 0-9 _ -")),
    request_body(content = String, description = "the catalog: CSV with a header row, or a VOTable", content_type = "text/csv"),
    responses(
        (status = 200, description = "stored; this node's masters are re-annotating their objects", body = Watchlist),
        (status = 400, description = "`bad_watchlist`: the message names the line and what is wrong; `bad_name`", body = ErrorResponse),
        (status = 401, description = "`unauthorized`", body = ErrorResponse),
        (status = 409, description = "`admin_disabled`; `too_many_watchlists` (at most 64)", body = ErrorResponse),
        (status = 413, description = "`payload_too_large`", body = ErrorResponse),
        (status = 503, description = "`unavailable`: the settings topic could not be written; retry", body = ErrorResponse)
    ))]
pub async fn put(
    State(state): State<AppState>,
    name: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Watchlist>, ApiError> {
    let name = name_of(name)?;
    let body = body.map_err(|r| ApiError::from_body(r, state.limits.max_body_bytes))?;
    // A VOTable is XML; anything else is read as CSV.
    let entries = if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'<') {
        parse_votable(&body)?
    } else {
        parse_csv(&body)?
    };
    let bytes = serde_json::to_vec(&entries).expect("entries serialize");
    let settings = state.settings.clone();
    let key = SettingKey::new(SettingKind::Watchlist, &name);
    if settings.log.get(&key).is_none() && settings.log.all(SettingKind::Watchlist).len() >= MAX_WATCHLISTS {
        return Err(ApiError::Conflict {
            code: "too_many_watchlists",
            message: format!("a cluster keeps at most {MAX_WATCHLISTS} watch lists; delete one first"),
        });
    }
    settings.store(key, bytes).await.map_err(|e| match e {
        StoreSettingError::Settings(SettingsError::TooLarge { .. }) => bad(e.to_string()),
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
) -> Result<StatusCode, ApiError> {
    let name = name_of(name)?;
    let key = SettingKey::new(SettingKind::Watchlist, &name);
    if state.settings.log.get(&key).is_none() {
        return Err(ApiError::not_found("watchlist_not_found", format!("no watch list named {name:?}")));
    }
    state
        .settings
        .store(key, Vec::new())
        .await
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

#[cfg(test)]
mod votable_tests {
    use super::*;

    #[test]
    fn votable_catalogs_are_read_by_column_name_or_ucd() {
        let xml = br#"<?xml version="1.0" encoding="UTF-8"?>
<VOTABLE version="1.4" xmlns="http://www.ivoa.net/xml/VOTable/v1.3">
 <RESOURCE>
  <TABLE>
   <FIELD name="main_id" datatype="char" arraysize="*" ucd="meta.id;meta.main"/>
   <FIELD name="RAJ2000" datatype="double" ucd="pos.eq.ra;meta.main" unit="deg"/>
   <FIELD name="DEJ2000" datatype="double" ucd="pos.eq.dec;meta.main" unit="deg"/>
   <FIELD name="radius" datatype="float" unit="arcsec"/>
   <DATA><TABLEDATA>
    <TR><TD>M31</TD><TD>10.6847</TD><TD>41.2690</TD><TD>30</TD></TR>
    <TR><TD>SN 2023ixf</TD><TD>210.9107</TD><TD>54.3117</TD><TD>5</TD></TR>
   </TABLEDATA></DATA>
  </TABLE>
 </RESOURCE>
</VOTABLE>"#;
        let got = parse_votable(xml).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[1], WatchEntry { name: "SN 2023ixf".into(), ra: 210.9107, dec: 54.3117, radius_arcsec: 5.0 });
        let no_radius = String::from_utf8_lossy(xml).replace(r#"name="radius""#, r#"name="size""#);
        assert!(parse_votable(no_radius.as_bytes()).unwrap_err().to_string().contains("radius"));
        assert!(parse_votable(b"<VOTABLE").is_err());
    }
}
