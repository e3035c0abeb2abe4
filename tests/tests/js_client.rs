//! The browser client library's unit tests (version gaps, duplicates, reconnect and resume in
//! `js/lightkeeper.js`), run with Node's test runner so `cargo test` covers them too.

use lightkeeper_tests::workspace;
use std::process::Command;

#[test]
fn browser_client_unit_tests_pass_under_node() {
    let out = Command::new("node")
        .args(["--test", "js/test/"])
        .current_dir(workspace())
        .output()
        .expect("running node (install Node.js; `cargo xtask test` does)");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "node --test failed:\n{report}\n{}", String::from_utf8_lossy(&out.stderr));
    // The runner must actually have run tests, not found none.
    let passed = report.lines().find_map(|l| l.strip_prefix("# pass ")).and_then(|n| n.trim().parse::<u32>().ok());
    assert!(passed.is_some_and(|n| n >= 10), "expected the JS tests to run:\n{report}");
}
