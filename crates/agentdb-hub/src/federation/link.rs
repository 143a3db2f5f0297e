//! Driving one hub-to-hub link: dialling (with backoff), accepting, and the link thread.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use agentdb_audit::Operation;
use agentdb_core::{HubId, Region};
use agentdb_proto::fed::{FedMessage, LinkSession, FED_ALPN};
use agentdb_proto::{FrameDecoder, MAX_FRAME_LEN};
use agentdb_security::identity::PeerIdentity;
use agentdb_security::policy;
use agentdb_security::tls::TlsError;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, watch};

use super::store::EngineStore;
use super::{Direction, Event, LinkEntry, LinkState};
use crate::auth;
use crate::metrics::PeerLabels;
use crate::state::{unix_ms, HubState};

/// QUIC close codes of links (agent connections use the wire error codes).
const CLOSE_OK: u32 = 0;
const CLOSE_REFUSED: u32 = 3;
const CLOSE_PROTOCOL: u32 = 5;
/// Frames queued for the writer before the link thread waits (back-pressure).
const WRITE_QUEUE: usize = 8;
/// Events queued for the link thread before the reader waits (back-pressure).
const EVENT_QUEUE: usize = 64;
/// How often a link recomputes its lag.
const LAG_EVERY_MS: u64 = 500;
/// A link that stayed up this long starts the next attempt from the shortest backoff.
const STABLE_LINK: Duration = Duration::from_secs(2);
/// How often a link on standby looks whether the peer's link still carries the pair.
const STANDBY_CHECK: Duration = Duration::from_millis(200);

/// The TLS client side of links: this hub's certificate, ALPN `agentdb-fed/1`.
pub(crate) fn client_config(state: &HubState) -> Result<quinn::ClientConfig, TlsError> {
    let tls = &state.config.tls;
    let crypto = agentdb_security::tls::client_config(
        &tls.ca_pem,
        Some((&tls.cert_pem, &tls.key_pem)),
        FED_ALPN,
    )?;
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(crypto)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport.keep_alive_interval(Some(Duration::from_secs(5)));
    transport.congestion_controller_factory(crate::congestion());
    transport.max_idle_timeout(Some(
        quinn::IdleTimeout::try_from(Duration::from_secs(30))
            .map_err(|e| TlsError::Config(e.to_string()))?,
    ));
    config.transport_config(Arc::new(transport));
    Ok(config)
}

async fn resolve(url: &str) -> Result<(SocketAddr, String), String> {
    let hub = agentdb_proto::HubUrl::parse(url).map_err(|e| e.to_string())?;
    let host = hub.host().to_owned();
    let addr = tokio::net::lookup_host((hub.host(), hub.port()))
        .await
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("cannot resolve {host}"))?;
    Ok((addr, host))
}

/// Keeps a link to `url` up until shutdown: connect, run, and after a failure wait (doubling
/// up to the configured maximum) before the next attempt. While a link the peer dialled
/// carries the pair (see [`Federation::yields_to`](super::Federation::yields_to)), the link
/// waits on standby instead.
pub(crate) async fn dial_loop(
    state: Arc<HubState>,
    endpoint: quinn::Endpoint,
    client: quinn::ClientConfig,
    url: String,
    entry: Arc<LinkEntry>,
    mut shutdown: watch::Receiver<bool>,
) {
    let max_backoff = state.federation.config.max_backoff;
    let first_backoff = Duration::from_millis(100).min(max_backoff);
    let mut backoff = first_backoff;
    // The hub at `url`, once a connection has told.
    let mut peer = None;
    loop {
        if *shutdown.borrow() {
            return;
        }
        let outcome = dial_once(&state, &endpoint, &client, &url, &entry, &mut shutdown).await;
        {
            let s = &mut entry.snapshot.lock().status;
            s.state = LinkState::Down;
            match outcome {
                Ok((p, ran)) => {
                    peer = Some(p);
                    // A link that ended at once (the peer refused the session) backs off
                    // like a failed attempt.
                    if ran >= STABLE_LINK {
                        backoff = first_backoff;
                    }
                }
                Err(e) => s.last_error = Some(e),
            }
        }
        if let Some(p) = &peer {
            let fed = &state.federation;
            if fed.yields_to(&state.config.hub_id, p) {
                {
                    let s = &mut entry.snapshot.lock().status;
                    s.state = LinkState::Standby;
                    s.last_error = None;
                }
                while fed.yields_to(&state.config.hub_id, p) {
                    tokio::select! {
                        _ = shutdown.wait_for(|s| *s) => return,
                        _ = tokio::time::sleep(STANDBY_CHECK) => {}
                    }
                }
                continue;
            }
        }
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(max_backoff);
    }
}

