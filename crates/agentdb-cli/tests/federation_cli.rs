//! Federated hubs through the real binary: the three-hub example of `examples/federation/`
//! (replication through the global hub, a residency-restricted tenant, catch-up after a
//! restart), a mesh and a hub-and-spoke federation. Every hub listens on loopback only, and
//! every wait polls against a deadline.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::pki::Pki;
use common::{agentdb, run_ok, Hub};
use serde_json::Value;

/// The example directory, proven to work as written.
const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/federation");
/// The example's hubs and the ports it names: (hub, QUIC port, HTTP port).
const EXAMPLE_HUBS: [(&str, u16, u16); 3] = [
    ("global", 4501, 8501),
    ("eu", 4502, 8502),
    ("us", 4503, 8503),
];
/// The HTTPS gateway ports the example's hubs name.
const EXAMPLE_HTTPS_PORTS: [u16; 3] = [8601, 8602, 8603];
/// How long replication may take before a test fails.
const CONVERGE: Duration = Duration::from_secs(20);
/// How often a condition is polled.
const POLL: Duration = Duration::from_millis(100);
/// Attempts at starting a federation when another process took a port picked for it.
const START_ATTEMPTS: usize = 3;

impl Hub {
    /// Starts `agentdb hub ARGS` and waits for its "listening" line; `Err` carries the log
    /// when it never comes.
    fn try_start(args: &[&str], log: &Path) -> Result<Hub, String> {
        let mut cmd = agentdb();
        cmd.arg("hub").args(args);
        Hub::spawn(cmd, log)
    }

    /// `agentdb federation status --http ADDR --json`, with an operator token minted from the
    /// deployment's signing key.
    fn status(&self, pki: &Pki) -> Value {
        let key = pki.path("signing.key");
        let out = run_ok(&[
            "federation",
            "status",
            "--http",
            &self.http,
            "--signing-key",
            &key,
            "--json",
        ]);
        serde_json::from_slice(&out.stdout).expect("JSON on stdout")
    }

    /// Kills the hub at once (no drain), as a crash would.
    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

/// Whether a failed start is worth retrying on other ports.
fn port_taken(error: &str) -> bool {
    let e = error.to_lowercase();
    e.contains("in use") || e.contains("addrinuse")
}

/// `n` loopback ports free for QUIC (UDP) and `n` free for HTTP (TCP), all distinct.
fn free_ports(n: usize) -> (Vec<u16>, Vec<u16>) {
    let udp: Vec<UdpSocket> = (0..n)
        .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    let tcp: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    (
        udp.iter().map(|s| s.local_addr().unwrap().port()).collect(),
        tcp.iter().map(|s| s.local_addr().unwrap().port()).collect(),
    )
}

/// What the federation tests add to the shared PKI helper.
trait PkiExt {
    fn wait_for(&self, hub: &Hub, tenant: &str, want: &[&String]);
}

impl PkiExt for Pki {
    /// Polls `hub` until a query for `tenant` returns every id of `want`.
    fn wait_for(&self, hub: &Hub, tenant: &str, want: &[&String]) {
        let deadline = Instant::now() + CONVERGE;
        loop {
            let have = self.ids(hub, tenant);
            if want.iter().all(|id| have.contains(*id)) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "hub {} still lacks some of {want:?} for {tenant} after {CONVERGE:?}: has \
                 {have:?}; status: {}; log: {}",
                hub.field("hub"),
                hub.status(self),
                hub.log_text()
            );
            std::thread::sleep(POLL);
        }
    }
}

/// Polls `check` on `hub`'s status until it holds; fails with the last status.
fn wait_status(hub: &Hub, pki: &Pki, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + CONVERGE;
    loop {
        let status = hub.status(pki);
        if check(&status) {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "hub {}: {what} not seen after {CONVERGE:?}; status: {status}; log: {}",
            hub.field("hub"),
            hub.log_text()
        );
        std::thread::sleep(POLL);
    }
}

/// The entry of `tenant` in a status report.
fn tenant_entry<'a>(status: &'a Value, tenant: &str) -> Option<&'a Value> {
    status["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tenant"] == tenant)
}

/// The highest op of `origin` that a status report says it holds for `tenant` (0: none).
fn version(status: &Value, tenant: &str, origin: &str) -> u64 {
    tenant_entry(status, tenant)
        .and_then(|t| t["version_vector"][origin].as_u64())
        .unwrap_or(0)
}

