//! Pipelines: chains of processors over the stream, configured by YAML, run by each
//! partition's master right after the merge.
//!
//! Why in the master, after the merge: a chain then sees each alert once per partition with
//! its object as the alert left it (so the filter language of queries and subscriptions applies
//! unchanged), it scales with partitions, and it fails over with them — the new master runs
//! the chains from the input offset the changelog recorded. Standbys run nothing.
//!
//! Why before the changelog append: writers flush once per batch before the batch's changelog
//! records are appended (see [`writers`]), so every alert the changelog holds has reached the
//! outputs. A crash or failover can only repeat outputs, which carry the alert id as their key
//! for consumers to drop replays (at least once). A writer that cannot write (a full disk, a
//! topic the broker refuses) counts `errors` and logs; it never holds up ingest.
//!
//! Each processor returns [`Verdict::Pass`] (go on) or [`Verdict::Skip`] (stop here):
//!
//! | class | passes an alert when |
//! |---|---|
//! | `filter` | its object, after the alert, matches the `where` expression (the filter language) |
//! | `solar_system` | the alert is associated with a listed body (`include`), or is not (`exclude`) |
//! | `sky_region` | the alert's position is inside the cones or MOC (or outside, with `exclude`) |
//! | `watchlist` | its object matches an entry of the named watch list (or always, `require: false`) |
//! | `kafka`, `file` | always, after writing the alert |
//!
//! Layout: [`spec`] (the definition and its checks), [`region`] (cones, MOCs), [`writers`]
//! (Kafka and file outputs), this file (compiling, the per-partition [`Runs`], metrics).

pub mod region;
pub mod spec;
pub mod writers;

use crate::metrics::Labels;
use crate::watchlist::WatchIndex;
use lightkeeper_api::filter::Filter;
use lightkeeper_api::model::Alert;
use lightkeeper_api::object::{AlertSource, ObjectSummary};
use lightkeeper_api::pipeline::{PipelineInfo, ProcessorInfo};
use lightkeeper_storage::log::LogError;
use parking_lot::RwLock;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use region::Region;
use spec::{FileParams, KafkaParams, ProcessorSpec, SpecError};
use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Instant;
use tracing::warn;
use writers::{FileWriter, KafkaWriter, TopicOpener, Writer};

/// What a processor looks at: one alert, its object as the alert left it, where it was read.
pub struct Item<'a> {
    pub alert: &'a Alert,
    pub summary: &'a ObjectSummary,
    pub source: &'a AlertSource,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Skip,
}

/// A processor failed on an alert (the alert goes no further down that chain).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct ProcessorError(pub String);

/// A compiled processor, shared by every partition; writers are opened per partition.
enum Step {
    Filter(Filter),
    SolarSystem { names: HashSet<String>, include: bool },
    Region(Region),
    Watchlist { name: String, require: bool },
    Kafka(KafkaParams),
    File(FileParams),
}

/// A checked, compiled definition.
pub struct Pipeline {
    pub name: String,
    /// The text exactly as it was put.
    pub definition: String,
    classes: Vec<&'static str>,
    steps: Vec<Step>,
}

/// Bound on a pipeline's name (it names metrics, directories and keys).
pub const MAX_NAME: usize = 64;

/// Checks a pipeline or watch-list name: 1 to 64 of `a-z A-Z 0-9 _ -`.
pub fn check_name(name: &str) -> Result<(), String> {
    if !name.is_empty()
        && name.len() <= MAX_NAME
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-".contains(&b))
    {
        Ok(())
    } else {
        Err(format!("name {name:?} must be 1 to {MAX_NAME} of a-z A-Z 0-9 _ -"))
    }
}

impl Pipeline {
    /// Parses and compiles `definition`.
    pub fn compile(name: &str, definition: &str) -> Result<Pipeline, SpecError> {
        check_name(name).map_err(|message| SpecError { line: None, column: None, message })?;
        let spec = spec::parse(definition)?;
        let mut classes = Vec::new();
        let mut steps = Vec::new();
        for p in spec.processors {
            classes.push(p.class());
            steps.push(match p {
                ProcessorSpec::Filter(f) => Step::Filter(f.filter),
                ProcessorSpec::SolarSystem(s) => {
                    Step::SolarSystem { names: s.names.into_iter().collect(), include: s.include }
                }
                // Checked while parsing; a failure here would be a bug, reported as one.
                ProcessorSpec::SkyRegion(r) => {
                    Step::Region(Region::new(&r).map_err(|message| SpecError { line: None, column: None, message })?)
                }
                ProcessorSpec::Watchlist(w) => Step::Watchlist { name: w.name, require: w.require },
                ProcessorSpec::Kafka(k) => Step::Kafka(k),
                ProcessorSpec::File(f) => Step::File(f),
            });
        }
        Ok(Pipeline { name: name.to_owned(), definition: definition.to_owned(), classes, steps })
    }

