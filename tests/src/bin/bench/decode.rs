//! `bench decode`: the cost of decoding one alert packet into the common model, with the plan
//! compiled from the writer schema (`Decoder::decode`, what ingest uses) against apache-avro's
//! generic `Value` tree with the same mappers (`Decoder::decode_generic`, the decoder it
//! replaced), in the same run, on one thread, no broker.
//!
//! Two sets: the real-size ZTF alerts `bench ingest` loads (the 64 first fink datasim packets,
//! cutouts included, re-issued under new ids), and every packet of the shared data set (ZTF
//! schemas 1.8–4.02, LSST 3.0–11.1, both framings). Rounds alternate between the decoders so
//! a drift of the machine falls on both; the median round is the figure. Both decoders must
//! agree on every packet, or the run stops.

use crate::common::machine;
use crate::stats::{percentile, sorted};
use lightkeeper_storage::codec::Decoder;
use lightkeeper_storage::registry::EmbeddedRegistry;
use lightkeeper_tests::synth::{load_templates, object_id, reissue};
use lightkeeper_tests::{lsst_schemas, shared_data};
use std::sync::Arc;
use std::time::Instant;

/// Which decoders a run times (`--only` narrows it to one, for a profiler).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Only {
    Both,
    Compiled,
    Generic,
}

pub fn run(rounds: usize, only: Only) -> anyhow::Result<()> {
    anyhow::ensure!(rounds > 0, "--rounds must be at least 1");
    let decoder = Decoder::new(Arc::new(EmbeddedRegistry::from_dir(&lsst_schemas())?));

    let templates = load_templates(&shared_data().join("ztf/alerts/fink-alert-simulator/datasim_20181129"), 64);
    let ingest_set: Vec<Vec<u8>> =
        (0..1024).map(|i| reissue(&templates[i % templates.len()], &object_id(i), 3_000_000_000 + i as i64)).collect();
    let mut shared_set = Vec::new();
    for line in std::fs::read_to_string(shared_data().join("MANIFEST.jsonl"))?.lines() {
        let entry: serde_json::Value = serde_json::from_str(line)?;
        let path = entry["path"].as_str().unwrap_or_default();
        if path.ends_with(".avro") {
            shared_set.push(std::fs::read(shared_data().join(path))?);
        }
    }

    println!("## decode, compiled plan against apache-avro's Value tree, same run — {}", machine());
    println!("| set | packets | mean size | generic µs/alert | compiled µs/alert | generic / compiled |");
    println!("|---|---|---|---|---|---|");
    for (name, set) in [("ingest's real-size ZTF alerts", &ingest_set), ("every shared packet", &shared_set)] {
        for p in set.iter() {
            match (decoder.decode(p), decoder.decode_generic(p)) {
                (Ok(a), Ok(b)) => anyhow::ensure!(a == b, "the decoders disagree on alert {}", a.alert_id),
                (Err(a), Err(b)) => anyhow::ensure!(a.code() == b.code(), "the decoders refuse differently: {a} / {b}"),
                (a, b) => anyhow::bail!("the decoders disagree: {a:?} / {b:?}"),
            }
        }
        let time = |f: &dyn Fn(&[u8])| -> f64 {
            let started = Instant::now();
            for p in set.iter() {
                f(p);
            }
            started.elapsed().as_secs_f64() * 1e6 / set.len() as f64
        };
        let mut generic = Vec::with_capacity(rounds);
        let mut compiled = Vec::with_capacity(rounds);
        for _ in 0..rounds {
            if only != Only::Compiled {
                generic.push(time(&|p| {
                    std::hint::black_box(decoder.decode_generic(p).ok());
                }));
            }
            if only != Only::Generic {
                compiled.push(time(&|p| {
                    std::hint::black_box(decoder.decode(p).ok());
                }));
            }
        }
        if only != Only::Both {
            continue;
        }
        let (g, c) = (percentile(&sorted(generic), 0.5), percentile(&sorted(compiled), 0.5));
        let mean_size = set.iter().map(Vec::len).sum::<usize>() / set.len();
        println!("| {name} | {} | {mean_size} B | {g:.1} | {c:.1} | {:.1} |", set.len(), g / c);
    }
    println!("\n(median of {rounds} alternating rounds; command: `bench decode --rounds {rounds}`)");
    Ok(())
}
