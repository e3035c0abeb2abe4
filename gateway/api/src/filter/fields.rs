//! The fields a filter can name: one per summary value, with its type and meaning.
//!
//! [`Field::ALL`] is the single list; `GET /v1/fields`, the parser's name lookup and the
//! "did you mean" suggestion are all read from it.

use crate::model::Band;
use serde::{Deserialize, Serialize};
use std::fmt;
use utoipa::ToSchema;

/// A field of [`ObjectSummary`](crate::object::ObjectSummary) that filters and orderings name.
///
/// Per-band fields carry their band; their names end in `_<band>` (`mag_g`, `n_detections_r`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Field {
    Key,
    Survey,
    ObjectId,
    Ra,
    Dec,
    FirstMjd,
    LastMjd,
    NDetections,
    NUpperLimits,
    NForced,
    NAlerts,
    LatestAlertId,
    Version,
    /// `mag_<band>`: the latest detection's AB magnitude in the band.
    Mag(Band),
    /// `mag_err_<band>`: its magnitude error.
    MagErr(Band),
    /// `flux_<band>`: its signed flux, nJy.
    Flux(Band),
    /// `first_mjd_<band>`: time of the first detection in the band.
    BandFirstMjd(Band),
    /// `last_mjd_<band>`: time of the latest detection in the band.
    BandLastMjd(Band),
    /// `n_detections_<band>`: detections in the band (0 when none).
    BandDetections(Band),
    SolarSystem,
    SolarSystemDistance,
    /// The watch list of the object's first match (watch lists in name order); null when none.
    Watchlist,
    /// The distance to that match's entry, arcsec.
    WatchlistDistance,
    Drb,
    Rb,
    Sgscore1,
    Distpsnr1,
    Ndethist,
    Isdiffpos,
    Ssdistnr,
    Ssmagnr,
    Distnr,
    Magnr,
    Fwhm,
    Elong,
    Nbad,
    Reliability,
    Snr,
    PsfFlux,
    Extendedness,
}

/// The type of a field's values, as `GET /v1/fields` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    /// A finite float (f64).
    Number,
    /// A 64-bit signed integer; compares numerically with `number`.
    Integer,
    String,
    Bool,
}

impl FieldType {
    pub fn as_str(self) -> &'static str {
        match self {
            FieldType::Number => "number",
            FieldType::Integer => "integer",
            FieldType::String => "string",
            FieldType::Bool => "bool",
        }
    }

    /// Number and integer values compare with each other.
    pub fn is_numeric(self) -> bool {
        matches!(self, FieldType::Number | FieldType::Integer)
    }

    /// "a number", "an integer", … for error messages.
    pub(crate) fn with_article(self) -> &'static str {
        match self {
            FieldType::Number => "a number",
            FieldType::Integer => "an integer",
            FieldType::String => "a string",
            FieldType::Bool => "a bool",
        }
    }
}

impl fmt::Display for FieldType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One entry of `GET /v1/fields`.
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone, PartialEq)]
pub struct FieldInfo {
    /// The name a filter uses, e.g. `mag_g`.
    pub name: String,
    #[serde(rename = "type")]
    pub ty: FieldType,
    /// What the value means, for a person.
    pub description: String,
}

/// The body of `GET /v1/fields`.
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone, PartialEq)]
pub struct Fields {
    pub fields: Vec<FieldInfo>,
}

/// Every field a filter can name, in the order `GET /v1/fields` lists them.
pub fn fields() -> Vec<FieldInfo> {
    Field::ALL
        .iter()
        .map(|&f| FieldInfo { name: f.name().to_string(), ty: f.ty(), description: f.description() })
        .collect()
}

use Band::{G, I, R, U, Y, Z};

fn band_index(b: Band) -> usize {
    match b {
        U => 0,
        G => 1,
        R => 2,
        I => 3,
        Z => 4,
        Y => 5,
    }
}

const MAG: [&str; 6] = ["mag_u", "mag_g", "mag_r", "mag_i", "mag_z", "mag_y"];
const MAG_ERR: [&str; 6] = ["mag_err_u", "mag_err_g", "mag_err_r", "mag_err_i", "mag_err_z", "mag_err_y"];
const FLUX: [&str; 6] = ["flux_u", "flux_g", "flux_r", "flux_i", "flux_z", "flux_y"];
const FIRST: [&str; 6] = ["first_mjd_u", "first_mjd_g", "first_mjd_r", "first_mjd_i", "first_mjd_z", "first_mjd_y"];
const LAST: [&str; 6] = ["last_mjd_u", "last_mjd_g", "last_mjd_r", "last_mjd_i", "last_mjd_z", "last_mjd_y"];
const NDET: [&str; 6] =
    ["n_detections_u", "n_detections_g", "n_detections_r", "n_detections_i", "n_detections_z", "n_detections_y"];

