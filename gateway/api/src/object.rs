//! Materialized object state: what RocksDB keeps per object and what the changelog carries.
//!
//! The state is the whole object (points and alert history), not a delta, so that a compacted
//! changelog — latest value per key — is a complete backup, and replaying an uncompacted one
//! gives the same result (the last record per key wins).
//!
//! `ObjectSummary` is derived from the state on read; it is never stored, so it cannot drift.

use crate::model::{Band, LightPoint, PointKind, SolarSystemMatch, Survey, TimeScale};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// Where an alert was read from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AlertSource {
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
}

/// One alert that contributed to an object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AlertRef {
    #[serde(with = "crate::id_serde")]
    #[schema(value_type = String)]
    pub alert_id: i64,
    pub mjd: f64,
    pub time_scale: TimeScale,
    pub schema_version: String,
    pub source: AlertSource,
}

/// Everything known about one object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObjectState {
    pub key: String,
    pub survey: Survey,
    pub object_id: String,
    /// Rises by exactly one with each applied change, on every replica.
    pub version: u64,
    /// Position from the most recent alert (by observation time) that has one.
    pub ra: Option<f64>,
    pub dec: Option<f64>,
    /// Solar-system association from the most recent alert.
    pub solar_system: Option<SolarSystemMatch>,
    /// Light curve, sorted by `LightPoint::sort_key`, one entry per `PointId`.
    pub points: Vec<LightPoint>,
    /// Alerts that built the object, sorted by alert id.
    pub alerts: Vec<AlertRef>,
    /// Log timestamp (ms since the epoch) of the last input record that changed the object.
    /// Taken from the input log, not the wall clock, so replays reproduce it.
    pub updated_at_ms: i64,
    /// The survey attributes of the most recent alert (same rule as the position).
    pub attributes: Attributes,
    /// Watch-list entries within whose radius the object's position lies, sorted by
    /// (watch list, distance, name): a function of the position and the watch lists alone, so
    /// a watch list run over stored objects gives what it would have given live.
    pub watchlists: Vec<WatchMatch>,
}

/// What the latest alert says about its source, beyond the light curve: the columns
/// astronomers filter on (Lasair's, ALeRCE's and Fink's common ones). Each survey fills its
/// own fields and leaves the other's null; sentinels (ZTF's −999) are null.
///
/// Taken from the newest alert by (observation time, alert id), the same rule as the position,
/// so every replica and every replay holds the same values whatever order the alerts came in.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Attributes {
    /// ZTF: deep-learning real/bogus score (schema 3.3 and later).
    pub drb: Option<f64>,
    /// ZTF: random-forest real/bogus score.
    pub rb: Option<f64>,
    /// ZTF: star/galaxy score of the closest PS1 source (1 = star).
    pub sgscore1: Option<f64>,
    /// ZTF: distance to the closest PS1 source, arcsec.
    pub distpsnr1: Option<f64>,
    /// ZTF: number of earlier detections at this position, any program.
    pub ndethist: Option<i64>,
    /// ZTF: the difference is positive (science brighter than template).
    pub isdiffpos: Option<bool>,
    /// ZTF: distance to the nearest known solar-system body, arcsec.
    pub ssdistnr: Option<f64>,
    /// ZTF: magnitude of that body.
    pub ssmagnr: Option<f64>,
    /// ZTF: distance to the nearest source in the reference image, pixels.
    pub distnr: Option<f64>,
    /// ZTF: magnitude of that reference source.
    pub magnr: Option<f64>,
    /// ZTF: full width at half maximum, pixels.
    pub fwhm: Option<f64>,
    /// ZTF: elongation (a / b).
    pub elong: Option<f64>,
    /// ZTF: number of bad pixels in a 5×5 box.
    pub nbad: Option<i64>,
    /// ZTF `rb` / LSST `reliability` of the triggering source.
    pub reliability: Option<f64>,
    /// LSST: signal-to-noise of the difference-image source.
    pub snr: Option<f64>,
    /// LSST: signed difference flux of the triggering source, nJy.
    #[serde(rename = "psfFlux")]
    pub psf_flux: Option<f64>,
    /// LSST: extendedness of the source (0 = point-like, 1 = extended), where the schema has it.
    pub extendedness: Option<f64>,
}

/// One watch-list entry an object lies within the radius of.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WatchMatch {
    /// The watch list's name.
    pub watchlist: String,
    /// The entry's name in that list.
    pub name: String,
    /// Distance from the entry's position, arcsec.
    pub distance_arcsec: f64,
}

