#![allow(dead_code, clippy::unwrap_used)]

//! A scripted hub on 127.0.0.1: real QUIC and TLS (the test PKI's hub certificate), a Welcome
//! for any Hello, and answers to every other request from a closure. It stands in for a hub
//! that misbehaves or refuses on cue.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use agentdb_core::{AgentId, HubId, ModelId, SessionId, TenantId};
use agentdb_proto::{Request, Response, Welcome, MAX_FRAME_LEN};
use agentdb_testkit::TestPki;

/// What the scripted hub sends back.
pub enum Reply {
    /// A well-formed response.
    Response(Box<Response>),
    /// These bytes, as they are.
    Raw(Vec<u8>),
}

type Script = dyn Fn(&Request) -> Reply + Send + Sync;

/// A running scripted hub.
pub struct FakeHub {
    pub addr: SocketAddr,
    endpoint: quinn::Endpoint,
    /// Store requests received.
    pub stores: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeHub {
    /// Starts a hub that welcomes agents of `tenant` and answers other requests with `script`.
    pub fn start(
        pki: &TestPki,
        tenant: &str,
        script: impl Fn(&Request) -> Reply + Send + Sync + 'static,
    ) -> Self {
        let tls =
            agentdb_security::tls::server_config(&pki.hub_tls(), false, &[agentdb_proto::ALPN])
                .unwrap();
        let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls).unwrap();
        let config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        let endpoint = quinn::Endpoint::server(config, "127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = endpoint.local_addr().unwrap();
        let stores = Arc::new(AtomicUsize::new(0));
        let script: Arc<Script> = Arc::new(script);
        let tenant = TenantId::new(tenant).unwrap();
        let task = tokio::spawn(serve(endpoint.clone(), tenant, script, Arc::clone(&stores)));
        Self {
            addr,
            endpoint,
            stores,
            task,
        }
    }

    /// `quic://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("quic://{}", self.addr)
    }

    /// Store requests received so far.
    pub fn store_count(&self) -> usize {
        self.stores.load(Ordering::SeqCst)
    }
}

impl Drop for FakeHub {
    fn drop(&mut self) {
        self.endpoint.close(0u32.into(), b"done");
        self.task.abort();
    }
}

async fn serve(
    endpoint: quinn::Endpoint,
    tenant: TenantId,
    script: Arc<Script>,
    stores: Arc<AtomicUsize>,
) {
    while let Some(incoming) = endpoint.accept().await {
        let (tenant, script, stores) = (tenant.clone(), Arc::clone(&script), Arc::clone(&stores));
        tokio::spawn(async move {
            let Ok(conn) = incoming.await else { return };
            while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                let Ok(bytes) = recv.read_to_end(MAX_FRAME_LEN).await else {
                    return;
                };
                let Ok(req) = agentdb_proto::decode_request(&bytes, MAX_FRAME_LEN) else {
                    return;
                };
                let reply = match &req {
                    Request::Hello(_) => Reply::Response(Box::new(Response::Welcome(Welcome {
                        agent: AgentId::new("scripted-agent").unwrap(),
                        tenant: tenant.clone(),
                        hub: HubId::new("scripted-hub").unwrap(),
                        session: SessionId::from_random([7; 16]),
                        expires_at: agentdb_testkit::unix_now() + 3600,
                        embedder: ModelId::new("agentdb-lexical-v1").unwrap(),
                    }))),
                    Request::Goodbye => Reply::Response(Box::new(Response::Bye)),
                    other => {
                        if matches!(other, Request::Store(_)) {
                            stores.fetch_add(1, Ordering::SeqCst);
                        }
                        script(other)
                    }
                };
                let bytes = match reply {
                    Reply::Response(r) => r.encode(),
                    Reply::Raw(b) => b,
                };
                let _ = send.write_all(&bytes).await;
                let _ = send.finish();
            }
        });
    }
}
