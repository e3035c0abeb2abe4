//! Writers: the processors that put alerts somewhere. Each buffers what a batch gives it and
//! writes it out in [`Writer::flush`], which the master calls once per batch *before* the
//! batch's changelog append: a batch the changelog holds has had its outputs written, so a
//! failover or a crash repeats outputs (consumers drop replays by the alert-id key) and never
//! loses them.
//!
//! Every writer emits [`PipelineRecord`]s: the Kafka writer as Avro (Confluent wire format
//! under [`RECORD_SCHEMA_ID`], which every node's registry API serves) or JSON, keyed by the
//! alert id and partitioned by Kafka's murmur2 of that key; the file writer as CSV rows or
//! Avro object container files, one file per partition master run, rolled over at a size.

use super::spec::{FileFormat, FileParams, KafkaFormat, KafkaParams};
use super::{Item, ProcessorError};
use apache_avro::types::Value;
use apache_avro::Schema;
use lightkeeper_api::partitioner::partition_for;
use lightkeeper_api::pipeline::{PipelineRecord, RECORD_SCHEMA, RECORD_SCHEMA_ID};
use lightkeeper_storage::log::{Append, LogError, Topic};
use std::collections::BTreeMap;
use std::fs::File;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock};

/// Opens (creating when needed) the topics Kafka writers write to: the node's log engine.
pub trait TopicOpener: Send + Sync {
    /// The topic `name`, created with `partitions` partitions if it does not exist.
    fn open(&self, name: &str, partitions: u32) -> Result<Arc<dyn Topic>, LogError>;
}

/// The parsed record schema.
pub fn record_schema() -> &'static Schema {
    static SCHEMA: LazyLock<Schema> =
        LazyLock::new(|| Schema::parse_str(RECORD_SCHEMA).expect("the record schema is valid Avro"));
    &SCHEMA
}

/// The record a writer emits for an item.
pub fn record(pipeline: &str, item: &Item<'_>) -> PipelineRecord {
    let a = item.alert;
    let s = item.summary;
    PipelineRecord {
        pipeline: pipeline.to_owned(),
        alert_id: a.alert_id,
        key: a.key.clone(),
        survey: a.survey.as_str().to_owned(),
        object_id: a.object_id.clone(),
        mjd: a.mjd,
        ra: a.ra,
        dec: a.dec,
        solar_system: a.solar_system.as_ref().map(|m| m.name.clone()),
        solar_system_distance: a.solar_system.as_ref().and_then(|m| m.distance_arcsec),
        reliability: a.attributes.reliability,
        n_detections: i64::try_from(s.n_detections).unwrap_or(i64::MAX),
        version: i64::try_from(s.version).unwrap_or(i64::MAX),
        watchlists: s.watchlists.clone(),
        source_topic: item.source.topic.clone(),
        source_partition: i32::try_from(item.source.partition).unwrap_or(i32::MAX),
        source_offset: i64::try_from(item.source.offset).unwrap_or(i64::MAX),
    }
}

/// The record as an Avro value of [`record_schema`].
pub fn avro_value(r: &PipelineRecord) -> Value {
    let opt_f = |x: Option<f64>| match x {
        Some(v) => Value::Union(1, Box::new(Value::Double(v))),
        None => Value::Union(0, Box::new(Value::Null)),
    };
    let opt_s = |x: &Option<String>| match x {
        Some(v) => Value::Union(1, Box::new(Value::String(v.clone()))),
        None => Value::Union(0, Box::new(Value::Null)),
    };
    let watch = r
        .watchlists
        .iter()
        .map(|m| {
            Value::Record(vec![
                ("watchlist".into(), Value::String(m.watchlist.clone())),
                ("name".into(), Value::String(m.name.clone())),
                ("distance_arcsec".into(), Value::Double(m.distance_arcsec)),
            ])
        })
        .collect();
    Value::Record(vec![
        ("pipeline".into(), Value::String(r.pipeline.clone())),
        ("alert_id".into(), Value::Long(r.alert_id)),
        ("key".into(), Value::String(r.key.clone())),
        ("survey".into(), Value::String(r.survey.clone())),
        ("object_id".into(), Value::String(r.object_id.clone())),
        ("mjd".into(), Value::Double(r.mjd)),
        ("ra".into(), opt_f(r.ra)),
        ("dec".into(), opt_f(r.dec)),
        ("solar_system".into(), opt_s(&r.solar_system)),
        ("solar_system_distance".into(), opt_f(r.solar_system_distance)),
        ("reliability".into(), opt_f(r.reliability)),
        ("n_detections".into(), Value::Long(r.n_detections)),
        ("version".into(), Value::Long(r.version)),
        ("watchlists".into(), Value::Array(watch)),
        ("source_topic".into(), Value::String(r.source_topic.clone())),
        ("source_partition".into(), Value::Int(r.source_partition)),
        ("source_offset".into(), Value::Long(r.source_offset)),
    ])
}

