//! Hubs over one PostgreSQL database, through the real binary: three hubs serve the same
//! tenants (what one acknowledges, the others find), a hub killed mid-write loses nothing it
//! acknowledged and the others keep serving, a fresh hub joins and serves everything, and no
//! episode content reaches the database in the clear. The server is the suite's
//! (`AGENTDB_TEST_POSTGRES`); each test has a database of its own.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use agentdb_testkit::postgres::{fresh_database, tool};
use common::pki::Pki;
use common::{agentdb, Hub};

/// How long a write may take to show on another hub before a test fails (the latency itself
/// is measured by `agentdb-bench postgres`).
const VISIBLE: Duration = Duration::from_secs(15);
/// How often a condition is polled.
const POLL: Duration = Duration::from_millis(100);
/// The master key every hub of the group shares (base64 of 32 bytes).
const MASTER_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// A group of hubs over one database, with one PKI.
struct Group {
    pki: Pki,
    dir: PathBuf,
    url: String,
}

impl Group {
    fn new(dir: &Path, hubs: &[&str]) -> Group {
        let pki_dir = dir.join("pki");
        std::fs::create_dir_all(&pki_dir).unwrap();
        Group {
            pki: Pki::new(pki_dir, hubs, &["acme", "globex"]),
            dir: dir.to_owned(),
            url: fresh_database(),
        }
    }

    /// Starts hub `name` over the group's database, with a data directory of its own.
    fn start(&self, name: &str) -> Hub {
        self.start_with(name, "")
    }

    /// [`Self::start`] with `extra` lines in the hub's config.
    fn start_with(&self, name: &str, extra: &str) -> Hub {
        let dir = self.dir.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("hub.toml");
        std::fs::write(
            &config,
            format!(
                "hub_id = {name:?}\ndata = \"data\"\nstorage = {:?}\nquic = \"127.0.0.1:0\"\n\
                 http = \"127.0.0.1:0\"\nhttps = \"127.0.0.1:0\"\n{extra}\n{}",
                self.url,
                self.pki.hub_sections(name)
            ),
        )
        .unwrap();
        let mut cmd = agentdb();
        cmd.args(["hub", "--config", config.to_str().unwrap()])
            .env("AGENTDB_MASTER_KEY", MASTER_KEY);
        Hub::spawn(cmd, &dir.join("hub.log")).expect("the hub starts")
    }

    /// Polls `hub` until `check` holds for the ids a query of `tenant` returns.
    fn wait_ids(
        &self,
        hub: &Hub,
        tenant: &str,
        what: &str,
        check: impl Fn(&BTreeSet<String>) -> bool,
    ) {
        let deadline = Instant::now() + VISIBLE;
        loop {
            let ids = self.pki.ids(hub, tenant);
            if check(&ids) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "hub {} never {what}: has {ids:?}; log: {}",
                hub.field("hub"),
                hub.log_text()
            );
            std::thread::sleep(POLL);
        }
    }
}

#[test]
fn three_hubs_over_one_database_serve_the_same_tenants() {
    let dir = tempfile::tempdir().unwrap();
    let group = Group::new(dir.path(), &["hub-a", "hub-b", "hub-c"]);
    let hubs: Vec<Hub> = ["hub-a", "hub-b", "hub-c"]
        .iter()
        .map(|h| group.start(h))
        .collect();
    let (a, b, c) = (&hubs[0], &hubs[1], &hubs[2]);

    let from_a = group
        .pki
        .store(a, "acme", "summarise invoice", "Total: 300 EUR");
    for hub in [b, c] {
        group.wait_ids(hub, "acme", "found the episode stored on hub-a", |ids| {
            ids.contains(&from_a)
        });
    }
    let from_b = group
        .pki
        .store(b, "acme", "summarise invoice again", "Total: 12 EUR");
    group.wait_ids(c, "acme", "found the episode stored on hub-b", |ids| {
        ids.contains(&from_b)
    });
    // The other tenant sees none of it, on any hub.
    for hub in [a, b, c] {
        assert!(group.pki.ids(hub, "globex").is_empty());
    }

    // An update on one hub and a delete on another reach the third.
    group
        .pki
        .agent(b, "update", "acme", &["--id", &from_a, "--reward", "0.15"]);
    let deadline = Instant::now() + VISIBLE;
    while group.pki.reward(c, "acme", &from_a) != Some(0.15) {
        assert!(Instant::now() < deadline, "the update never reached hub-c");
        std::thread::sleep(POLL);
    }
    group.pki.agent(c, "delete", "acme", &["--id", &from_b]);
    group.wait_ids(a, "acme", "dropped the episode deleted on hub-c", |ids| {
        !ids.contains(&from_b)
    });
}

