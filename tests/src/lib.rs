//! Harness for end-to-end tests: the real broker, real `lightkeeper` processes, the real Python
//! Kafka client, and the shared alert data.
//!
//! Readiness is always an explicit signal — the node's "listening on" line, `/readyz`, a
//! broker metadata request — never a sleep.

pub mod chaos;
pub mod cluster;
pub mod hostile;
pub mod kafka;
pub mod load;
pub mod postgres;
pub mod reference;
pub mod registry_stub;
pub mod synth;
pub mod tls;

use anyhow::{anyhow, bail, Context};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_owned()
}

/// `../shared/data` beside the repository (or `LIGHTKEEPER_SHARED_DATA`).
pub fn shared_data() -> PathBuf {
    std::env::var_os("LIGHTKEEPER_SHARED_DATA").map(PathBuf::from).unwrap_or_else(|| workspace().join("../shared/data"))
}

pub fn lsst_schemas() -> PathBuf {
    shared_data().join("lsst/schema")
}

/// Every `.avro` file below `dir`, sorted.
pub fn avro_files(dir: &Path) -> Vec<PathBuf> {
    fn walk(d: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(d).unwrap_or_else(|e| panic!("reading {}: {e}", d.display())) {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "avro") {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, &mut out);
    out.sort();
    out
}

/// Bootstrap address of the test broker (`KAFKA_BOOTSTRAP`, default 127.0.0.1:9092), checked
/// with a metadata request. Panics with instructions when no broker answers.
pub fn broker() -> String {
    static CHECKED: OnceLock<String> = OnceLock::new();
    CHECKED
        .get_or_init(|| {
            let b = std::env::var("KAFKA_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:9092".into());
            let c: BaseConsumer = ClientConfig::new().set("bootstrap.servers", &b).set("group.id", "probe").create().expect("client");
            if let Err(e) = c.fetch_metadata(None, Duration::from_secs(10)) {
                panic!("no Kafka-protocol broker at {b} ({e}); run the tests with `cargo xtask test`, which starts one, or set KAFKA_BOOTSTRAP");
            }
            b
        })
        .clone()
}

/// A name unique to this test run, for topics and directories.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

/// The `lightkeeper` binary of the same profile as this test, built once per test process.
pub fn binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().expect("test exe");
        // target/<profile>/deps/<test> (tests) or target/<profile>/<bin> (the bench) → target/<profile>
        let mut profile_dir = exe.parent().expect("exe has a directory").to_owned();
        if profile_dir.file_name().is_some_and(|n| n == "deps") {
            profile_dir = profile_dir.parent().expect("target/<profile>").to_owned();
        }
        let profile = profile_dir.file_name().unwrap().to_string_lossy().into_owned();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let cargo_profile = if profile == "debug" { "dev".to_owned() } else { profile };
        let status = Command::new(cargo)
            .args([
                "build",
                "--quiet",
                "--profile",
                &cargo_profile,
                "-p",
                "lightkeeper-gateway",
                "--bin",
                "lightkeeper",
            ])
            // Into the target directory this executable lives in, whatever the environment says.
            .arg("--target-dir")
            .arg(profile_dir.parent().expect("target dir"))
            .current_dir(workspace())
            .status()
            .expect("running cargo build");
        assert!(status.success(), "building the lightkeeper binary failed");
        profile_dir.join("lightkeeper")
    })
    .clone()
}

/// A running node process. Killed (SIGKILL) on drop.
pub struct NodeProcess {
    pub child: Child,
    pub url: String,
    pub data_dir: PathBuf,
    stderr_log: PathBuf,
}

impl NodeProcess {
    /// Starts `lightkeeper serve` with `--listen 127.0.0.1:0` and waits for its listening line.
    pub fn start(data_dir: &Path, extra: &[&str], env: &[(&str, String)]) -> anyhow::Result<NodeProcess> {
        NodeProcess::start_at("127.0.0.1:0", data_dir, extra, env)
    }

    /// Like [`NodeProcess::start`] on a given listen address (cluster peers must know it).
    pub fn start_at(
        listen: &str,
        data_dir: &Path,
        extra: &[&str],
        env: &[(&str, String)],
    ) -> anyhow::Result<NodeProcess> {
        let data = data_dir.display().to_string();
        let mut args = vec!["serve", "--listen", listen, "--data-dir", &data];
        args.extend(extra);
        NodeProcess::run(&args, data_dir, env)
    }