    /// The watch lists the chain names.
    pub fn watchlists(&self) -> impl Iterator<Item = &str> {
        self.steps.iter().filter_map(|s| match s {
            Step::Watchlist { name, .. } => Some(name.as_str()),
            _ => None,
        })
    }

    fn labels(&self, index: usize) -> Labels {
        vec![("pipeline".into(), self.name.clone()), ("processor".into(), format!("{index}:{}", self.classes[index]))]
    }
}

/// Per-processor metrics, labelled `pipeline` and `processor` (`<index>:<class>`).
#[derive(Clone, Default)]
pub struct PipelineMetrics {
    pub passed: Family<Labels, Counter>,
    pub skipped: Family<Labels, Counter>,
    pub errors: Family<Labels, Counter>,
    pub seconds: Family<Labels, Counter<f64, AtomicU64>>,
}

impl PipelineMetrics {
    pub fn register(registry: &mut Registry) -> PipelineMetrics {
        let m = PipelineMetrics::default();
        registry.register("lightkeeper_pipeline_passed", "Alerts a pipeline processor passed on", m.passed.clone());
        registry.register("lightkeeper_pipeline_skipped", "Alerts a pipeline processor stopped", m.skipped.clone());
        registry.register(
            "lightkeeper_pipeline_errors",
            "Alerts a pipeline processor failed on (a writer that could not write)",
            m.errors.clone(),
        );
        registry.register("lightkeeper_pipeline_seconds", "Time spent in each pipeline processor", m.seconds.clone());
        m
    }
}

/// The node's pipelines: what every partition master runs. Replaced whole when a definition
/// changes; masters pick the new set up at their next batch.
pub struct Pipelines {
    current: RwLock<Arc<Snapshot>>,
    pub metrics: PipelineMetrics,
    opener: Arc<dyn TopicOpener>,
    output_dir: PathBuf,
}

#[derive(Default)]
pub struct Snapshot {
    /// Rises with every change, so a master knows to rebuild its chains.
    pub generation: u64,
    pub pipelines: BTreeMap<String, Arc<Pipeline>>,
    /// The watch lists, indexed; masters annotate objects with their matches.
    pub watch: Arc<WatchIndex>,
    /// Identifies the watch lists' content: a master whose objects were annotated under
    /// another one re-annotates them.
    pub watch_digest: u64,
}

impl Pipelines {
    pub fn new(metrics: PipelineMetrics, opener: Arc<dyn TopicOpener>, output_dir: PathBuf) -> Pipelines {
        Pipelines { current: RwLock::new(Arc::new(Snapshot::default())), metrics, opener, output_dir }
    }

    /// No pipelines, and no topics to write to (tests and tools that run workers bare).
    pub fn none() -> Pipelines {
        struct NoTopics;
        impl TopicOpener for NoTopics {
            fn open(&self, name: &str, _: u32) -> Result<Arc<dyn lightkeeper_storage::log::Topic>, LogError> {
                Err(LogError::UnknownTopic(name.to_owned()))
            }
        }
        Pipelines::new(PipelineMetrics::default(), Arc::new(NoTopics), std::env::temp_dir())
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.read().clone()
    }

    /// Installs a new set of pipelines and watch lists.
    pub fn replace(&self, pipelines: BTreeMap<String, Arc<Pipeline>>, watch: Arc<WatchIndex>, watch_digest: u64) {
        let mut cur = self.current.write();
        *cur = Arc::new(Snapshot { generation: cur.generation + 1, pipelines, watch, watch_digest });
    }

    /// A pipeline's definition and its processors' counts on this node.
    pub fn info(&self, name: &str) -> Option<PipelineInfo> {
        let p = self.snapshot().pipelines.get(name)?.clone();
        let m = &self.metrics;
        let processors = (0..p.steps.len())
            .map(|i| {
                let l = p.labels(i);
                ProcessorInfo {
                    index: i,
                    class: p.classes[i].to_owned(),
                    passed: m.passed.get_or_create(&l).get(),
                    skipped: m.skipped.get_or_create(&l).get(),
                    errors: m.errors.get_or_create(&l).get(),
                    seconds: m.seconds.get_or_create(&l).get(),
                }
            })
            .collect();
        Some(PipelineInfo { name: p.name.clone(), definition: p.definition.clone(), processors })
    }
}

/// One pipeline as one partition master runs it: the shared steps and this partition's writers.
struct Chain {
    pipeline: Arc<Pipeline>,
    /// Aligned with `pipeline.steps`: the writer for a writer step, else `None`.
    writers: Vec<Option<Box<dyn Writer>>>,
    /// An instance that could not open its writers runs nothing (and says so once).
    broken: Option<String>,
    /// Aligned with `pipeline.steps`: the step's counters, looked up once (a family lookup
    /// hashes the labels; per alert and processor that was a measurable share of the chain).
    counters: Vec<StepCounters>,
}

