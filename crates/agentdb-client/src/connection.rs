//! One QUIC connection to a hub: connect, authenticate, and one bi-stream per request.

use std::net::SocketAddr;
use std::time::Duration;

use agentdb_proto::{decode_response, Hello, HubUrl, Request, Response, Welcome, MAX_FRAME_LEN};

use crate::connector::Connector;
use crate::error::{AgentError, ConfigError, ProtocolError, Unreachable};

/// A parsed `quic://host:port` endpoint.
#[derive(Debug, Clone)]
pub(crate) struct HubAddress(HubUrl);

impl HubAddress {
    pub fn parse(url: &str) -> Result<Self, ConfigError> {
        HubUrl::parse(url)
            .map(Self)
            .map_err(|_| ConfigError::HubAddress {
                url: url.to_owned(),
            })
    }

    /// The host, without brackets.
    pub fn host(&self) -> &str {
        self.0.host()
    }

    async fn resolve(&self) -> Result<SocketAddr, Unreachable> {
        tokio::net::lookup_host((self.0.host(), self.0.port()))
            .await
            .ok()
            .and_then(|mut addrs| addrs.next())
            .ok_or_else(|| Unreachable::Resolve {
                host: self.0.host().to_owned(),
            })
    }
}

/// An authenticated connection.
#[derive(Debug)]
pub(crate) struct HubConnection {
    /// Kept while the connection lives (the endpoint is shared; see [`Connector`]).
    _endpoint: quinn::Endpoint,
    conn: quinn::Connection,
    timeout: Duration,
}

/// A cheap handle for sending requests on a connection; many may be in flight at once, each on
/// its own stream.
#[derive(Debug, Clone)]
pub(crate) struct Requester {
    conn: quinn::Connection,
    timeout: Duration,
}

impl HubConnection {
    /// Connects through `connector` (its endpoint, `client`'s TLS configuration and sessions)
    /// and completes the TLS handshake; the connection is not authenticated yet (see
    /// [`Self::hello`]).
    pub async fn open(
        connector: &Connector,
        address: &HubAddress,
        server_name: &str,
        client: quinn::ClientConfig,
        connect_timeout: Duration,
        timeout: Duration,
    ) -> Result<Self, AgentError> {
        let addr = address.resolve().await?;
        let (endpoint, connecting) = connector.connect(client, addr, server_name)?;
        let conn = tokio::time::timeout(connect_timeout, connecting)
            .await
            .map_err(|_| Unreachable::ConnectTimeout { addr })?
            .map_err(|e| AgentError::from_connection(&e))?;
        Ok(Self {
            _endpoint: endpoint,
            conn,
            timeout,
        })
    }

    /// Authenticates the connection with `token`.
    pub async fn hello(&self, token: String) -> Result<Welcome, AgentError> {
        match self
            .requester()
            .request(&Request::Hello(Hello::new(token)))
            .await?
        {
            Response::Welcome(w) => Ok(w),
            other => Err(AgentError::unexpected("hello", &other)),
        }
    }

    /// A handle for requests on this connection.
    pub fn requester(&self) -> Requester {
        Requester {
            conn: self.conn.clone(),
            timeout: self.timeout,
        }
    }

    /// Whether the connection is still open.
    pub fn is_open(&self) -> bool {
        self.conn.close_reason().is_none()
    }

    /// Says goodbye (best effort) and closes. The shared endpoint's driver sends the close and
    /// drains the connection (the hub already knows the agent is gone from the Goodbye).
    pub async fn close(self) {
        let _ = self.requester().request(&Request::Goodbye).await;
        self.conn.close(0u32.into(), b"goodbye");
    }
}

impl Requester {
    /// Sends one request on its own stream and reads the one response. A hub error response is
    /// returned as [`AgentError::Rejected`].
    pub async fn request(&self, req: &Request) -> Result<Response, AgentError> {
        match self.exchange(req).await? {
            Response::Error(e) => Err(AgentError::Rejected {
                code: e.code,
                message: e.message,
            }),
            r => Ok(r),
        }
    }

    /// Like [`Self::request`], but a hub error response is returned as the response it is:
    /// `Err` is then always about the connection or the answer, never the hub's refusal of
    /// this request.
    pub async fn exchange(&self, req: &Request) -> Result<Response, AgentError> {
        let exchange = async {
            let (mut send, mut recv) = self
                .conn
                .open_bi()
                .await
                .map_err(|e| AgentError::from_connection(&e))?;
            send.write_all(&req.encode()).await.map_err(write_error)?;
            let _ = send.finish();
            recv.read_to_end(MAX_FRAME_LEN).await.map_err(read_error)
        };
        let bytes = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| Unreachable::RequestTimeout)??;
        decode_response(&bytes, MAX_FRAME_LEN).map_err(|e| {
            tracing::debug!(request = req.name(), error = %e, "undecodable response");
            AgentError::Protocol(ProtocolError::Decode(e))
        })
    }
}

fn write_error(e: quinn::WriteError) -> AgentError {
    match e {
        quinn::WriteError::ConnectionLost(c) => AgentError::from_connection(&c),
        quinn::WriteError::Stopped(code) => Unreachable::StreamReset {
            code: code.into_inner(),
        }
        .into(),
        // Our stream closed under us, or 0-RTT refused (never used here).
        quinn::WriteError::ClosedStream | quinn::WriteError::ZeroRttRejected => {
            Unreachable::StreamClosed.into()
        }
    }
}

fn read_error(e: quinn::ReadToEndError) -> AgentError {
    match e {
        quinn::ReadToEndError::TooLong => ProtocolError::TooLong {
            limit: MAX_FRAME_LEN,
        }
        .into(),
        quinn::ReadToEndError::Read(quinn::ReadError::ConnectionLost(c)) => {
            AgentError::from_connection(&c)
        }
        quinn::ReadToEndError::Read(quinn::ReadError::Reset(code)) => Unreachable::StreamReset {
            code: code.into_inner(),
        }
        .into(),
        quinn::ReadToEndError::Read(
            quinn::ReadError::ClosedStream
            | quinn::ReadError::IllegalOrderedRead
            | quinn::ReadError::ZeroRttRejected,
        ) => Unreachable::StreamClosed.into(),
    }
}
