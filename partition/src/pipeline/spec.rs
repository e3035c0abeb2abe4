//! A pipeline definition as written: YAML (JSON is YAML too), checked while it is read.
//!
//! ```yaml
//! description: asteroids near the giants, to a topic and to files
//! processors:
//!   - class: solar_system
//!     params: { include: [saturn, jupiter] }
//!   - class: filter
//!     params: { where: "reliability > 0.5" }
//!   - class: kafka
//!     params: { topic: giants, format: avro }
//!   - class: file
//!     params: { format: csv }
//! ```
//!
//! Why everything is checked inside deserialization: `serde_yaml_ng` attaches the line and
//! column of the node it is reading to any error raised there, so a bad filter, an unknown
//! class, a misspelled parameter or an out-of-range radius is reported at its own line
//! ([`SpecError`]), and nothing that passes [`parse`] can fail to compile for a reason the text
//! could have shown.

use lightkeeper_api::filter::Filter;
use serde::{Deserialize, Deserializer};
use std::fmt;

/// Bound on a definition's text.
pub const MAX_DEFINITION_BYTES: usize = 64 << 10;
/// Bound on a chain's length.
pub const MAX_PROCESSORS: usize = 32;
/// Bound on the names a solar-system filter lists and on a region's cones.
pub const MAX_LIST: usize = 10_000;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineSpec {
    #[serde(default)]
    pub description: Option<String>,
    pub processors: Vec<ProcessorSpec>,
}

/// One processor: `class` picks it, `params` configures it.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "class", content = "params", rename_all = "snake_case", deny_unknown_fields)]
pub enum ProcessorSpec {
    /// Passes alerts whose object (after the alert) matches a filter-language expression.
    Filter(FilterParams),
    /// Passes (include) or stops (exclude) alerts associated with the named solar-system bodies.
    SolarSystem(SolarSystemParams),
    /// Passes alerts inside (or, with `exclude`, outside) cones and a MOC.
    SkyRegion(SkyRegionParams),
    /// Passes alerts whose object matches a watch list.
    Watchlist(WatchlistParams),
    /// Writes each alert that reaches it to a Kafka topic (the node's log engine).
    Kafka(KafkaParams),
    /// Writes each alert that reaches it to files under the node's pipeline directory.
    File(FileParams),
}

impl ProcessorSpec {
    pub fn class(&self) -> &'static str {
        match self {
            ProcessorSpec::Filter(_) => "filter",
            ProcessorSpec::SolarSystem(_) => "solar_system",
            ProcessorSpec::SkyRegion(_) => "sky_region",
            ProcessorSpec::Watchlist(_) => "watchlist",
            ProcessorSpec::Kafka(_) => "kafka",
            ProcessorSpec::File(_) => "file",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterParams {
    #[serde(rename = "where", deserialize_with = "filter")]
    pub filter: Filter,
}

fn filter<'de, D: Deserializer<'de>>(d: D) -> Result<Filter, D::Error> {
    let text = String::deserialize(d)?;
    Filter::parse(&text).map_err(|e| serde::de::Error::custom(format!("bad filter {text:?}: {e}")))
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, try_from = "RawSolarSystem")]
pub struct SolarSystemParams {
    /// Lower-cased, trimmed names.
    pub names: Vec<String>,
    /// True: pass only alerts associated with one of `names`. False: stop those alerts.
    pub include: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSolarSystem {
    include: Option<Vec<String>>,
    exclude: Option<Vec<String>>,
}

impl TryFrom<RawSolarSystem> for SolarSystemParams {
    type Error = String;
    fn try_from(r: RawSolarSystem) -> Result<Self, String> {
        let (names, include) = match (r.include, r.exclude) {
            (Some(n), None) => (n, true),
            (None, Some(n)) => (n, false),
            _ => return Err("solar_system takes exactly one of `include` and `exclude` (a list of names)".into()),
        };
        if names.len() > MAX_LIST {
            return Err(format!("solar_system lists {} names; the bound is {MAX_LIST}", names.len()));
        }
        Ok(SolarSystemParams { names: names.iter().map(|n| normalize_body(n)).collect(), include })
    }
}

/// How solar-system names compare: trimmed, case-insensitive (`Saturn` = `saturn`).
pub fn normalize_body(name: &str) -> String {
    name.trim().to_lowercase()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, try_from = "RawSkyRegion")]
pub struct SkyRegionParams {
    pub cones: Vec<Cone>,
    /// An IVOA MOC in its ASCII serialization (`3/1-5 4/100`).
    pub moc: Option<String>,
    /// Pass alerts outside the region instead of inside.
    pub exclude: bool,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, try_from = "RawCone")]