/// One connection attempt and, when it succeeds, the link until it ends. `Ok` with the peer
/// hub and how long the link ran when one ran (whatever ended it) or yielded to the peer's
/// own.
async fn dial_once(
    state: &Arc<HubState>,
    endpoint: &quinn::Endpoint,
    client: &quinn::ClientConfig,
    url: &str,
    entry: &Arc<LinkEntry>,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(HubId, Duration), String> {
    entry.snapshot.lock().status.state = LinkState::Connecting;
    state.metrics.fed_dials.inc();
    let (addr, host) = resolve(url).await?;
    let connecting = endpoint
        .connect_with(client.clone(), addr, &host)
        .map_err(|e| format!("connect to {url}: {e}"))?;
    // Bounded so that a peer that was down when the attempt started is retried soon after it
    // is back, not only when QUIC's own retransmissions reach it.
    let handshake = state
        .federation
        .config
        .max_backoff
        .max(Duration::from_secs(2))
        .min(Duration::from_secs(10));
    let conn = tokio::time::timeout(handshake, connecting)
        .await
        .map_err(|_| format!("connect to {url}: timed out"))?
        .map_err(|e| format!("connect to {url}: {e}"))?;
    let peer = match peer_hub(state, &conn) {
        Ok(p) => p,
        Err(e) => {
            crate::audit::link(state, Operation::FederationLinkRefused, None, Some(&e));
            conn.close(quinn::VarInt::from_u32(CLOSE_REFUSED), e.as_bytes());
            return Err(e);
        }
    };
    let (send, recv) = conn
        .open_bi()
        .await
        .map_err(|e| format!("open stream to {url}: {e}"))?;
    let hub = peer.hub.clone();
    let started = tokio::time::Instant::now();
    run_link(state, &conn, peer, send, recv, entry, shutdown).await;
    Ok((hub, started.elapsed()))
}

/// A link's peer as its certificate names it.
#[derive(Debug, Clone)]
pub(crate) struct CertifiedHub {
    pub hub: HubId,
    /// The region the certificate binds the hub to, if it does.
    pub region: Option<Region>,
}

/// The hub a connection's peer certificate names, as the policy requires for links.
fn peer_hub(state: &HubState, conn: &quinn::Connection) -> Result<CertifiedHub, String> {
    let cert: Option<PeerIdentity> =
        auth::certificate_identity(state, conn).map_err(|e| e.message)?;
    let (hub, region) = policy::check_hub_peer(cert.as_ref()).map_err(|e| e.to_string())?;
    Ok(CertifiedHub {
        hub: hub.clone(),
        region: region.cloned(),
    })
}

/// Serves a connection that arrived with ALPN `agentdb-fed/1`: only a hub certificate may
/// open a link.
pub(crate) async fn serve_inbound(
    state: Arc<HubState>,
    conn: quinn::Connection,
    mut shutdown: watch::Receiver<bool>,
) {
    let peer = match peer_hub(&state, &conn) {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e, "hub link refused");
            crate::audit::link(&state, Operation::FederationLinkRefused, None, Some(&e));
            conn.close(quinn::VarInt::from_u32(CLOSE_REFUSED), e.as_bytes());
            return;
        }
    };
    let accepted = tokio::time::timeout(Duration::from_secs(10), conn.accept_bi()).await;
    let Ok(Ok((send, recv))) = accepted else {
        conn.close(
            quinn::VarInt::from_u32(CLOSE_PROTOCOL),
            b"no link stream opened",
        );
        return;
    };
    let fed = Arc::clone(&state.federation);
    let entry = fed.add_link(Direction::Inbound, None);
    run_link(&state, &conn, peer, send, recv, &entry, &mut shutdown).await;
    fed.remove_link(entry.id);
}

