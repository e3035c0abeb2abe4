//! The Python client (`clients/python`, pip-installable as `lightkeeper`) against real nodes:
//! its pytest suite starts embedded nodes from this build's binary, ingests the shared alerts
//! through the client and checks every method, typed errors, pagination, subscriptions (blocking
//! and asyncio) with resume across a node restart, failover between nodes, cutouts and stats.
//!
//! This test builds the binary (via `binary()`), then runs `python3 -m pytest clients/python/tests`
//! with `LIGHTKEEPER_BIN` pointing at it. `cargo xtask test` installs what it needs
//! (httpx, websockets, pytest, pandas, astropy).

use lightkeeper_tests::*;
use std::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_client_passes_its_suite_against_real_nodes() {
    let bin = binary();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .args(["-m", "pytest", "clients/python/tests", "-q", "-p", "no:cacheprovider", "-rs"])
            .current_dir(workspace())
            .env("LIGHTKEEPER_BIN", &bin)
            .env("LIGHTKEEPER_DATA", shared_data())
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .output()
            .expect("running python3 -m pytest")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the Python client's tests failed ({}); see the output above", out.status);
    let summary = stdout.lines().rev().find(|l| l.contains("passed")).unwrap_or_default();
    assert!(summary.contains("passed") && !summary.contains("failed"), "pytest summary: {summary:?}");
}
