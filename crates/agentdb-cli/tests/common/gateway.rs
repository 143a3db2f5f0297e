//! A real `agentdb hub` process with its PKI and data directory, reached through the HTTPS
//! gateway (as a tenant) and the admin HTTP (as a tenant admin or the operator): the setup of
//! the tests of run-time admin settings (quotas, retention).

use agentdb_security::token::Scope;
use agentdb_testkit::https::HttpsClient;
use agentdb_testkit::TestPki;
use serde_json::Value;

use super::{pki_hub, pki_hub_again, Hub};

pub struct Setup {
    pub pki: TestPki,
    pub hub: Hub,
    pub dir: tempfile::TempDir,
}

impl Setup {
    /// Starts a hub with `config` added to its configuration.
    pub fn start(config: &str) -> Setup {
        let pki = TestPki::new();
        let dir = tempfile::tempdir().unwrap();
        let hub = pki_hub(&pki, dir.path(), config);
        Setup { pki, hub, dir }
    }

    /// Kills the hub and starts it again over the same data.
    pub fn restart(&mut self) {
        let _ = self.hub.child.kill();
        let _ = self.hub.child.wait();
        self.hub = pki_hub_again(self.dir.path());
    }

    /// A gateway client with `tenant`'s certificate, and a token of an agent of it.
    pub fn tenant(&self, tenant: &str) -> Tenant {
        let (cert, key) = self.pki.tenant_cert(tenant);
        Tenant {
            client: HttpsClient::new(
                self.hub.https.parse().unwrap(),
                &self.pki.ca_pem(),
                Some((&cert, &key)),
            ),
            token: self.pki.token(tenant, "agent-1", 300),
        }
    }

    pub fn admin_token(&self, tenant: &str) -> String {
        self.pki
            .token_with(tenant, "operator", 300, vec![Scope::Admin])
    }

    pub fn operator_token(&self) -> String {
        self.pki
            .token_with("ops", "operator", 300, vec![Scope::Operator])
    }

    /// One request to the admin HTTP: (status, body).
    pub fn admin(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> (u16, String) {
        let body = body.map(Value::to_string);
        self.hub.admin_http(method, path, token, body.as_deref())
    }
}

/// A gateway client of one tenant and a token of an agent of it.
pub struct Tenant {
    pub client: HttpsClient,
    pub token: String,
}