/// How many links of a status report are connected.
fn connected_links(status: &Value) -> usize {
    status["links"].as_array().map_or(0, |links| {
        links.iter().filter(|l| l["state"] == "connected").count()
    })
}

/// The peers of the connected links in a status report.
fn connected_peers(status: &Value) -> BTreeSet<String> {
    status["links"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["state"] == "connected")
        .filter_map(|l| l["peer"].as_str().map(str::to_owned))
        .collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

/// The example federation, copied into a temporary directory with only its ports changed;
/// the PKI is made there by the README's commands, so its relative paths hold as written.
struct Example {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    pki: Pki,
    global: Hub,
    eu: Hub,
    us: Hub,
}

impl Example {
    fn start() -> Example {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_owned();
        let pki = Pki::from_readme(&Path::new(EXAMPLE).join("README.md"), &dir);
        let mut last_error = String::new();
        for _ in 0..START_ATTEMPTS {
            let (quic, http) = free_ports(EXAMPLE_HUBS.len());
            for (hub, _, _) in EXAMPLE_HUBS {
                let mut text =
                    std::fs::read_to_string(Path::new(EXAMPLE).join(format!("{hub}.toml")))
                        .unwrap();
                // Each address ends its TOML string: matching the closing quote keeps a new
                // port that starts with an old one (45021 after 4502) from being rewritten.
                for (i, (_, q, h)) in EXAMPLE_HUBS.iter().enumerate() {
                    for (from, to) in [(q, quic[i]), (h, http[i])] {
                        text = text
                            .replace(&format!("127.0.0.1:{from}\""), &format!("127.0.0.1:{to}\""));
                    }
                }
                // The HTTPS gateways are not used here: any free port.
                for port in EXAMPLE_HTTPS_PORTS {
                    text = text.replace(&format!("127.0.0.1:{port}\""), "127.0.0.1:0\"");
                }
                std::fs::write(dir.join(format!("{hub}.toml")), text).unwrap();
            }
            let started: Result<Vec<Hub>, String> = EXAMPLE_HUBS
                .iter()
                .map(|(hub, _, _)| Example::start_hub(&dir, hub))
                .collect();
            match started {
                Ok(hubs) => {
                    let mut hubs = hubs.into_iter();
                    let (global, eu, us) = (
                        hubs.next().unwrap(),
                        hubs.next().unwrap(),
                        hubs.next().unwrap(),
                    );
                    for (hub, name) in [(&global, "global"), (&eu, "eu"), (&us, "us")] {
                        assert_eq!(hub.field("hub"), name);
                    }
                    return Example {
                        _tmp: tmp,
                        dir,
                        pki,
                        global,
                        eu,
                        us,
                    };
                }
                Err(e) if port_taken(&e) => last_error = e,
                Err(e) => panic!("{e}"),
            }
            // A data directory written by a partly started federation is harmless to reuse.
        }
        panic!("the example federation did not start: {last_error}");
    }

    /// Starts the example hub `hub` from its (copied) config file.
    fn start_hub(dir: &Path, hub: &str) -> Result<Hub, String> {
        let config = dir.join(format!("{hub}.toml"));
        Hub::try_start(
            &["--config", config.to_str().unwrap()],
            &dir.join(format!("{hub}.log")),
        )
    }
}

#[test]
fn example_hierarchy_replicates_eu_to_us_through_global() {
    let ex = Example::start();
    let id = ex
        .pki
        .store(&ex.eu, "acme", "summarise invoice", "Total: 300 EUR");
    ex.pki.wait_for(&ex.us, "acme", &[&id]);
    // The global hub relays: it holds both links and eu's op of acme.
    let status = wait_status(&ex.global, &ex.pki, "both links and eu's op", |s| {
        connected_peers(s) == set(&["eu", "us"]) && version(s, "acme", "eu") >= 1
    });
    assert_eq!(status["hub"], "global");
    assert_eq!(status["region"], "global");
    assert_eq!(status["topology"], "hierarchical");
    let links = status["links"].as_array().unwrap();
    assert_eq!(links.len(), 2, "{status}");
    for link in links {
        assert_eq!(link["direction"], "inbound", "{status}");
        assert_eq!(link["region"], link["peer"], "{status}");
    }
    let us = ex.us.status(&ex.pki);
    assert_eq!(version(&us, "acme", "eu"), version(&status, "acme", "eu"));
    let eu = ex.eu.status(&ex.pki);
    let outbound = &eu["links"][0];
    assert_eq!(outbound["direction"], "outbound", "{eu}");
    assert_eq!(outbound["peer"], "global", "{eu}");
    assert!(
        outbound["address"]
            .as_str()
            .unwrap()
            .ends_with(&ex.global.field("quic")),
        "{eu}"
    );
    // The text form names the same links.
    let key = ex.pki.path("signing.key");
    let text = run_ok(&[
        "federation",
        "status",
        "--http",
        &ex.global.http,
        "--signing-key",
        &key,
    ]);
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(
        text.starts_with("hub global region global topology hierarchical"),
        "{text}"
    );
    assert!(text.contains("link inbound eu (eu)"), "{text}");
    assert!(text.contains("link inbound us (us)"), "{text}");

    // Without an operator token the status is refused; a retired hub can be forgotten.
    let refused = agentdb()
        .args(["federation", "status", "--http", &ex.global.http])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let forget = |hub: &str| {
        let out = run_ok(&[
            "federation",
            "forget-peer",
            hub,
            "--http",
            &ex.global.http,
            "--signing-key",
            &key,
        ]);
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(forget("retired").trim(), "hub retired was not known");
    assert_eq!(forget("us").trim(), "forgot hub us");
}

#[test]
fn residency_keeps_a_tenant_in_its_region() {
    let ex = Example::start();
    // The restricted tenant first, then an unrestricted one: once the second has arrived
    // everywhere, the first had every chance to travel too.
    let kept = ex
        .pki
        .store(&ex.eu, "acme-eu", "summarise invoice", "Total: 120 EUR");
    let shared = ex
        .pki
        .store(&ex.eu, "acme", "summarise invoice", "Total: 300 EUR");
    ex.pki.wait_for(&ex.us, "acme", &[&shared]);
    ex.pki.wait_for(&ex.global, "acme", &[&shared]);
    // eu has nothing left to send global: every op it may share is acknowledged.
    wait_status(&ex.eu, &ex.pki, "no lag towards global", |s| {
        s["links"][0]["state"] == "connected" && s["links"][0]["lag_ops"] == 0
    });
    // Two more sync intervals of the example (500 ms), for anti-entropy to have run.
    std::thread::sleep(Duration::from_millis(1000));

    assert_eq!(ex.pki.ids(&ex.eu, "acme-eu"), set(&[kept.as_str()]));
    let eu = ex.eu.status(&ex.pki);
    let entry = tenant_entry(&eu, "acme-eu").expect("eu lists acme-eu");
    assert_eq!(entry["residency"], serde_json::json!(["eu"]), "{eu}");
    assert_eq!(version(&eu, "acme-eu", "eu"), 1, "{eu}");
    assert_eq!(tenant_entry(&eu, "acme").unwrap()["residency"], Value::Null);

    for hub in [&ex.us, &ex.global] {
        let name = hub.field("hub");
        assert!(
            ex.pki.ids(hub, "acme-eu").is_empty(),
            "{name} answers acme-eu's query"
        );
        let status = hub.status(&ex.pki);
        assert!(
            tenant_entry(&status, "acme-eu").is_none(),
            "{name} holds acme-eu: {status}"
        );
        assert_eq!(version(&status, "acme", "eu"), 1, "{name}: {status}");
    }
}

#[test]
fn a_restarted_hub_catches_up() {
    let ex = Example::start();
    let first = ex
        .pki
        .store(&ex.eu, "acme", "summarise invoice", "Total: 300 EUR");
    ex.pki.wait_for(&ex.us, "acme", &[&first]);
    ex.us.kill();

    let missed: Vec<String> = (1..=3)
        .map(|i| {
            ex.pki.store(
                &ex.eu,
                "acme",
                "summarise invoice",
                &format!("Total: {i}00 USD"),
            )
        })
        .collect();
    // global has them; us, down, has none.
    ex.pki
        .wait_for(&ex.global, "acme", &missed.iter().collect::<Vec<_>>());

    let us = Example::start_hub(&ex.dir, "us").unwrap();
    assert_eq!(us.field("hub"), "us");
    let mut all: Vec<&String> = missed.iter().collect();
    all.push(&first);
    ex.pki.wait_for(&us, "acme", &all);
    let status = wait_status(&us, &ex.pki, "eu's four ops", |s| {
        version(s, "acme", "eu") == 4
    });
    assert_eq!(connected_peers(&status), set(&["global"]));
}

/// Writes `NAME.toml` in `dir` for a hub: its id, data, addresses, credentials and `extra`.
fn write_config(dir: &Path, pki: &Pki, hub: &str, quic: u16, http: u16, extra: &str) -> PathBuf {
    let path = dir.join(format!("{hub}.toml"));
    let text = format!(
        "hub_id = \"{hub}\"\ndata = \"data/{hub}\"\nquic = \"127.0.0.1:{quic}\"\n\
         http = \"127.0.0.1:{http}\"\nhttps = \"127.0.0.1:0\"\nsync_interval = \"500ms\"\n{extra}\n{}",
        pki.hub_sections(hub)
    );
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn mesh_hubs_converge() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let names = ["m-eu", "m-us", "m-ap"];
    let regions = ["eu", "us", "ap"];
    let pki = Pki::new(dir.join("pki"), &names, &["acme"]);
    let mut last_error = String::new();
    let hubs = (0..START_ATTEMPTS).find_map(|_| {
        let (quic, http) = free_ports(names.len());
        let started: Result<Vec<Hub>, String> = (0..names.len())
            .map(|i| {
                let peers: Vec<String> = (0..names.len())
                    .filter(|&j| j != i)
                    .map(|j| format!("\"quic://127.0.0.1:{}\"", quic[j]))
                    .collect();
                let extra = format!(
                    "region = \"{}\"\ntopology = \"mesh\"\npeers = [{}]\n",
                    regions[i],
                    peers.join(", ")
                );
                let config = write_config(dir, &pki, names[i], quic[i], http[i], &extra);
                Hub::try_start(
                    &["--config", config.to_str().unwrap()],
                    &dir.join(format!("{}.log", names[i])),
                )
            })
            .collect();
        match started {
            Ok(hubs) => Some(hubs),
            Err(e) if port_taken(&e) => {
                last_error = e;
                None
            }
            Err(e) => panic!("{e}"),
        }
    });
    let hubs = hubs.unwrap_or_else(|| panic!("the mesh did not start: {last_error}"));

    let ids: Vec<String> = hubs
        .iter()
        .map(|hub| pki.store(hub, "acme", "summarise invoice", &hub.field("hub")))
        .collect();
    let want: Vec<&String> = ids.iter().collect();
    for hub in &hubs {
        pki.wait_for(hub, "acme", &want);
    }
    for (i, hub) in hubs.iter().enumerate() {
        let others: Vec<&str> = names
            .iter()
            .enumerate()
            .filter(|&(j, _)| j != i)
            .map(|(_, n)| *n)
            .collect();
        // One connected link per pair: the one the smaller hub id dialled.
        let status = wait_status(hub, &pki, "one link to each of the others", |s| {
            connected_peers(s) == set(&others) && connected_links(s) == others.len()
        });
        assert_eq!(status["topology"], "mesh");
        assert_eq!(status["region"], regions[i]);
        for origin in names {
            assert_eq!(version(&status, "acme", origin), 1, "{status}");
        }
    }
}

#[test]
fn hub_and_spoke_converges_through_the_center() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let names = ["center", "spoke-1", "spoke-2"];
    let pki = Pki::new(dir.join("pki"), &names, &["acme"]);
    // The center picks its own ports; the spokes are told where it is with flags.
    let config = write_config(dir, &pki, "center", 0, 0, "topology = \"hub-and-spoke\"\n");
    let center = Hub::try_start(
        &["--config", config.to_str().unwrap()],
        &dir.join("center.log"),
    )
    .unwrap();
    let spokes: Vec<Hub> = ["spoke-1", "spoke-2"]
        .iter()
        .map(|name| {
            let config = write_config(dir, &pki, name, 0, 0, "");
            Hub::try_start(
                &[
                    "--config",
                    config.to_str().unwrap(),
                    "--topology",
                    "hub-and-spoke",
                    "--upstream",
                    &center.quic,
                    "--sync-interval",
                    "250ms",
                ],
                &dir.join(format!("{name}.log")),
            )
            .unwrap()
        })
        .collect();

    let from_1 = pki.store(&spokes[0], "acme", "summarise invoice", "Total: 300 EUR");
    pki.wait_for(&spokes[1], "acme", &[&from_1]);
    let from_2 = pki.store(&spokes[1], "acme", "summarise invoice", "Total: 400 EUR");
    pki.wait_for(&spokes[0], "acme", &[&from_1, &from_2]);
    pki.wait_for(&center, "acme", &[&from_1, &from_2]);

    let status = wait_status(&center, &pki, "both spokes", |s| {
        connected_peers(s) == set(&["spoke-1", "spoke-2"])
    });
    assert_eq!(status["topology"], "hub-and-spoke");
    assert!(status["links"]
        .as_array()
        .unwrap()
        .iter()
        .all(|l| l["direction"] == "inbound"));
    for spoke in &spokes {
        let status = spoke.status(&pki);
        assert_eq!(status["topology"], "hub-and-spoke");
        assert_eq!(connected_peers(&status), set(&["center"]));
        assert_eq!(version(&status, "acme", "spoke-1"), 1, "{status}");
        assert_eq!(version(&status, "acme", "spoke-2"), 1, "{status}");
    }
}

#[test]
fn updates_and_deletes_made_on_one_hub_reach_the_others() {
    let ex = Example::start();
    let id = ex
        .pki
        .store(&ex.eu, "acme", "summarise invoice", "Total: 300 EUR");
    ex.pki.wait_for(&ex.us, "acme", &[&id]);
    let updated = ex
        .pki
        .agent(&ex.us, "update", "acme", &["--id", &id, "--reward", "0.15"]);
    assert_eq!(updated["updated"], true, "{updated}");
    let deadline = Instant::now() + CONVERGE;
    while ex.pki.reward(&ex.eu, "acme", &id) != Some(0.15) {
        assert!(Instant::now() < deadline, "the update did not reach eu");
        std::thread::sleep(Duration::from_millis(100));
    }
    let deleted = ex.pki.agent(&ex.global, "delete", "acme", &["--id", &id]);
    assert_eq!(deleted["deleted"], true, "{deleted}");
    let deadline = Instant::now() + CONVERGE;
    while ex.pki.ids(&ex.eu, "acme").contains(&id) || ex.pki.ids(&ex.us, "acme").contains(&id) {
        assert!(
            Instant::now() < deadline,
            "the delete did not reach eu and us"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `agentdb tenant erase-status --tenant T --http ADDR --json` with a token minted from the
/// deployment's signing key.
fn erase_status(hub: &Hub, pki: &Pki, tenant: &str) -> Value {
    let out = run_ok(&[
        "tenant",
        "erase-status",
        "--tenant",
        tenant,
        "--http",
        &hub.http,
        "--signing-key",
        &pki.path("signing.key"),
        "--json",
    ]);
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

/// Polls `hub` until the tenant's only erasure has a verified receipt from each of `hubs`.
fn wait_receipts(hub: &Hub, pki: &Pki, tenant: &str, hubs: &[&str]) -> Value {
    let deadline = Instant::now() + CONVERGE;
    loop {
        let status = erase_status(hub, pki, tenant);
        let confirmed: BTreeSet<String> = status["erasures"][0]["receipts"]
            .as_array()
            .map(|rs| {
                rs.iter()
                    .filter(|r| r["verified"] == true)
                    .map(|r| r["hub"].as_str().unwrap().to_owned())
                    .collect()
            })
            .unwrap_or_default();
        if confirmed == set(hubs) {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "hub {}: receipts of {hubs:?} not all seen after {CONVERGE:?}: {status}; log: {}",
            hub.field("hub"),
            hub.log_text()
        );
        std::thread::sleep(POLL);
    }
}

/// Every file under `dir` that holds `marker`.
fn files_with(dir: &Path, marker: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if memchr::memmem::find(&std::fs::read(&path).unwrap(), marker.as_bytes())
                .is_some()
            {
                found.push(path);
            }
        }
    }
    found
}

/// An erasure issued on eu reaches every hub of the example federation — us too, which was
/// away and, alone, updated an erased episode meanwhile: each hub signs a receipt the others
/// verify, the erased episodes are gone everywhere and do not come back, a later write stays,
/// and no hub's files hold the erased text.
#[test]
fn an_erasure_reaches_every_hub_with_signed_receipts_and_nothing_comes_back() {
    let Example {
        _tmp,
        dir,
        pki,
        global,
        eu,
        us,
    } = Example::start();
    let marker = "ErasedInvoiceTextMarkerQz";
    let erased: Vec<String> = (0..3)
        .map(|i| {
            pki.store(
                &eu,
                "acme",
                "summarise invoice",
                &format!("{marker} total {i}"),
            )
        })
        .collect();
    let erased_refs: Vec<&String> = erased.iter().collect();
    pki.wait_for(&us, "acme", &erased_refs);
    us.kill();

    // Erase on eu, with a token that has the erase scope (minted from the signing key).
    let out = run_ok(&[
        "tenant",
        "erase",
        "--tenant",
        "acme",
        "--http",
        &eu.http,
        "--signing-key",
        &pki.path("signing.key"),
        "--json",
    ]);
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["receipt"]["hub"], "eu", "{answer}");
    assert_eq!(answer["receipt"]["episodes"], 3, "{answer}");
    assert!(
        !answer["receipt"]["destroyed_keys"]
            .as_array()
            .unwrap()
            .is_empty(),
        "{answer}"
    );
    wait_receipts(&global, &pki, "acme", &["eu", "global"]);
    assert!(pki.ids(&eu, "acme").is_empty());
    assert!(pki.ids(&global, "acme").is_empty());

    // us, alone (no upstream), updates an erased episode it still holds.
    let alone = std::fs::read_to_string(dir.join("us.toml"))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("upstream"))
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(dir.join("us-alone.toml"), alone).unwrap();
    let us_alone = Hub::try_start(
        &["--config", dir.join("us-alone.toml").to_str().unwrap()],
        &dir.join("us-alone.log"),
    )
    .unwrap();
    assert!(pki.ids(&us_alone, "acme").contains(&erased[0]));
    pki.agent(
        &us_alone,
        "update",
        "acme",
        &["--id", &erased[0], "--reward", "0.1"],
    );
    us_alone.kill();

    // Back in the federation, us applies the erasure and signs its receipt; its update of an
    // erased episode does not bring it back anywhere, and a new write replicates as usual.
    let us = Example::start_hub(&dir, "us").unwrap();
    let status = wait_receipts(&eu, &pki, "acme", &["eu", "global", "us"]);
    let receipts = status["erasures"][0]["receipts"].as_array().unwrap();
    let at_us = receipts.iter().find(|r| r["hub"] == "us").unwrap();
    assert_eq!(at_us["episodes"], 3, "{status}");
    assert!(!at_us["destroyed_keys"].as_array().unwrap().is_empty());
    assert_eq!(status["erasures"][0]["issued_by"], "eu");
    assert_eq!(status["erasures"][0]["scope"], "tenant");
    assert_eq!(
        status["erasures"][0]["pending"],
        serde_json::json!([]),
        "{status}"
    );
    let later = pki.store(&us, "acme", "summarise invoice", "Total: 42 EUR");
    for hub in [&eu, &global, &us] {
        pki.wait_for(hub, "acme", &[&later]);
        assert_eq!(pki.ids(hub, "acme"), set(&[later.as_str()]));
    }
    // The text form names each hub's receipt.
    let text = run_ok(&[
        "tenant",
        "erase-status",
        "--tenant",
        "acme",
        "--http",
        &us.http,
        "--signing-key",
        &pki.path("signing.key"),
    ]);
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(
        text.contains("issued by eu: 3 confirmed, 0 pending"),
        "{text}"
    );
    for hub in ["eu", "global", "us"] {
        assert!(text.contains(&format!("  {hub}  verified  ")), "{text}");
    }

    // A token of the tenant's administrator without the erase scope is refused, and so is
    // one with the erase scope for another tenant; nothing is erased.
    for (tenant, scope) in [("acme", "admin"), ("other", "admin,erase")] {
        let token = run_ok(&[
            "token",
            "issue",
            "--signing-key",
            &pki.path("signing.key"),
            "--tenant",
            tenant,
            "--agent",
            "operator",
            "--scope",
            scope,
        ]);
        let token = String::from_utf8(token.stdout).unwrap();
        let refused = agentdb()
            .args([
                "tenant",
                "erase",
                "--tenant",
                "acme",
                "--http",
                &eu.http,
                "--token",
                token.trim(),
            ])
            .output()
            .unwrap();
        assert!(!refused.status.success());
        let why = String::from_utf8_lossy(&refused.stderr);
        assert!(why.contains("forbidden") || why.contains("403"), "{why}");
    }
    assert_eq!(pki.ids(&eu, "acme"), set(&[later.as_str()]));

    for hub in [global, eu, us] {
        hub.kill();
    }
    let leaked = files_with(&dir.join("data"), marker);
    assert!(leaked.is_empty(), "erased text found in {leaked:?}");
}

/// Polls until `check` holds; fails with `what`.
fn wait_until(what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + CONVERGE;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "{what} not seen after {CONVERGE:?}"
        );
        std::thread::sleep(POLL);
    }
}

