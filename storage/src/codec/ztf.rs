//! ZTF alerts: Avro object container files, one alert each, decoded with their embedded writer
//! schema (every schema version from 1.8 to 4.02; union order varies within "3.3").
//!
//! Traps handled here (see `shared/data/README.md`): `isdiffpos` is `t`/`f`/`1`/`0`;
//! `ssnamenr == "null"` and `ssdistnr`/`ssmagnr == -999` are sentinels; prv entries with a null
//! `candid` are upper limits; forced photometry (`fp_hists`, or prv entries of the v3.5 test
//! schema) with a non-zero `procstatus` or the −99999 flux sentinel is a failed measurement and
//! is skipped; `schemavsn` may be missing (v1.8).

use super::node::Node;
use super::projection::layout;
use super::DecodeError;
use crate::model::*;
use crate::object::Attributes;

layout! {
    /// The alert record.
    pub(crate) mod alert {
        OBJECT_ID: ["objectId"],
        CANDID: ["candid"],
        SCHEMAVSN: ["schemavsn"],
        CANDIDATE: ["candidate"] => candidate,
        PRV_CANDIDATES: ["prv_candidates"] => candidate,
        FP_HISTS: ["fp_hists"] => candidate,
    }
}

layout! {
    /// `candidate`, and the entries of `prv_candidates` and `fp_hists`: one layout for the three,
    /// so a detection reads the same slots wherever it comes from.
    pub(crate) mod candidate {
        CANDID: ["candid"],
        JD: ["jd"],
        FID: ["fid"],
        RA: ["ra"],
        DEC: ["dec"],
        MAGPSF: ["magpsf"],
        SIGMAPSF: ["sigmapsf"],
        ISDIFFPOS: ["isdiffpos"],
        DIFFMAGLIM: ["diffmaglim"],
        RB: ["rb"],
        DRB: ["drb"],
        SGSCORE1: ["sgscore1"],
        DISTPSNR1: ["distpsnr1"],
        NDETHIST: ["ndethist"],
        SSNAMENR: ["ssnamenr"],
        SSDISTNR: ["ssdistnr"],
        SSMAGNR: ["ssmagnr"],
        DISTNR: ["distnr"],
        MAGNR: ["magnr"],
        FWHM: ["fwhm"],
        ELONG: ["elong"],
        NBAD: ["nbad"],
        PROCSTATUS: ["procstatus"],
        FORCEDIFFIMFLUX: ["forcediffimflux"],
        FORCEDIFFIMFLUXUNC: ["forcediffimfluxunc"],
        MAGZPSCI: ["magzpsci"],
    }
}

use candidate as c;

/// ZTF Julian dates → MJD.
const JD_TO_MJD: f64 = 2_400_000.5;
/// Flux value ZTF forced photometry writes for a failed measurement.
const FP_FLUX_SENTINEL: f64 = -99_999.0;
/// ZTF's "no value" sentinel: no solar-system body in ssdistnr / ssmagnr, no PS1 or reference
/// source in sgscore1, distpsnr1, distnr, magnr.
const SS_SENTINEL: f64 = -999.0;

/// Maps an alert record (laid out as [`alert`]) to the common model.
pub fn decode_record<'a>(rec: impl Node<'a>) -> Result<Alert, DecodeError> {
    let object_id = rec.str(alert::OBJECT_ID).ok_or_else(|| DecodeError::missing("objectId"))?;
    let candidate = rec.field(alert::CANDIDATE).ok_or_else(|| DecodeError::missing("candidate"))?;
    let alert_id =
        rec.i64(alert::CANDID).or_else(|| candidate.i64(c::CANDID)).ok_or_else(|| DecodeError::missing("candid"))?;
    let schema_version = rec.str(alert::SCHEMAVSN).unwrap_or("unknown").to_owned();

    let mut points = Vec::new();
    let primary = detection(candidate, alert_id)?
        .ok_or_else(|| DecodeError::invalid("candidate is not a valid detection (no jd, fid or magpsf)"))?;
    let mjd = primary.mjd;
    points.push(primary);

    if let Some(prv) = rec.array(alert::PRV_CANDIDATES) {
        for item in prv {
            if let Some(p) = history_point(item, alert_id)? {
                points.push(p);
            }
        }
    }
    if let Some(fps) = rec.array(alert::FP_HISTS) {
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
        ra: candidate.f64(c::RA),
        dec: candidate.f64(c::DEC),
        schema_version,
        solar_system: solar_system(candidate),
        points,
        attributes: attributes(candidate),
    })
}