impl Field {
    /// Every field once, in listing order.
    #[rustfmt::skip]
    pub const ALL: [Field; 70] = {
        use Field::*;
        [
            Key, Survey, ObjectId, Ra, Dec, FirstMjd, LastMjd,
            NDetections, NUpperLimits, NForced, NAlerts, LatestAlertId, Version,
            Mag(U), MagErr(U), Flux(U), BandFirstMjd(U), BandLastMjd(U), BandDetections(U),
            Mag(G), MagErr(G), Flux(G), BandFirstMjd(G), BandLastMjd(G), BandDetections(G),
            Mag(R), MagErr(R), Flux(R), BandFirstMjd(R), BandLastMjd(R), BandDetections(R),
            Mag(I), MagErr(I), Flux(I), BandFirstMjd(I), BandLastMjd(I), BandDetections(I),
            Mag(Z), MagErr(Z), Flux(Z), BandFirstMjd(Z), BandLastMjd(Z), BandDetections(Z),
            Mag(Y), MagErr(Y), Flux(Y), BandFirstMjd(Y), BandLastMjd(Y), BandDetections(Y),
            SolarSystem, SolarSystemDistance, Watchlist, WatchlistDistance,
            Drb, Rb, Sgscore1, Distpsnr1, Ndethist, Isdiffpos, Ssdistnr, Ssmagnr, Distnr, Magnr,
            Fwhm, Elong, Nbad, Reliability, Snr, PsfFlux, Extendedness,
        ]
    };

