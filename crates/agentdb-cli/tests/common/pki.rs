//! A deployment PKI made with the real binary, and agents of its tenants run through the
//! binary: shared by the tests of several hubs (federation, PostgreSQL).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{agentdb, run_ok, Hub};

/// A deployment PKI made with the real binary: a CA, hub certificates, tenant-wide
/// certificates and a token signing key, all in `dir`.
pub struct Pki {
    pub dir: PathBuf,
}

impl Pki {
    /// Runs, in `base`, the `agentdb` commands of the first `sh` block of the README at `readme`
    /// that has any (an example's PKI block); the PKI is in `base/pki`.
    pub fn from_readme(readme: &Path, base: &Path) -> Pki {
        let text = std::fs::read_to_string(readme).unwrap();
        let commands: Vec<&str> = text
            .split("```sh\n")
            .skip(1)
            .filter_map(|rest| rest.split("```").next())
            .map(|block| {
                block
                    .lines()
                    .filter(|l| l.starts_with("agentdb "))
                    .collect::<Vec<_>>()
            })
            .find(|lines| !lines.is_empty())
            .expect("an sh block with agentdb commands in the README");
        for line in &commands {
            let args: Vec<String> = line
                .split_whitespace()
                .skip(1)
                .map(|w| w.trim_matches('\'').to_owned())
                .collect();
            let out = agentdb().args(&args).current_dir(base).output().unwrap();
            assert!(
                out.status.success(),
                "README command {line:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert!(
            commands.len() >= 5,
            "the README's PKI block has {} commands",
            commands.len()
        );
        Pki {
            dir: base.join("pki"),
        }
    }

    /// A PKI with certificates for `hubs` and tenant-wide ones for `tenants`.
    pub fn new(dir: PathBuf, hubs: &[&str], tenants: &[&str]) -> Pki {
        let d = dir.to_str().unwrap();
        run_ok(&["ca", "init", "--out", d]);
        for hub in hubs {
            run_ok(&[
                "cert",
                "issue",
                "--ca",
                d,
                "--out",
                d,
                "--hub",
                hub,
                "--san",
                "127.0.0.1",
                "--san",
                "localhost",
            ]);
        }
        for tenant in tenants {
            run_ok(&[
                "cert", "issue", "--ca", d, "--out", d, "--agent", "*", "--tenant", tenant,
            ]);
        }
        let signing = dir.join("signing.key");
        run_ok(&["token", "keygen", "--out", signing.to_str().unwrap()]);
        Pki { dir }
    }

    pub fn path(&self, name: &str) -> String {
        self.dir.join(name).to_str().unwrap().to_owned()
    }

    /// The `[tls]` and `[token]` sections of hub `hub`'s config.
    pub fn hub_sections(&self, hub: &str) -> String {
        format!(
            "[tls]\nca = {:?}\ncert = {:?}\nkey = {:?}\n\n[token]\npublic_key = {:?}\n",
            self.path("ca.pem"),
            self.path(&format!("{hub}.pem")),
            self.path(&format!("{hub}.key")),
            self.path("signing.key.pub"),
        )
    }

    /// Connect flags of an agent of `tenant`.
    pub fn creds(&self, tenant: &str) -> Vec<String> {
        vec![
            "--ca".into(),
            self.path("ca.pem"),
            "--cert".into(),
            self.path(&format!("tenant-{tenant}.pem")),
            "--key".into(),
            self.path(&format!("tenant-{tenant}.key")),
            "--signing-key".into(),
            self.path("signing.key"),
        ]
    }

    /// `agentdb token issue --json` for an agent of `tenant`: the token, its id and its expiry.
    pub fn issue_token(&self, tenant: &str, agent: &str) -> (String, String, u64) {
        let key = self.path("signing.key");
        let out = run_ok(&[
            "token",
            "issue",
            "--signing-key",
            &key,
            "--tenant",
            tenant,
            "--agent",
            agent,
            "--json",
        ]);
        let issued: Value = serde_json::from_slice(&out.stdout).unwrap();
        (
            issued["token"].as_str().unwrap().to_owned(),
            issued["claims"]["jti"].as_str().unwrap().to_owned(),
            issued["claims"]["exp"].as_u64().unwrap(),
        )
    }

    /// Whether `agentdb agent query` on `hub` with the tenant's certificate and `credential`
    /// (`--token T` or `--api-key K`) is served; the error text when it is not.
    pub fn served(&self, hub: &Hub, tenant: &str, credential: [&str; 2]) -> Result<(), String> {
        let out = agentdb()
            .args([
                "agent",
                "query",
                "--hub",
                &hub.quic,
                "--ca",
                &self.path("ca.pem"),
            ])
            .args(["--cert", &self.path(&format!("tenant-{tenant}.pem"))])
            .args(["--key", &self.path(&format!("tenant-{tenant}.key"))])
            .args(credential)
            .args(["--tenant", tenant, "summarise invoice", "--json"])
            .output()
            .unwrap();
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// `agentdb agent store` on `hub` for `tenant`: the new episode's id.
    pub fn store(&self, hub: &Hub, tenant: &str, task: &str, output: &str) -> String {
        let mut args: Vec<String> = vec!["agent".into(), "store".into(), "--hub".into()];
        args.push(hub.quic.clone());
        args.extend(self.creds(tenant));
        for (flag, value) in [
            ("--tenant", tenant),
            ("--task", task),
            ("--input", "invoice #42 from ACME"),
            ("--output", output),
            ("--reward", "0.9"),
        ] {
            args.push(flag.into());
            args.push(value.into());
        }
        args.push("--json".into());
        let out = agentdb().args(&args).output().unwrap();
        assert!(
            out.status.success(),
            "store on {} failed: {}",
            hub.quic,
            String::from_utf8_lossy(&out.stderr)
        );
        let stored: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(stored["spooled"], false, "{stored}");
        stored["id"].as_str().unwrap().to_owned()
    }

    /// Runs `agentdb agent SUBCOMMAND --hub … <credentials> --tenant T ARGS… --json` on `hub`.
    pub fn agent(&self, hub: &Hub, sub: &str, tenant: &str, rest: &[&str]) -> Value {
        let mut args: Vec<String> = vec!["agent".into(), sub.into(), "--hub".into()];
        args.push(hub.quic.clone());
        args.extend(self.creds(tenant));
        args.extend(["--tenant", tenant, "--json"].map(String::from));
        args.extend(rest.iter().map(|a| a.to_string()));
        let out = agentdb().args(&args).output().unwrap();
        assert!(
            out.status.success(),
            "{sub} on {} failed: {}",
            hub.quic,
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// The reward `agentdb agent query` on `hub` reports for episode `id`, if it finds it.
    pub fn reward(&self, hub: &Hub, tenant: &str, id: &str) -> Option<f64> {
        let hits = self.agent(hub, "query", tenant, &["-k", "50", "summarise invoice"]);
        hits.as_array()
            .unwrap()
            .iter()
            .find(|h| h["id"] == id)
            .map(|h| h["reward"].as_f64().unwrap())
    }

    /// The ids `agentdb agent query` on `hub` returns for `tenant`.
    pub fn ids(&self, hub: &Hub, tenant: &str) -> BTreeSet<String> {
        let mut args: Vec<String> = vec!["agent".into(), "query".into(), "--hub".into()];
        args.push(hub.quic.clone());
        args.extend(self.creds(tenant));
        for a in [
            "--tenant",
            tenant,
            "-k",
            "50",
            "summarise invoice",
            "--json",
        ] {
            args.push(a.into());
        }
        let out = agentdb().args(&args).output().unwrap();
        assert!(
            out.status.success(),
            "query on {} failed: {}",
            hub.quic,
            String::from_utf8_lossy(&out.stderr)
        );
        let hits: Value = serde_json::from_slice(&out.stdout).unwrap();
        hits.as_array()
            .unwrap()
            .iter()
            .map(|h| h["id"].as_str().unwrap().to_owned())
            .collect()
    }
}
