//! Light-curve renderings: JSON (the API's `Lightcurve`), CSV, and VOTable — the IVOA table
//! format that TOPCAT, astropy (`Table.read(url, format="votable")`) and Aladin read, written
//! with the CDS `votable` crate, each column with its unit and UCD.
//!
//! On request (`times=jd,iso`) each point also carries its time as a Julian Date (in the
//! point's own scale, as `mjd` is) and as an ISO 8601 UTC timestamp. ZTF times are UTC; LSST
//! times are TAI, converted with `hifitime`'s leap-second table (TAI − UTC = 37 s since 2017),
//! so the UTC string of an LSST point is what a calendar shows, not its MJD read as UTC.

use crate::error::ApiError;
use lightkeeper_storage::model::{LightPoint, TimeScale};
use serde::Serialize;

pub const JSON: &str = "application/json";
pub const CSV: &str = "text/csv; charset=utf-8";
pub const VOTABLE: &str = "application/x-votable+xml";

/// How a light curve is rendered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Format {
    #[default]
    Json,
    Csv,
    VoTable,
}

impl Format {
    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "json" => Some(Format::Json),
            "csv" => Some(Format::Csv),
            "votable" => Some(Format::VoTable),
            _ => None,
        }
    }
}

/// Extra time columns asked for (`times=jd,iso`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Times {
    pub jd: bool,
    pub iso: bool,
}

impl Times {
    /// Adds the columns a `times` value names (comma-separated `mjd`, `jd`, `iso`).
    pub fn add(&mut self, list: &str) -> Result<(), String> {
        for t in list.split(',').filter(|s| !s.is_empty()) {
            match t {
                "mjd" => {}
                "jd" => self.jd = true,
                "iso" => self.iso = true,
                other => return Err(format!("unknown time format {other:?}; expected mjd, jd or iso")),
            }
        }
        Ok(())
    }
}

/// The Julian Date of a point, in the point's own time scale.
pub fn jd(p: &LightPoint) -> f64 {
    p.mjd + 2_400_000.5
}

/// The point's time as ISO 8601 UTC, to the microsecond (`2023-02-24T23:59:23.000000Z`).
pub fn iso_utc(p: &LightPoint) -> String {
    let epoch = match p.time_scale {
        TimeScale::Utc => hifitime::Epoch::from_mjd_utc(p.mjd),
        TimeScale::Tai => hifitime::Epoch::from_mjd_tai(p.mjd),
    };
    format!("{}Z", epoch.to_time_scale(hifitime::TimeScale::UTC).to_isoformat())
}

/// A point with its extra times, for JSON (the point's own fields, then `jd`, `iso_utc`).
#[derive(Serialize)]
struct TimedPoint<'a> {
    #[serde(flatten)]
    point: &'a LightPoint,
    #[serde(skip_serializing_if = "Option::is_none")]
    jd: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    iso_utc: Option<String>,
}

#[derive(Serialize)]
struct TimedLightcurve<'a> {
    key: &'a str,
    version: u64,
    points: Vec<TimedPoint<'a>>,
}

/// Renders `points` of object `key` at `version`: its content type and body.
pub fn render(
    key: &str,
    version: u64,
    points: &[LightPoint],
    format: Format,
    times: Times,
) -> Result<(&'static str, Vec<u8>), ApiError> {
    match format {
        Format::Json => {
            let points = points
                .iter()
                .map(|p| TimedPoint { point: p, jd: times.jd.then(|| jd(p)), iso_utc: times.iso.then(|| iso_utc(p)) })
                .collect();
            let body = serde_json::to_vec(&TimedLightcurve { key, version, points }).map_err(ApiError::internal)?;
            Ok((JSON, body))
        }
        Format::Csv => Ok((CSV, to_csv(points, times)?)),
        Format::VoTable => Ok((VOTABLE, to_votable(key, version, points, times)?.into_bytes())),
    }
}