    /// Runs `lightkeeper <args>` (a command that prints `listening on <url>` when it is up, as
    /// `serve` and `mirror` do), logging to `<dir>.stderr.log`, and waits for that line.
    pub fn run(args: &[&str], dir: &Path, env: &[(&str, String)]) -> anyhow::Result<NodeProcess> {
        let data_dir = dir;
        std::fs::create_dir_all(data_dir)?;
        let stderr_log = data_dir.with_extension("stderr.log");
        let stderr = std::fs::OpenOptions::new().create(true).append(true).open(&stderr_log)?;
        let mut cmd = Command::new(binary());
        // LIGHTKEEPER_TEST_NODE_LOG (a tracing filter) raises nodes' logging, to explain a
        // failing run (a soak's history points at a time; the nodes' logs say what they did).
        let level = std::env::var("LIGHTKEEPER_TEST_NODE_LOG").unwrap_or_else(|_| "info".to_owned());
        cmd.args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .env("LIGHTKEEPER_LOG", level)
            // Not the node's: it would read any LIGHTKEEPER_* as configuration.
            .env_remove("LIGHTKEEPER_TEST_NODE_LOG");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().context("spawning lightkeeper")?;
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on ").nth(1) {
                    let url = rest.split_whitespace().next().unwrap_or_default().to_owned();
                    let _ = tx.send(url);
                }
            }
        });
        let url = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(u) => u,
            Err(_) => {
                let _ = child.kill();
                bail!(
                    "node did not report its address; stderr:\n{}",
                    std::fs::read_to_string(&stderr_log).unwrap_or_default()
                );
            }
        };
        Ok(NodeProcess { child, url, data_dir: data_dir.to_owned(), stderr_log })
    }

    /// Waits for `/readyz` to answer 200.
    pub async fn wait_ready(&self, timeout: Duration) -> anyhow::Result<()> {
        // Readiness only: a node serving TLS is probed without checking its certificate (the
        // tests that use TLS check it on every call they make).
        let client = reqwest::Client::builder().danger_accept_invalid_certs(true).build()?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(r) = client.get(format!("{}/readyz", self.url)).send().await {
                if r.status().is_success() {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!("node not ready after {timeout:?}; stderr:\n{}", self.stderr());
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }

    /// Sends a signal (`libc::SIGSTOP`, `libc::SIGCONT`, …) to the process. Through libc, not
    /// the `kill` program, which a minimal machine may not have.
    pub fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) with the pid of a child this struct owns and has not reaped.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
        assert_eq!(rc, 0, "kill({sig}) failed: {}", std::io::Error::last_os_error());
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait for a clean exit.
    pub fn terminate(&mut self) -> anyhow::Result<std::process::ExitStatus> {
        self.signal(libc::SIGTERM);
        Ok(self.child.wait()?)
    }
}

/// Lines of a node's log shown when a test fails with the node still held.
const LOG_TAIL_ON_FAILURE: usize = 40;

impl Drop for NodeProcess {
    /// Kills the node. When the test is failing, prints the last warnings and errors the node
    /// logged first: the data directory is about to be deleted, and a CI log is all there is.
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let log = self.stderr();
            let notable: Vec<&str> = log.lines().filter(|l| l.contains("WARN") || l.contains("ERROR")).collect();
            let tail = &notable[notable.len().saturating_sub(LOG_TAIL_ON_FAILURE)..];
            eprintln!(
                "--- {} ({}): last {} warnings and errors of {} log lines ---\n{}",
                self.url,
                self.data_dir.display(),
                tail.len(),
                log.lines().count(),
                tail.join("\n")
            );
        }
    }
}

/// Runs `tests/py/<script>` with the machine's python3.
pub fn python(script: &str, args: &[String]) -> anyhow::Result<String> {
    let out = Command::new("python3")
        .arg(workspace().join("tests/py").join(script))
        .args(args)
        .output()
        .context("running python3")?;
    if !out.status.success() {
        return Err(anyhow!("{script} failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    Ok(String::from_utf8(out.stdout)?)
}

/// Input records a node has consumed, summed over its partitions (from `/v1/cluster`).
pub async fn consumed(client: &lightkeeper_clients::Client) -> Option<u64> {
    let view = client.cluster().await.ok()?;
    Some(view.partitions.iter().map(|p| p.input_next).sum())
}

/// Polls `f` until it returns `Some`, or fails after `timeout`. For state that becomes true
/// asynchronously (an alert materialized), where no push signal exists for the test to await.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Angular separation in arcsec computed through unit vectors and atan2 — deliberately not the
/// node's haversine — for independent cross-matches in tests.
pub fn separation_arcsec(ra1: f64, dec1: f64, ra2: f64, dec2: f64) -> f64 {
    let v = |ra: f64, dec: f64| {
        let (ra, dec) = (ra.to_radians(), dec.to_radians());
        [dec.cos() * ra.cos(), dec.cos() * ra.sin(), dec.sin()]
    };
    let (a, b) = (v(ra1, dec1), v(ra2, dec2));
    let cross = [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];
    let sin = (cross[0] * cross[0] + cross[1] * cross[1] + cross[2] * cross[2]).sqrt();
    let cos = a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
    sin.atan2(cos).to_degrees() * 3600.0
}

/// A token made by `lightkeeper token`: the secret, and the `[[access.tokens]]` entry it
/// printed for the configuration (which holds its hash, never the token).
pub struct MadeToken {
    pub token: String,
    pub entry: String,
}

/// Runs `lightkeeper token --name NAME --scopes SCOPES` and reads what it printed.
pub fn make_token(name: &str, scopes: &str) -> MadeToken {
    let out = Command::new(binary()).args(["token", "--name", name, "--scopes", scopes]).output().expect("run");
    assert!(out.status.success(), "lightkeeper token: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let token = text.lines().find_map(|l| l.strip_prefix("token: ")).expect("the token line").to_owned();
    let entry = text.split_once("[[access.tokens]]").map(|(_, e)| format!("[[access.tokens]]{e}")).expect("the entry");
    MadeToken { token, entry }
}
