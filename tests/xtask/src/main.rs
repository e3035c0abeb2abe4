//! `cargo xtask`: the two commands that take a fresh Debian machine to a running demo or a
//! finished test run (the alias lives in `.cargo/config.toml`).
//!
//! ```text
//! cargo xtask demo [ARGS...]               apt packages the build needs, then `lightkeeper demo ARGS...`
//! cargo xtask test [-- CARGO TEST ARGS]    + chromium, nodejs, confluent-kafka and fastavro, the nisshi
//!                                          broker; starts the broker, runs the tests, stops the broker
//! ```
//!
//! Standard library only, so it builds in seconds before any system package exists. Everything
//! it installs is skipped when already present; nothing it starts outlives it.

use std::env;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{self, Child, Command, ExitStatus, Stdio};
use std::sync::atomic::Ordering;
use std::thread::sleep;
use std::time::{Duration, Instant};

type Result<T> = std::result::Result<T, String>;

/// What `cargo build` of the workspace needs: RocksDB (C++, bindgen) and librdkafka from source.
const BUILD_PACKAGES: &[&str] = &["cmake", "clang", "libclang-dev", "pkg-config", "libssl-dev", "zlib1g-dev"];
/// The test broker (`../shared/design/BROKER.md`), built with the nightly toolchain.
const NISSHI_VERSION: &str = "0.8.1";
const NISSHI_FEATURES: &str = "postgres,dynostore";
/// The independent Kafka client and Avro decoder the end-to-end tests drive.
const PYTHON_PACKAGES: &[&str] = &["confluent-kafka", "fastavro"];
const PYTHON_IMPORTS: &str = "import confluent_kafka, fastavro";
const BROKER_READY_SECS: u32 = 60;

/// Ready when a real Kafka client gets metadata (a bare port check can be fooled by another
/// process). argv: bootstrap, deadline in seconds.
const KAFKA_PROBE: &str = r#"
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

const USAGE: &str = "\
usage: cargo xtask demo [ARGS...]            install the build's system packages (apt), then run
                                             `lightkeeper demo ARGS...` (`demo --help` lists them)
       cargo xtask test [-- CARGO TEST ARGS] install what the tests need (apt, pip, the nisshi broker),
                                             start the broker, run `cargo test --release --workspace`
                                             with the extra arguments, stop the broker
environment: BROKER_PORT (default 9092); KAFKA_BOOTSTRAP to test against a broker of your own;
             CARGO_TARGET_DIR is honoured";

fn main() {
    let args: Vec<OsString> = env::args_os().skip(1).collect();
    let code = match run(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("xtask: {e}");
            1
        }
    };
    // Every guard (the broker) has been dropped by now.
    process::exit(code);
}

fn run(args: &[OsString]) -> Result<i32> {
    let Some((command, rest)) = args.split_first() else {
        eprintln!("{USAGE}");
        return Ok(2);
    };
    let rest = strip_separator(rest);
    match command.to_str() {
        Some("demo") => demo(rest),
        Some("test") => test(rest),
        Some("help" | "-h" | "--help") => {
            println!("{USAGE}");
            Ok(0)
        }
        _ => {
            eprintln!("xtask: unknown command {command:?}\n{USAGE}");
            Ok(2)
        }
    }
}

/// `cargo xtask test -- --test x` and `cargo xtask test --test x` mean the same.
fn strip_separator(args: &[OsString]) -> &[OsString] {
    match args.split_first() {
        Some((first, rest)) if first == "--" => rest,
        _ => args,
    }
}

fn step(msg: &str) {
    eprintln!("== {msg}");
}

// ---------------------------------------------------------------------------------------------
// demo

fn demo(args: &[OsString]) -> Result<i32> {
    ensure_system_packages(BUILD_PACKAGES)?;
    step("cargo run --release -p lightkeeper-gateway -- demo (the first build takes ~15 min on 2 cores)");
    let mut cmd = cargo();
    cmd.args(["run", "--release", "-p", "lightkeeper-gateway", "--", "demo"]).args(args);
    exec(cmd)
}

/// Become the command: same pid, stdin/stdout, signals and exit status.
#[cfg(unix)]
fn exec(mut cmd: Command) -> Result<i32> {
    use std::os::unix::process::CommandExt;
    let e = cmd.exec();
    Err(format!("cannot run {cmd:?}: {e}"))
}

#[cfg(not(unix))]
fn exec(mut cmd: Command) -> Result<i32> {
    let status = cmd.status().map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    Ok(exit_code(status))
}

// ---------------------------------------------------------------------------------------------
// test

