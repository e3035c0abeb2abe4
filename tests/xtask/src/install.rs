//! Installing what is missing: Debian packages (apt, through sudo when not root) and the Python
//! packages the tests drive (pip, falling back to --break-system-packages on Debian's python).

use crate::commands::*;
use crate::{step, Result};
use std::process::{Command, Stdio};

/// The independent Kafka client and Avro decoder the end-to-end tests drive, what the Python
/// client (`clients/python`) and its pytest suite need, and schemathesis (API fuzzing against
/// `/openapi.json`, `tests/tests/openapi_conformance.rs`).
pub(crate) const PYTHON_PACKAGES: &[&str] =
    &["confluent-kafka", "fastavro", "astropy", "httpx", "websockets>=12", "pytest", "pandas", "schemathesis>=4,<5"];
pub(crate) const PYTHON_IMPORTS: &str =
    "import confluent_kafka, fastavro, astropy, httpx, websockets, pytest, pandas, schemathesis";

pub(crate) fn python_has_modules() -> bool {
    succeeds(Command::new("python3").args(["-c", PYTHON_IMPORTS]))
}

pub(crate) fn install_python_packages() -> Result<()> {
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

/// Installs the Debian packages of `wanted` that are missing (one `apt-get update`, one
/// `apt-get install`), through sudo when not root.
pub(crate) fn ensure_system_packages(wanted: &[&str]) -> Result<()> {
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

pub(crate) fn apt(sudo: bool, args: &[&str]) -> Command {
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

pub(crate) fn dpkg_installed(package: &str) -> bool {
    Command::new("dpkg")
        .args(["-s", package])
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|o| o.status.success() && dpkg_status_installed(&String::from_utf8_lossy(&o.stdout)))
}

/// `dpkg -s` also succeeds for a removed package whose configuration files remain
/// (`Status: deinstall ok config-files`); only `... installed` counts.
pub(crate) fn dpkg_status_installed(dpkg_s_output: &str) -> bool {
    dpkg_s_output
        .lines()
        .find_map(|l| l.strip_prefix("Status:"))
        .is_some_and(|s| s.split_whitespace().last() == Some("installed"))
}

pub(crate) fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

// ---------------------------------------------------------------------------------------------
// processes

/// Installs the browser tests' Node packages (playwright-core, pinned by `js/package-lock.json`)
/// unless they are there already.
pub(crate) fn ensure_node_packages() -> Result<()> {
    let js = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../js");
    if js.join("node_modules/playwright-core/package.json").exists() {
        return Ok(());
    }
    step("installing the browser tests' Node packages (npm ci --prefix js)");
    run_checked(Command::new("npm").args(["ci", "--no-audit", "--no-fund", "--prefix"]).arg(&js))
}