fn scale(p: &LightPoint) -> &'static str {
    match p.time_scale {
        TimeScale::Utc => "utc",
        TimeScale::Tai => "tai",
    }
}

const CSV_COLUMNS: [&str; 13] = [
    "mjd",
    "time_scale",
    "band",
    "kind",
    "flux_njy",
    "flux_err_njy",
    "mag",
    "mag_err",
    "limiting_mag",
    "source_id",
    "is_negative",
    "reliability",
    "alert_id",
];

fn to_csv(points: &[LightPoint], times: Times) -> Result<Vec<u8>, ApiError> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header: Vec<&str> = CSV_COLUMNS.to_vec();
    if times.jd {
        header.push("jd");
    }
    if times.iso {
        header.push("iso_utc");
    }
    w.write_record(&header).map_err(ApiError::internal)?;
    let f = |v: Option<f64>| v.map(|x| x.to_string()).unwrap_or_default();
    for p in points {
        let mut row = vec![
            p.mjd.to_string(),
            scale(p).into(),
            p.band.as_str().into(),
            p.kind.as_str().into(),
            f(p.flux_njy),
            f(p.flux_err_njy),
            f(p.mag),
            f(p.mag_err),
            f(p.limiting_mag),
            p.source_id.map(|v| v.to_string()).unwrap_or_default(),
            p.is_negative.map(|v| v.to_string()).unwrap_or_default(),
            f(p.reliability),
            p.alert_id.to_string(),
        ];
        if times.jd {
            row.push(jd(p).to_string());
        }
        if times.iso {
            row.push(iso_utc(p));
        }
        w.write_record(&row).map_err(ApiError::internal)?;
    }
    w.into_inner().map_err(ApiError::internal)
}

