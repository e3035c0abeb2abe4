//! The normalized alert model: one shape for ZTF and Rubin/LSST.
//!
//! Why one model: the two surveys disagree on almost everything (magnitudes vs. fluxes, UTC Julian
//! dates at exposure start vs. TAI MJD at mid-exposure, integer filter ids vs. band letters,
//! sentinels vs. nulls). Everything downstream — merge, storage, API — sees only this model, so
//! the survey quirks live in exactly one place per survey (`codec::ztf`, `codec::lsst`).
//!
//! Units: flux in nJy (AB zero point 31.4 mag), magnitudes AB, time as MJD with its scale stated.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// AB magnitude of a 1 nJy source: m = -2.5 log10(f / nJy) + 31.4.
pub const AB_ZERO_POINT_NJY: f64 = 31.4;
/// 2.5 / ln(10): converts a relative flux error to a magnitude error (and back).
pub const MAG_ERR_FACTOR: f64 = 1.085_736_204_758_129_6;

/// Flux in nJy for an AB magnitude.
pub fn mag_to_njy(mag: f64) -> f64 {
    10f64.powf(-0.4 * (mag - AB_ZERO_POINT_NJY))
}

/// AB magnitude of a flux in nJy (of its absolute value; the sign is kept apart). `None` for 0.
pub fn njy_to_mag(flux: f64) -> Option<f64> {
    let f = flux.abs();
    (f > 0.0 && f.is_finite()).then(|| -2.5 * f.log10() + AB_ZERO_POINT_NJY)
}

/// The survey an alert comes from; the first part of every object key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Survey {
    Ztf,
    Lsst,
}

impl Survey {
    pub fn as_str(self) -> &'static str {
        match self {
            Survey::Ztf => "ztf",
            Survey::Lsst => "lsst",
        }
    }
}

/// One of an alert's three image stamps (cutouts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CutoutKind {
    Science,
    Template,
    Difference,
}

impl CutoutKind {
    pub const ALL: [CutoutKind; 3] = [CutoutKind::Science, CutoutKind::Template, CutoutKind::Difference];

    pub fn as_str(self) -> &'static str {
        match self {
            CutoutKind::Science => "science",
            CutoutKind::Template => "template",
            CutoutKind::Difference => "difference",
        }
    }

    pub fn parse(s: &str) -> Option<CutoutKind> {
        CutoutKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The stamps an alert's schema carries: all three for ZTF; for LSST, the science stamp
    /// only from schema 6.1 on. (A nullable stamp may still be null in a given packet.)
    pub fn carried_by(survey: Survey, schema_version: &str) -> Vec<CutoutKind> {
        let lsst_science = || {
            let mut parts = schema_version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
            let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
            (major, minor) >= (6, 1)
        };
        match survey {
            Survey::Ztf => CutoutKind::ALL.to_vec(),
            Survey::Lsst if lsst_science() => CutoutKind::ALL.to_vec(),
            Survey::Lsst => vec![CutoutKind::Template, CutoutKind::Difference],
        }
    }
}

/// Photometric band. ZTF's fid 1/2/3 map to g/r/i; LSST names its bands directly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Band {
    U,
    G,
    R,
    I,
    Z,
    Y,
}

impl Band {
    pub fn as_str(self) -> &'static str {
        match self {
            Band::U => "u",
            Band::G => "g",
            Band::R => "r",
            Band::I => "i",
            Band::Z => "z",
            Band::Y => "y",
        }
    }

    pub fn parse(s: &str) -> Option<Band> {
        Some(match s {
            "u" => Band::U,
            "g" => Band::G,
            "r" => Band::R,
            "i" => Band::I,
            "z" => Band::Z,
            "y" => Band::Y,
            _ => return None,
        })
    }

    /// ZTF filter id: 1 = g, 2 = r (ZTF "R"), 3 = i.
    pub fn from_ztf_fid(fid: i64) -> Option<Band> {
        Some(match fid {
            1 => Band::G,
            2 => Band::R,
            3 => Band::I,
            _ => return None,
        })
    }
}

/// What a light-curve point is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PointKind {
    Detection,
    UpperLimit,
    Forced,
}

impl PointKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PointKind::Detection => "detection",
            PointKind::UpperLimit => "upper_limit",
            PointKind::Forced => "forced",
        }
    }

    pub fn parse(s: &str) -> Option<PointKind> {
        Some(match s {
            "detection" => PointKind::Detection,
            "upper_limit" => PointKind::UpperLimit,
            "forced" => PointKind::Forced,
            _ => return None,
        })
    }
}

/// The time scale of an MJD. ZTF reports UTC, Rubin reports TAI (TAI − UTC = 37 s since 2017).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TimeScale {
    Utc,
    Tai,
}