/// The revocations `hub` holds.
fn revocations(pki: &Pki, hub: &Hub) -> Vec<Value> {
    let listed = run_ok(&[
        "revoke",
        "list",
        "--http",
        &hub.http,
        "--signing-key",
        &pki.path("signing.key"),
        "--json",
    ]);
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    listed["revocations"].as_array().unwrap().clone()
}

/// An operator revokes, on eu, a token, an agent, an API key and a certificate: each is
/// refused on eu at once and on us once the revocation has travelled through global; other
/// credentials keep working, and a restarted hub still refuses them. (An agent's goodbye
/// revokes its own token on the hub it used, so each token below is used at most once per
/// hub.)
#[test]
fn revocations_take_effect_at_once_and_travel_to_every_hub() {
    let Example {
        _tmp,
        dir,
        pki,
        global,
        eu,
        us,
    } = Example::start();
    let key = pki.path("signing.key");
    let fresh = |agent: &str| pki.issue_token("acme", agent).0;
    for agent in ["worker-1", "worker-2"] {
        pki.served(&us, "acme", ["--token", &fresh(agent)]).unwrap();
    }
    let (t1, jti1, exp1) = pki.issue_token("acme", "worker-1");
    let [t2, t2_later_use] = [fresh("worker-2"), fresh("worker-2")];
    let created = run_ok(&[
        "tenant",
        "key",
        "create",
        "--tenant",
        "acme",
        "--http",
        &eu.http,
        "--signing-key",
        &key,
        "--json",
    ]);
    let created: Value = serde_json::from_slice(&created.stdout).unwrap();
    let api_key = created["secret"].as_str().unwrap().to_owned();
    let key_id = created["key"]["id"].as_str().unwrap().to_owned();
    pki.served(&eu, "acme", ["--api-key", &api_key]).unwrap();

    let revoke = |args: &[&str]| {
        let mut all = vec!["revoke"];
        all.extend_from_slice(args);
        all.extend(["--http", &eu.http, "--signing-key", &key]);
        String::from_utf8(run_ok(&all).stdout).unwrap()
    };
    let exp1 = exp1.to_string();
    assert_eq!(
        revoke(&["token", "--jti", &jti1, "--expires", &exp1]).trim(),
        format!("revoked token/{jti1}")
    );
    // Tokens are issued within the same second as the revocation: wait for the next one, so
    // that "issued until now" is unambiguous for the token issued after it.
    let second = agentdb_testkit::unix_now();
    wait_until("the next second", || agentdb_testkit::unix_now() > second);
    assert!(
        revoke(&["agent", "--tenant", "acme", "--agent", "worker-2"])
            .starts_with("revoked agent/acme/worker-2/")
    );
    assert_eq!(
        revoke(&["api-key", "--tenant", "acme", "--id", &key_id]).trim(),
        format!("revoked api-key/acme/{key_id}")
    );
    // At once on eu.
    let e = pki.served(&eu, "acme", ["--token", &t1]).unwrap_err();
    assert!(e.contains("token has been revoked"), "{e}");
    let e = pki.served(&eu, "acme", ["--token", &t2]).unwrap_err();
    assert!(
        e.contains("agent worker-2 of tenant acme has been revoked"),
        "{e}"
    );
    let e = pki
        .served(&eu, "acme", ["--api-key", &api_key])
        .unwrap_err();
    assert!(e.contains("revoked"), "{e}");
    pki.served(&eu, "acme", ["--token", &fresh("worker-1")])
        .unwrap();

    // On us once the revocations have come through global (t1 and t2 were never used there).
    wait_until("three revocations on us", || {
        revocations(&pki, &us).len() == 3
    });
    let e = pki.served(&us, "acme", ["--token", &t1]).unwrap_err();
    assert!(e.contains("token has been revoked"), "{e}");
    let e = pki.served(&us, "acme", ["--token", &t2]).unwrap_err();
    assert!(
        e.contains("agent worker-2 of tenant acme has been revoked"),
        "{e}"
    );
    // A token the agent gets after its revocation works.
    let second = agentdb_testkit::unix_now();
    wait_until("the next second", || agentdb_testkit::unix_now() > second);
    pki.served(&us, "acme", ["--token", &fresh("worker-2")])
        .unwrap();

    // The tenant's certificate: refused everywhere, the other tenant's still served.
    let cert = pki.path("tenant-acme.pem");
    assert!(revoke(&["cert", "--file", &cert]).starts_with("revoked certificate/"));
    let e = pki
        .served(&eu, "acme", ["--token", &fresh("worker-3")])
        .unwrap_err();
    assert!(e.contains("certificate"), "{e}");
    wait_until("four revocations on us", || {
        revocations(&pki, &us).len() == 4
    });
    let e = pki
        .served(&us, "acme", ["--token", &fresh("worker-3")])
        .unwrap_err();
    assert!(e.contains("certificate"), "{e}");
    let other = pki.issue_token("acme-eu", "worker-1").0;
    pki.served(&eu, "acme-eu", ["--token", &other]).unwrap();

    // Every hub holds the four, wherever they were issued.
    let at_global = revocations(&pki, &global);
    assert_eq!(at_global.len(), 4, "{at_global:?}");
    assert!(
        at_global.iter().all(|r| r["issued_by"] == "eu"),
        "{at_global:?}"
    );
    // Only an operator may revoke.
    let (tenant_admin, _, _) = pki.issue_token("acme", "operator");
    let refused = agentdb()
        .args(["revoke", "agent", "--tenant", "acme", "--agent", "worker-3"])
        .args(["--http", &eu.http, "--token", &tenant_admin])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert_eq!(revocations(&pki, &eu).len(), 4);

    // Kept across a restart.
    us.kill();
    let us = Example::start_hub(&dir, "us").unwrap();
    let e = pki
        .served(&us, "acme", ["--token", &t2_later_use])
        .unwrap_err();
    assert!(e.contains("revoked"), "{e}");
    assert_eq!(revocations(&pki, &us).len(), 4);
}