/// The record in Confluent wire format: magic 0, the schema id (big-endian), the Avro datum.
pub fn wire_bytes(r: &PipelineRecord) -> Result<Vec<u8>, ProcessorError> {
    let datum = apache_avro::to_avro_datum(record_schema(), avro_value(r))
        .map_err(|e| ProcessorError(format!("encoding alert {} as Avro: {e}", r.alert_id)))?;
    let mut out = Vec::with_capacity(5 + datum.len());
    out.push(0);
    out.extend_from_slice(&RECORD_SCHEMA_ID.to_be_bytes());
    out.extend(datum);
    Ok(out)
}

/// A processor that writes: always passes the alert on.
pub trait Writer: Send {
    fn write(&mut self, pipeline: &str, item: &Item<'_>) -> Result<(), ProcessorError>;
    /// Writes out what was buffered; on failure the buffer is dropped and the count of records
    /// lost is returned in the error's tally.
    fn flush(&mut self) -> Result<(), (usize, ProcessorError)>;
}

/// A record's key (the alert id, decimal) and payload.
type KeyedRecord = (Vec<u8>, Vec<u8>);

/// Writes to a topic, keyed by alert id.
pub struct KafkaWriter {
    topic: Arc<dyn Topic>,
    format: KafkaFormat,
    /// Output partition → the batch's records for it.
    pending: BTreeMap<u32, Vec<KeyedRecord>>,
}

impl KafkaWriter {
    pub fn open(p: &KafkaParams, opener: &dyn TopicOpener, default_partitions: u32) -> Result<KafkaWriter, LogError> {
        let topic = opener.open(&p.topic, p.partitions.unwrap_or(default_partitions).max(1))?;
        Ok(KafkaWriter { topic, format: p.format, pending: BTreeMap::new() })
    }
}

impl Writer for KafkaWriter {
    fn write(&mut self, pipeline: &str, item: &Item<'_>) -> Result<(), ProcessorError> {
        let r = record(pipeline, item);
        let payload = match self.format {
            KafkaFormat::Avro => wire_bytes(&r)?,
            KafkaFormat::Json => serde_json::to_vec(&r).expect("a record serializes"),
        };
        let key = r.alert_id.to_string().into_bytes();
        let p = partition_for(&key, self.topic.partitions());
        self.pending.entry(p).or_default().push((key, payload));
        Ok(())
    }

