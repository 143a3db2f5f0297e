//! docs/http.md works as written: its shell blocks run, in order, with `curl` against
//! `agentdb hub` in dev mode (on free ports instead of the defaults).

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Command;

#[test]
fn the_http_guide_runs_as_written() {
    let guide =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/http.md"))
            .expect("docs/http.md");
    let blocks: Vec<&str> = guide
        .split("```sh\n")
        .skip(1)
        .filter_map(|rest| rest.split("```").next())
        .collect();
    assert!(blocks.len() >= 8, "{} sh blocks", blocks.len());
    assert_eq!(
        blocks[0].trim(),
        "agentdb hub",
        "the first block starts the hub"
    );

    let dir = tempfile::tempdir().unwrap();
    let mut hub = common::agentdb();
    hub.current_dir(dir.path())
        .arg("hub")
        .args(agentdb_testkit::FREE_PORT_ARGS);
    let hub = common::Hub::spawn(hub, &dir.path().join("hub.log")).unwrap();
    let https_port = hub.https.rsplit(':').next().unwrap().to_owned();

    // The rest, as one script, with the addresses this hub got.
    let mut script = String::from("set -euo pipefail\n");
    for block in &blocks[1..] {
        for line in block.lines() {
            let line = if line.starts_with("HUB=") {
                format!("HUB=https://localhost:{https_port}")
            } else if line.starts_with("ADMIN=") {
                format!("ADMIN={}", hub.http)
            } else {
                line.to_owned()
            };
            script.push_str(&line);
            script.push('\n');
        }
    }
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_agentdb")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(dir.path())
        .env("PATH", path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the guide's commands failed: {}\nstdout:\n{stdout}\nhub log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        hub.log_text()
    );
    // What the guide shows happened: the token's tenant, stored and queried episodes, the
    // document's version.
    assert!(stdout.contains("demo"), "{stdout}");
    assert!(stdout.contains("\"inserted\":true"), "{stdout}");
    assert!(stdout.contains("Total: 300 EUR"), "{stdout}");
    assert!(stdout.contains("3.1.0"), "{stdout}");
}