/// Runs a link over an established stream pair until it ends, then closes the connection.
async fn run_link(
    state: &Arc<HubState>,
    conn: &quinn::Connection,
    certified: CertifiedHub,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    entry: &Arc<LinkEntry>,
    shutdown: &mut watch::Receiver<bool>,
) {
    let peer = certified.hub.clone();
    let (events, inbox) = mpsc::channel::<Event>(EVENT_QUEUE);
    *entry.wake.lock() = Some(events.clone());
    // A new session looks at every tenant first; what changed before it is covered, and a
    // request to close an earlier connection is not this one's.
    entry.take_changed();
    entry.take_close();
    {
        let s = &mut entry.snapshot.lock().status;
        s.state = LinkState::Connected;
        s.peer = Some(peer.to_string());
        s.last_error = None;
    }
    // Two hubs that dial each other keep the link the smaller id dialled. Each side publishes
    // its link as connected before it looks at the other, so at least one sees both.
    let fed = &state.federation;
    let me = &state.config.hub_id;
    match entry.direction {
        Direction::Outbound if fed.yields_to(me, &peer) => {
            *entry.wake.lock() = None;
            entry.snapshot.lock().status.state = LinkState::Down;
            conn.close(
                quinn::VarInt::from_u32(CLOSE_OK),
                b"a link the peer dialled carries the pair",
            );
            return;
        }
        Direction::Inbound if *me > peer => fed.yield_outbound_to(&peer),
        _ => {}
    }
    state.metrics.fed_links.inc();
    tracing::info!(%peer, "hub link up");
    crate::audit::link(state, Operation::FederationLinkUp, Some(&peer), None);

    // Reader: frames from the peer become events. A full queue holds the reader (and, through
    // QUIC flow control, the peer); the link thread always takes events, so it frees up.
    let reader_events = events.clone();
    let reader = tokio::spawn(async move {
        let mut decoder = FrameDecoder::new(MAX_FRAME_LEN);
        let mut buf = vec![0u8; 64 * 1024];
        let why = loop {
            match recv.read(&mut buf).await {
                Ok(Some(n)) => decoder.push(&buf[..n]),
                Ok(None) => break Event::Closed("the peer closed the link".to_owned()),
                Err(e) => break Event::Closed(read_failure(&e)),
            }
            let mut failed = None;
            loop {
                match decoder.next_frame() {
                    Ok(Some(frame)) => match FedMessage::decode(&frame) {
                        Ok(msg) => {
                            if reader_events.send(Event::Message(msg)).await.is_err() {
                                return;
                            }
                        }
                        Err(e) => {
                            failed = Some(format!("bad message from the peer: {e}"));
                            break;
                        }
                    },
                    Ok(None) => break,
                    Err(e) => {
                        failed = Some(format!("bad frame from the peer: {e}"));
                        break;
                    }
                }
            }
            if let Some(why) = failed {
                break Event::Failed(why);
            }
        };
        let _ = reader_events.send(why).await;
    });

    // Writer: frames from the link thread go out in order; a full queue holds back what the
    // thread sends (not the events it takes).
    let (out_tx, mut out_rx) = mpsc::channel::<Vec<u8>>(WRITE_QUEUE);
    let writer_events = events.clone();
    let writer = tokio::spawn(async move {
        while let Some(frame) = out_rx.recv().await {
            if let Err(e) = send.write_all(&frame).await {
                let why = Event::Closed(format!("link write failed: {e}"));
                let _ = writer_events.send(why).await;
                return;
            }
        }
        let _ = send.finish();
    });

    // Shutdown wakes the thread, which then stops; a thread held by a peer that stopped
    // reading is released by closing the connection a little later (unacknowledged pages are
    // sent again on the next link).
    let stop_events = events;
    let mut stop = shutdown.clone();
    let stop_conn = conn.clone();
    let stopper = tokio::spawn(async move {
        let _ = stop.wait_for(|s| *s).await;
        let _ = stop_events
            .send(Event::Closed("hub shutting down".into()))
            .await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        stop_conn.close(quinn::VarInt::from_u32(CLOSE_OK), b"hub shutting down");
    });

    let st = Arc::clone(state);
    let link_entry = Arc::clone(entry);
    let rt = tokio::runtime::Handle::current();
    let outcome = tokio::task::spawn_blocking(move || {
        link_thread(st, link_entry, certified, inbox, out_tx, &rt)
    })
    .await
    .unwrap_or_else(|_| Err("link thread failed".into()));

    stopper.abort();
    reader.abort();
    // Let the writer flush what the thread queued (an Ack, a Refused) before closing.
    let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
    *entry.wake.lock() = None;
    state.metrics.fed_links.dec();
    let (code, why) = match &outcome {
        Ok(()) => (CLOSE_OK, "link closed".to_owned()),
        Err(e) => (CLOSE_PROTOCOL, e.clone()),
    };
    tracing::info!(%peer, reason = %why, "hub link down");
    let failure = outcome.is_err().then_some(why.as_str());
    crate::audit::link(state, Operation::FederationLinkDown, Some(&peer), failure);
    {
        let s = &mut entry.snapshot.lock().status;
        s.state = LinkState::Down;
        if outcome.is_err() {
            s.last_error = Some(why.clone());
        }
    }
    conn.close(quinn::VarInt::from_u32(code), why.as_bytes());
}

