//! Per-tenant quotas of a real `agentdb hub` process, configured in its TOML file and set at
//! run time through the admin HTTP: a write that would pass a quota is refused with
//! `quota_exceeded` and nothing of it is stored; other tenants are unaffected; a run-time
//! quota takes effect at once and survives a restart; the per-tenant metrics are for
//! operators and name a bounded number of tenants.

#![allow(clippy::unwrap_used)]

mod common;

use agentdb_testkit::https::HttpsResponse;
use serde_json::{json, Value};

use common::gateway::{Setup, Tenant};

/// The quotas under test: three tenants with one limit each, `acme` with none, and per-tenant
/// metrics naming at most two tenants.
const QUOTAS: &str = "\
[limits]
max_metric_tenants = 2

[quotas.tenants.small]
max_episodes = 3

[quotas.tenants.bytes]
max_bytes = 200

[quotas.tenants.slow]
max_writes_per_sec = 1
";

impl Setup {
    fn quota(&self, tenant: &str) -> Value {
        let (status, body) = self.admin(
            "GET",
            &format!("/v1/tenants/{tenant}/quota"),
            Some(&self.admin_token(tenant)),
            None,
        );
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }
}

/// A client-chosen episode id.
fn uid(tenant: u32, n: u32) -> String {
    format!("0190b000-0000-7000-8000-{tenant:04x}{n:08x}")
}

/// An episode of about `size` bytes of content, with id `id`.
fn episode(id: &str, size: usize) -> Value {
    let task = format!("task {id}");
    let output = "o".repeat(size.saturating_sub(task.len()).max(1));
    json!({ "id": id, "task": task, "input": "", "output": output, "reward": 0.5 })
}

impl Tenant {
    async fn store(&self, episodes: &[Value]) -> HttpsResponse {
        self.client
            .send_json(
                "POST",
                "/v1/episodes",
                &self.token,
                &json!({ "episodes": episodes }),
            )
            .await
    }

    async fn delete(&self, id: &str) {
        let auth = format!("Bearer {}", self.token);
        let r = self
            .client
            .request(
                "DELETE",
                &format!("/v1/episodes/{id}"),
                &[("authorization", &auth)],
                None,
            )
            .await
            .unwrap();
        assert!(r.status == 200 || r.status == 204, "delete: {}", r.status);
    }

    async fn episodes(&self) -> u64 {
        let r = self.client.get("/v1/stats", &self.token).await;
        assert_eq!(r.status, 200);
        r.json()["episodes"].as_u64().unwrap()
    }

    async fn exists(&self, id: &str) -> bool {
        let r = self
            .client
            .get(&format!("/v1/episodes/{id}"), &self.token)
            .await;
        match r.status {
            200 => true,
            404 => false,
            s => panic!("GET episode: {s}"),
        }
    }
}

