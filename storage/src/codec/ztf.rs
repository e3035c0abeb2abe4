//! ZTF alerts: Avro object container files, one alert each, decoded with their embedded writer
//! schema (every schema version from 1.8 to 4.02; union order varies within "3.3").
//!
//! Traps handled here (see `shared/data/README.md`): `isdiffpos` is `t`/`f`/`1`/`0`;
//! `ssnamenr == "null"` and `ssdistnr`/`ssmagnr == -999` are sentinels; prv entries with a null
//! `candid` are upper limits; forced photometry (`fp_hists`, or prv entries of the v3.5 test
//! schema) with a non-zero `procstatus` or the −99999 flux sentinel is a failed measurement and
//! is skipped; `schemavsn` may be missing (v1.8).

use super::avro_value::*;
use super::DecodeError;
use crate::model::*;
use crate::object::Attributes;
use apache_avro::types::Value;

/// ZTF Julian dates → MJD.
const JD_TO_MJD: f64 = 2_400_000.5;
/// Flux value ZTF forced photometry writes for a failed measurement.
const FP_FLUX_SENTINEL: f64 = -99_999.0;
/// ZTF's "no value" sentinel: no solar-system body in ssdistnr / ssmagnr, no PS1 or reference
/// source in sgscore1, distpsnr1, distnr, magnr.
const SS_SENTINEL: f64 = -999.0;

pub fn decode_record(rec: &Value) -> Result<Alert, DecodeError> {
    let object_id = str_field(rec, &["objectId"]).ok_or_else(|| DecodeError::missing("objectId"))?;
    let candidate = field(rec, &["candidate"]).ok_or_else(|| DecodeError::missing("candidate"))?;
    let alert_id = i64_field(rec, &["candid"])
        .or_else(|| i64_field(candidate, &["candid"]))
        .ok_or_else(|| DecodeError::missing("candid"))?;
    let schema_version = str_field(rec, &["schemavsn"]).unwrap_or("unknown").to_owned();

    let mut points = Vec::new();
    let primary = detection(candidate, alert_id)?
        .ok_or_else(|| DecodeError::invalid("candidate is not a valid detection (no jd, fid or magpsf)"))?;
    let mjd = primary.mjd;
    points.push(primary);

    if let Some(prv) = array_field(rec, &["prv_candidates"]) {
        for item in prv {
            if let Some(p) = history_point(item, alert_id)? {
                points.push(p);
            }
        }
    }
    if let Some(fps) = array_field(rec, &["fp_hists"]) {
        for item in fps {
            if let Some(p) = forced_point(item, alert_id) {
                points.push(p);
            }
        }
    }

    Ok(Alert {
        survey: Survey::Ztf,
        key: object_key(Survey::Ztf, object_id),
        object_id: object_id.to_owned(),
        alert_id,
        mjd,
        time_scale: TimeScale::Utc,
        ra: f64_field(candidate, &["ra"]),
        dec: f64_field(candidate, &["dec"]),
        schema_version,
        solar_system: solar_system(candidate),
        points,
        attributes: attributes(candidate),
    })
}

/// The candidate's filter columns; ZTF's −999 "no value" sentinel becomes null.
fn attributes(c: &Value) -> Attributes {
    let f = |name: &str| f64_field(c, &[name]).filter(|v| *v != SS_SENTINEL);
    let rb = f("rb");
    Attributes {
        drb: f("drb"),
        rb,
        sgscore1: f("sgscore1"),
        distpsnr1: f("distpsnr1"),
        ndethist: i64_field(c, &["ndethist"]),
        isdiffpos: is_negative(c).map(|negative| !negative),
        ssdistnr: f("ssdistnr"),
        ssmagnr: f("ssmagnr"),
        distnr: f("distnr"),
        magnr: f("magnr"),
        fwhm: f("fwhm"),
        elong: f("elong"),
        nbad: i64_field(c, &["nbad"]),
        reliability: rb,
        ..Attributes::default()
    }
}

fn mjd_band(rec: &Value) -> Option<(f64, Band)> {
    let jd = f64_field(rec, &["jd"])?;
    let band = Band::from_ztf_fid(i64_field(rec, &["fid"])?)?;
    Some((jd - JD_TO_MJD, band))
}

/// `isdiffpos`: `t`/`1` = positive difference, `f`/`0` = negative.
fn is_negative(rec: &Value) -> Option<bool> {
    match str_field(rec, &["isdiffpos"])? {
        "t" | "1" => Some(false),
        "f" | "0" => Some(true),
        _ => None,
    }
}