/// Why a link's read failed; a peer that closed the connection says why, and that is kept.
fn read_failure(e: &quinn::ReadError) -> String {
    match e {
        quinn::ReadError::ConnectionLost(quinn::ConnectionError::ApplicationClosed(close)) => {
            format!(
                "the peer closed the link: {}",
                String::from_utf8_lossy(&close.reason)
            )
        }
        other => format!("link read failed: {other}"),
    }
}

/// What ended a link thread's wait.
enum Woke {
    /// An event, or `None`: every sender is gone.
    Event(Option<Event>),
    /// The writer's queue has room again (`false`: the writer stopped).
    Room(bool),
    /// The session's timer is due, or the lag is to be recomputed.
    Timer,
}

/// The link thread: owns the session, talks to the engine, waits for events. It never waits
/// for room in the writer's queue without also taking events: a peer whose own writer waits
/// for this hub to read is read meanwhile.
fn link_thread(
    state: Arc<HubState>,
    entry: Arc<LinkEntry>,
    certified: CertifiedHub,
    mut inbox: mpsc::Receiver<Event>,
    out: mpsc::Sender<Vec<u8>>,
    rt: &tokio::runtime::Handle,
) -> Result<(), String> {
    let peer = certified.hub;
    let fed = Arc::clone(&state.federation);
    let config = &fed.config;
    let store = EngineStore {
        state: Arc::clone(&state),
    };
    let mut session = LinkSession::new(
        state.config.hub_id.clone(),
        config.region.clone(),
        peer.clone(),
        certified.region,
        config.residency.clone(),
        agentdb_proto::fed::LinkConfig {
            sync_interval_ms: config.sync_interval.as_millis() as u64,
            ..config.link.clone()
        },
    );
    let labels = PeerLabels {
        peer: peer.to_string(),
    };
    let (mut reported_sent, mut reported_received) = (0u64, 0u64);
    let mut next_lag_ms = 0u64;
    let mut had_in_flight = false;
    // A frame the writer's queue had no room for; it goes first.
    let mut pending: Option<Vec<u8>> = None;
    loop {
        if fed.stopping.load(Ordering::Acquire) {
            return Ok(());
        }
        if let Some(why) = entry.take_close() {
            entry.snapshot.lock().status.last_error = Some(why);
            return Ok(());
        }
        for tenant in entry.take_changed() {
            session.notify(&tenant);
        }
        if entry.take_control() {
            session.notify_control();
        }
        loop {
            let frame = match pending.take() {
                Some(frame) => frame,
                None => match session.poll_transmit(&store, unix_ms()) {
                    Some(msg) => msg.encode(),
                    None => break,
                },
            };
            match out.try_send(frame) {
                Ok(()) => {}
                Err(TrySendError::Full(frame)) => {
                    pending = Some(frame);
                    break;
                }
                Err(TrySendError::Closed(_)) => return Err("link writer stopped".into()),
            }
        }
        // Publish the state for status, metrics and tombstone collection.
        let now = unix_ms();
        let stats = session.stats().clone();
        // Every half second, and at once when the last page in flight was answered.
        let settled = session.in_flight() == 0 && had_in_flight;
        had_in_flight = session.in_flight() > 0;
        let lag = (now >= next_lag_ms || settled).then(|| {
            next_lag_ms = now + LAG_EVERY_MS;
            session.lag(&store)
        });
        state
            .metrics
            .fed_ops_sent
            .get_or_create(&labels)
            .inc_by(stats.ops_sent - reported_sent);
        state
            .metrics
            .fed_ops_received
            .get_or_create(&labels)
            .inc_by(stats.ops_received - reported_received);
        (reported_sent, reported_received) = (stats.ops_sent, stats.ops_received);
        {
            let mut snapshot = entry.snapshot.lock();
            if lag.is_some() {
                snapshot.acked = session.acked().clone();
            }
            let s = &mut snapshot.status;
            s.region = session.peer().map(|p| p.region.to_string());
            s.last_sync_ms = stats.last_sync_ms;
            s.ops_sent = stats.ops_sent;
            s.ops_received = stats.ops_received;
            s.in_flight = session.in_flight();
            s.last_error = stats.last_error.clone().or(s.last_error.take());
            if let Some(lag) = lag {
                s.lag_ops = lag;
                state
                    .metrics
                    .fed_lag
                    .get_or_create(&labels)
                    .set(i64::try_from(lag).unwrap_or(i64::MAX));
            }
        }
        let wait = session
            .next_tick_ms()
            .saturating_sub(now)
            .clamp(10, LAG_EVERY_MS);
        let woke = rt.block_on(async {
            tokio::select! {
                biased;
                event = inbox.recv() => Woke::Event(event),
                room = out.reserve(), if pending.is_some() => Woke::Room(room.is_ok()),
                () = tokio::time::sleep(Duration::from_millis(wait)) => Woke::Timer,
            }
        });
        match woke {
            Woke::Event(Some(Event::Message(msg))) => {
                let hello = matches!(msg, FedMessage::Hello(_));
                session
                    .handle(msg, &store, unix_ms())
                    .map_err(|e| e.to_string())?;
                if let Some(p) = session.peer().filter(|_| hello) {
                    // Known from now on, whatever happens to the link or this hub:
                    // tombstone collection waits for this peer.
                    state
                        .engine
                        .record_peer(&p.hub, &p.region)
                        .map_err(|e| format!("cannot record peer {}: {e}", p.hub))?;
                    entry.snapshot.lock().hello = Some((p.hub.clone(), p.region.clone()));
                }
            }
            // Changed tenants and close requests are looked at on every turn.
            Woke::Event(Some(Event::Changed)) | Woke::Room(true) | Woke::Timer => {}
            Woke::Event(Some(Event::Closed(why))) => {
                entry.snapshot.lock().status.last_error = Some(why);
                return Ok(());
            }
            Woke::Event(Some(Event::Failed(why))) => return Err(why),
            Woke::Event(None) => return Ok(()),
            Woke::Room(false) => return Err("link writer stopped".into()),
        }
        session.tick(&store, unix_ms());
    }
}