fn test(args: &[OsString]) -> Result<i32> {
    signals::install();

    // One apt-get run for everything missing.
    let mut packages = BUILD_PACKAGES.to_vec();
    if env::var_os("CHROMIUM").is_none() {
        packages.push("chromium"); // the dashboard test renders the page in a real browser
    }
    if find_on_path("node").is_none() {
        packages.push("nodejs"); // the browser client's unit tests
    }
    let python_ready = python_has_modules();
    if find_on_path("python3").is_none() {
        packages.extend(["python3", "python3-pip"]);
    } else if !python_ready && !succeeds(Command::new("python3").args(["-m", "pip", "--version"])) {
        packages.push("python3-pip");
    }
    ensure_system_packages(&packages)?;
    if !python_ready {
        install_python_packages()?;
    }

    let (bootstrap, mut broker) = match env::var("KAFKA_BOOTSTRAP") {
        Ok(b) if !b.is_empty() => {
            step(&format!("testing against the broker at KAFKA_BOOTSTRAP={b}"));
            if !kafka_answers(&b, 20)? {
                return Err(format!("no Kafka broker answers at KAFKA_BOOTSTRAP={b}; unset it to have one started"));
            }
            (b, None)
        }
        _ => {
            let port = broker_port()?;
            let bootstrap = format!("127.0.0.1:{port}");
            if port_open(port) {
                if !kafka_answers(&bootstrap, 10)? {
                    return Err(format!(
                        "something listens on {bootstrap} but does not answer as a Kafka broker; \
                         stop it or choose another port with BROKER_PORT=..."
                    ));
                }
                step(&format!("a Kafka broker already answers on {bootstrap}: reusing it (not starting another)"));
                (bootstrap, None)
            } else {
                let nisshi = ensure_nisshi()?;
                let broker = Broker::start(&nisshi, port)?;
                (bootstrap, Some(broker))
            }
        }
    };

    let mut cmd = cargo();
    cmd.args(["test", "--release", "--workspace"]).args(args).env("KAFKA_BOOTSTRAP", &bootstrap);
    step(&format!("KAFKA_BOOTSTRAP={bootstrap} {}", show(&cmd)));
    let status = run_foreground(&mut cmd)?;
    if let Some(b) = &mut broker {
        b.report_if_dead();
    }
    drop(broker); // stops the broker this run started
    Ok(exit_code(status))
}

fn broker_port() -> Result<u16> {
    match env::var("BROKER_PORT") {
        Ok(p) if !p.is_empty() => p.parse().map_err(|_| format!("BROKER_PORT={p:?} is not a port number")),
        _ => Ok(9092),
    }
}

fn port_open(port: u16) -> bool {
    TcpStream::connect_timeout(&SocketAddr::from((Ipv4Addr::LOCALHOST, port)), Duration::from_secs(1)).is_ok()
}

fn python_has_modules() -> bool {
    succeeds(Command::new("python3").args(["-c", PYTHON_IMPORTS]))
}

fn install_python_packages() -> Result<()> {
    step(&format!("installing {} (python3 -m pip)", PYTHON_PACKAGES.join(" ")));
    let pip = |extra: &[&str]| {
        let mut cmd = Command::new("python3");
        cmd.args(["-m", "pip", "install", "-q"]).args(extra).args(PYTHON_PACKAGES);
        run_foreground(&mut cmd).is_ok_and(|s| s.success())
    };
    // Debian's own python3 refuses plain pip installs (PEP 668).
    if !pip(&[]) && !pip(&["--break-system-packages"]) {
        return Err(format!("could not install {} with pip", PYTHON_PACKAGES.join(" ")));
    }
    if !python_has_modules() {
        return Err(format!("pip installed {} but python3 cannot import them", PYTHON_PACKAGES.join(" ")));
    }
    Ok(())
}

/// Spawns the Python probe; `deadline_secs` bounds it.
fn kafka_probe(bootstrap: &str, deadline_secs: u32) -> Command {
    let mut cmd = Command::new("python3");
    cmd.args(["-c", KAFKA_PROBE, bootstrap, &deadline_secs.to_string()]).stdin(Stdio::null());
    cmd
}