/// Asserts `r` is the `quota_exceeded` refusal of `quota`, and returns its message.
fn refused(r: &HttpsResponse, quota: &str) -> String {
    assert_eq!(r.status, 403, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.error_code(), "quota_exceeded");
    assert!(r.header("retry-after").is_none());
    let message = r.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(message.starts_with(quota), "{message}");
    assert!(!message.contains('\n'));
    message
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_quotas_refuse_whole_writes_and_store_nothing() {
    let setup = Setup::start(QUOTAS);

    // Episodes: three pass, the fourth is refused and not stored.
    let small = setup.tenant("small");
    for n in 0..3 {
        let r = small.store(&[episode(&uid(1, n), 50)]).await;
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    }
    let message = refused(
        &small.store(&[episode(&uid(1, 3), 50)]).await,
        "episodes quota",
    );
    assert!(
        message.contains("tenant small")
            && message.contains("limit 3")
            && message.contains("holds 3"),
        "{message}"
    );
    assert_eq!(small.episodes().await, 3);
    assert!(!small.exists(&uid(1, 3)).await);
    // Sending a stored episode again is not a new episode: never refused by the count.
    let again = small.store(&[episode(&uid(1, 0), 50)]).await;
    assert_eq!(
        again.status,
        200,
        "{}",
        String::from_utf8_lossy(&again.body)
    );

    // A batch that would cross the limit stores nothing, not even what would fit.
    small.delete(&uid(1, 0)).await;
    assert_eq!(small.episodes().await, 2);
    let batch = [episode(&uid(1, 4), 50), episode(&uid(1, 5), 50)];
    let message = refused(&small.store(&batch).await, "episodes quota");
    assert!(message.contains("adds 2"), "{message}");
    assert_eq!(small.episodes().await, 2);
    assert!(!small.exists(&uid(1, 4)).await);
    assert!(!small.exists(&uid(1, 5)).await);
    assert_eq!(small.store(&batch[..1]).await.status, 201);
    assert_eq!(small.episodes().await, 3);

    // Bytes: 150 of 200 pass, 150 more do not; a delete makes room again.
    let bytes = setup.tenant("bytes");
    assert_eq!(bytes.store(&[episode(&uid(2, 0), 150)]).await.status, 201);
    let message = refused(
        &bytes.store(&[episode(&uid(2, 1), 150)]).await,
        "stored bytes quota",
    );
    assert!(
        message.contains("limit 200")
            && message.contains("stores 150")
            && message.contains("adds 150"),
        "{message}"
    );
    assert!(!bytes.exists(&uid(2, 1)).await);
    assert_eq!(bytes.episodes().await, 1);
    bytes.delete(&uid(2, 0)).await;
    assert_eq!(bytes.store(&[episode(&uid(2, 1), 150)]).await.status, 201);
    assert_eq!(setup.quota("bytes")["usage"]["bytes"], 150);

    // Writes per second (burst 1): a batch of three takes the second and the next two, so
    // the write right after it is refused.
    let slow = setup.tenant("slow");
    let batch: Vec<Value> = (0..3).map(|n| episode(&uid(3, n), 20)).collect();
    assert_eq!(slow.store(&batch).await.status, 201);
    let message = refused(
        &slow.store(&[episode(&uid(3, 3), 20)]).await,
        "writes per second quota",
    );
    assert!(message.contains("limit 1 per second"), "{message}");
    assert!(!slow.exists(&uid(3, 3)).await);
    assert_eq!(slow.episodes().await, 3);

    // A tenant without quotas is unaffected by the others' being full.
    let acme = setup.tenant("acme");
    let batch: Vec<Value> = (0..10).map(|n| episode(&uid(4, n), 500)).collect();
    assert_eq!(acme.store(&batch).await.status, 201);
    assert_eq!(acme.store(&[episode(&uid(4, 10), 500)]).await.status, 201);
    assert_eq!(acme.episodes().await, 11);

    // The GET shows what each tenant is held to, and what it holds.
    let q = setup.quota("small");
    assert_eq!(q["quota"]["max_episodes"], 3);
    assert_eq!(q["quota"]["max_bytes"], Value::Null);
    assert_eq!(q["override"], Value::Null);
    assert_eq!(q["usage"]["episodes"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_time_quota_applies_at_once_and_survives_a_restart() {
    let mut setup = Setup::start(QUOTAS);
    let acme = setup.tenant("acme");
    let batch: Vec<Value> = (0..4).map(|n| episode(&uid(5, n), 40)).collect();
    assert_eq!(acme.store(&batch).await.status, 201);

    // A tenant's own admin may read its quota, never set it; the operator may.
    let path = "/v1/tenants/acme/quota";
    let limit = json!({ "max_episodes": 4 });
    let (status, body) = setup.admin("PUT", path, Some(&setup.admin_token("acme")), Some(&limit));
    assert_eq!(status, 403, "{body}");
    let (status, _) = setup.admin("GET", path, Some(&setup.admin_token("other")), None);
    assert_eq!(status, 403);
    let (status, _) = setup.admin("PUT", path, None, Some(&limit));
    assert_eq!(status, 401);
    let zero = json!({ "max_writes_per_sec": 0 });
    let (status, _) = setup.admin("PUT", path, Some(&setup.operator_token()), Some(&zero));
    assert_eq!(status, 422);
    let (status, body) = setup.admin("PUT", path, Some(&setup.operator_token()), Some(&limit));
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["quota"]["max_episodes"], 4);
    assert_eq!(answer["override"]["max_episodes"], 4);
    assert_eq!(answer["usage"]["episodes"], 4);

    // At once: the next new episode is refused.
    refused(
        &acme.store(&[episode(&uid(5, 4), 40)]).await,
        "episodes quota",
    );
    assert_eq!(acme.episodes().await, 4);

    // After a restart, the same.
    setup.restart();
    let acme = setup.tenant("acme");
    assert_eq!(acme.episodes().await, 4);
    refused(
        &acme.store(&[episode(&uid(5, 4), 40)]).await,
        "episodes quota",
    );
    assert_eq!(setup.quota("acme")["override"]["max_episodes"], 4);

    // Dropping the override lifts the limit.
    let (status, body) = setup.admin("PUT", path, Some(&setup.operator_token()), Some(&json!({})));
    assert_eq!(status, 200, "{body}");
    assert_eq!(acme.store(&[episode(&uid(5, 4), 40)]).await.status, 201);
    setup.restart();
    assert_eq!(setup.quota("acme")["override"], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_metrics_are_for_operators_and_name_few_tenants() {
    let setup = Setup::start(QUOTAS);
    for (i, name) in ["t1", "t2", "t3", "t4"].iter().enumerate() {
        let t = setup.tenant(name);
        let eps: Vec<Value> = (0..=i as u32)
            .map(|n| episode(&uid(6 + i as u32, n), 30))
            .collect();
        assert_eq!(t.store(&eps).await.status, 201);
    }
    let small = setup.tenant("small");
    let eps: Vec<Value> = (0..4).map(|n| episode(&uid(10, n), 30)).collect();
    refused(&small.store(&eps).await, "episodes quota");

    let path = "/v1/metrics/tenants";
    assert_eq!(setup.admin("GET", path, None, None).0, 401);
    assert_eq!(
        setup
            .admin("GET", path, Some(&setup.admin_token("t1")), None)
            .0,
        403
    );
    let (status, text) = setup.admin("GET", path, Some(&setup.operator_token()), None);
    assert_eq!(status, 200, "{text}");
    // Two tenants by name, every other under `_other`: 1 + 2 + 3 + 4 episodes in all.
    let mut tenants: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("agentdb_tenant_episodes{"))
        .map(|l| l.split('"').nth(1).unwrap())
        .collect();
    tenants.sort_unstable();
    assert_eq!(tenants.len(), 3, "{text}");
    assert!(tenants.contains(&"_other"), "{text}");
    let total: u64 = text
        .lines()
        .filter(|l| l.starts_with("agentdb_tenant_episodes{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(total, 10, "{text}");
    assert!(text.contains("agentdb_tenant_stored_bytes{"), "{text}");
    let refusals: u64 = text
        .lines()
        .filter(|l| {
            l.starts_with("agentdb_tenant_quota_refusals_total{")
                && l.contains("quota=\"episodes\"")
        })
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(refusals, 1, "{text}");

    // The public metrics still name no tenant.
    let (status, public) = setup.admin("GET", "/metrics", None, None);
    assert_eq!(status, 200);
    assert!(!public.contains("tenant="), "{public}");
}
