//! The test broker: installing nisshi (../shared/design/BROKER.md), starting it, knowing when
//! it answers as a Kafka broker, and stopping it whatever happens.

use crate::commands::*;
use crate::{step, Result};
use std::env;
use std::fs::File;
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{self, Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::thread::sleep;
use std::time::{Duration, Instant};

/// The test broker (`../shared/design/BROKER.md`), built with the nightly toolchain.
pub(crate) const NISSHI_VERSION: &str = "0.8.1";
pub(crate) const NISSHI_FEATURES: &str = "postgres,dynostore";
pub(crate) const BROKER_READY_SECS: u32 = 60;

/// Ready when a real Kafka client gets metadata (a bare port check can be fooled by another
/// process). argv: bootstrap, deadline in seconds.
pub(crate) const KAFKA_PROBE: &str = r#"
import sys, time
from confluent_kafka.admin import AdminClient
deadline = time.time() + float(sys.argv[2])
while True:
    try:
        AdminClient({"bootstrap.servers": sys.argv[1], "log_level": 0}).list_topics(timeout=2)
        break
    except Exception as e:
        if time.time() > deadline:
            sys.exit(f"no Kafka broker answered at {sys.argv[1]}: {e}")
        time.sleep(0.2)
"#;

pub(crate) fn broker_port() -> Result<u16> {
    match env::var("BROKER_PORT") {
        Ok(p) if !p.is_empty() => p.parse().map_err(|_| format!("BROKER_PORT={p:?} is not a port number")),
        _ => Ok(9092),
    }
}

pub(crate) fn port_open(port: u16) -> bool {
    TcpStream::connect_timeout(&SocketAddr::from((Ipv4Addr::LOCALHOST, port)), Duration::from_secs(1)).is_ok()
}

pub(crate) fn kafka_probe(bootstrap: &str, deadline_secs: u32) -> Command {
    let mut cmd = Command::new("python3");
    cmd.args(["-c", KAFKA_PROBE, bootstrap, &deadline_secs.to_string()]).stdin(Stdio::null());
    cmd
}

pub(crate) fn kafka_answers(bootstrap: &str, deadline_secs: u32) -> Result<bool> {
    let status = kafka_probe(bootstrap, deadline_secs)
        .stderr(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run python3: {e}"))?;
    Ok(status.success())
}

/// `$HOME/.local/bin/nisshi` at the pinned version, built with the nightly toolchain if needed.
pub(crate) fn ensure_nisshi() -> Result<PathBuf> {
    let home = env::var_os("HOME").ok_or("HOME is not set")?;
    let root = Path::new(&home).join(".local");
    let bin = root.join("bin").join("nisshi");
    let installed =
        Command::new(&bin).arg("--version").stderr(Stdio::null()).output().ok().filter(|o| o.status.success());
    if installed.is_some_and(|o| version_matches(&String::from_utf8_lossy(&o.stdout), NISSHI_VERSION)) {
        return Ok(bin);
    }
    // nisshi needs a newer Rust than the stable toolchain pinned here; it is a tool, not the product.
    let toolchains =
        Command::new("rustup").args(["toolchain", "list"]).stderr(Stdio::null()).output().map_err(|e| {
            format!("the nisshi test broker is built with a nightly Rust toolchain, and rustup is not available ({e})")
        })?;
    if !String::from_utf8_lossy(&toolchains.stdout).lines().any(|l| l.starts_with("nightly")) {
        step("installing the nightly Rust toolchain (rustup; to build the nisshi test broker)");
        run_checked(Command::new("rustup").args(["toolchain", "install", "nightly", "--profile", "minimal"]))?;
    }
    step(&format!(
        "installing the nisshi {NISSHI_VERSION} test broker into {} (cargo +nightly install; ~13 min, once)",
        root.join("bin").display()
    ));
    let mut install = Command::new("cargo"); // the rustup proxy, which understands +nightly
    install
        .args(["+nightly", "install", "nisshi", "--version", NISSHI_VERSION, "--locked", "--no-default-features"])
        .args(["--features", NISSHI_FEATURES, "--root"])
        .arg(&root)
        .env_remove("RUSTUP_TOOLCHAIN")
        // cargo's own temporary directory, removed after the install: a build of another
        // toolchain has no business in the workspace's target directory, nor holding its lock.
        .env_remove("CARGO_TARGET_DIR");
    run_checked(&mut install)?;
    Ok(bin)
}

/// Any whitespace-separated word of `output` is `version` (optionally with a leading `v`).
pub(crate) fn version_matches(output: &str, version: &str) -> bool {
    output.split_whitespace().any(|w| w.strip_prefix('v').unwrap_or(w) == version)
}

/// The broker this run started; dropping it stops it (SIGTERM, then SIGKILL after 5 s).
pub(crate) struct Broker {
    child: Child,
    /// The log, opened before its file was unlinked: nothing is left behind, however we exit.
    log: File,
}

impl Broker {
    pub(crate) fn start(nisshi: &Path, port: u16) -> Result<Broker> {
        let url = format!("tcp://127.0.0.1:{port}");
        step(&format!("starting broker nisshi {NISSHI_VERSION} on 127.0.0.1:{port} (memory engine)"));
        let log_path = env::temp_dir().join(format!("lightkeeper-nisshi-{}-{port}.log", process::id()));
        let log_err = |e| format!("cannot create {}: {e}", log_path.display());
        let out = File::create(&log_path).map_err(log_err)?;
        let err = out.try_clone().map_err(log_err)?;
        let log = File::open(&log_path).map_err(log_err)?;
        let mut cmd = Command::new(nisshi);
        cmd.args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://nisshi/"])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        signals::die_with_parent(&mut cmd);
        let spawned = cmd.spawn();
        let _ = std::fs::remove_file(&log_path);
        let child = spawned.map_err(|e| format!("cannot start {}: {e}", nisshi.display()))?;
        signals::BROKER_PID.store(child.id() as i32, Ordering::SeqCst);
        let mut broker = Broker { child, log };

        let bootstrap = format!("127.0.0.1:{port}");
        let mut probe = kafka_probe(&bootstrap, BROKER_READY_SECS)
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run python3: {e}"))?;
        loop {
            if let Ok(Some(status)) = broker.child.try_wait() {
                let _ = probe.kill();
                let _ = probe.wait();
                broker.print_log();
                return Err(format!("the broker exited ({status}) before it was ready; its log is above"));
            }
            if let Some(status) = probe.try_wait().map_err(|e| e.to_string())? {
                if status.success() {
                    break;
                }
                let mut why = String::new();
                let _ = probe.stderr.take().map(|mut s| s.read_to_string(&mut why));
                broker.print_log();
                return Err(format!(
                    "the broker was not ready within {BROKER_READY_SECS} s ({}); its log is above",
                    why.trim()
                ));
            }
            sleep(Duration::from_millis(100));
        }
        // Ours, not some other process on the port: still running after answering.
        if let Ok(Some(status)) = broker.child.try_wait() {
            broker.print_log();
            return Err(format!("the broker exited ({status}) right after starting; its log is above"));
        }
        step("broker ready");
        Ok(broker)
    }

    fn print_log(&mut self) {
        let mut text = String::new();
        let _ = self.log.read_to_string(&mut text);
        eprintln!("---- broker log ----\n{}\n---- end of broker log ----", tail(&text, 200));
    }

    pub(crate) fn report_if_dead(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            self.print_log();
            eprintln!("xtask: the broker died during the tests ({status}); its log is above");
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            step("stopping broker");
            signals::terminate(self.child.id());
            let deadline = Instant::now() + Duration::from_secs(5);
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                sleep(Duration::from_millis(50));
            }
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        signals::BROKER_PID.store(0, Ordering::SeqCst);
    }
}

/// The last `lines` lines of `text`.
pub(crate) fn tail(text: &str, lines: usize) -> &str {
    match text.trim_end().rmatch_indices('\n').nth(lines.saturating_sub(1)) {
        Some((i, _)) => &text[i + 1..],
        None => text,
    }
}
