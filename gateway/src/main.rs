//! `lightkeeper`: run a node, a demo, or the packet tools.

use clap::{Parser, Subcommand};
use lightkeeper_gateway::config::{Config, KafkaOverride, Overrides, SchemasOverride};
use lightkeeper_gateway::{cli, node};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Decoding allocates many short-lived values per alert; with mimalloc end-to-end ingest
/// measured 7,380 vs 6,544 alerts/s with glibc malloc (1.13×, BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "lightkeeper", version, about = "Stateful data API for astronomical alert streams")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node. With no broker configured it runs the embedded single-node default.
    Serve {
        /// TOML configuration file.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Listen address (port 0 picks a free port).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Data directory.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Node id.
        #[arg(long)]
        node_id: Option<String>,
        /// Kafka bootstrap servers; enables Kafka mode.
        #[arg(long)]
        kafka: Option<String>,
        /// Directory of LSST schema versions for the Confluent wire format.
        #[arg(long)]
        schemas: Option<PathBuf>,
    },
    /// Run an embedded node fed with real sample alerts; prints the URL to open.
    Demo {
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Keep state here instead of a temporary directory.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Feed the .avro files of this directory instead of the built-in set.
        #[arg(long)]
        alerts: Option<PathBuf>,
        /// Pause between alerts, in milliseconds.
        #[arg(long, default_value_t = 1500)]
        interval_ms: u64,
    },
    /// Send alert files (or directories of them) to a node or a Kafka topic.
    Ingest {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Node URL, e.g. http://127.0.0.1:8080.
        #[arg(long, conflicts_with = "kafka")]
        url: Option<String>,
        /// Kafka bootstrap servers.
        #[arg(long)]
        kafka: Option<String>,
        /// Topic for --kafka.
        #[arg(long, default_value = "alerts")]
        topic: String,
        /// LSST schema directory (to find the object key of wire-format packets for --kafka).
        #[arg(long)]
        schemas: Option<PathBuf>,
    },
    /// Print each alert as the normalized JSON the store keeps, one line per alert.
    Decode {
        /// Directory of LSST schema versions (as shared/data/lsst/schema/).
        #[arg(long)]
        schemas: Option<PathBuf>,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

fn init_tracing() {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("LIGHTKEEPER_LOG").unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG));
    // Colour codes only for a person at a terminal, never into a file or a log collector.
    let ansi = std::io::stderr().is_terminal();
    tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr).init();
}

/// The log filter unless `LIGHTKEEPER_LOG` says otherwise: Lightkeeper at INFO, third-party
/// crates at WARN. openraft's replication task logs every failed attempt to reach a peer as an
/// ERROR (thousands a minute while a node is down) and dumps its whole state at INFO; the
/// coordinator's transport reports a peer that is down once, rate-limited, instead
/// (`peers::raft_network`). `LIGHTKEEPER_LOG=info,openraft=debug` opens them up again.
const DEFAULT_LOG: &str =
    "warn,lightkeeper=info,lightkeeper_gateway=info,lightkeeper_coordinator=info,lightkeeper_partition=info,lightkeeper_storage=info,openraft::replication=off";

fn main() -> ExitCode {
    let args = Args::parse();
    init_tracing();
    let result = match args.command {
        Command::Decode { schemas, files } => cli::decode(schemas.as_deref(), &files),
        other => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(Into::into)
            .and_then(|rt| rt.block_on(run(other))),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("lightkeeper: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(command: Command) -> anyhow::Result<bool> {
    match command {
        Command::Serve { config, listen, data_dir, node_id, kafka, schemas } => {
            let overrides = Overrides {
                listen,
                data_dir,
                node_id,
                kafka: kafka.map(|bootstrap| KafkaOverride { bootstrap }),
                schemas: schemas.map(|dir| SchemasOverride { dir }),
            };
            let config = Config::load(config.as_deref(), &overrides)?;
            // Fail fast when the address is taken, but listen only once the node is built: a
            // connection made while it opens its stores (~1 s) would wait in the backlog rather
            // than be refused, and a client behind a load balancer would stall instead of trying
            // another node.
            drop(
                std::net::TcpListener::bind(config.listen)
                    .map_err(|e| anyhow::anyhow!("binding {}: {e}", config.listen))?,
            );
            let listen = config.listen;
            let node = tokio::task::spawn_blocking(move || node::Node::start(&config)).await??;
            let listener =
                tokio::net::TcpListener::bind(listen).await.map_err(|e| anyhow::anyhow!("binding {listen}: {e}"))?;
            node.serve(listener, node::stop_on_signals()).await?;
            Ok(true)
        }
        Command::Demo { listen, data_dir, alerts, interval_ms } => {
            cli::demo(listen, data_dir, alerts, Duration::from_millis(interval_ms)).await?;
            Ok(true)
        }
        Command::Ingest { files, url, kafka, topic, schemas } => cli::ingest(&files, url, kafka, topic, schemas).await,
        Command::Decode { .. } => unreachable!("handled without a runtime"),
    }
}