/// An operator's revocation issued on one hub of a group is enforced by the others: it is
/// kept in the shared database, and every hub reads the group's revocations each second.
#[test]
fn a_revocation_issued_on_one_hub_is_enforced_by_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let group = Group::new(dir.path(), &["hub-a", "hub-b"]);
    let (a, b) = (group.start("hub-a"), group.start("hub-b"));
    let pki = &group.pki;
    let issue = |agent: &str| pki.issue_token("acme", agent).0;
    // Tokens of agent worker-1, all issued before the revocation. A CLI agent's token is
    // revoked on the hub it says goodbye to, so each attempt takes a fresh one.
    let tokens: Vec<String> = (0..40).map(|_| issue("worker-1")).collect();
    let mut tokens = tokens.iter();
    let query = |hub: &Hub, token: &str| pki.served(hub, "acme", ["--token", token]);
    for hub in [&a, &b] {
        query(hub, tokens.next().unwrap()).unwrap();
    }

    let revoked = agentdb()
        .args(["revoke", "agent", "--tenant", "acme", "--agent", "worker-1"])
        .args(["--http", &a.http, "--signing-key", &pki.path("signing.key")])
        .output()
        .unwrap();
    assert!(revoked.status.success(), "{revoked:?}");
    let e = query(&a, tokens.next().unwrap()).unwrap_err();
    assert!(
        e.contains("agent worker-1 of tenant acme has been revoked"),
        "{e}"
    );
    // hub-b refuses the agent once it has read the group's revocations (about a second).
    let deadline = Instant::now() + VISIBLE;
    loop {
        let token = tokens.next().expect("hub-b never enforced the revocation");
        match query(&b, token) {
            Err(e) => {
                assert!(
                    e.contains("agent worker-1 of tenant acme has been revoked"),
                    "{e}"
                );
                break;
            }
            Ok(()) => assert!(
                Instant::now() < deadline,
                "hub-b never enforced the revocation"
            ),
        }
        std::thread::sleep(POLL);
    }
    // Another agent of the tenant is still served there.
    query(&b, &issue("worker-2")).unwrap();
}

#[test]
fn a_token_revoked_by_its_agent_on_one_hub_is_refused_by_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let group = Group::new(dir.path(), &["hub-a", "hub-b"]);
    let (a, b) = (group.start("hub-a"), group.start("hub-b"));
    let pki = &group.pki;
    let query = |hub: &Hub, token: &str| pki.served(hub, "acme", ["--token", token]);
    // Agents that each say goodbye to hub-a, which revokes their tokens there. Each attempt
    // on hub-b takes another of these tokens: one served there is revoked by hub-b itself
    // at its goodbye, so it could not tell whether hub-b read hub-a's revocation.
    let tokens: Vec<String> = (0..16)
        .map(|_| pki.issue_token("acme", "worker-1").0)
        .collect();
    for token in &tokens {
        query(&a, token).unwrap();
    }
    let e = query(&a, &tokens[0]).unwrap_err();
    assert!(e.contains("token has been revoked"), "{e}");
    // hub-b refuses them once it has read the group's revoked tokens (about a second): the
    // one revoked last first.
    let deadline = Instant::now() + VISIBLE;
    let mut tokens = tokens.iter().rev();
    loop {
        let token = tokens
            .next()
            .expect("hub-b never refused a token revoked on hub-a");
        match query(&b, token) {
            Err(e) => {
                assert!(e.contains("token has been revoked"), "{e}");
                break;
            }
            Ok(()) => assert!(
                Instant::now() < deadline,
                "hub-b never refused a token revoked on hub-a"
            ),
        }
        std::thread::sleep(POLL);
    }
    // And every one of them from then on; a token of the same agent not used yet is served.
    for token in tokens {
        let e = query(&b, token).unwrap_err();
        assert!(e.contains("token has been revoked"), "{e}");
    }
    query(&b, &pki.issue_token("acme", "worker-1").0).unwrap();
}