/// The candidate's filter columns; ZTF's −999 "no value" sentinel becomes null.
fn attributes<'a>(cand: impl Node<'a>) -> Attributes {
    let f = |slot| cand.f64(slot).filter(|v| *v != SS_SENTINEL);
    let rb = f(c::RB);
    Attributes {
        drb: f(c::DRB),
        rb,
        sgscore1: f(c::SGSCORE1),
        distpsnr1: f(c::DISTPSNR1),
        ndethist: cand.i64(c::NDETHIST),
        isdiffpos: is_negative(cand).map(|negative| !negative),
        ssdistnr: f(c::SSDISTNR),
        ssmagnr: f(c::SSMAGNR),
        distnr: f(c::DISTNR),
        magnr: f(c::MAGNR),
        fwhm: f(c::FWHM),
        elong: f(c::ELONG),
        nbad: cand.i64(c::NBAD),
        reliability: rb,
        ..Attributes::default()
    }
}

fn mjd_band<'a>(rec: impl Node<'a>) -> Option<(f64, Band)> {
    let jd = rec.f64(c::JD)?;
    let band = Band::from_ztf_fid(rec.i64(c::FID)?)?;
    Some((jd - JD_TO_MJD, band))
}

/// `isdiffpos`: `t`/`1` = positive difference, `f`/`0` = negative.
fn is_negative<'a>(rec: impl Node<'a>) -> Option<bool> {
    match rec.str(c::ISDIFFPOS)? {
        "t" | "1" => Some(false),
        "f" | "0" => Some(true),
        _ => None,
    }
}

/// A detection from a `candidate` or a prv entry with a candid. `Ok(None)` if it has no magnitude.
fn detection<'a>(rec: impl Node<'a>, alert_id: i64) -> Result<Option<LightPoint>, DecodeError> {
    let Some((mjd, band)) = mjd_band(rec) else {
        return Ok(None);
    };
    let Some(mag) = rec.f64(c::MAGPSF) else {
        return Ok(None);
    };
    let mag_err = rec.f64(c::SIGMAPSF);
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
        limiting_mag: rec.f64(c::DIFFMAGLIM),
        source_id: rec.i64(c::CANDID),
        is_negative: negative,
        reliability: rec.f64(c::RB),
        alert_id,
    }))
}

/// A prv_candidates entry: a detection (candid set), an upper limit (candid null), or — in the
/// v3.5 forced-photometry test schema — a forced-photometry record.
fn history_point<'a>(item: impl Node<'a>, alert_id: i64) -> Result<Option<LightPoint>, DecodeError> {
    if item.has(c::FORCEDIFFIMFLUX) {
        return Ok(forced_point(item, alert_id));
    }
    if item.i64(c::CANDID).is_some() {
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
        limiting_mag: item.f64(c::DIFFMAGLIM),
        source_id: None,
        is_negative: None,
        reliability: None,
        alert_id,
    }))
}

/// Forced photometry: flux in DN scaled by the science zero point to nJy. Failed measurements
/// (procstatus ≠ "0", the −99999 sentinel, no zero point) are skipped: they carry no flux.
fn forced_point<'a>(item: impl Node<'a>, alert_id: i64) -> Option<LightPoint> {
    if let Some(status) = item.str(c::PROCSTATUS) {
        if status.trim() != "0" {
            return None;
        }
    }
    let (mjd, band) = mjd_band(item)?;
    let dn = item.f64(c::FORCEDIFFIMFLUX).filter(|f| *f != FP_FLUX_SENTINEL)?;
    let zp = item.f64(c::MAGZPSCI)?;
    let scale = 10f64.powf(-0.4 * (zp - AB_ZERO_POINT_NJY));
    let flux = dn * scale;
    let err = item.f64(c::FORCEDIFFIMFLUXUNC).filter(|e| *e != FP_FLUX_SENTINEL && *e >= 0.0).map(|e| e * scale);
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
        limiting_mag: item.f64(c::DIFFMAGLIM),
        source_id: None,
        is_negative: Some(flux < 0.0),
        reliability: None,
        alert_id,
    })
}

fn solar_system<'a>(candidate: impl Node<'a>) -> Option<SolarSystemMatch> {
    let name = candidate.str(c::SSNAMENR)?.trim();
    if name.is_empty() || name.eq_ignore_ascii_case("null") {
        return None;
    }
    let not_sentinel = |v: f64| (v != SS_SENTINEL).then_some(v);
    Some(SolarSystemMatch {
        name: name.to_owned(),
        distance_arcsec: candidate.f64(c::SSDISTNR).and_then(not_sentinel),
        mag: candidate.f64(c::SSMAGNR).and_then(not_sentinel),
    })
}
