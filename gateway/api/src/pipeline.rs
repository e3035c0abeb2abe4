//! Pipelines and watch lists: the bodies of `/v1/pipelines` and `/v1/watchlists`, and the
//! record every pipeline writer emits.
//!
//! A pipeline is a chain of processors given as YAML (or JSON, which is YAML) text; the node
//! keeps the text as written, so `GET` gives back exactly what was `PUT`. Its writers all emit
//! one [`PipelineRecord`] per alert that reaches them — as JSON, as Avro under
//! [`RECORD_SCHEMA_ID`] (the registry API serves it), or as a CSV row — keyed by the alert id,
//! so a consumer that sees an alert twice (a redone batch, a failover) can drop the replay.

pub use crate::object::WatchMatch;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The registry id of [`RECORD_SCHEMA`]: outside Rubin's major×100+minor range, so it can never
/// collide with an alert schema.
pub const RECORD_SCHEMA_ID: u32 = 900_001;

/// The Avro schema of [`PipelineRecord`], as its Kafka writers register it.
pub const RECORD_SCHEMA: &str = r#"{"type":"record","name":"record","namespace":"lightkeeper.pipeline.v1","fields":[
{"name":"pipeline","type":"string"},
{"name":"alert_id","type":"long"},
{"name":"key","type":"string"},
{"name":"survey","type":"string"},
{"name":"object_id","type":"string"},
{"name":"mjd","type":"double"},
{"name":"ra","type":["null","double"],"default":null},
{"name":"dec","type":["null","double"],"default":null},
{"name":"solar_system","type":["null","string"],"default":null},
{"name":"solar_system_distance","type":["null","double"],"default":null},
{"name":"reliability","type":["null","double"],"default":null},
{"name":"n_detections","type":"long"},
{"name":"version","type":"long"},
{"name":"watchlists","type":{"type":"array","items":{"type":"record","name":"watch_match","fields":[
  {"name":"watchlist","type":"string"},{"name":"name","type":"string"},{"name":"distance_arcsec","type":"double"}]}}},
{"name":"source_topic","type":"string"},
{"name":"source_partition","type":"int"},
{"name":"source_offset","type":"long"}]}"#;

/// What a pipeline writer emits for one alert: the alert, and its object as of that alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PipelineRecord {
    /// The pipeline that wrote it.
    pub pipeline: String,
    /// ZTF candid / LSST alert id: the record's Kafka key, in decimal.
    pub alert_id: i64,
    pub key: String,
    pub survey: String,
    pub object_id: String,
    /// Time of the alert's triggering detection, MJD.
    pub mjd: f64,
    pub ra: Option<f64>,
    pub dec: Option<f64>,
    /// The alert's solar-system association, if any.
    pub solar_system: Option<String>,
    pub solar_system_distance: Option<f64>,
    /// The alert's ZTF rb / LSST reliability.
    pub reliability: Option<f64>,
    /// Detections of the object after this alert.
    pub n_detections: i64,
    /// The object's version after this alert.
    pub version: i64,
    /// Watch-list entries the object matches after this alert.
    pub watchlists: Vec<WatchMatch>,
    /// Where the alert was read from.
    pub source_topic: String,
    pub source_partition: i32,
    pub source_offset: i64,
}

/// `GET /v1/pipelines/{name}` and the answer to `PUT`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PipelineInfo {
    pub name: String,
    /// The definition exactly as it was put.
    pub definition: String,
    /// Each processor, in chain order, with what it did on this node since the node started.
    pub processors: Vec<ProcessorInfo>,
}

/// One processor of a pipeline and its counts on the answering node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProcessorInfo {
    /// Its position in the chain, from 0.
    pub index: usize,
    /// Its `class` (`filter`, `solar_system`, `sky_region`, `watchlist`, `kafka`, `file`).
    pub class: String,
    /// Alerts it passed on.
    pub passed: u64,
    /// Alerts it stopped (the rest of the chain did not see them).
    pub skipped: u64,
    /// Alerts it failed on (a writer that could not write); the alert went no further.
    pub errors: u64,
    /// Time spent in it, seconds.
    pub seconds: f64,
}

/// `GET /v1/pipelines`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PipelineList {
    pub pipelines: Vec<String>,
}

/// One watch-list entry: a position and the radius around it that counts as a match.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WatchEntry {
    pub name: String,
    /// Degrees, ICRS.
    pub ra: f64,
    pub dec: f64,
    pub radius_arcsec: f64,
}

/// `GET /v1/watchlists/{name}` and the answer to `PUT`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Watchlist {
    pub name: String,
    pub entries: Vec<WatchEntry>,
}

/// `GET /v1/watchlists`: each list's name and size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WatchlistList {
    pub watchlists: Vec<WatchlistSize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WatchlistSize {
    pub name: String,
    pub entries: usize,
}
