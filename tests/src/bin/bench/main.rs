//! The benchmark harness (not timed tests): `target/release/bench <benchmark> --flags`. Every
//! figure is reported next to a baseline, measured in the same run wherever one can be (the
//! machines are noisy: compare ratios, not absolute times); each module's doc says what it
//! measures, against what, and why. BENCHMARKS.md records the figures.
//!
//! - `bench ingest` ([`ingest`]): alerts/s of a node materializing a topic end to end, against
//!   a bare rdkafka consumer reading the same topic; with `--filters N`, also with N live filter
//!   subscriptions against none.
//! - `bench decode` ([`decode`]): µs per alert of the decoder compiled from the writer schema,
//!   against apache-avro's generic `Value` tree with the same mappers (no broker).
//! - `bench access` ([`access`]): a read's latency anonymously, with a token, and with a token
//!   over TLS, against the anonymous read.
//! - `bench query` ([`query`]): open-loop latency of light-curve reads, against `/healthz`
//!   under the same load, from a load generator in its own process (`bench load`).
//! - `bench find` ([`find`]): open-loop latency of cone searches (2″, 1′, 1°) and `where`
//!   queries over a million objects, against the same cones answered by a full scan.
//! - `bench push` ([`push`]): produced → WebSocket update and produced → readable over REST,
//!   p50/p99, against a bare consumer's produced → consumed in the same run.
//! - `bench subscribers` ([`subscribers`]): resident memory per live WebSocket subscriber and
//!   the rate a node fans updates out to them (tens of thousands of connections).
//! - `bench restore` ([`restore`]): records/s of a fresh node restoring from the changelog,
//!   against bare rdkafka consumers reading that changelog.
//! - `bench handover` ([`handover`]): the gap in successful reads a client sees during a drained
//!   handover, against the longest gap in an equally long quiet window; then a manual failover.
//! - `bench failover` ([`failover`]): SIGKILL of the master → first read answered by a new
//!   master, with automatic detection and promotion, split by whether the Raft leader died too.
//! - `bench mirror` ([`mirror`]): alerts/s of `lightkeeper mirror` from an upstream topic to a
//!   local one, against a bare consume → produce (acks=all) → commit loop on the same topic.
//! - `bench membership` ([`membership`]): a node joining and the Raft leader being
//!   decommissioned, with the read latency in each phase against the same readers before.
//! - `bench chaos` ([`chaos`]): the chaos soak for as long as wanted — faults of every kind
//!   under load, recovery times per kind, and the contract's invariants (RELIABILITY.md).
//!
//! Shared pieces: [`common`] (loading real-size alerts, the bare consumers' settings, clean-up,
//! the machine line of each report), [`pace`] (starting open-loop requests on time) and
//! [`stats`] (percentiles).

mod access;
mod chaos;
mod common;
mod decode;
mod failover;
mod find;
mod handover;
mod ingest;
mod membership;
mod mirror;
mod pace;
mod push;
mod query;
mod restore;
mod stats;
mod subscribers;

use clap::{Parser, Subcommand};
use std::path::PathBuf;

