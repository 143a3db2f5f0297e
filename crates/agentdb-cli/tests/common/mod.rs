#![allow(dead_code)]

//! A hub child process, shared by the tests that run `agentdb hub`.

pub mod gateway;
pub mod pki;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// An `agentdb` command, without the ambient variables that would change what it does.
pub fn agentdb() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_agentdb"));
    for name in agentdb_testkit::AMBIENT_ENV {
        cmd.env_remove(name);
    }
    cmd
}

/// Runs `agentdb ARGS` and asserts it succeeded.
pub fn run_ok(args: &[&str]) -> Output {
    let out = agentdb().args(args).output().unwrap();
    assert!(
        out.status.success(),
        "agentdb {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The JSON a successful command printed on stdout.
pub fn ok_json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

/// A hub child process, killed on drop so no test leaks one.
pub struct Hub {
    pub child: Child,
    /// `quic://ADDR` from the listening line.
    pub quic: String,
    /// The admin HTTP address from the listening line.
    pub http: String,
    /// The HTTPS gateway address from the listening line.
    pub https: String,
    /// The listening line.
    pub line: String,
    /// The hub's stderr.
    pub log: PathBuf,
}

/// An answer of the admin listener.
#[derive(Debug)]
pub struct AdminAnswer {
    pub status: u16,
    pub body: String,
    /// The hub's id of the request (`x-request-id`).
    pub request_id: Option<String>,
}

impl Hub {
    /// `method path` on the hub's admin HTTP listener, with a bearer token and a JSON body
    /// (sent by POST and PUT, empty when `None`) when given: (status, body text).
    pub fn admin_http(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> (u16, String) {
        let answer = self.admin_call(method, path, token, body);
        (answer.status, answer.body)
    }

    /// Like [`Hub::admin_http`], with the answer's `x-request-id` header.
    pub fn admin_call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> AdminAnswer {
        let url = format!("http://{}{path}", self.http);
        let auth = token.map(|t| format!("Bearer {t}"));
        let response = match method {
            "POST" | "PUT" => {
                let mut req = if method == "POST" {
                    ureq::post(&url)
                } else {
                    ureq::put(&url)
                };
                req = req.header("Content-Type", "application/json");
                if let Some(a) = &auth {
                    req = req.header("Authorization", a);
                }
                req.config()
                    .http_status_as_error(false)
                    .build()
                    .send(body.unwrap_or_default())
            }
            _ => {
                let mut req = if method == "DELETE" {
                    ureq::delete(&url)
                } else {
                    ureq::get(&url)
                };
                if let Some(a) = &auth {
                    req = req.header("Authorization", a);
                }
                req.config().http_status_as_error(false).build().call()
            }
        };
        let mut response = response.unwrap();
        let request_id = response
            .headers()
            .get("x-request-id")
            .map(|v| v.to_str().unwrap().to_owned());
        AdminAnswer {
            status: response.status().as_u16(),
            body: response.body_mut().read_to_string().unwrap(),
            request_id,
        }
    }

    /// Spawns `cmd` (an `agentdb hub …` command) with stderr to `log` and waits for its
    /// "listening" line; `Err` carries the log when it never comes (a hub that cannot start
    /// exits with one line on stderr).
    pub fn spawn(mut cmd: Command, log: &Path) -> Result<Hub, String> {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let rx = agentdb_testkit::first_line(stdout);
        let line = rx.recv_timeout(Duration::from_secs(60)).unwrap_or_default();
        let mut hub = Hub {
            child,
            quic: String::new(),
            http: String::new(),
            https: String::new(),
            line: line.trim().to_owned(),
            log: log.to_owned(),
        };
        if !hub.line.starts_with("agentdb hub listening ") {
            return Err(format!(
                "no listening line: {:?}; log: {}",
                hub.line,
                hub.log_text()
            ));
        }
        hub.quic = format!("quic://{}", hub.field("quic"));
        hub.http = hub.field("http");
        hub.https = hub.field("https");
        Ok(hub)
    }

    /// A `key=value` field of the listening line.
    pub fn field(&self, key: &str) -> String {
        self.line
            .split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("no {key}= in {:?}", self.line))
            .to_owned()
    }

    /// What the hub wrote on stderr so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes `pki`'s CA, hub certificate and token public key into `dir` and starts
/// `agentdb hub --config` with them (mutual TLS required), data in `dir/data`, on free ports,
/// with `extra` appended to the config file.
pub fn pki_hub(pki: &agentdb_testkit::TestPki, dir: &Path, extra: &str) -> Hub {
    let tls = pki.hub_tls();
    std::fs::write(dir.join("ca.pem"), &tls.ca_pem).unwrap();
    std::fs::write(dir.join("hub.pem"), &tls.cert_pem).unwrap();
    std::fs::write(dir.join("hub.key"), &tls.key_pem).unwrap();
    std::fs::write(dir.join("signing.pub"), pki.signing.public_pem.as_bytes()).unwrap();
    let config = dir.join("hub.toml");
    std::fs::write(
        &config,
        format!(
            "hub_id = \"test-hub\"\ndata = \"data\"\nquic = \"127.0.0.1:0\"\n\
             http = \"127.0.0.1:0\"\nhttps = \"127.0.0.1:0\"\n{extra}\n\
             [tls]\nca = \"ca.pem\"\ncert = \"hub.pem\"\nkey = \"hub.key\"\n\n\
             [token]\npublic_key = \"signing.pub\"\n"
        ),
    )
    .unwrap();
    pki_hub_again(dir)
}

/// Starts the hub [`pki_hub`] configured in `dir` again, over the same data.
pub fn pki_hub_again(dir: &Path) -> Hub {
    let mut cmd = agentdb();
    cmd.args(["hub", "--config", dir.join("hub.toml").to_str().unwrap()]);
    Hub::spawn(cmd, &dir.join("hub.log")).expect("the hub starts")
}
