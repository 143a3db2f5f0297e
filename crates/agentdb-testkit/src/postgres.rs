//! The PostgreSQL test server (`scripts/postgres.sh` starts one; `scripts/test.sh` does it
//! for the whole suite), a fresh database on it for each test, and its client tools.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

/// The variable naming the test server (`postgres://user@host:port/db`).
pub const SERVER_ENV: &str = "AGENTDB_TEST_POSTGRES";

/// The URL of the test server; a test without one fails and says how to start one.
pub fn server() -> String {
    std::env::var(SERVER_ENV).unwrap_or_else(|_| {
        panic!(
            "{SERVER_ENV} is not set: start a server with `scripts/postgres.sh start DIR` and \
             set {SERVER_ENV} to the URL it prints (scripts/test.sh does both)"
        )
    })
}

/// A new, empty database on the test server; its URL.
pub fn fresh_database() -> String {
    fresh_database_on(&server())
}

/// A new, empty database on the server at `server` (a URL naming any database of it); its URL.
pub fn fresh_database_on(server: &str) -> String {
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(server, tokio_postgres::NoTls)
            .await
            .unwrap();
        let driver = tokio::spawn(connection);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        drop(client);
        let _ = driver.await;
    });
    let base = server.rsplit_once('/').map_or(server, |(b, _)| b);
    format!("{base}/{name}")
}

/// The variable naming the directory of the test server's client tools (`pg_dump`, `psql`).
pub const BIN_ENV: &str = "AGENTDB_TEST_POSTGRES_BIN";

/// A client tool of the test server (`pg_dump`, `psql`), from [`BIN_ENV`].
pub fn tool(name: &str) -> PathBuf {
    let dir = std::env::var(BIN_ENV).unwrap_or_else(|_| {
        panic!("{BIN_ENV} is not set: `scripts/postgres.sh bin` prints the directory")
    });
    PathBuf::from(dir).join(name)
}