pub struct Cone {
    pub ra: f64,
    pub dec: f64,
    pub radius_arcsec: f64,
}

/// A cone as written, checked on its own (so an error names the cone's line).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCone {
    ra: f64,
    dec: f64,
    radius_arcsec: f64,
}

impl TryFrom<RawCone> for Cone {
    type Error = String;
    fn try_from(c: RawCone) -> Result<Self, String> {
        if !(c.ra.is_finite() && (0.0..360.0).contains(&c.ra)) {
            return Err(format!("cone ra {} is not in [0, 360) degrees", c.ra));
        }
        if !(c.dec.is_finite() && (-90.0..=90.0).contains(&c.dec)) {
            return Err(format!("cone dec {} is not in [-90, 90] degrees", c.dec));
        }
        if !(c.radius_arcsec.is_finite() && c.radius_arcsec > 0.0 && c.radius_arcsec <= 648_000.0) {
            return Err(format!("cone radius_arcsec {} is not in (0, 648000]", c.radius_arcsec));
        }
        Ok(Cone { ra: c.ra, dec: c.dec, radius_arcsec: c.radius_arcsec })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSkyRegion {
    #[serde(default)]
    cones: Vec<Cone>,
    moc: Option<String>,
    #[serde(default)]
    exclude: bool,
}

impl TryFrom<RawSkyRegion> for SkyRegionParams {
    type Error = String;
    fn try_from(r: RawSkyRegion) -> Result<Self, String> {
        if r.cones.is_empty() && r.moc.is_none() {
            return Err("sky_region needs `cones` (a list of {ra, dec, radius_arcsec}) or a `moc`, or both".into());
        }
        if r.cones.len() > MAX_LIST {
            return Err(format!("sky_region has {} cones; the bound is {MAX_LIST}", r.cones.len()));
        }
        if let Some(m) = &r.moc {
            super::region::parse_moc(m)?;
        }
        Ok(SkyRegionParams { cones: r.cones, moc: r.moc, exclude: r.exclude })
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchlistParams {
    /// The watch list (`PUT /v1/watchlists/{name}`).
    pub name: String,
    /// Pass only alerts whose object matches an entry (default); with `false` every alert passes
    /// and the matches ride along in the written records.
    #[serde(default = "yes")]
    pub require: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KafkaFormat {
    /// Confluent wire format under the record schema's registry id.
    Avro,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaParams {
    #[serde(deserialize_with = "topic_name")]
    pub topic: String,
    #[serde(default = "avro")]
    pub format: KafkaFormat,
    /// Partitions of the topic when it is created (default: as many as the input topic).
    #[serde(default)]
    pub partitions: Option<u32>,
}

fn avro() -> KafkaFormat {
    KafkaFormat::Avro
}

fn topic_name<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let t = String::deserialize(d)?;
    let ok = !t.is_empty()
        && t.len() <= 249
        && t != "."
        && t != ".."
        && t.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(t)
    } else {
        Err(serde::de::Error::custom(format!("topic {t:?} is not a Kafka topic name (1 to 249 of a-z A-Z 0-9 . _ -)")))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileFormat {
    /// One row per alert, with a header line.
    Csv,
    /// An Avro object container file of records, for backup.
    Avro,
}

impl FileFormat {
    pub fn extension(self) -> &'static str {
        match self {
            FileFormat::Csv => "csv",
            FileFormat::Avro => "avro",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileParams {
    pub format: FileFormat,
    /// A directory below the node's `pipelines.output_dir` (default: the pipeline's name).
    #[serde(default, deserialize_with = "relative_dir")]
    pub dir: Option<String>,
    /// A file is closed and a new one begun past this size.
    #[serde(default = "max_file_mib")]
    pub max_file_mib: u64,
}

fn max_file_mib() -> u64 {
    256
}

fn relative_dir<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let dir = String::deserialize(d)?;
    let ok = !dir.is_empty()
        && dir.len() <= 200
        && dir.split('/').all(|part| {
            !part.is_empty()
                && part != "."
                && part != ".."
                && part.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        });
    if ok {
        Ok(Some(dir))
    } else {
        Err(serde::de::Error::custom(format!(
            "dir {dir:?} must be a relative path below the node's pipelines.output_dir \
             (parts of a-z A-Z 0-9 . _ -, separated by /, no . or ..)"
        )))
    }
}

/// Why a definition was refused: where, when the text says, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    /// 1-based line and column of the offending node, when known.
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(f, "line {l}, column {c}: {}", self.message),
            (Some(l), None) => write!(f, "line {l}: {}", self.message),
            _ => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for SpecError {}

/// Reads and checks a definition.
pub fn parse(text: &str) -> Result<PipelineSpec, SpecError> {
    let plain = |message: String| SpecError { line: None, column: None, message };
    if text.len() > MAX_DEFINITION_BYTES {
        return Err(plain(format!("the definition is larger than {MAX_DEFINITION_BYTES} bytes")));
    }
    let spec: PipelineSpec = serde_yaml_ng::from_str(text).map_err(|e| {
        let loc = e.location();
        // The library appends " at line L column C"; the position is given once, in front.
        let mut message = e.to_string();
        if let Some(i) = message.find(" at line ") {
            message.truncate(i);
        }
        SpecError { line: loc.as_ref().map(|l| l.line()), column: loc.as_ref().map(|l| l.column()), message }
    })?;
    if spec.processors.is_empty() {
        return Err(plain("`processors` is empty: a pipeline needs at least one processor".into()));
    }
    if spec.processors.len() > MAX_PROCESSORS {
        return Err(plain(format!("{} processors; the bound is {MAX_PROCESSORS}", spec.processors.len())));
    }
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &str = "\
description: giants
processors:
  - class: solar_system
    params:
      include: [Saturn, jupiter]
  - class: kafka
    params:
      topic: giants
  - class: file
    params:
      format: csv
";

    #[test]
    fn the_seed_example_reads() {
        let s = parse(SEED).unwrap();
        assert_eq!(s.processors.len(), 3);
        match &s.processors[0] {
            ProcessorSpec::SolarSystem(p) => {
                assert_eq!(p.names, vec!["saturn", "jupiter"]);
                assert!(p.include);
            }
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(&s.processors[1], ProcessorSpec::Kafka(k) if k.topic == "giants" && k.format == KafkaFormat::Avro)
        );
        // JSON is YAML.
        let json = r#"{"processors":[{"class":"filter","params":{"where":"mag_g < 18"}}]}"#;
        assert_eq!(parse(json).unwrap().processors[0].class(), "filter");
    }

    fn line_of(text: &str) -> (Option<usize>, String) {
        let e = parse(text).unwrap_err();
        (e.line, e.to_string())
    }

    #[test]
    fn errors_name_the_line() {
        let bad_filter = "processors:\n  - class: filter\n    params:\n      where: \"mag_q < 18\"\n";
        let (line, msg) = line_of(bad_filter);
        assert_eq!(line, Some(4), "{msg}");
        assert!(msg.contains("mag_q"), "{msg}");

        let unknown_class = "processors:\n  - class: solar_system\n    params: {include: [a]}\n  - class: sparkle\n";
        let (line, msg) = line_of(unknown_class);
        assert_eq!(line, Some(4), "{msg}");
        assert!(msg.contains("sparkle"), "{msg}");

        let misspelt = "processors:\n  - class: kafka\n    params:\n      topic: t\n      fromat: json\n";
        let (line, msg) = line_of(misspelt);
        assert_eq!(line, Some(5), "{msg}");
        assert!(msg.contains("fromat"), "{msg}");

        let radius = "processors:\n  - class: sky_region\n    params:\n      cones:\n        - {ra: 10, dec: 95, radius_arcsec: 3}\n";
        let (line, msg) = line_of(radius);
        assert_eq!(line, Some(5), "{msg}");
        assert!(msg.contains("dec 95"), "{msg}");

        let both = "processors:\n  - class: solar_system\n    params: {include: [a], exclude: [b]}\n";
        assert!(line_of(both).1.contains("exactly one"));

        let escape = "processors:\n  - class: file\n    params: {format: csv, dir: ../../etc}\n";
        let (line, msg) = line_of(escape);
        assert_eq!(line, Some(3), "{msg}");

        let bad_moc = "processors:\n  - class: sky_region\n    params: {moc: \"3/1-x\"}\n";
        assert!(line_of(bad_moc).1.contains("MOC"), "{}", line_of(bad_moc).1);

        assert!(parse("processors: []").unwrap_err().message.contains("empty"));
        assert!(parse("description: [").is_err());
    }
}
