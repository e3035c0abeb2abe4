//! Rubin/LSST alerts, schema versions 3.0 to 11.1.
//!
//! Field names changed across versions (`midPointTai`→`midpointMjdTai`, `decl`→`dec`,
//! `filterName`→`band`, `psFlux`→`psfFlux`; `alertId` gave way to a top-level `diaSourceId` in
//! v8), so every lookup names all spellings. Fluxes are already in nJy; times are TAI MJD at
//! mid-exposure. NaN floats are absent values; `ssObjectId == 0` means "none".
//!
//! Object key: `lsst:<diaObjectId>`; a source without a diaObject belongs to a solar-system
//! object, keyed `lsst:ss-<ssObjectId>`; a source with neither (synthetic packets) is keyed by
//! its own diaSourceId, which is the id Rubin gives a new diaObject anyway.

use super::avro_value::*;
use super::DecodeError;
use crate::model::*;
use crate::object::Attributes;
use apache_avro::types::Value;

const MJD: &[&str] = &["midpointMjdTai", "midPointTai"];
const BAND: &[&str] = &["band", "filterName"];
const FLUX: &[&str] = &["psfFlux", "psFlux"];
const FLUX_ERR: &[&str] = &["psfFluxErr", "psFluxErr"];
const DEC: &[&str] = &["dec", "decl"];

pub fn decode_record(rec: &Value, schema_version: String) -> Result<Alert, DecodeError> {
    let source = field(rec, &["diaSource"]).ok_or_else(|| DecodeError::missing("diaSource"))?;
    let source_id = i64_field(source, &["diaSourceId"]).ok_or_else(|| DecodeError::missing("diaSource.diaSourceId"))?;
    let alert_id = i64_field(rec, &["alertId", "diaSourceId"]).unwrap_or(source_id);
    let nonzero = |v: i64| (v != 0).then_some(v);
    let dia_object = i64_field(source, &["diaObjectId"]).and_then(nonzero);
    let ss_object = i64_field(source, &["ssObjectId"]).and_then(nonzero);
    let object_id = match (dia_object, ss_object) {
        (Some(id), _) => id.to_string(),
        (None, Some(ss)) => format!("ss-{ss}"),
        (None, None) => source_id.to_string(),
    };

    let mut points = Vec::new();
    let primary = source_point(source, PointKind::Detection, alert_id)
        .ok_or_else(|| DecodeError::invalid("diaSource has no valid time or band"))?;
    let mjd = primary.mjd;
    points.push(primary);
    for item in array_field(rec, &["prvDiaSources"]).unwrap_or_default() {
        points.extend(source_point(item, PointKind::Detection, alert_id));
    }
    for item in array_field(rec, &["prvDiaForcedSources"]).unwrap_or_default() {
        points.extend(source_point(item, PointKind::Forced, alert_id));
    }
    for item in array_field(rec, &["prvDiaNondetectionLimits"]).unwrap_or_default() {
        points.extend(nondetection(item, alert_id));
    }

    let dia_obj = field(rec, &["diaObject"]);
    let ra = dia_obj.and_then(|o| f64_field(o, &["ra"])).or_else(|| f64_field(source, &["ra"]));
    let dec = dia_obj.and_then(|o| f64_field(o, DEC)).or_else(|| f64_field(source, DEC));

    Ok(Alert {
        survey: Survey::Lsst,
        key: object_key(Survey::Lsst, &object_id),
        object_id,
        alert_id,
        mjd,
        time_scale: TimeScale::Tai,
        ra,
        dec,
        schema_version,
        solar_system: solar_system(rec, ss_object),
        points,
        attributes: Attributes {
            reliability: f64_field(source, &["reliability"]),
            snr: f64_field(source, &["snr"]),
            psf_flux: f64_field(source, FLUX),
            extendedness: f64_field(source, &["extendedness"]),
            ..Attributes::default()
        },
    })
}

/// A diaSource (detection) or diaForcedSource (forced photometry).
fn source_point(rec: &Value, kind: PointKind, alert_id: i64) -> Option<LightPoint> {
    let mjd = f64_field(rec, MJD)?;
    let band = Band::parse(str_field(rec, BAND)?)?;
    let flux = f64_field(rec, FLUX);
    let flux_err = f64_field(rec, FLUX_ERR);
    let mag = flux.and_then(njy_to_mag);
    let id_field: &[&str] = match kind {
        PointKind::Forced => &["diaForcedSourceId"],
        _ => &["diaSourceId"],
    };
    Some(LightPoint {
        mjd,
        time_scale: TimeScale::Tai,
        band,
        kind,
        flux_njy: flux,
        flux_err_njy: flux_err,
        mag,
        mag_err: mag.and(flux_err).zip(flux).map(|(e, f)| MAG_ERR_FACTOR * e / f.abs()),
        limiting_mag: None,
        source_id: i64_field(rec, id_field),
        is_negative: bool_field(rec, &["isNegative"]).or(flux.map(|f| f < 0.0)),
        reliability: f64_field(rec, &["reliability"]),
        alert_id,
    })
}

/// v3–v7 `prvDiaNondetectionLimits`: `diaNoise` is the 1σ flux noise in nJy; the limit is 5σ.
fn nondetection(rec: &Value, alert_id: i64) -> Option<LightPoint> {
    let mjd = f64_field(rec, MJD)?;
    let band = Band::parse(str_field(rec, BAND)?)?;
    let noise = f64_field(rec, &["diaNoise"]);
    Some(LightPoint {
        mjd,
        time_scale: TimeScale::Tai,
        band,
        kind: PointKind::UpperLimit,
        flux_njy: None,
        flux_err_njy: noise,
        mag: None,
        mag_err: None,
        limiting_mag: noise.and_then(|n| njy_to_mag(5.0 * n)),
        source_id: None,
        is_negative: None,
        reliability: None,
        alert_id,
    })
}

/// v3–v7 carry `ssObject`; v8/v9 `ssSource` + `MPCORB`; v10+ `ssSource` + `mpc_orbits`.
fn solar_system(rec: &Value, ss_object: Option<i64>) -> Option<SolarSystemMatch> {
    let orbit = field(rec, &["mpc_orbits", "MPCORB"]);
    let designation = orbit
        .and_then(|o| {
            str_field(
                o,
                &["designation", "mpcDesignation", "fullDesignation", "packed_primary_provisional_designation"],
            )
        })
        .map(str::to_owned);
    let ss_source = field(rec, &["ssSource"]);
    let ss_id = ss_object
        .or_else(|| ss_source.and_then(|s| i64_field(s, &["ssObjectId"])).filter(|v| *v != 0))
        .or_else(|| field(rec, &["ssObject"]).and_then(|s| i64_field(s, &["ssObjectId"])).filter(|v| *v != 0));
    let name = designation.or_else(|| ss_id.map(|id| id.to_string()))?;
    Some(SolarSystemMatch { name, distance_arcsec: None, mag: None })
}