    fn flush(&mut self) -> Result<(), (usize, ProcessorError)> {
        let pending = std::mem::take(&mut self.pending);
        let batches: Vec<(u32, Vec<Append<'_>>)> = pending
            .iter()
            .map(|(p, recs)| {
                (*p, recs.iter().map(|(k, v)| Append { key: Some(k), payload: v, headers: &[] }).collect())
            })
            .collect();
        // One wait for every output partition's acknowledgements.
        let results = self.topic.append_each(&batches);
        let mut lost = 0;
        let mut first_error = None;
        for ((_, recs), result) in batches.iter().zip(results) {
            if let Err(e) = result {
                lost += recs.len();
                first_error.get_or_insert_with(|| ProcessorError(format!("appending to {}: {e}", self.topic.name())));
            }
        }
        match first_error {
            Some(e) => Err((lost, e)),
            None => Ok(()),
        }
    }
}

/// Writes files under one directory: `p<partition>-<start ms>-<n>.<ext>`, a new one per master
/// run and past `max_bytes`.
pub struct FileWriter {
    dir: PathBuf,
    format: FileFormat,
    partition: u32,
    started_ms: u128,
    max_bytes: u64,
    seq: u32,
    open: Option<OpenFile>,
    pending: Vec<PipelineRecord>,
}

enum OpenFile {
    Csv { w: Box<csv::Writer<File>>, path: PathBuf },
    Avro { w: Box<apache_avro::Writer<'static, File>>, path: PathBuf },
}

impl OpenFile {
    fn size(&self) -> u64 {
        let path = match self {
            OpenFile::Csv { path, .. } | OpenFile::Avro { path, .. } => path,
        };
        std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
    }
}

/// One CSV row: the record with its watch matches joined (`list:name:distance;…`).
#[derive(serde::Serialize)]
struct CsvRow<'a> {
    pipeline: &'a str,
    alert_id: i64,
    key: &'a str,
    survey: &'a str,
    object_id: &'a str,
    mjd: f64,
    ra: Option<f64>,
    dec: Option<f64>,
    solar_system: Option<&'a str>,
    solar_system_distance: Option<f64>,
    reliability: Option<f64>,
    n_detections: i64,
    version: i64,
    watchlists: String,
    source_topic: &'a str,
    source_partition: i32,
    source_offset: i64,
}

impl<'a> From<&'a PipelineRecord> for CsvRow<'a> {
    fn from(r: &'a PipelineRecord) -> Self {
        let watchlists = r
            .watchlists
            .iter()
            .map(|m| format!("{}:{}:{}", m.watchlist, m.name, m.distance_arcsec))
            .collect::<Vec<_>>()
            .join(";");
        CsvRow {
            pipeline: &r.pipeline,
            alert_id: r.alert_id,
            key: &r.key,
            survey: &r.survey,
            object_id: &r.object_id,
            mjd: r.mjd,
            ra: r.ra,
            dec: r.dec,
            solar_system: r.solar_system.as_deref(),
            solar_system_distance: r.solar_system_distance,
            reliability: r.reliability,
            n_detections: r.n_detections,
            version: r.version,
            watchlists,
            source_topic: &r.source_topic,
            source_partition: r.source_partition,
            source_offset: r.source_offset,
        }
    }
}

impl FileWriter {
    pub fn new(p: &FileParams, root: &std::path::Path, pipeline: &str, partition: u32) -> FileWriter {
        let dir = root.join(p.dir.as_deref().unwrap_or(pipeline));
        let started_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or_default();
        FileWriter {
            dir,
            format: p.format,
            partition,
            started_ms,
            max_bytes: p.max_file_mib.max(1) << 20,
            seq: 0,
            open: None,
            pending: Vec::new(),
        }
    }

    fn open_next(&mut self) -> std::io::Result<OpenFile> {
        std::fs::create_dir_all(&self.dir)?;
        let path = self.dir.join(format!(
            "p{:03}-{}-{:04}.{}",
            self.partition,
            self.started_ms,
            self.seq,
            self.format.extension()
        ));
        self.seq += 1;
        let file = std::fs::OpenOptions::new().create_new(true).write(true).open(&path)?;
        Ok(match self.format {
            FileFormat::Csv => OpenFile::Csv { w: Box::new(csv::Writer::from_writer(file)), path },
            FileFormat::Avro => OpenFile::Avro { w: Box::new(apache_avro::Writer::new(record_schema(), file)), path },
        })
    }

