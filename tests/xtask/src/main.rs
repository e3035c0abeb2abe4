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
use std::ffi::OsString;
use std::process::{self, Command};

mod broker;
mod commands;
mod install;

use broker::*;
use commands::*;
use install::*;

pub(crate) type Result<T> = std::result::Result<T, String>;

/// What `cargo build` of the workspace needs: RocksDB (C++, bindgen) and librdkafka from source.
const BUILD_PACKAGES: &[&str] = &["cmake", "clang", "libclang-dev", "pkg-config", "libssl-dev", "zlib1g-dev"];
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

pub(crate) fn step(msg: &str) {
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

/// Whether a PostgreSQL server is installed where Debian puts it (`tests/src/postgres.rs`
/// starts one of its own from there).
fn postgres_installed() -> bool {
    std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.filter_map(|e| e.ok()).any(|e| e.path().join("bin/initdb").exists()))
        .unwrap_or(false)
}

fn test(args: &[OsString]) -> Result<i32> {
    signals::install();

    // One apt-get run for everything missing.
    let mut packages = BUILD_PACKAGES.to_vec();
    if env::var_os("CHROMIUM").is_none() {
        packages.push("chromium"); // the dashboard test renders the page in a real browser
    }
    if find_on_path("node").is_none() {
        packages.push("nodejs"); // the browser client's unit tests, and Playwright
    }
    if find_on_path("npm").is_none() {
        packages.push("npm"); // playwright-core, from the npm registry
    }
    if !postgres_installed() {
        // The durable engine of the test broker, for the tests that restart it (chaos soak).
        packages.push("postgresql");
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
    ensure_node_packages()?;

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

    // The TLS tests start brokers of their own (a TLS listener), with this binary.
    let nisshi = ensure_nisshi()?;
    let mut cmd = cargo();
    cmd.args(["test", "--release", "--workspace"])
        .args(args)
        .env("KAFKA_BOOTSTRAP", &bootstrap)
        .env("NISSHI_BIN", &nisshi);
    step(&format!("KAFKA_BOOTSTRAP={bootstrap} {}", show(&cmd)));
    let status = run_foreground(&mut cmd)?;
    if let Some(b) = &mut broker {
        b.report_if_dead();
    }
    drop(broker); // stops the broker this run started
    Ok(exit_code(status))
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