/// Detections in one band: the latest one's brightness, the first and last times, the count.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BandLatest {
    /// Time of the latest detection in the band (its `last_mjd`).
    pub mjd: f64,
    pub mag: Option<f64>,
    pub mag_err: Option<f64>,
    pub flux_njy: Option<f64>,
    /// Time of the first detection in the band.
    pub first_mjd: f64,
    /// Detections in the band.
    pub n_detections: usize,
}

/// The object summary served by `GET /v1/objects/{key}` and pushed to subscribers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ObjectSummary {
    pub key: String,
    pub survey: Survey,
    pub object_id: String,
    pub ra: Option<f64>,
    pub dec: Option<f64>,
    pub first_mjd: Option<f64>,
    pub last_mjd: Option<f64>,
    pub n_detections: usize,
    pub n_upper_limits: usize,
    pub n_forced: usize,
    pub n_alerts: usize,
    /// Latest detection per band, keyed by band letter.
    pub bands: BTreeMap<Band, BandLatest>,
    #[serde(with = "crate::id_serde::option")]
    #[schema(value_type = Option<String>)]
    pub latest_alert_id: Option<i64>,
    pub solar_system: Option<SolarSystemMatch>,
    /// The latest alert's survey attributes.
    pub attributes: Attributes,
    /// Watch-list entries the object's position lies within (see `GET /v1/watchlists`).
    #[serde(default)]
    pub watchlists: Vec<WatchMatch>,
    pub version: u64,
    /// RFC 3339 time of the input record that last changed the object.
    pub updated_at: String,
}

impl ObjectState {
    /// A new, empty object (version 0: nothing applied yet).
    pub fn empty(key: String, survey: Survey, object_id: String) -> ObjectState {
        ObjectState {
            key,
            survey,
            object_id,
            version: 0,
            ra: None,
            dec: None,
            solar_system: None,
            points: Vec::new(),
            alerts: Vec::new(),
            updated_at_ms: 0,
            attributes: Attributes::default(),
            watchlists: Vec::new(),
        }
    }

    pub fn summary(&self) -> ObjectSummary {
        let mut n = [0usize; 3];
        let (mut first, mut last): (Option<f64>, Option<f64>) = (None, None);
        let mut bands: BTreeMap<Band, BandLatest> = BTreeMap::new();
        for p in &self.points {
            n[p.kind as usize] += 1;
            first = Some(first.map_or(p.mjd, |f| f.min(p.mjd)));
            last = Some(last.map_or(p.mjd, |l| l.max(p.mjd)));
            if p.kind == PointKind::Detection {
                // Points are time-sorted: the first detection per band opens its entry, and each
                // later one becomes the latest.
                let b = bands.entry(p.band).or_insert(BandLatest {
                    mjd: p.mjd,
                    mag: None,
                    mag_err: None,
                    flux_njy: None,
                    first_mjd: p.mjd,
                    n_detections: 0,
                });
                b.n_detections += 1;
                (b.mjd, b.mag, b.mag_err, b.flux_njy) = (p.mjd, p.mag, p.mag_err, p.flux_njy);
            }
        }
        let latest_alert = self.alerts.iter().max_by(|a, b| a.mjd.total_cmp(&b.mjd).then(a.alert_id.cmp(&b.alert_id)));
        ObjectSummary {
            key: self.key.clone(),
            survey: self.survey,
            object_id: self.object_id.clone(),
            ra: self.ra,
            dec: self.dec,
            first_mjd: first,
            last_mjd: last,
            n_detections: n[PointKind::Detection as usize],
            n_upper_limits: n[PointKind::UpperLimit as usize],
            n_forced: n[PointKind::Forced as usize],
            n_alerts: self.alerts.len(),
            bands,
            latest_alert_id: latest_alert.map(|a| a.alert_id),
            solar_system: self.solar_system.clone(),
            attributes: self.attributes.clone(),
            watchlists: self.watchlists.clone(),
            version: self.version,
            updated_at: format_rfc3339_ms(self.updated_at_ms),
        }
    }
}

/// Formats milliseconds since the Unix epoch as RFC 3339 UTC (no external time crate needed for
/// this one conversion).
pub fn format_rfc3339_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z", sod / 3600, (sod % 3600) / 60, sod % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339() {
        assert_eq!(format_rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_rfc3339_ms(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(format_rfc3339_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }
}