fn to_votable(key: &str, version: u64, points: &[LightPoint], times: Times) -> Result<String, ApiError> {
    use votable::data::Data;
    use votable::datatype::Datatype;
    use votable::field::{ArraySize, Field};
    use votable::impls::mem::InMemTableDataRows;
    use votable::impls::VOTableValue as V;
    use votable::resource::{Resource, ResourceSubElem};
    use votable::table::Table;
    use votable::votable::{VOTable, Version};

    let double = |name: &str, unit: &str, ucd: &str| {
        let f = Field::new(name, Datatype::Double).set_ucd(ucd);
        if unit.is_empty() {
            f
        } else {
            f.set_unit(unit)
        }
    };
    let text = |name: &str, ucd: &str| {
        Field::new(name, Datatype::CharASCII).set_arraysize(ArraySize::new_variable_1d()).set_ucd(ucd)
    };
    let mut fields = vec![
        double("mjd", "d", "time.epoch"),
        text("time_scale", "time.scale"),
        text("band", "instr.bandpass"),
        text("kind", "meta.code"),
        double("flux_njy", "nJy", "phot.flux.density"),
        double("flux_err_njy", "nJy", "stat.error;phot.flux.density"),
        double("mag", "mag", "phot.mag"),
        double("mag_err", "mag", "stat.error;phot.mag"),
        double("limiting_mag", "mag", "phot.mag;stat.max"),
        Field::new("source_id", Datatype::LongInt).set_ucd("meta.id"),
        Field::new("is_negative", Datatype::Logical).set_ucd("meta.code"),
        double("reliability", "", "stat.probability"),
        Field::new("alert_id", Datatype::LongInt).set_ucd("meta.id"),
    ];
    if times.jd {
        fields.push(double("jd", "d", "time.epoch"));
    }
    if times.iso {
        fields.push(text("iso_utc", "time.epoch"));
    }
    let opt = |v: Option<f64>| v.map_or(V::Null, V::Double);
    let rows = points
        .iter()
        .map(|p| {
            let mut row = vec![
                V::Double(p.mjd),
                V::String(scale(p).into()),
                V::String(p.band.as_str().into()),
                V::String(p.kind.as_str().into()),
                opt(p.flux_njy),
                opt(p.flux_err_njy),
                opt(p.mag),
                opt(p.mag_err),
                opt(p.limiting_mag),
                p.source_id.map_or(V::Null, V::Long),
                p.is_negative.map_or(V::Null, V::Bool),
                opt(p.reliability),
                V::Long(p.alert_id),
            ];
            if times.jd {
                row.push(V::Double(jd(p)));
            }
            if times.iso {
                row.push(V::String(iso_utc(p)));
            }
            row
        })
        .collect();
    // `mjd` and `jd` are in the scale `time_scale` names; `iso_utc` is UTC.
    let description = format!(
        "light curve of {key} at version {version}; mjd (and jd) in the scale time_scale names, iso_utc in UTC"
    );
    let mut table = Table::new().set_name(key).set_description(description.into());
    for f in fields {
        table = table.push_field(f);
    }
    let table = table.set_data(Data::new_empty().set_tabledata(InMemTableDataRows::new(rows)));
    let resource = Resource::default().set_type("results").push_sub_elem(ResourceSubElem::from_table(table));
    VOTable::new(Version::V1_4, resource).wrap().to_ivoa_xml_string().map_err(ApiError::internal)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lightkeeper_storage::model::{Band, PointKind};

    fn point(mjd: f64, time_scale: TimeScale) -> LightPoint {
        LightPoint {
            mjd,
            time_scale,
            band: Band::G,
            kind: PointKind::Detection,
            flux_njy: Some(-1234.5),
            flux_err_njy: Some(10.0),
            mag: None,
            mag_err: None,
            limiting_mag: None,
            source_id: Some(1_234_567_890_123),
            is_negative: Some(true),
            reliability: Some(0.9),
            alert_id: 42,
        }
    }

    #[test]
    fn utc_and_tai_times_as_jd_and_iso_utc() {
        let ztf = point(58000.5, TimeScale::Utc);
        assert_eq!(jd(&ztf), 2_458_001.0);
        assert_eq!(iso_utc(&ztf), "2017-09-04T12:00:00.000000Z");
        // TAI is 37 s ahead of UTC since 2017: midnight TAI is 23:59:23 UTC the day before.
        let lsst = point(60000.0, TimeScale::Tai);
        assert_eq!(iso_utc(&lsst), "2023-02-24T23:59:23.000000Z");
    }

    #[test]
    fn csv_adds_the_time_columns_asked_for() {
        let body = to_csv(&[point(58000.5, TimeScale::Utc)], Times { jd: true, iso: true }).unwrap();
        let text = String::from_utf8(body).unwrap();
        let mut lines = text.lines();
        assert!(lines.next().unwrap().ends_with(",alert_id,jd,iso_utc"));
        assert!(lines.next().unwrap().ends_with(",42,2458001,2017-09-04T12:00:00.000000Z"), "{text}");
    }

    #[test]
    fn votable_has_a_field_per_column_and_a_row_per_point() {
        let points = [point(58000.5, TimeScale::Utc), point(60000.0, TimeScale::Tai)];
        let xml = to_votable("ztf:ZTF21abc", 3, &points, Times { jd: false, iso: true }).unwrap();
        assert!(xml.contains("<VOTABLE"), "{xml}");
        assert_eq!(xml.matches("<FIELD").count(), CSV_COLUMNS.len() + 1, "{xml}");
        assert_eq!(xml.matches("<TR>").count(), 2, "{xml}");
        assert!(xml.contains(r#"name="flux_njy""#) && xml.contains(r#"unit="nJy""#), "{xml}");
        // A negative flux stays negative; a missing magnitude is an empty cell.
        assert!(xml.contains("<TD>-1234.5</TD>"), "{xml}");
        assert!(xml.contains("<TD></TD>"), "{xml}");
        assert!(xml.contains("<TD>2023-02-24T23:59:23.000000Z</TD>"), "{xml}");
    }
}
