#![allow(dead_code)]

//! A hub child process, shared by the tests that run `agentdb hub`.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// An `agentdb` command, without the ambient variables that would change what it does.
pub fn agentdb() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_agentdb"));
    for name in agentdb_testkit::AMBIENT_ENV {
        cmd.env_remove(name);
    }
    cmd
}

/// A hub child process, killed on drop so no test leaks one.
pub struct Hub {
    pub child: Child,
    /// `quic://ADDR` from the listening line.
    pub quic: String,
    /// The admin HTTP address from the listening line.
    pub http: String,
    /// The listening line.
    pub line: String,
    /// The hub's stderr.
    pub log: PathBuf,
}

impl Hub {
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
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            let _ = tx.send(line);
            // Keep reading so the hub never writes into a closed pipe.
            let _ = std::io::copy(&mut reader, &mut std::io::sink());
        });
        let line = rx.recv_timeout(Duration::from_secs(60)).unwrap_or_default();
        let mut hub = Hub {
            child,
            quic: String::new(),
            http: String::new(),
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
