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

use super::node::Node;
use super::projection::layout;
use super::DecodeError;
use crate::model::*;
use crate::object::Attributes;

layout! {
    /// The alert record.
    pub(crate) mod alert {
        ALERT_ID: ["alertId", "diaSourceId"],
        DIA_SOURCE: ["diaSource"] => source,
        PRV_DIA_SOURCES: ["prvDiaSources"] => source,
        PRV_DIA_FORCED_SOURCES: ["prvDiaForcedSources"] => source,
        PRV_DIA_NONDETECTION_LIMITS: ["prvDiaNondetectionLimits"] => source,
        DIA_OBJECT: ["diaObject"] => source,
        SS_SOURCE: ["ssSource"] => source,
        SS_OBJECT: ["ssObject"] => source,
        ORBIT: ["mpc_orbits", "MPCORB"] => orbit,
    }
}

layout! {
    /// diaSource, diaForcedSource, nondetection limits, diaObject, ssSource and ssObject: one
    /// layout for all, so a light point reads the same slots wherever it comes from.
    pub(crate) mod source {
        DIA_SOURCE_ID: ["diaSourceId"],
        DIA_FORCED_SOURCE_ID: ["diaForcedSourceId"],
        DIA_OBJECT_ID: ["diaObjectId"],
        SS_OBJECT_ID: ["ssObjectId"],
        MJD: ["midpointMjdTai", "midPointTai"],
        BAND: ["band", "filterName"],
        FLUX: ["psfFlux", "psFlux"],
        FLUX_ERR: ["psfFluxErr", "psFluxErr"],
        RA: ["ra"],
        DEC: ["dec", "decl"],
        IS_NEGATIVE: ["isNegative"],
        RELIABILITY: ["reliability"],
        SNR: ["snr"],
        EXTENDEDNESS: ["extendedness"],
        DIA_NOISE: ["diaNoise"],
    }
}

layout! {
    /// The solar-system orbit record (`MPCORB`, `mpc_orbits`).
    pub(crate) mod orbit {
        DESIGNATION: ["designation", "mpcDesignation", "fullDesignation", "packed_primary_provisional_designation"],
    }
}

use source as s;

/// Maps an alert record (laid out as [`alert`]) to the common model.
pub fn decode_record<'a>(rec: impl Node<'a>, schema_version: String) -> Result<Alert, DecodeError> {
    let source = rec.field(alert::DIA_SOURCE).ok_or_else(|| DecodeError::missing("diaSource"))?;
    let source_id = source.i64(s::DIA_SOURCE_ID).ok_or_else(|| DecodeError::missing("diaSource.diaSourceId"))?;
    let alert_id = rec.i64(alert::ALERT_ID).unwrap_or(source_id);
    let nonzero = |v: i64| (v != 0).then_some(v);
    let dia_object = source.i64(s::DIA_OBJECT_ID).and_then(nonzero);
    let ss_object = source.i64(s::SS_OBJECT_ID).and_then(nonzero);
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
    for item in rec.array(alert::PRV_DIA_SOURCES).into_iter().flatten() {
        points.extend(source_point(item, PointKind::Detection, alert_id));
    }
    for item in rec.array(alert::PRV_DIA_FORCED_SOURCES).into_iter().flatten() {
        points.extend(source_point(item, PointKind::Forced, alert_id));
    }
    for item in rec.array(alert::PRV_DIA_NONDETECTION_LIMITS).into_iter().flatten() {
        points.extend(nondetection(item, alert_id));
    }

    let dia_obj = rec.field(alert::DIA_OBJECT);
    let ra = dia_obj.and_then(|o| o.f64(s::RA)).or_else(|| source.f64(s::RA));
    let dec = dia_obj.and_then(|o| o.f64(s::DEC)).or_else(|| source.f64(s::DEC));

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
            reliability: source.f64(s::RELIABILITY),
            snr: source.f64(s::SNR),
            psf_flux: source.f64(s::FLUX),
            extendedness: source.f64(s::EXTENDEDNESS),
            ..Attributes::default()
        },
    })
}

/// A diaSource (detection) or diaForcedSource (forced photometry).
fn source_point<'a>(rec: impl Node<'a>, kind: PointKind, alert_id: i64) -> Option<LightPoint> {
    let mjd = rec.f64(s::MJD)?;
    let band = Band::parse(rec.str(s::BAND)?)?;
    let flux = rec.f64(s::FLUX);
    let flux_err = rec.f64(s::FLUX_ERR);
    let mag = flux.and_then(njy_to_mag);
    let id_field = match kind {
        PointKind::Forced => s::DIA_FORCED_SOURCE_ID,
        _ => s::DIA_SOURCE_ID,
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
        source_id: rec.i64(id_field),
        is_negative: rec.bool(s::IS_NEGATIVE).or(flux.map(|f| f < 0.0)),
        reliability: rec.f64(s::RELIABILITY),
        alert_id,
    })
}

/// v3–v7 `prvDiaNondetectionLimits`: `diaNoise` is the 1σ flux noise in nJy; the limit is 5σ.
fn nondetection<'a>(rec: impl Node<'a>, alert_id: i64) -> Option<LightPoint> {
    let mjd = rec.f64(s::MJD)?;
    let band = Band::parse(rec.str(s::BAND)?)?;
    let noise = rec.f64(s::DIA_NOISE);
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
fn solar_system<'a>(rec: impl Node<'a>, ss_object: Option<i64>) -> Option<SolarSystemMatch> {
    let designation = rec.field(alert::ORBIT).and_then(|o| o.str(orbit::DESIGNATION)).map(str::to_owned);
    let ss_id = ss_object
        .or_else(|| rec.field(alert::SS_SOURCE).and_then(|x| x.i64(s::SS_OBJECT_ID)).filter(|v| *v != 0))
        .or_else(|| rec.field(alert::SS_OBJECT).and_then(|x| x.i64(s::SS_OBJECT_ID)).filter(|v| *v != 0));
    let name = designation.or_else(|| ss_id.map(|id| id.to_string()))?;
    Some(SolarSystemMatch { name, distance_arcsec: None, mag: None })
}
