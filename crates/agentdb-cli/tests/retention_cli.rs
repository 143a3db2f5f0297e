//! Retention on a real `agentdb hub` process: episodes stored through the HTTPS gateway with an
//! expiry (`expires_at_ms`, `ttl_secs`) are hidden once past it and deleted by the hub's sweep;
//! a tenant retention set at run time (`PUT /v1/tenants/{t}/retention`) deletes the tenant's
//! old episodes, keeps its young ones and every other tenant's, and survives a restart.
//!
//! The hub sweeps every 100 ms; the tests poll for the outcome with a deadline.

#![allow(clippy::unwrap_used)]

mod common;

use std::future::Future;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use agentdb_testkit::https::HttpsResponse;
use serde_json::{json, Value};

use common::gateway::{Setup, Tenant};

/// A sweep every 100 ms; every tenant keeps 30 days unless it says otherwise, `keep` forever.
const CONFIG: &str = "\
[retention]
default = \"30d\"
sweep_interval = \"100ms\"

[tenants.keep]
retention = \"forever\"
";

/// Longest wait for the hub to do something it should do within a few sweeps.
const DEADLINE: Duration = Duration::from_secs(20);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Polls `check` every 50 ms until it holds; fails after [`DEADLINE`].
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl Setup {
    /// `GET /v1/tenants/{tenant}/retention` with the tenant's admin token.
    fn retention(&self, tenant: &str) -> Value {
        let (status, body) = self.admin(
            "GET",
            &format!("/v1/tenants/{tenant}/retention"),
            Some(&self.admin_token(tenant)),
            None,
        );
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    /// `PUT /v1/tenants/{tenant}/retention` with the operator's token.
    fn set_retention(&self, tenant: &str, body: &Value) -> (u16, Value) {
        let (status, body) = self.admin(
            "PUT",
            &format!("/v1/tenants/{tenant}/retention"),
            Some(&self.operator_token()),
            Some(body),
        );
        (status, serde_json::from_str(&body).unwrap_or(Value::Null))
    }
}

/// A client-chosen episode id.
fn uid(tenant: u32, n: u32) -> String {
    format!("0190b000-0000-7000-8000-{tenant:04x}{n:08x}")
}

fn episode(id: &str) -> Value {
    json!({ "id": id, "task": format!("task {id}"), "output": "done", "reward": 0.5 })
}

impl Tenant {
    async fn store(&self, episode: &Value) -> HttpsResponse {
        self.client
            .send_json("POST", "/v1/episodes", &self.token, episode)
            .await
    }

    async fn stored(&self, episode: &Value) {
        let r = self.store(episode).await;
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    }

    /// The episode as the gateway shows it, or `None` (404).
    async fn get(&self, id: &str) -> Option<Value> {
        let r = self
            .client
            .get(&format!("/v1/episodes/{id}"), &self.token)
            .await;
        match r.status {
            200 => Some(r.json()),
            404 => None,
            s => panic!("GET episode: {s}"),
        }
    }

    /// (live, deleted) episodes by `GET /v1/stats`.
    async fn counts(&self) -> (u64, u64) {
        let r = self.client.get("/v1/stats", &self.token).await;
        assert_eq!(r.status, 200);
        let j = r.json();
        (
            j["episodes"].as_u64().unwrap(),
            j["deleted"].as_u64().unwrap(),
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn episodes_stored_with_an_expiry_are_hidden_then_deleted_by_the_hub() {
    let setup = Setup::start(CONFIG);
    let acme = setup.tenant("acme");
    let (past, soon, kept) = (uid(1, 1), uid(1, 2), uid(1, 3));

    // Both forms at once, or a zero ttl, are refused and store nothing.
    let mut both = episode(&uid(1, 9));
    both["ttl_secs"] = json!(60);
    both["expires_at_ms"] = json!(now_ms() + 60_000);
    let r = acme.store(&both).await;
    assert_eq!(r.status, 422);
    assert_eq!(r.error_code(), "invalid_request");
    let mut zero = episode(&uid(1, 9));
    zero["ttl_secs"] = json!(0);
    assert_eq!(acme.store(&zero).await.status, 422);
    assert_eq!(acme.get(&uid(1, 9)).await, None);

    let mut e = episode(&past);
    e["expires_at_ms"] = json!(now_ms() - 1_000);
    acme.stored(&e).await;
    let mut e = episode(&soon);
    e["ttl_secs"] = json!(1);
    acme.stored(&e).await;
    acme.stored(&episode(&kept)).await;

    // Already past its expiry: never readable, even before the sweep.
    assert_eq!(acme.get(&past).await, None);
    let kept_json = acme.get(&kept).await.unwrap();
    assert_eq!(kept_json["expires_at_ms"], Value::Null);
    // The ttl counts from the store. The episode may already be gone on a slow machine.
    if let Some(soon_json) = acme.get(&soon).await {
        let expires = soon_json["expires_at_ms"].as_u64().unwrap();
        let created = soon_json["created_ms"].as_u64().unwrap();
        assert!(
            (0..=1_000).contains(&(expires - created)),
            "{expires} - {created}"
        );
    }

    // The hub deletes both, as deletes (tombstones), and keeps the third.
    eventually("the sweep to delete the expired episodes", || async {
        acme.counts().await == (1, 2)
    })
    .await;
    assert_eq!(acme.get(&soon).await, None);
    assert_eq!(acme.get(&kept).await.unwrap()["task"], kept_json["task"]);
    // A retried store of a deleted id does not bring it back.
    let r = acme.store(&episode(&past)).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(acme.get(&past).await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_retention_set_at_run_time_deletes_old_episodes_and_survives_a_restart() {
    let mut setup = Setup::start(CONFIG);

    // The configuration: the default for acme, forever for keep.
    let acme_retention = setup.retention("acme");
    assert_eq!(acme_retention["retention"], "30d");
    assert_eq!(acme_retention["retention_secs"], 30 * 86_400);
    assert_eq!(acme_retention["configured"], "30d");
    assert_eq!(acme_retention["runtime"], Value::Null);
    let keep = setup.retention("keep");
    assert_eq!(keep["retention"], "forever");
    assert_eq!(keep["retention_secs"], Value::Null);

    let (acme, globex) = (setup.tenant("acme"), setup.tenant("globex"));
    let old = [uid(1, 1), uid(1, 2)];
    for id in &old {
        acme.stored(&episode(id)).await;
    }
    let globex_old = uid(2, 1);
    globex.stored(&episode(&globex_old)).await;
    let created_old = acme.get(&old[1]).await.unwrap()["created_ms"]
        .as_u64()
        .unwrap();
    // The old episodes must be well past the retention set below while the young one is not
    // (the young one is checked within a moment of the sweep; five seconds leave room for a
    // slow machine):
    // wait (polling the clock) until they are seven seconds old.
    eventually("the old episodes to age", || async {
        now_ms() >= created_old + 7_000
    })
    .await;
    let young = uid(1, 3);
    acme.stored(&episode(&young)).await;

    // Only the operator sets a retention; bad values are refused.
    let (status, _) = setup.admin(
        "PUT",
        "/v1/tenants/acme/retention",
        Some(&setup.admin_token("acme")),
        Some(&json!({ "retention": "5s" })),
    );
    assert_eq!(status, 403);
    for bad in ["0d", "soon", "2 days"] {
        let (status, body) = setup.set_retention("acme", &json!({ "retention": bad }));
        assert_eq!(status, 422, "{bad}: {body}");
    }
    let (status, _) = setup.set_retention("acme", &json!({ "retention": "5s", "extra": 1 }));
    assert_eq!(status, 400);

    let (status, set) = setup.set_retention("acme", &json!({ "retention": "5s" }));
    assert_eq!(status, 200, "{set}");
    assert_eq!(set["retention"], "5s");
    assert_eq!(set["runtime"], "5s");
    assert_eq!(set["configured"], "30d");
    eventually("the sweep to delete acme's old episodes", || async {
        acme.counts().await == (1, 2)
    })
    .await;
    for id in &old {
        assert_eq!(acme.get(id).await, None);
    }
    // The young episode and the other tenant's old one stay.
    assert!(acme.get(&young).await.is_some());
    assert!(globex.get(&globex_old).await.is_some());

    // The run-time value survives a restart, and still applies: the young episode goes once
    // it is five seconds old.
    setup.restart();
    let acme_retention = setup.retention("acme");
    assert_eq!(acme_retention["runtime"], "5s");
    assert_eq!(acme_retention["retention"], "5s");
    let (acme, globex) = (setup.tenant("acme"), setup.tenant("globex"));
    eventually("the sweep to delete acme's young episode", || async {
        acme.get(&young).await.is_none()
    })
    .await;
    assert_eq!(acme.counts().await, (0, 3));
    assert!(globex.get(&globex_old).await.is_some());

    // `null` drops the run-time value: the configuration applies again.
    let (status, cleared) = setup.set_retention("acme", &json!({ "retention": null }));
    assert_eq!(status, 200, "{cleared}");
    assert_eq!(cleared["runtime"], Value::Null);
    assert_eq!(cleared["retention"], "30d");
    // "forever" at run time wins over the configured default.
    let (status, forever) = setup.set_retention("globex", &json!({ "retention": "forever" }));
    assert_eq!(status, 200, "{forever}");
    assert_eq!(forever["retention"], "forever");
    assert_eq!(forever["configured"], "30d");
}
