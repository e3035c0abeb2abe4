//! The soak's history: one JSON line per event, in the order the harness saw them, with the
//! seconds since the run began — faults and their recovery, each node's view of the cluster
//! every second, every failed read, every reconnect, gap or duplicate a subscriber saw, and
//! every invariant violation. A failing run is explained by reading it, as a Jepsen history is.

use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Shared by every task of a run; cheap to clone.
#[derive(Clone)]
pub struct History {
    inner: Arc<Inner>,
}

struct Inner {
    started: Instant,
    path: PathBuf,
    out: Mutex<std::io::BufWriter<std::fs::File>>,
    violations: Mutex<Vec<String>>,
    filter_gaps: Mutex<Vec<String>>,
}

impl History {
    pub fn create(path: &Path) -> anyhow::Result<History> {
        let file = std::fs::File::create(path)?;
        Ok(History {
            inner: Arc::new(Inner {
                started: Instant::now(),
                path: path.to_owned(),
                out: Mutex::new(std::io::BufWriter::new(file)),
                violations: Mutex::new(Vec::new()),
                filter_gaps: Mutex::new(Vec::new()),
            }),
        })
    }

    /// Seconds since the run began.
    pub fn now(&self) -> f64 {
        self.inner.started.elapsed().as_secs_f64()
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Appends `{"t": …, "event": event, …fields}`.
    pub fn record(&self, event: &str, fields: Value) {
        let mut line = json!({ "t": (self.now() * 1000.0).round() / 1000.0, "event": event });
        if let (Some(l), Value::Object(f)) = (line.as_object_mut(), fields) {
            l.extend(f);
        }
        let mut out = self.inner.out.lock().expect("history lock");
        let _ = writeln!(out, "{line}");
    }

    /// Records an invariant violation (also kept for the report) and says so on stderr at once.
    pub fn violation(&self, what: String) {
        eprintln!("chaos: VIOLATION at {:.1} s: {what}", self.now());
        self.record("violation", json!({ "what": what }));
        self.inner.violations.lock().expect("violations lock").push(what);
    }

    /// A violation that is a filter subscription skipping a version: recorded like any other,
    /// and also kept apart, because the CI soak reports it rather than failing on it until runs
    /// have confirmed its fix (RELIABILITY.md, "Faults the soak found").
    pub fn filter_gap(&self, what: String) {
        self.inner.filter_gaps.lock().expect("filter gaps lock").push(what.clone());
        self.violation(what);
    }

    pub fn filter_gaps(&self) -> Vec<String> {
        self.inner.filter_gaps.lock().expect("filter gaps lock").clone()
    }

    pub fn violations(&self) -> Vec<String> {
        self.inner.violations.lock().expect("violations lock").clone()
    }

    pub fn flush(&self) {
        let _ = self.inner.out.lock().expect("history lock").flush();
    }

    /// The last `n` lines written (after a flush), for a failure message.
    pub fn tail(&self, n: usize) -> String {
        self.flush();
        let text = std::fs::read_to_string(&self.inner.path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

/// What every task of a run is given: the history to write to and the flag that stops it.
#[derive(Clone)]
pub struct Task {
    pub history: History,
    pub stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Task {
    pub fn stopped(&self) -> bool {
        self.stop.load(std::sync::atomic::Ordering::Relaxed)
    }
}
