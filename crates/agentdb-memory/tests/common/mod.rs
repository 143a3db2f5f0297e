//! Helpers shared by the engine's integration tests.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use agentdb_core::NewEpisode;

/// An episode carrying `marker` in every sensitive field: texts, critique, tags and metadata.
pub fn marked_episode(marker: &str) -> NewEpisode {
    NewEpisode::new(
        format!("task {marker}"),
        format!("in {marker}"),
        format!("out {marker}"),
        0.8,
    )
    .with_critique(format!("critique {marker}"))
    .with_tags(vec![format!("tag-{marker}")])
    .with_metadata(serde_json::json!({ "note": marker }))
}

/// Asserts that no file under `dir` holds any 6-byte window of `marker` (so that no fragment
/// of it leaks either), and that there was something to scan.
pub fn assert_no_plaintext(dir: &Path, marker: &str) {
    let mut scanned = 0;
    for path in walk(dir) {
        let bytes = std::fs::read(&path).unwrap();
        scanned += bytes.len();
        for w in marker.as_bytes().windows(6) {
            assert!(
                !bytes.windows(w.len()).any(|b| b == w),
                "{} contains {:?}",
                path.display(),
                String::from_utf8_lossy(w)
            );
        }
    }
    assert!(scanned > 0);
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