/// A subject erasure issued on us removes, on every hub, the episodes whose metadata names the
/// subject, and only those; each hub confirms with a verified receipt.
#[test]
fn a_subject_erasure_removes_one_users_episodes_on_every_hub() {
    let ex = Example::start();
    let store = |user: &str, n: u32| {
        let out = ex.pki.agent(
            &ex.eu,
            "store",
            "acme",
            &[
                "--task",
                "summarise invoice",
                "--output",
                &format!("Total: {n} EUR"),
                "--reward",
                "0.9",
                "--metadata",
                &format!(r#"{{"user_id":"{user}"}}"#),
            ],
        );
        out["id"].as_str().unwrap().to_owned()
    };
    let u1 = [store("u-1", 1), store("u-1", 2)];
    let u2 = store("u-2", 3);
    let all: Vec<&String> = u1.iter().chain([&u2]).collect();
    ex.pki.wait_for(&ex.us, "acme", &all);

    let out = run_ok(&[
        "tenant",
        "erase",
        "--tenant",
        "acme",
        "--subject-key",
        "user_id",
        "--subject-value",
        "u-1",
        "--http",
        &ex.us.http,
        "--signing-key",
        &ex.pki.path("signing.key"),
    ]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("hub us erased 2 episodes and destroyed 0 key versions"),
        "{text}"
    );
    let status = wait_receipts(&ex.eu, &ex.pki, "acme", &["eu", "global", "us"]);
    let order = &status["erasures"][0];
    assert_eq!(
        order["scope"],
        serde_json::json!({"subject": {"key": "user_id", "value": "u-1"}})
    );
    for r in order["receipts"].as_array().unwrap() {
        assert_eq!(r["destroyed_keys"], serde_json::json!([]), "{status}");
    }
    for hub in [&ex.eu, &ex.global, &ex.us] {
        wait_until("only u-2's episode left", || {
            ex.pki.ids(hub, "acme") == set(&[u2.as_str()])
        });
    }
}