// No doc comments on `Args` and `Cmd`: clap would turn them into `--help` text.
#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    Ingest {
        #[arg(long, default_value_t = 50_000)]
        alerts: usize,
        #[arg(long, default_value_t = 5)]
        alerts_per_object: usize,
        #[arg(long, default_value_t = 4)]
        partitions: u32,
        #[arg(long, default_value_t = 0)]
        filters: usize,
        /// Which filters --filters subscribes.
        #[arg(long, value_enum, default_value_t = ingest::FilterSet::Selective)]
        filter_set: ingest::FilterSet,
        /// Runs (pairs of runs, with --filters or --pipeline) to take the median of.
        #[arg(long, default_value_t = 1)]
        repeat: usize,
        /// Pairs a node without pipelines with one running a five-processor chain.
        #[arg(long)]
        pipeline: bool,
    },
    Restore {
        #[arg(long, default_value_t = 30_000)]
        alerts: usize,
        #[arg(long, default_value_t = 5)]
        alerts_per_object: usize,
        #[arg(long, default_value_t = 4)]
        partitions: u32,
    },
    Handover {
        #[arg(long, default_value_t = 10)]
        handovers: usize,
    },
    Failover {
        #[arg(long, default_value_t = 20)]
        kills: usize,
    },
    Membership {
        #[arg(long, default_value_t = 5_000)]
        alerts: usize,
        #[arg(long, default_value_t = 5)]
        alerts_per_object: usize,
    },
    Mirror {
        #[arg(long, default_value_t = 50_000)]
        alerts: usize,
        #[arg(long, default_value_t = 4)]
        partitions: u32,
    },
    Decode {
        #[arg(long, default_value_t = 20)]
        rounds: usize,
        /// Time one decoder only (for a profiler); prints nothing.
        #[arg(long, value_enum, default_value_t = decode::Only::Both)]
        only: decode::Only,
    },
    Push {
        #[arg(long, default_value_t = 1000)]
        rate: u64,
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        #[arg(long, default_value_t = 100)]
        objects: usize,
        #[arg(long, default_value_t = 4)]
        partitions: u32,
        /// Poll REST for every n-th alert.
        #[arg(long, default_value_t = 20)]
        rest_every: usize,
        /// The node's kafka.fetch_wait_max_ms (its default if not given).
        #[arg(long)]
        fetch_wait_ms: Option<u64>,
    },
    Subscribers {
        #[arg(long, default_value_t = 50_000)]
        subscribers: usize,
        #[arg(long, default_value_t = 100)]
        objects: usize,
    },
    // One open-loop load run (`bench query` starts it as its load generator).
    Load {
        #[arg(long)]
        url: String,
        #[arg(long)]
        rate: u64,
        #[arg(long)]
        seconds: u64,
        #[arg(long)]
        accept_encoding: Option<String>,
        /// PEM CA to trust (a node serving TLS). The token, if any, comes from BENCH_TOKEN.
        #[arg(long)]
        ca: Option<PathBuf>,
    },
    /// What access control and TLS cost a read: the same object read anonymously, with a
    /// token, and with a token over TLS, open loop.
    Access {
        #[arg(long, default_value_t = 500)]
        rate: u64,
        #[arg(long, default_value_t = 20)]
        seconds: u64,
    },
    /// The chaos soak: faults of every kind under load for --minutes.
    Chaos {
        #[arg(long, default_value_t = 5)]
        nodes: usize,
        /// Default: 3 from 5 nodes, else 2.
        #[arg(long)]
        replication_factor: Option<usize>,
        #[arg(long, default_value_t = 6)]
        partitions: u32,
        #[arg(long, default_value_t = 500)]
        rate: u32,
        #[arg(long, default_value_t = 60.0)]
        minutes: f64,
        #[arg(long, default_value_t = 5)]
        gap_min_s: u64,
        #[arg(long, default_value_t = 20)]
        gap_max_s: u64,
        #[arg(long, default_value_t = 2000)]
        objects: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Comma-separated fault kinds (kill, pause, kill_leader, drain_restart,
        /// decommission_readd, broker_restart); default all.
        #[arg(long)]
        kinds: Option<String>,
        /// Where the run's history and logs go (default: a new directory under /tmp).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    Query {
        #[arg(long, default_value_t = 1000)]
        points: usize,
        #[arg(long, default_value_t = 5000)]
        rate: u64,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    Find {
        #[arg(long, default_value_t = 1_000_000)]
        objects: usize,
        #[arg(long, default_value_t = 200)]
        rate: u64,
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        #[arg(long)]
        scan_rate: Option<f64>,
        #[arg(long, default_value_t = 20)]
        scan_requests: usize,
        #[arg(long, default_value_t = 4)]
        partitions: u32,
    },
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Runtime::new()?;
    match args.cmd {
        Cmd::Ingest { alerts, alerts_per_object, partitions, filters, filter_set, repeat, pipeline } => {
            rt.block_on(ingest::run(alerts, alerts_per_object, partitions, filters, filter_set, repeat, pipeline))
        }
        Cmd::Decode { rounds, only } => decode::run(rounds, only),
        Cmd::Push { rate, seconds, objects, partitions, rest_every, fetch_wait_ms } => {
            rt.block_on(push::run(push::Params { rate, seconds, objects, partitions, rest_every, fetch_wait_ms }))
        }
        Cmd::Subscribers { subscribers, objects } => rt.block_on(subscribers::run(subscribers, objects)),
        Cmd::Access { rate, seconds } => rt.block_on(access::run(rate, seconds)),
        Cmd::Chaos {
            nodes,
            replication_factor,
            partitions,
            rate,
            minutes,
            gap_min_s,
            gap_max_s,
            objects,
            seed,
            kinds,
            dir,
        } => rt.block_on(chaos::run(chaos::Params {
            nodes,
            replication_factor,
            partitions,
            rate,
            minutes,
            gap_min_s,
            gap_max_s,
            objects,
            seed,
            kinds,
            dir,
        })),
        Cmd::Load { url, rate, seconds, accept_encoding, ca } => {
            let caller = query::Caller { token: std::env::var("BENCH_TOKEN").ok(), ca };
            rt.block_on(query::load_command(&url, rate, seconds, accept_encoding, caller))
        }
        Cmd::Query { points, rate, seconds } => rt.block_on(query::run(points, rate, seconds)),
        Cmd::Find { objects, rate, seconds, scan_rate, scan_requests, partitions } => {
            rt.block_on(find::run(find::Params { objects, rate, seconds, scan_rate, scan_requests, partitions }))
        }
        Cmd::Restore { alerts, alerts_per_object, partitions } => {
            rt.block_on(restore::run(alerts, alerts_per_object, partitions))
        }
        Cmd::Handover { handovers } => rt.block_on(handover::run(handovers)),
        Cmd::Failover { kills } => rt.block_on(failover::run(kills)),
        Cmd::Membership { alerts, alerts_per_object } => rt.block_on(membership::run(alerts, alerts_per_object)),
        Cmd::Mirror { alerts, partitions } => rt.block_on(mirror::run(alerts, partitions)),
    }
}