/// A detection from a `candidate` or a prv entry with a candid. `Ok(None)` if it has no magnitude.
fn detection(rec: &Value, alert_id: i64) -> Result<Option<LightPoint>, DecodeError> {
    let Some((mjd, band)) = mjd_band(rec) else {
        return Ok(None);
    };
    let Some(mag) = f64_field(rec, &["magpsf"]) else {
        return Ok(None);
    };
    let mag_err = f64_field(rec, &["sigmapsf"]);
    let negative = is_negative(rec);
    let flux = mag_to_njy(mag);
    let signed = if negative == Some(true) { -flux } else { flux };
    Ok(Some(LightPoint {
        mjd,
        time_scale: TimeScale::Utc,
        band,
        kind: PointKind::Detection,
        flux_njy: Some(signed),
        flux_err_njy: mag_err.map(|e| flux * e / MAG_ERR_FACTOR),
        mag: Some(mag),
        mag_err,
        limiting_mag: f64_field(rec, &["diffmaglim"]),
        source_id: i64_field(rec, &["candid"]),
        is_negative: negative,
        reliability: f64_field(rec, &["rb"]),
        alert_id,
    }))
}

/// A prv_candidates entry: a detection (candid set), an upper limit (candid null), or — in the
/// v3.5 forced-photometry test schema — a forced-photometry record.
fn history_point(item: &Value, alert_id: i64) -> Result<Option<LightPoint>, DecodeError> {
    if has_field(item, "forcediffimflux") {
        return Ok(forced_point(item, alert_id));
    }
    if i64_field(item, &["candid"]).is_some() {
        return detection(item, alert_id);
    }
    let Some((mjd, band)) = mjd_band(item) else {
        return Ok(None);
    };
    Ok(Some(LightPoint {
        mjd,
        time_scale: TimeScale::Utc,
        band,
        kind: PointKind::UpperLimit,
        flux_njy: None,
        flux_err_njy: None,
        mag: None,
        mag_err: None,
        limiting_mag: f64_field(item, &["diffmaglim"]),
        source_id: None,
        is_negative: None,
        reliability: None,
        alert_id,
    }))
}

/// Forced photometry: flux in DN scaled by the science zero point to nJy. Failed measurements
/// (procstatus ≠ "0", the −99999 sentinel, no zero point) are skipped: they carry no flux.
fn forced_point(item: &Value, alert_id: i64) -> Option<LightPoint> {
    if let Some(status) = str_field(item, &["procstatus"]) {
        if status.trim() != "0" {
            return None;
        }
    }
    let (mjd, band) = mjd_band(item)?;
    let dn = f64_field(item, &["forcediffimflux"]).filter(|f| *f != FP_FLUX_SENTINEL)?;
    let zp = f64_field(item, &["magzpsci"])?;
    let scale = 10f64.powf(-0.4 * (zp - AB_ZERO_POINT_NJY));
    let flux = dn * scale;
    let err =
        f64_field(item, &["forcediffimfluxunc"]).filter(|e| *e != FP_FLUX_SENTINEL && *e >= 0.0).map(|e| e * scale);
    let mag = njy_to_mag(flux);
    Some(LightPoint {
        mjd,
        time_scale: TimeScale::Utc,
        band,
        kind: PointKind::Forced,
        flux_njy: Some(flux),
        flux_err_njy: err,
        mag,
        mag_err: mag.and(err).map(|e| MAG_ERR_FACTOR * e / flux.abs()),
        limiting_mag: f64_field(item, &["diffmaglim"]),
        source_id: None,
        is_negative: Some(flux < 0.0),
        reliability: None,
        alert_id,
    })
}

fn solar_system(candidate: &Value) -> Option<SolarSystemMatch> {
    let name = str_field(candidate, &["ssnamenr"])?.trim();
    if name.is_empty() || name.eq_ignore_ascii_case("null") {
        return None;
    }
    let not_sentinel = |v: f64| (v != SS_SENTINEL).then_some(v);
    Some(SolarSystemMatch {
        name: name.to_owned(),
        distance_arcsec: f64_field(candidate, &["ssdistnr"]).and_then(not_sentinel),
        mag: f64_field(candidate, &["ssmagnr"]).and_then(not_sentinel),
    })
}
