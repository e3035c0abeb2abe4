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
    /// Access token for the node (`Authorization: Bearer`), for the commands that call one.
    #[arg(long, global = true, env = "LIGHTKEEPER_TOKEN", hide_env_values = true)]
    token: Option<String>,
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
    /// Make a new access token: prints it once, and the `[[access.tokens]]` entry (its hash) to
    /// add to the nodes' configuration.
    Token {
        /// Who will hold it (shown in logs and 403 answers).
        #[arg(long)]
        name: String,
        /// Comma-separated scopes: read, ingest, admin.
        #[arg(long, value_delimiter = ',', default_value = "read")]
        scopes: Vec<String>,
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
    /// Print an object's summary (JSON).
    Get {
        key: String,
        #[arg(long, env = "LIGHTKEEPER_URL", default_value = "http://127.0.0.1:8080")]
        url: String,
    },
    /// Print an object's light curve as the node renders it.
    Lightcurve {
        key: String,
        #[arg(long, env = "LIGHTKEEPER_URL", default_value = "http://127.0.0.1:8080")]
        url: String,
        /// json, csv or votable.
        #[arg(long, default_value = "json")]
        format: String,
        /// Only these bands (repeatable): u g r i z y.
        #[arg(long)]
        band: Vec<String>,
        /// Only these kinds (repeatable): detection, upper_limit, forced.
        #[arg(long)]
        kind: Vec<String>,
        /// Extra time columns, comma-separated: jd, iso (UTC).
        #[arg(long)]
        times: Option<String>,
    },
    /// Objects within a radius of a position, nearest first: one JSON object per line.
    Cone {
        /// Right ascension, degrees.
        ra: f64,
        /// Declination, degrees.
        #[arg(allow_hyphen_values = true)]
        dec: f64,
        /// Radius, arcseconds (up to 3600).
        radius_arcsec: f64,
        #[arg(long, env = "LIGHTKEEPER_URL", default_value = "http://127.0.0.1:8080")]
        url: String,
        /// A filter on the objects (the filter language).
        #[arg(long = "where")]
        filter: Option<String>,
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Objects matching a filter, over every partition: one JSON object per line.
    Query {
        /// The filter (the filter language); every object when absent.
        #[arg(long = "where")]
        filter: Option<String>,
        /// A field, optionally followed by " desc".
        #[arg(long)]
        order: Option<String>,
        /// Objects per page.
        #[arg(long)]
        limit: Option<usize>,
        /// Follow the pages to the end (each object once).
        #[arg(long)]
        all: bool,
        #[arg(long, env = "LIGHTKEEPER_URL", default_value = "http://127.0.0.1:8080")]
        url: String,
    },
    /// Follow objects or a filter live: every message as one JSON line, resuming after a
    /// reconnect with nothing missed; until interrupted.
    Watch {
        /// Objects to follow.
        #[arg(long = "object", required_unless_present = "filter", conflicts_with = "filter")]
        objects: Vec<String>,
        /// A filter to follow (the filter language).
        #[arg(long)]
        filter: Option<String>,
        /// Resume a filter from this cursor (the `cursor` of a message printed before).
        #[arg(long, requires = "filter")]
        from: Option<String>,
        #[arg(long, env = "LIGHTKEEPER_URL", default_value = "http://127.0.0.1:8080")]
        url: String,
    },
    /// Mirror a survey's upstream Kafka into the local alerts topic, re-keyed by object and
    /// re-partitioned; until interrupted. See `gateway/src/mirror/config.rs` for the settings.
    Mirror {
        /// TOML configuration file.
        #[arg(long)]
        config: PathBuf,
        /// Address of /metrics and /healthz (port 0 picks one); overrides the file's `listen`.
        #[arg(long)]
        listen: Option<SocketAddr>,
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
            .and_then(|rt| rt.block_on(run(other, args.token))),
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

async fn run(command: Command, token: Option<String>) -> anyhow::Result<bool> {
    let token = token.as_deref();
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
        Command::Ingest { files, url, kafka, topic, schemas } => {
            cli::ingest(&files, url, kafka, topic, schemas, token).await
        }
        Command::Get { key, url } => cli::read::get(&url, token, &key).await,
        Command::Lightcurve { key, url, format, band, kind, times } => {
            let mut q: Vec<(&str, &str)> = vec![("format", &format)];
            q.extend(band.iter().map(|b| ("band", b.as_str())));
            q.extend(kind.iter().map(|k| ("kind", k.as_str())));
            if let Some(t) = &times {
                q.push(("times", t));
            }
            let query = form_urlencoded::Serializer::new(String::new()).extend_pairs(q).finish();
            cli::read::lightcurve(&url, token, &key, &query).await
        }
        Command::Cone { ra, dec, radius_arcsec, url, filter, limit } => {
            cli::read::cone(&url, token, ra, dec, radius_arcsec, filter.as_deref(), limit).await
        }
        Command::Query { filter, order, limit, all, url } => {
            cli::read::query(&url, token, filter.as_deref(), order.as_deref(), limit, all).await
        }
        Command::Watch { objects, filter, from, url } => {
            let what = match filter {
                Some(filter) => cli::read::Watch::Filter { filter, from },
                None => cli::read::Watch::Objects(objects),
            };
            cli::read::watch(&url, token, what).await
        }
        Command::Mirror { config, listen } => {
            let mut config = lightkeeper_gateway::mirror::config::MirrorConfig::load(Some(&config))?;
            if let Some(l) = listen {
                config.listen = l;
            }
            lightkeeper_gateway::mirror::run(config, node::stop_on_signals().cancelled_owned()).await?;
            Ok(true)
        }
        Command::Token { name, scopes } => {
            cli::new_token(&name, &scopes)?;
            Ok(true)
        }
        Command::Decode { .. } => unreachable!("handled without a runtime"),
    }
}