/// One processor's metric handles (they share their values with the registered families).
struct StepCounters {
    passed: Counter,
    skipped: Counter,
    errors: Counter,
    seconds: Counter<f64, AtomicU64>,
}

impl StepCounters {
    fn of(m: &PipelineMetrics, l: &Labels) -> StepCounters {
        StepCounters {
            passed: m.passed.get_or_create(l).clone(),
            skipped: m.skipped.get_or_create(l).clone(),
            errors: m.errors.get_or_create(l).clone(),
            seconds: m.seconds.get_or_create(l).clone(),
        }
    }
}

/// A partition master's chains: rebuilt when the node's set changes, dropped (files closed)
/// when the master steps down.
#[derive(Default)]
pub struct Runs {
    generation: u64,
    chains: Vec<Chain>,
}

impl Runs {
    /// Brings the chains up to the node's current set.
    pub fn refresh(&mut self, pipelines: &Pipelines, partition: u32, input_partitions: u32) {
        let snap = pipelines.snapshot();
        if snap.generation == self.generation {
            return;
        }
        // Flush what the old chains hold before they go (a batch boundary: they hold nothing).
        self.chains.clear();
        for p in snap.pipelines.values() {
            let mut writers: Vec<Option<Box<dyn Writer>>> = Vec::new();
            let mut broken = None;
            for step in &p.steps {
                writers.push(match step {
                    Step::Kafka(k) => match KafkaWriter::open(k, pipelines.opener.as_ref(), input_partitions) {
                        Ok(w) => Some(Box::new(w)),
                        Err(e) => {
                            broken = Some(format!("opening topic {}: {e}", k.topic));
                            None
                        }
                    },
                    Step::File(f) => Some(Box::new(FileWriter::new(f, &pipelines.output_dir, &p.name, partition))),
                    _ => None,
                });
            }
            if let Some(why) = &broken {
                warn!(pipeline = %p.name, partition, reason = %why, "pipeline cannot run on this partition");
            }
            let counters = (0..p.steps.len()).map(|i| StepCounters::of(&pipelines.metrics, &p.labels(i))).collect();
            self.chains.push(Chain { pipeline: p.clone(), writers, broken, counters });
        }
        self.generation = snap.generation;
    }

    pub fn is_empty(&self) -> bool {
        self.chains.is_empty()
    }

    /// Runs every chain over one alert.
    pub fn run(&mut self, item: &Item<'_>) {
        for chain in &mut self.chains {
            if chain.broken.is_some() {
                if let Some(c) = chain.counters.first() {
                    c.errors.inc();
                }
                continue;
            }
            for (i, step) in chain.pipeline.steps.iter().enumerate() {
                let started = Instant::now();
                let outcome = match step {
                    Step::Filter(f) => Ok(verdict(f.matches(item.summary))),
                    Step::SolarSystem { names, include } => {
                        let named = item
                            .alert
                            .solar_system
                            .as_ref()
                            .is_some_and(|m| names.contains(&spec::normalize_body(&m.name)));
                        Ok(verdict(named == *include))
                    }
                    Step::Region(r) => Ok(verdict(r.passes(item.alert.ra, item.alert.dec))),
                    Step::Watchlist { name, require } => {
                        Ok(verdict(!*require || item.summary.watchlists.iter().any(|m| &m.watchlist == name)))
                    }
                    Step::Kafka(_) | Step::File(_) => match chain.writers[i].as_mut() {
                        Some(w) => w.write(&chain.pipeline.name, item).map(|()| Verdict::Pass),
                        None => Err(ProcessorError("the writer is not open".into())),
                    },
                };
                let c = &chain.counters[i];
                c.seconds.inc_by(started.elapsed().as_secs_f64());
                match outcome {
                    Ok(Verdict::Pass) => {
                        c.passed.inc();
                    }
                    Ok(Verdict::Skip) => {
                        c.skipped.inc();
                        break;
                    }
                    Err(e) => {
                        c.errors.inc();
                        warn!(pipeline = %chain.pipeline.name, processor = i, alert_id = item.alert.alert_id, error = %e, "pipeline processor failed");
                        break;
                    }
                }
            }
        }
    }

    /// Writes out what the batch gave the writers. Called before the batch's changelog append.
    pub fn flush(&mut self) {
        for chain in &mut self.chains {
            for (i, w) in chain.writers.iter_mut().enumerate() {
                let Some(w) = w else { continue };
                let started = Instant::now();
                let result = w.flush();
                let c = &chain.counters[i];
                c.seconds.inc_by(started.elapsed().as_secs_f64());
                if let Err((lost, e)) = result {
                    c.errors.inc_by(lost as u64);
                    warn!(pipeline = %chain.pipeline.name, processor = i, lost, error = %e, "pipeline writer failed; its records of this batch are lost");
                }
            }
        }
    }
}

fn verdict(pass: bool) -> Verdict {
    if pass {
        Verdict::Pass
    } else {
        Verdict::Skip
    }
}
