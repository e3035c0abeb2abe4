//! The dashboard in a real browser: headless Chromium loads it from an embedded node that holds
//! ZTF21abiuvdk, and the rendered DOM must show the object's summary and plot every point.

use lightkeeper_clients::Client;
use lightkeeper_tests::*;
use std::process::Command;
use std::time::Duration;

/// The text content of the element with `id` in serialized HTML (elements here hold plain text).
fn text_of<'a>(dom: &'a str, id: &str) -> Option<&'a str> {
    let at = dom.find(&format!("id=\"{id}\""))?;
    let start = at + dom[at..].find('>')? + 1;
    let end = start + dom[start..].find('<')?;
    Some(dom[start..end].trim())
}

fn chromium() -> String {
    std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dashboard_renders_a_live_object_in_chromium() {
    assert!(
        std::path::Path::new(&chromium()).exists(),
        "no Chromium at {} (apt-get install chromium, or set CHROMIUM); `cargo xtask test` installs it",
        chromium()
    );
    let tmp = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(&tmp.path().join("node"), &[], &[]).unwrap();
    node.wait_ready(Duration::from_secs(60)).await.unwrap();
    let client = Client::new(&node.url).unwrap();
    for f in avro_files(&shared_data().join("ztf/alerts/pitt-google-broker/lightcurve_ZTF21abiuvdk")) {
        client.ingest(std::fs::read(f).unwrap()).await.unwrap();
    }
    eventually(Duration::from_secs(60), "22 alerts applied", || async {
        client.object("ztf:ZTF21abiuvdk").await.ok().filter(|o| o["n_alerts"] == 22)
    })
    .await
    .unwrap();

    let profile = tmp.path().join("chromium-profile");
    let url = format!("{}/?key=ztf:ZTF21abiuvdk", node.url);
    let out = tokio::task::spawn_blocking(move || {
        Command::new(chromium())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--virtual-time-budget=10000",
                "--dump-dom",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(url)
            .output()
            .expect("running chromium")
    })
    .await
    .unwrap();
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && !dom.is_empty(), "chromium failed: {}", String::from_utf8_lossy(&out.stderr));

    assert_eq!(text_of(&dom, "n-detections"), Some("22"), "detections shown");
    assert_eq!(text_of(&dom, "n-upper-limits"), Some("15"), "upper limits shown");
    assert_eq!(text_of(&dom, "version"), Some("22"), "version shown");
    assert_eq!(dom.matches("pt pt-detection").count(), 22, "every detection plotted");
    assert_eq!(dom.matches("pt pt-upper_limit").count(), 15, "every upper limit plotted");
    assert!(dom.contains("data-band=\"g\"") && dom.contains("data-band=\"r\""));
    assert_eq!(text_of(&dom, "status"), Some("open"), "WebSocket connected");
}