#[test]
fn a_hub_killed_mid_write_loses_nothing_acknowledged_and_a_fresh_hub_serves_everything() {
    let dir = tempfile::tempdir().unwrap();
    let group = Group::new(dir.path(), &["hub-a", "hub-b", "hub-d"]);
    let a = group.start("hub-a");
    let mut b = group.start("hub-b");
    let marker = marker();

    // Writers on hub-b, each storing one episode after another in its own processes, until
    // hub-b is killed: once a few stores are acknowledged, while others are under way.
    let acknowledged = std::sync::Mutex::new(Vec::<String>::new());
    let stop = std::sync::atomic::AtomicBool::new(false);
    let quic = b.quic.clone();
    std::thread::scope(|scope| {
        for w in 0..4 {
            let (group, quic, marker, acknowledged, stop) =
                (&group, &quic, &marker, &acknowledged, &stop);
            scope.spawn(move || {
                for n in 0..200 {
                    if stop.load(std::sync::atomic::Ordering::Acquire) {
                        return;
                    }
                    let mut args: Vec<String> =
                        vec!["agent".into(), "store".into(), "--hub".into(), quic.clone()];
                    args.extend(group.pki.creds("acme"));
                    for (flag, value) in [
                        ("--tenant", "acme".to_owned()),
                        ("--task", format!("summarise invoice {w}-{n}")),
                        ("--input", format!("{marker} input {w}-{n}")),
                        ("--output", format!("{marker} output {w}-{n}")),
                        ("--reward", "0.9".to_owned()),
                    ] {
                        args.push(flag.into());
                        args.push(value);
                    }
                    args.push("--json".into());
                    let out = agentdb().args(&args).output().unwrap();
                    if out.status.success() {
                        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
                        assert_eq!(v["spooled"], false);
                        acknowledged
                            .lock()
                            .unwrap()
                            .push(v["id"].as_str().unwrap().to_owned());
                    }
                }
            });
        }
        let deadline = Instant::now() + VISIBLE;
        while acknowledged.lock().unwrap().len() < 3 {
            assert!(
                Instant::now() < deadline,
                "no store was acknowledged: {}",
                b.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        b.child.kill().unwrap();
        b.child.wait().unwrap();
        stop.store(true, std::sync::atomic::Ordering::Release);
    });
    let acknowledged = acknowledged.into_inner().unwrap();
    // Hub-a has every acknowledged episode and keeps serving.
    group.wait_ids(&a, "acme", "found every acknowledged episode", |ids| {
        acknowledged.iter().all(|id| ids.contains(id))
    });
    let after = group
        .pki
        .store(&a, "acme", "summarise invoice after the crash", &marker);

    // A hub that never ran before joins and serves all of it at once (its index is built from
    // the database before it listens).
    let d = group.start("hub-d");
    let ids = group.pki.ids(&d, "acme");
    for id in acknowledged.iter().chain([&after]) {
        assert!(ids.contains(id), "hub-d lacks {id}");
    }

    // No episode content in the database: not in a dump (bytea is written as hex there), not in
    // the server's files.
    let dump = std::process::Command::new(tool("pg_dump"))
        .args(["--data-only", &group.url])
        .output()
        .unwrap();
    assert!(
        dump.status.success(),
        "{}",
        String::from_utf8_lossy(&dump.stderr)
    );
    let text = String::from_utf8_lossy(&dump.stdout);
    assert!(
        text.contains("COPY public.episodes"),
        "the dump has the episodes"
    );
    assert_no_marker(&text, &marker);
    if let Ok(data) = std::env::var("AGENTDB_TEST_POSTGRES_DATA") {
        // This database's files and the write-ahead log.
        let oid = std::process::Command::new(tool("psql"))
            .args([
                &group.url,
                "-Atc",
                "SELECT oid FROM pg_database WHERE datname = current_database()",
            ])
            .output()
            .unwrap();
        let oid = String::from_utf8(oid.stdout).unwrap();
        let data = Path::new(&data);
        let mut files = agentdb_testkit::disk::files(&data.join("base").join(oid.trim()));
        files.extend(agentdb_testkit::disk::files(&data.join("pg_wal")));
        for file in files {
            let bytes = std::fs::read(&file).unwrap();
            assert!(
                find_marker(&bytes, &marker).is_none(),
                "{} holds the marker in clear",
                file.display()
            );
        }
    }
}

/// A marker of 24 letters (digits would match timestamps and pids in the server's files).
fn marker() -> String {
    let mut n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
        ^ u128::from(std::process::id()) << 64;
    (0..24)
        .map(|_| {
            let c = char::from(b'a' + (n % 26) as u8);
            n /= 26;
            c
        })
        .collect()
}

/// The first 8-byte window of `marker` found in `bytes`, if any.
fn find_marker(bytes: &[u8], marker: &str) -> Option<String> {
    marker
        .as_bytes()
        .windows(8)
        .find(|w| memchr::memmem::find(bytes, w).is_some())
        .map(|w| String::from_utf8_lossy(w).into_owned())
}

#[test]
fn a_group_over_one_database_federates_with_another_region() {
    let dir = tempfile::tempdir().unwrap();
    let group = Group::new(dir.path(), &["hub-a", "hub-b", "us"]);
    // The other region: one hub over its own redb file, the root of the hierarchy.
    let us_dir = dir.path().join("us");
    std::fs::create_dir_all(&us_dir).unwrap();
    let us_config = us_dir.join("hub.toml");
    std::fs::write(
        &us_config,
        format!(
            "hub_id = \"us\"\nregion = \"us\"\ntopology = \"hierarchical\"\ndata = \"data\"\n\
             quic = \"127.0.0.1:0\"\nhttp = \"127.0.0.1:0\"\nhttps = \"127.0.0.1:0\"\n\
             sync_interval = \"500ms\"\n\n{}",
            group.pki.hub_sections("us")
        ),
    )
    .unwrap();
    let mut cmd = agentdb();
    cmd.args(["hub", "--config", us_config.to_str().unwrap()]);
    let us = Hub::spawn(cmd, &us_dir.join("hub.log")).expect("the us hub starts");
    // The group is region eu; only hub-a links to us.
    let upstream = format!(
        "region = \"eu\"\ntopology = \"hierarchical\"\nupstream = {:?}\nsync_interval = \"500ms\"\n",
        us.quic
    );
    let a = group.start_with("hub-a", &upstream);
    let b = group.start_with("hub-b", "region = \"eu\"\ntopology = \"hierarchical\"\n");

    // Written on hub-b, which has no link: it reaches us through hub-a.
    let from_b = group
        .pki
        .store(&b, "acme", "summarise invoice", "Total: 300 EUR");
    group.wait_ids(&us, "acme", "received the episode stored on hub-b", |ids| {
        ids.contains(&from_b)
    });
    // Written on us: hub-a receives it over its link, and hub-b serves it from the database.
    let from_us = group
        .pki
        .store(&us, "acme", "summarise invoice in us", "Total: 12 USD");
    group.wait_ids(&b, "acme", "served the episode stored on us", |ids| {
        ids.contains(&from_us)
    });
    drop(a);
}

#[test]
fn the_example_runs_as_written() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/postgres");
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::from_readme(&example.join("README.md"), dir.path());
    let url = fresh_database();
    let hubs: Vec<Hub> = ["hub-a", "hub-b", "hub-c"]
        .iter()
        .map(|name| {
            // The example's fixed ports, made free ones: nothing here dials another hub.
            let text = std::fs::read_to_string(example.join(format!("{name}.toml"))).unwrap();
            let text = text
                .lines()
                .map(|l| match l.split_once(" = \"127.0.0.1:") {
                    Some((key, _)) => format!("{key} = \"127.0.0.1:0\""),
                    None => l.to_owned(),
                })
                .collect::<Vec<_>>()
                .join("\n");
            let config = dir.path().join(format!("{name}.toml"));
            std::fs::write(&config, text).unwrap();
            let mut cmd = agentdb();
            cmd.args(["hub", "--config", config.to_str().unwrap()])
                .env("AGENTDB_STORAGE", &url)
                .env("AGENTDB_MASTER_KEY", MASTER_KEY);
            let hub =
                Hub::spawn(cmd, &dir.path().join(format!("{name}.log"))).expect("the hub starts");
            assert!(
                hub.log_text()
                    .contains("storage: PostgreSQL; indexes rebuilt from the database"),
                "{}",
                hub.log_text()
            );
            hub
        })
        .collect();
    let id = pki.store(&hubs[0], "acme", "summarise invoice", "Total: 300 EUR");
    let deadline = Instant::now() + VISIBLE;
    while !pki.ids(&hubs[2], "acme").contains(&id) {
        assert!(Instant::now() < deadline, "hub-c never served {id}");
        std::thread::sleep(POLL);
    }
}

/// Asserts that `dump` holds no 8-byte window of `marker`, as text or as hex.
fn assert_no_marker(dump: &str, marker: &str) {
    assert_eq!(
        find_marker(dump.as_bytes(), marker),
        None,
        "the dump holds the marker"
    );
    for w in marker.as_bytes().windows(8) {
        let hex: String = w.iter().map(|b| format!("{b:02x}")).collect();
        assert!(
            !dump.contains(&hex),
            "the dump holds {:?} as hex",
            String::from_utf8_lossy(w)
        );
    }
}
