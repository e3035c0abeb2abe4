//! The dashboard driven by Playwright in Debian's Chromium (`js/e2e/dashboard.spec.mjs`): on an
//! embedded node, the object page grows live, the live feed and the sky map follow every alert,
//! the find forms agree with the REST API, stamps render and negative fluxes are never drawn as
//! brightenings; on a two-node cluster, a promotion shows in the cluster view as it happens.
//!
//! The script does the checking; these tests start the nodes and run it. Needs `npm ci --prefix js`
//! (for playwright-core) and Chromium. Screenshots, one per view, go to `tests/artifacts/dashboard/`;
//! after a passing run the object page's is copied to `docs/dashboard.png` for the README.

use lightkeeper_tests::cluster::{Cluster, TOKEN};
use lightkeeper_tests::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(120);

/// One browser at a time: Chromium and the nodes share two cores.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn chromium() -> String {
    std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into())
}

fn spec() -> PathBuf {
    workspace().join("js/e2e/dashboard.spec.mjs")
}

/// Where the screenshots of one run go (outside `target/`, kept as CI artifacts).
fn shots(name: &str) -> PathBuf {
    workspace().join("tests/artifacts/dashboard").join(name)
}

fn check_tools() {
    assert!(
        Path::new(&chromium()).exists(),
        "no Chromium at {} (apt-get install chromium, or set CHROMIUM)",
        chromium()
    );
    assert!(
        workspace().join("js/node_modules/playwright-core/package.json").exists(),
        "playwright-core is not installed: run `npm ci --prefix js` first"
    );
    let node = Command::new("node").arg("--version").output();
    assert!(node.is_ok_and(|o| o.status.success()), "no `node` on PATH (Node.js 20 or later is needed)");
}

/// Runs the Playwright script with `env`; prints what it said and fails unless it exits 0.
async fn run_spec(env: Vec<(&'static str, String)>) {
    let out = tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new("node");
        cmd.arg(spec()).current_dir(workspace()).env("CHROMIUM", chromium());
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().expect("running node")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("--- {} ---\n{stdout}", spec().display());
    if !stderr.trim().is_empty() {
        eprintln!("--- stderr ---\n{stderr}");
    }
    assert!(out.status.success(), "the dashboard checks failed ({}); see the output above", out.status);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dashboard_views_work_in_chromium_on_an_embedded_node() {
    check_tools();
    let _serial = SERIAL.lock().await;
    let tmp = tempfile::tempdir().unwrap();
    // A fresh node: the script ingests the shared data itself, part of it after the page loads.
    let node = NodeProcess::start(&tmp.path().join("node"), &[], &[]).unwrap();
    node.wait_ready(WAIT).await.unwrap();
    let dir = shots("single-node");
    let _ = std::fs::remove_dir_all(&dir);
    run_spec(vec![
        ("LK_URL", node.url.clone()),
        ("LK_DATA", shared_data().display().to_string()),
        ("LK_SHOTS", dir.display().to_string()),
    ])
    .await;

    // The README's picture: the object page of the passing run.
    let shot = dir.join("object.png");
    assert!(shot.exists(), "no screenshot at {}", shot.display());
    let docs = workspace().join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    std::fs::copy(&shot, docs.join("dashboard.png")).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_view_shows_a_promotion_as_it_happens() {
    check_tools();
    let _serial = SERIAL.lock().await;
    let tmp = tempfile::tempdir().unwrap();
    // Two nodes hosting both partitions, a mastering them (epoch 1), b a standby of each; no
    // rebalancing, so the only change of master is the promotion the script asks b for.
    let c = Cluster::new("dashboard", &["a", "b"], 2, tmp.path()).fixed_masters();
    let _nodes = c.start_all(WAIT).await;
    let dir = shots("cluster");
    let _ = std::fs::remove_dir_all(&dir);
    run_spec(vec![
        ("LK_URLS", c.urls().join(",")),
        ("LK_ADMIN_TOKEN", TOKEN.to_owned()),
        ("LK_DATA", shared_data().display().to_string()),
        ("LK_SHOTS", dir.display().to_string()),
    ])
    .await;
    assert!(dir.join("cluster-promotion.png").exists(), "no screenshot of the promotion in {}", dir.display());
}