    /// The name filters use (case-sensitive).
    pub fn name(self) -> &'static str {
        use Field::*;
        match self {
            Key => "key",
            Survey => "survey",
            ObjectId => "object_id",
            Ra => "ra",
            Dec => "dec",
            FirstMjd => "first_mjd",
            LastMjd => "last_mjd",
            NDetections => "n_detections",
            NUpperLimits => "n_upper_limits",
            NForced => "n_forced",
            NAlerts => "n_alerts",
            LatestAlertId => "latest_alert_id",
            Version => "version",
            Mag(b) => MAG[band_index(b)],
            MagErr(b) => MAG_ERR[band_index(b)],
            Flux(b) => FLUX[band_index(b)],
            BandFirstMjd(b) => FIRST[band_index(b)],
            BandLastMjd(b) => LAST[band_index(b)],
            BandDetections(b) => NDET[band_index(b)],
            SolarSystem => "solar_system",
            SolarSystemDistance => "solar_system_distance",
            Watchlist => "watchlist",
            WatchlistDistance => "watchlist_distance",
            Drb => "drb",
            Rb => "rb",
            Sgscore1 => "sgscore1",
            Distpsnr1 => "distpsnr1",
            Ndethist => "ndethist",
            Isdiffpos => "isdiffpos",
            Ssdistnr => "ssdistnr",
            Ssmagnr => "ssmagnr",
            Distnr => "distnr",
            Magnr => "magnr",
            Fwhm => "fwhm",
            Elong => "elong",
            Nbad => "nbad",
            Reliability => "reliability",
            Snr => "snr",
            PsfFlux => "psfFlux",
            Extendedness => "extendedness",
        }
    }

    /// The field with this exact (case-sensitive) name.
    pub fn parse(name: &str) -> Option<Field> {
        Field::ALL.iter().copied().find(|f| f.name() == name)
    }

    pub fn ty(self) -> FieldType {
        use Field::*;
        match self {
            Key | Survey | ObjectId | SolarSystem | Watchlist => FieldType::String,
            NDetections | NUpperLimits | NForced | NAlerts | LatestAlertId | Version | BandDetections(_) | Ndethist
            | Nbad => FieldType::Integer,
            Isdiffpos => FieldType::Bool,
            Ra | Dec | FirstMjd | LastMjd | Mag(_) | MagErr(_) | Flux(_) | BandFirstMjd(_) | BandLastMjd(_)
            | SolarSystemDistance | WatchlistDistance | Drb | Rb | Sgscore1 | Distpsnr1 | Ssdistnr | Ssmagnr
            | Distnr | Magnr | Fwhm | Elong | Reliability | Snr | PsfFlux | Extendedness => FieldType::Number,
        }
    }

    /// One line saying what the value is, for `GET /v1/fields`.
    pub fn description(self) -> String {
        use Field::*;
        let fixed = match self {
            Key => "the object's key, survey:object id (e.g. 'ztf:ZTF21abiuvdk')",
            Survey => "the survey: 'ztf' or 'lsst'",
            ObjectId => "the survey's object identifier",
            Ra => "right ascension from the most recent alert with a position, degrees",
            Dec => "declination from the most recent alert with a position, degrees",
            FirstMjd => "time of the first point (any kind, any band), MJD; null when there is none",
            LastMjd => "time of the latest point (any kind, any band), MJD; null when there is none",
            NDetections => "detections in the light curve, all bands",
            NUpperLimits => "upper limits in the light curve, all bands",
            NForced => "forced-photometry points in the light curve, all bands",
            NAlerts => "alerts that built the object",
            LatestAlertId => "the id of the most recent alert (by observation time); null when there is none",
            Version => "the object's version: rises by one with each applied change",
            SolarSystem => "the name of the associated solar-system body from the latest alert; null when none",
            SolarSystemDistance => "distance to that body, arcsec; null when none or not reported",
            Watchlist => "the watch list of the object's first match (lists in name order, nearest entry first); null when it matches none",
            WatchlistDistance => "distance to that match's entry, arcsec; null when none",
            Drb => "ZTF: deep-learning real/bogus score (schema 3.3 and later)",
            Rb => "ZTF: random-forest real/bogus score",
            Sgscore1 => "ZTF: star/galaxy score of the closest PS1 source (1 = star)",
            Distpsnr1 => "ZTF: distance to the closest PS1 source, arcsec",
            Ndethist => "ZTF: number of earlier detections at this position, any program",
            Isdiffpos => "ZTF: the difference is positive (science brighter than template)",
            Ssdistnr => "ZTF: distance to the nearest known solar-system body, arcsec",
            Ssmagnr => "ZTF: magnitude of the nearest known solar-system body",
            Distnr => "ZTF: distance to the nearest source in the reference image, pixels",
            Magnr => "ZTF: magnitude of the nearest source in the reference image",
            Fwhm => "ZTF: full width at half maximum, pixels",
            Elong => "ZTF: elongation (a / b)",
            Nbad => "ZTF: number of bad pixels in a 5×5 box",
            Reliability => "ZTF rb / LSST reliability of the triggering source",
            Snr => "LSST: signal-to-noise of the difference-image source",
            PsfFlux => "LSST: signed difference flux of the triggering source, nJy",
            Extendedness => "LSST: extendedness of the source (0 = point-like, 1 = extended)",
            Mag(b) => return format!("AB magnitude of the latest {} detection; null when none", b.as_str()),
            MagErr(b) => return format!("magnitude error of the latest {} detection; null when none", b.as_str()),
            Flux(b) => return format!("signed flux of the latest {} detection, nJy; null when none", b.as_str()),
            BandFirstMjd(b) => return format!("time of the first {} detection, MJD; null when none", b.as_str()),
            BandLastMjd(b) => return format!("time of the latest {} detection, MJD; null when none", b.as_str()),
            BandDetections(b) => return format!("detections in band {} (0 when none)", b.as_str()),
        };
        if self.is_attribute() {
            format!("{fixed}; from the latest alert, null when it does not say")
        } else {
            fixed.to_string()
        }
    }

    /// A survey attribute of the latest alert (`Attributes`).
    pub fn is_attribute(self) -> bool {
        use Field::*;
        matches!(
            self,
            Drb | Rb
                | Sgscore1
                | Distpsnr1
                | Ndethist
                | Isdiffpos
                | Ssdistnr
                | Ssmagnr
                | Distnr
                | Magnr
                | Fwhm
                | Elong
                | Nbad
                | Reliability
                | Snr
                | PsfFlux
                | Extendedness
        )
    }

    /// The known field closest to `name` (case-insensitive equality first, then edit distance at
    /// most 2; ties go to the alphabetically first), for "did you mean" hints.
    pub(crate) fn suggest(name: &str) -> Option<Field> {
        let score = |f: &Field| {
            if f.name().eq_ignore_ascii_case(name) {
                Some(0)
            } else {
                edit_distance(name.as_bytes(), f.name().as_bytes(), 2).map(|d| d + 1)
            }
        };
        Field::ALL.iter().filter_map(|f| score(f).map(|s| (s, f.name(), *f))).min().map(|(_, _, f)| f)
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Levenshtein distance between `a` and `b` when it is at most `max`.
fn edit_distance(a: &[u8], b: &[u8], max: usize) -> Option<usize> {
    if a.len().abs_diff(b.len()) > max {
        return None;
    }
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, &ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let substitute = prev[j] + usize::from(ca != cb);
            cur[j + 1] = substitute.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    Some(prev[b.len()]).filter(|&d| d <= max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distances() {
        assert_eq!(edit_distance(b"mag_q", b"mag_g", 2), Some(1));
        assert_eq!(edit_distance(b"mgag", b"mag", 2), Some(1));
        assert_eq!(edit_distance(b"abc", b"xyz", 2), None);
        assert_eq!(edit_distance(b"", b"ra", 2), Some(2));
    }
}