/// One point of a light curve.
///
/// ZTF times are the exposure start (as ZTF reports them), LSST times the exposure midpoint; the
/// scale is always stated. `alert_id` is the alert the point was taken from: when two alerts
/// carry the same point, the merge keeps the copy from the point's own alert, else from the
/// highest alert id, so the result does not depend on arrival order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LightPoint {
    pub mjd: f64,
    pub time_scale: TimeScale,
    pub band: Band,
    pub kind: PointKind,
    pub flux_njy: Option<f64>,
    pub flux_err_njy: Option<f64>,
    pub mag: Option<f64>,
    pub mag_err: Option<f64>,
    /// 5σ limiting magnitude, for upper limits.
    pub limiting_mag: Option<f64>,
    /// ZTF candid / LSST diaSourceId (detections) or diaForcedSourceId (forced photometry).
    /// A string in JSON (64-bit ids exceed JavaScript's exact integers).
    #[serde(with = "crate::id_serde::option")]
    #[schema(value_type = Option<String>)]
    pub source_id: Option<i64>,
    pub is_negative: Option<bool>,
    /// ZTF rb / LSST reliability.
    pub reliability: Option<f64>,
    /// The alert this copy of the point came from (a string in JSON).
    #[serde(with = "crate::id_serde")]
    #[schema(value_type = String)]
    pub alert_id: i64,
}

/// Identity of a point for deduplication: detections by source id; upper limits and forced
/// points without an id by (time, band).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PointId {
    Source(PointKind, i64),
    TimeBand(PointKind, u64, Band),
}

impl LightPoint {
    pub fn id(&self) -> PointId {
        match self.source_id {
            Some(id) => PointId::Source(self.kind, id),
            None => PointId::TimeBand(self.kind, self.mjd.to_bits(), self.band),
        }
    }

    /// Total order used to sort a light curve: time, then band, kind and id.
    pub fn sort_key(&self) -> (OrdF64, Band, PointKind, PointId) {
        (OrdF64(self.mjd), self.band, self.kind, self.id())
    }
}

/// `f64` with a total order (`total_cmp`), for sort keys.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OrdF64(pub f64);
impl Eq for OrdF64 {}
impl PartialOrd for OrdF64 {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for OrdF64 {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// A known solar-system body near the detection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SolarSystemMatch {
    /// ZTF ssnamenr, or the LSST designation / ssObjectId.
    pub name: String,
    /// Distance to the body in arcsec, when the survey reports one.
    pub distance_arcsec: Option<f64>,
    /// Its magnitude, when reported.
    pub mag: Option<f64>,
}

/// One decoded alert in the common model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub survey: Survey,
    /// Survey-qualified object key, e.g. `ztf:ZTF21abiuvdk` or `lsst:170028058296664081`.
    pub key: String,
    /// The survey's own object id, as a string.
    pub object_id: String,
    /// ZTF candid / LSST alertId (≤ v7) or diaSourceId (≥ v8).
    pub alert_id: i64,
    /// Time of the triggering detection.
    pub mjd: f64,
    pub time_scale: TimeScale,
    pub ra: Option<f64>,
    pub dec: Option<f64>,
    /// Schema version the packet was written with (`schemavsn` for ZTF, registry version for LSST).
    pub schema_version: String,
    pub solar_system: Option<SolarSystemMatch>,
    /// Every point the packet carries: the triggering detection, its history, upper limits and
    /// forced photometry.
    pub points: Vec<LightPoint>,
    /// The triggering source's survey attributes (what filters select on).
    pub attributes: crate::object::Attributes,
}

/// Builds the survey-qualified key of an object.
pub fn object_key(survey: Survey, object_id: &str) -> String {
    format!("{}:{}", survey.as_str(), object_id)
}

/// Checks a key from a request: `ztf:<id>` or `lsst:<id>`, printable, bounded.
pub fn validate_key(key: &str) -> Result<Survey, String> {
    const MAX_KEY: usize = 128;
    if key.len() > MAX_KEY {
        return Err(format!("object key is longer than {MAX_KEY} bytes"));
    }
    let (survey, id) = key
        .split_once(':')
        .ok_or_else(|| format!("object key {key:?} must look like ztf:<objectId> or lsst:<diaObjectId>"))?;
    let survey = match survey {
        "ztf" => Survey::Ztf,
        "lsst" => Survey::Lsst,
        other => return Err(format!("unknown survey {other:?} in object key; expected ztf or lsst")),
    };
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_graphic()) {
        return Err(format!("object id in key {key:?} must be non-empty printable ASCII"));
    }
    Ok(survey)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flux_and_magnitude_round_trip() {
        let f = mag_to_njy(20.0);
        assert!((f - 36_307.805).abs() < 0.001, "{f}");
        assert!((njy_to_mag(f).unwrap() - 20.0).abs() < 1e-12);
        assert!((njy_to_mag(-f).unwrap() - 20.0).abs() < 1e-12);
        assert_eq!(njy_to_mag(0.0), None);
        assert_eq!(njy_to_mag(f64::NAN), None);
    }

    #[test]
    fn keys_are_validated() {
        assert_eq!(validate_key("ztf:ZTF21abiuvdk"), Ok(Survey::Ztf));
        assert_eq!(validate_key("lsst:170028058296664081"), Ok(Survey::Lsst));
        assert!(validate_key("ZTF21abiuvdk").is_err());
        assert!(validate_key("foo:bar").is_err());
        assert!(validate_key("ztf:").is_err());
        assert!(validate_key("ztf:a b").is_err());
    }
}
