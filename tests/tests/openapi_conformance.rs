//! API fuzzing (issue 14, part 5): schemathesis generates requests from `/openapi.json` for
//! every documented operation (bounded: `EXAMPLES` per operation, a fixed seed) against a real
//! node holding real objects, and checks every answer: no 5xx, and status code, content type,
//! headers and body all as the document says. The admin operations are called without the
//! token the node is configured with, so they must answer 401 as documented, and change nothing.

use lightkeeper_tests::*;
use std::process::Command;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);
/// Generated requests per operation and phase: enough to reach every parameter's edge cases,
/// few enough for CI (about a minute in all).
const EXAMPLES: &str = "20";
/// The checks that make "no 5xx, every response conforming to the spec". Schemathesis's
/// stricter `positive_data_acceptance` is left out on purpose: a filter, a cursor or an alert
/// packet is a string or bytes to the schema and a language or a format to the node, so a
/// schema-valid value is often rightly refused with a 400.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
                      response_headers_conformance,response_schema_conformance";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_documented_operation_answers_as_documented_under_generated_requests() {
    let tmp = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(
        &tmp.path().join("node"),
        &[],
        &[("LIGHTKEEPER_CLUSTER__ADMIN_TOKEN", "not-given-to-the-fuzzer".into())],
    )
    .unwrap();
    node.wait_ready(WAIT).await.unwrap();
    let client = lightkeeper_clients::Client::new(&node.url).unwrap();
    let mut files = avro_files(&shared_data().join("ztf/alerts/pitt-google-broker/lightcurve_ZTF21abiuvdk"));
    files.extend(avro_files(&shared_data().join("lsst/alerts/boom")));
    for f in &files {
        client.ingest(std::fs::read(f).unwrap()).await.unwrap();
    }
    eventually(WAIT, "the objects", || async { client.object("ztf:ZTF21abiuvdk").await.ok() }).await.unwrap();

    let url = format!("{}/openapi.json", node.url);
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .args(["-c", "import sys; from schemathesis.cli import schemathesis; sys.argv[0] = 'schemathesis'; sys.exit(schemathesis())"])
            .args(["run", &url, "--checks", CHECKS, "--max-examples", EXAMPLES, "--seed", "14"])
            .args(["--request-timeout", "20", "--workers", "2", "--no-color"])
            // The WebSocket upgrade is tested by the WebSocket tests, not by HTTP generation.
            .args(["--exclude-path", "/v1/ws"])
            .output()
            .expect("python3 runs schemathesis (installed by `cargo xtask test`)")
    })
    .await
    .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let summary: Vec<&str> =
        text.lines().filter(|l| l.contains("generated") || l.contains("passed") || l.contains("failures")).collect();
    eprintln!("schemathesis: {}", summary.join(" | "));
    assert!(out.status.success(), "schemathesis found non-conforming answers:\n{text}");
    assert!(text.contains("generated"), "schemathesis ran no test cases:\n{text}");
}
