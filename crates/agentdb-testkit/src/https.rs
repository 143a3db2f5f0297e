//! A small HTTPS client for tests of the hub's gateway: TLS 1.3 with the deployment CA (and a
//! client certificate when given) through the same rustls configuration agents use, HTTP/1.1
//! through hyper, one connection per request. Event streams are read event by event.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt as _, Full};
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// How long any one step (connect, handshake, answer) may take.
const STEP: Duration = Duration::from_secs(20);

/// An HTTPS client of one hub.
#[derive(Clone)]
pub struct HttpsClient {
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for HttpsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpsClient")
            .field("addr", &self.addr)
            .finish()
    }
}

/// A whole answer.
#[derive(Debug, Clone)]
pub struct HttpsResponse {
    /// The status code.
    pub status: u16,
    /// The headers, names in lowercase.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl HttpsResponse {
    /// The body as JSON (panics with the body when it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): {} {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The error code of an error answer (`{"error": {"code": …}}`), or "" when there is none.
    pub fn error_code(&self) -> String {
        serde_json::from_slice::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| v["error"]["code"].as_str().map(str::to_owned))
            .unwrap_or_default()
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One server-sent event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    /// `id:`.
    pub id: Option<String>,
    /// `event:`.
    pub event: Option<String>,
    /// `data:` (lines joined with `\n`).
    pub data: String,
}

/// An open event stream.
#[derive(Debug)]
pub struct EventStream {
    body: Incoming,
    buffer: String,
}

impl EventStream {
    /// The next event, or `None` if the stream ended or nothing came within `wait`.
    pub async fn next(&mut self, wait: Duration) -> Option<SseEvent> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(event) = self.take_event() {
                return Some(event);
            }
            let frame = tokio::time::timeout_at(deadline, self.body.frame()).await;
            match frame {
                Ok(Some(Ok(frame))) => {
                    if let Some(data) = frame.data_ref() {
                        self.buffer.push_str(&String::from_utf8_lossy(data));
                    }
                }
                _ => return None,
            }
        }
    }

    /// Parses one complete event out of the buffer; comments (keep-alives) are skipped.
    fn take_event(&mut self) -> Option<SseEvent> {
        loop {
            let end = self.buffer.find("\n\n")?;
            let block: String = self.buffer.drain(..end + 2).collect();
            let mut event = SseEvent::default();
            let mut data = Vec::new();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    event.id = Some(v.trim_start().to_owned());
                } else if let Some(v) = line.strip_prefix("event:") {
                    event.event = Some(v.trim_start().to_owned());
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push(v.strip_prefix(' ').unwrap_or(v).to_owned());
                }
            }
            if event.id.is_some() || event.event.is_some() || !data.is_empty() {
                event.data = data.join("\n");
                return Some(event);
            }
        }
    }
}

impl HttpsClient {
    /// A client of the gateway at `addr` that trusts `ca_pem` and presents `client_cert`
    /// (certificate PEM, key PEM) when given.
    pub fn new(addr: SocketAddr, ca_pem: &[u8], client_cert: Option<(&[u8], &[u8])>) -> Self {
        let tls = agentdb_security::tls::client_config(ca_pem, client_cert, b"http/1.1")
            .expect("client TLS configuration");
        Self {
            addr,
            tls: Arc::new(tls),
        }
    }

    /// Sends a request on a new connection and reads the whole answer. `Err` when TLS or HTTP
    /// fails.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Result<HttpsResponse, String> {
        self.connect()
            .await?
            .request(method, path, headers, body)
            .await
    }

    /// `GET path` with `Authorization: Bearer token`.
    pub async fn get(&self, path: &str, token: &str) -> HttpsResponse {
        let auth = format!("Bearer {token}");
        self.request("GET", path, &[("authorization", &auth)], None)
            .await
            .expect("GET")
    }

    /// `method path` with a JSON body and `Authorization: Bearer token`.
    pub async fn send_json(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: &serde_json::Value,
    ) -> HttpsResponse {
        let auth = format!("Bearer {token}");
        let body = body.to_string();
        self.request(
            method,
            path,
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            Some(body.as_bytes()),
        )
        .await
        .expect("request")
    }

    /// Opens an event stream: `GET path` with `Accept: text/event-stream` and `headers`.
    /// Returns the status and, when it is 200, the stream.
    pub async fn events(
        &self,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<(u16, EventStream), String> {
        let mut all = vec![("accept", "text/event-stream")];
        all.extend_from_slice(headers);
        let (status, _, body) = self.open("GET", path, &all, None).await?;
        Ok((
            status,
            EventStream {
                body,
                buffer: String::new(),
            },
        ))
    }

    async fn open(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Result<(u16, Vec<(String, String)>, Incoming), String> {
        self.connect()
            .await?
            .send(method, path, headers, body)
            .await
    }

    /// Opens one keep-alive connection, for several requests in a row.
    pub async fn connect(&self) -> Result<HttpsConnection, String> {
        let tcp = tokio::time::timeout(STEP, TcpStream::connect(self.addr))
            .await
            .map_err(|_| "connect timed out".to_owned())?
            .map_err(|e| format!("connect: {e}"))?;
        let name = rustls::pki_types::ServerName::try_from("localhost")
            .map_err(|e| e.to_string())?
            .to_owned();
        let connector = TlsConnector::from(Arc::clone(&self.tls));
        let tls = tokio::time::timeout(STEP, connector.connect(name, tcp))
            .await
            .map_err(|_| "TLS handshake timed out".to_owned())?
            .map_err(|e| format!("TLS: {e}"))?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| format!("HTTP handshake: {e}"))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(HttpsConnection {
            sender,
            port: self.addr.port(),
        })
    }
}

/// One keep-alive HTTP/1.1 connection.
#[derive(Debug)]
pub struct HttpsConnection {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    port: u16,
}

impl HttpsConnection {
    /// Sends a request on this connection and reads the whole answer.
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Result<HttpsResponse, String> {
        let (status, headers, body) = self.send(method, path, headers, body).await?;
        let body = tokio::time::timeout(STEP, body.collect())
            .await
            .map_err(|_| "the body did not arrive in time".to_owned())?
            .map_err(|e| format!("body: {e}"))?
            .to_bytes()
            .to_vec();
        Ok(HttpsResponse {
            status,
            headers,
            body,
        })
    }

    async fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Result<(u16, Vec<(String, String)>, Incoming), String> {
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", format!("localhost:{}", self.port));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Full::new(Bytes::copy_from_slice(body.unwrap_or_default())))
            .map_err(|e| format!("request: {e}"))?;
        // The connection takes the next request only once it has finished with the last
        // answer; asking before that fails as canceled.
        tokio::time::timeout(STEP, self.sender.ready())
            .await
            .map_err(|_| "the connection was not ready in time".to_owned())?
            .map_err(|e| format!("HTTP: {e}"))?;
        let response = tokio::time::timeout(STEP, self.sender.send_request(request))
            .await
            .map_err(|_| "no answer in time".to_owned())?
            .map_err(|e| format!("HTTP: {e}"))?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    v.to_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        Ok((status, headers, response.into_body()))
    }
}