    fn write_out(&mut self, records: &[PipelineRecord]) -> Result<(), ProcessorError> {
        let dir = self.dir.display().to_string();
        let io = |e: &dyn std::fmt::Display| ProcessorError(format!("writing to {dir}: {e}"));
        if self.open.as_ref().is_some_and(|f| f.size() >= self.max_bytes) {
            self.open = None;
        }
        if self.open.is_none() {
            self.open = Some(self.open_next().map_err(|e| io(&e))?);
        }
        match self.open.as_mut().expect("opened above") {
            OpenFile::Csv { w, .. } => {
                for r in records {
                    w.serialize(CsvRow::from(r)).map_err(|e| io(&e))?;
                }
                w.flush().map_err(|e| io(&e))?;
            }
            OpenFile::Avro { w, .. } => {
                for r in records {
                    w.append(avro_value(r)).map_err(|e| io(&e))?;
                }
                w.flush().map_err(|e| io(&e))?;
            }
        }
        Ok(())
    }
}

impl Writer for FileWriter {
    fn write(&mut self, pipeline: &str, item: &Item<'_>) -> Result<(), ProcessorError> {
        self.pending.push(record(pipeline, item));
        Ok(())
    }

    fn flush(&mut self) -> Result<(), (usize, ProcessorError)> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending);
        self.write_out(&pending).map_err(|e| {
            // A file that failed mid-write is abandoned; the next batch starts a new one.
            self.open = None;
            (pending.len(), e)
        })
    }
}

impl Drop for FileWriter {
    fn drop(&mut self) {
        if let Some(OpenFile::Avro { w, .. }) = &mut self.open {
            let _ = w.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lightkeeper_api::pipeline::WatchMatch;

    fn sample() -> PipelineRecord {
        PipelineRecord {
            pipeline: "p".into(),
            alert_id: 1234,
            key: "ztf:ZTF1".into(),
            survey: "ztf".into(),
            object_id: "ZTF1".into(),
            mjd: 58000.5,
            ra: Some(1.0),
            dec: None,
            solar_system: Some("32450".into()),
            solar_system_distance: Some(0.5),
            reliability: None,
            n_detections: 3,
            version: 4,
            watchlists: vec![WatchMatch { watchlist: "w".into(), name: "n".into(), distance_arcsec: 1.5 }],
            source_topic: "alerts".into(),
            source_partition: 2,
            source_offset: 77,
        }
    }

    #[test]
    fn files_hold_the_records_and_roll_over() {
        let dir = tempfile::tempdir().unwrap();
        for format in [FileFormat::Avro, FileFormat::Csv] {
            let p = FileParams { format, dir: Some(format!("out-{}", format.extension())), max_file_mib: 1 };
            let mut w = FileWriter::new(&p, dir.path(), "p", 7);
            let records: Vec<PipelineRecord> =
                (0..3).map(|i| PipelineRecord { alert_id: 1000 + i, ..sample() }).collect();
            w.pending.extend(records.iter().cloned());
            w.flush().unwrap();
            w.pending.push(PipelineRecord { alert_id: 2000, ..sample() });
            w.flush().unwrap();
            drop(w);
            let files: Vec<_> = std::fs::read_dir(dir.path().join(p.dir.as_deref().unwrap()))
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            assert_eq!(files.len(), 1, "one file per run below the size bound");
            let name = files[0].file_name().unwrap().to_str().unwrap().to_owned();
            assert!(name.starts_with("p007-") && name.ends_with(format.extension()), "{name}");
            let ids: Vec<i64> = match format {
                FileFormat::Avro => apache_avro::Reader::new(std::fs::File::open(&files[0]).unwrap())
                    .unwrap()
                    .map(|v| apache_avro::from_value::<PipelineRecord>(&v.unwrap()).unwrap().alert_id)
                    .collect(),
                FileFormat::Csv => csv::Reader::from_path(&files[0])
                    .unwrap()
                    .records()
                    .map(|r| r.unwrap()[1].parse().unwrap())
                    .collect(),
            };
            assert_eq!(ids, [1000, 1001, 1002, 2000], "{format:?}");
        }
    }

    #[test]
    fn avro_records_round_trip_through_the_schema() {
        let r = sample();
        let bytes = wire_bytes(&r).unwrap();
        assert_eq!(bytes[0], 0);
        assert_eq!(u32::from_be_bytes(bytes[1..5].try_into().unwrap()), RECORD_SCHEMA_ID);
        let v = apache_avro::from_avro_datum(record_schema(), &mut &bytes[5..], None).unwrap();
        let back: PipelineRecord = apache_avro::from_value(&v).unwrap();
        assert_eq!(back, r);
    }
}