fn kafka_answers(bootstrap: &str, deadline_secs: u32) -> Result<bool> {
    let status = kafka_probe(bootstrap, deadline_secs)
        .stderr(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run python3: {e}"))?;
    Ok(status.success())
}

/// `$HOME/.local/bin/nisshi` at the pinned version, built with the nightly toolchain if needed.
fn ensure_nisshi() -> Result<PathBuf> {
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
fn version_matches(output: &str, version: &str) -> bool {
    output.split_whitespace().any(|w| w.strip_prefix('v').unwrap_or(w) == version)
}

/// The broker this run started; dropping it stops it (SIGTERM, then SIGKILL after 5 s).
struct Broker {
    child: Child,
    /// The log, opened before its file was unlinked: nothing is left behind, however we exit.
    log: File,
}

impl Broker {
    fn start(nisshi: &Path, port: u16) -> Result<Broker> {
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

    fn report_if_dead(&mut self) {
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
fn tail(text: &str, lines: usize) -> &str {
    match text.trim_end().rmatch_indices('\n').nth(lines.saturating_sub(1)) {
        Some((i, _)) => &text[i + 1..],
        None => text,
    }
}

// ---------------------------------------------------------------------------------------------
// system packages

/// Installs the Debian packages of `wanted` that are missing (one `apt-get update`, one
/// `apt-get install`), through sudo when not root.
fn ensure_system_packages(wanted: &[&str]) -> Result<()> {
    if find_on_path("dpkg").is_none() || find_on_path("apt-get").is_none() {
        step(&format!(
            "not a Debian system (no dpkg/apt-get): make sure the equivalents of these are installed: {}",
            wanted.join(" ")
        ));
        return Ok(());
    }
    let missing: Vec<&str> = wanted.iter().copied().filter(|p| !dpkg_installed(p)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let sudo = if is_root() {
        false
    } else if find_on_path("sudo").is_some() {
        true
    } else {
        return Err(format!(
            "these system packages are missing: {0}\nand I am not root and there is no sudo. As root, run\n  \
             apt-get update && apt-get install -y {0}\nthen run me again.",
            missing.join(" ")
        ));
    };
    step(&format!("installing {} (apt-get{})", missing.join(" "), if sudo { " via sudo" } else { "" }));
    run_checked(&mut apt(sudo, &["update", "-qq"]))?;
    let mut install = apt(sudo, &["install", "-y", "-qq"]);
    install.args(&missing).stdout(Stdio::null());
    run_checked(&mut install)
}

fn apt(sudo: bool, args: &[&str]) -> Command {
    let mut cmd = if sudo {
        let mut c = Command::new("sudo");
        c.args(["env", "DEBIAN_FRONTEND=noninteractive", "apt-get"]); // sudo resets the environment
        c
    } else {
        let mut c = Command::new("apt-get");
        c.env("DEBIAN_FRONTEND", "noninteractive");
        c
    };
    cmd.args(args);
    cmd
}

fn dpkg_installed(package: &str) -> bool {
    Command::new("dpkg")
        .args(["-s", package])
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|o| o.status.success() && dpkg_status_installed(&String::from_utf8_lossy(&o.stdout)))
}

/// `dpkg -s` also succeeds for a removed package whose configuration files remain
/// (`Status: deinstall ok config-files`); only `... installed` counts.
fn dpkg_status_installed(dpkg_s_output: &str) -> bool {
    dpkg_s_output
        .lines()
        .find_map(|l| l.strip_prefix("Status:"))
        .is_some_and(|s| s.split_whitespace().last() == Some("installed"))
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

// ---------------------------------------------------------------------------------------------
// processes

fn cargo() -> Command {
    // The cargo that runs this xtask (same toolchain); CARGO_TARGET_DIR etc. pass through.
    Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    env::split_paths(&env::var_os("PATH")?).map(|d| d.join(name)).find(|p| is_executable(p))
}

#[cfg(unix)]
fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(p: &Path) -> bool {
    p.is_file()
}

fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

/// Runs `cmd` in the foreground; a signal that stops this process is passed on to it.
fn run_foreground(cmd: &mut Command) -> Result<ExitStatus> {
    let mut child = cmd.spawn().map_err(|e| format!("cannot run {}: {e}", show(cmd)))?;
    signals::CHILD_PID.store(child.id() as i32, Ordering::SeqCst);
    let status = child.wait();
    signals::CHILD_PID.store(0, Ordering::SeqCst);
    status.map_err(|e| format!("waiting for {}: {e}", show(cmd)))
}

fn run_checked(cmd: &mut Command) -> Result<()> {
    let status = run_foreground(cmd)?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{}` failed ({status})", show(cmd)))
    }
}

fn show(cmd: &Command) -> String {
    let program = Path::new(cmd.get_program()).file_name().unwrap_or(OsStr::new("?")).to_string_lossy().into_owned();
    std::iter::once(program)
        .chain(cmd.get_args().map(|a| a.to_string_lossy().into_owned()))
        .collect::<Vec<_>>()
        .join(" ")
}

fn exit_code(status: ExitStatus) -> i32 {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = status.signal() {
            return 128 + sig;
        }
    }
    status.code().unwrap_or(1)
}

/// Signals, with the few libc calls std already links (no crates): on SIGINT/SIGTERM/SIGHUP
/// the foreground child gets the signal too, the broker is stopped, and this process dies of
/// the same signal. The broker also dies with this process if it is killed outright (Linux).
#[cfg(unix)]
mod signals {
    use std::ffi::c_int;
    use std::process::Command;
    use std::sync::atomic::{AtomicI32, Ordering};

    pub static CHILD_PID: AtomicI32 = AtomicI32::new(0);
    pub static BROKER_PID: AtomicI32 = AtomicI32::new(0);

    const SIGHUP: c_int = 1;
    const SIGINT: c_int = 2;
    const SIGTERM: c_int = 15;
    const SIG_DFL: usize = 0;

    extern "C" {
        fn signal(signum: c_int, handler: usize) -> usize;
        fn kill(pid: i32, sig: c_int) -> c_int;
        fn raise(sig: c_int) -> c_int;
    }

    extern "C" fn on_signal(sig: c_int) {
        // Only async-signal-safe calls here.
        unsafe {
            let child = CHILD_PID.load(Ordering::SeqCst);
            if child > 0 {
                kill(child, sig);
            }
            let broker = BROKER_PID.load(Ordering::SeqCst);
            if broker > 0 {
                kill(broker, SIGTERM);
            }
            signal(sig, SIG_DFL);
            raise(sig);
        }
    }

    pub fn install() {
        for sig in [SIGHUP, SIGINT, SIGTERM] {
            // A handler (unlike SIG_IGN) is reset to the default in the children on exec.
            unsafe { signal(sig, on_signal as extern "C" fn(c_int) as usize) };
        }
    }

    pub fn terminate(pid: u32) {
        unsafe { kill(pid as i32, SIGTERM) };
    }

    /// The child gets SIGTERM when this process dies, however it dies.
    #[cfg(target_os = "linux")]
    pub fn die_with_parent(cmd: &mut Command) {
        use std::os::unix::process::CommandExt;
        extern "C" {
            fn prctl(option: c_int, ...) -> c_int;
        }
        const PR_SET_PDEATHSIG: c_int = 1;
        unsafe {
            cmd.pre_exec(|| {
                prctl(PR_SET_PDEATHSIG, SIGTERM as std::ffi::c_ulong);
                Ok(())
            });
        }
    }

    #[cfg(not(target_os = "linux"))]
    pub fn die_with_parent(_cmd: &mut Command) {}
}

#[cfg(not(unix))]
mod signals {
    use std::process::Command;
    use std::sync::atomic::AtomicI32;
    pub static CHILD_PID: AtomicI32 = AtomicI32::new(0);
    pub static BROKER_PID: AtomicI32 = AtomicI32::new(0);
    pub fn install() {}
    pub fn terminate(_pid: u32) {}
    pub fn die_with_parent(_cmd: &mut Command) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leading_separator_is_dropped_once() {
        let args = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(strip_separator(&args(&["--", "--test", "x"])), args(&["--test", "x"]));
        assert_eq!(
            strip_separator(&args(&["--test", "x", "--", "--nocapture"])),
            args(&["--test", "x", "--", "--nocapture"])
        );
        assert_eq!(strip_separator(&args(&["--", "--", "--nocapture"])), args(&["--", "--nocapture"]));
        assert!(strip_separator(&[]).is_empty());
    }

    #[test]
    fn only_installed_packages_count() {
        let installed = "Package: cmake\nStatus: install ok installed\nPriority: optional\n";
        let held = "Package: cmake\nStatus: hold ok installed\n";
        let removed = "Package: cmake\nStatus: deinstall ok config-files\n";
        assert!(dpkg_status_installed(installed));
        assert!(dpkg_status_installed(held));
        assert!(!dpkg_status_installed(removed));
        assert!(!dpkg_status_installed(""));
    }

    #[test]
    fn versions_match_whole_words() {
        assert!(version_matches("nisshi 0.8.1\n", "0.8.1"));
        assert!(version_matches("nisshi v0.8.1", "0.8.1"));
        assert!(!version_matches("nisshi 0.8.10", "0.8.1"));
        assert!(!version_matches("", "0.8.1"));
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc\n");
        assert_eq!(tail("a\nb\nc", 5), "a\nb\nc");
        assert_eq!(tail("", 3), "");
    }
}
