"""The change stream against a real hub: live changes, resuming by Last-Event-ID after a
close or a dropped connection, a fresh token when the hub ends the stream for expiry, and
the typed error when it ends it for another reason."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

import agentdb
from agentdb import AgentDBClient

from support import Hub, RequestLog, Sleeps, Tenant

Logged = Callable[..., AgentDBClient]


def store(client: AgentDBClient, n: int, label: str) -> list[str]:
    return [client.store_episode(task=f"{label} {i}", reward=0.5, tags=[label]).id for i in range(n)]


def test_stream_close_and_resume_from_last_event_id(
    tenant: Tenant, client: AgentDBClient, log: RequestLog, logged: Logged
) -> None:
    since = client.changes_page().next_cursor
    before = store(client, 3, "sse-a")
    reader = logged(tenant, api_key=tenant.api_key)
    seen: list[str] = []
    with reader.changes(since=since) as stream:
        for change in stream:
            assert change.type == "put" and change.episode is not None and change.episode.id == change.id
            seen.append(change.id)
            if len(seen) == 3:
                break
        resume_at = stream.last_event_id
    assert seen == before
    assert resume_at is not None and int(resume_at) > int(since)

    after = store(client, 2, "sse-a")
    with reader.changes(since=resume_at) as stream:
        seen += [next(stream).id, next(stream).id]
    assert seen == before + after, "each change once, in order"
    streams = [s for s in log.sent if s.path == "/v1/changes"]
    assert [s.headers.get("last-event-id") for s in streams] == [since, resume_at]
    assert all(s.headers["accept"] == "text/event-stream" for s in streams)


def test_changes_arrive_live(client: AgentDBClient, tenant: Tenant, hub: Hub) -> None:
    since = client.changes_page().next_cursor
    with hub.client(tenant) as writer, client.changes(since=since) as stream:
        timer = threading.Timer(0.2, lambda: writer.store_episode(task="live", reward=0.5))
        timer.start()
        change = next(stream)
        timer.join()
    assert change.type == "put" and change.episode is not None and change.episode.task == "live"


class CuttingTransport(httpx.HTTPTransport):
    """Resets every change stream after ``events`` complete events, as a proxy dropping
    connections would; records the Last-Event-ID each stream was opened with."""

    def __init__(self, events: int, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.events = events
        self.opened: list[str | None] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        if request.headers.get("accept") != "text/event-stream":
            return response
        self.opened.append(request.headers.get("last-event-id"))
        inner = response.stream
        assert isinstance(inner, httpx.SyncByteStream)
        return httpx.Response(response.status_code, headers=response.headers, stream=_Cut(inner, self.events))


class _Cut(httpx.SyncByteStream):
    def __init__(self, inner: httpx.SyncByteStream, events: int) -> None:
        self.inner, self.events = inner, events

    def __iter__(self) -> Iterator[bytes]:
        passed = b""
        for chunk in self.inner:
            passed += chunk
            if passed.count(b"\n\n") >= self.events:
                cut = 0
                for _ in range(self.events):
                    cut = passed.index(b"\n\n", cut) + 2
                yield passed[:cut]
                raise httpx.ReadError("connection reset by peer")
            yield chunk

    def close(self) -> None:
        self.inner.close()


def test_a_dropped_connection_is_resumed_with_last_event_id(hub: Hub, tenant: Tenant, client: AgentDBClient) -> None:
    since = client.changes_page().next_cursor
    ids = store(client, 6, "sse-b")
    cutting = CuttingTransport(2, verify=hub.ssl_context(tenant))
    slept: list[float] = []
    with httpx.Client(transport=cutting) as http:
        reader = AgentDBClient(hub.endpoint, api_key=tenant.api_key, http_client=http, sleep=slept.append)
        got: list[str] = []
        cursors: list[str] = []
        with reader.changes(since=since) as stream:
            for change in stream:
                got.append(change.id)
                cursors.append(change.cursor)
                if len(got) == len(ids):
                    break
    assert got == ids
    assert cutting.opened == [since, cursors[1], cursors[3]]
    assert len(slept) == 2, "a backoff before each reconnection"


def test_a_stream_ended_by_token_expiry_resumes_with_a_fresh_token(
    hub: Hub, tenant: Tenant, client: AgentDBClient, log: RequestLog, logged: Logged, sleeps: Sleeps
) -> None:
    since = client.changes_page().next_cursor
    ids = store(client, 2, "sse-c")
    now = time.time()
    # The hub accepts a token until 30 s after its `exp`: this one for one or two more seconds.
    tokens = [hub.forge_token(tenant.name, iat=now - 60, exp=now - 28), hub.issue_token(tenant.name)]
    handed: list[str] = []

    def provider() -> str:
        if handed:
            # The first stream has ended: store one more before the client reconnects.
            ids.extend(store(client, 1, "sse-c"))
        handed.append(tokens[len(handed)])
        return handed[-1]

    reader = logged(tenant, token_provider=provider, sleep=sleeps)
    got: list[str] = []
    started = time.monotonic()
    with reader.changes(since=since) as stream:
        for change in stream:
            got.append(change.id)
            if len(got) == 3:
                break
    assert got == ids
    assert handed == tokens
    assert time.monotonic() - started < 10
    streams = [s for s in log.sent if s.path == "/v1/changes"]
    assert [s.status for s in streams] == [200, 200], "the hub ended the first stream, not refused it"
    assert sleeps == [], "resumed at once"
    assert [s.headers["authorization"] for s in streams] == [f"Bearer {t}" for t in tokens]
    assert streams[1].headers["last-event-id"] == client.changes_page(since=since).changes[1].cursor


def test_a_token_revoked_mid_stream_ends_it_with_a_typed_error(
    hub: Hub, tenant: Tenant, client: AgentDBClient, log: RequestLog, logged: Logged
) -> None:
    token = hub.issue_token(tenant.name)
    since = client.changes_page().next_cursor
    with logged(tenant, token=token) as reader, reader.changes(since=since) as stream:
        store(client, 1, "sse-d")
        next(stream)
        with hub.client(tenant, token=token) as revoker:
            revoker.revoke_token()
        store(client, 1, "sse-d")  # wakes the stream, which finds its token revoked
        with pytest.raises(agentdb.AuthenticationError) as e:
            next(stream)
    assert e.value.code == "unauthenticated" and "revoked" in e.value.message
    # The error names the stream's answer, as the hub's audit log records it.
    (opened,) = [s for s in log.sent if s.path == "/v1/changes"]
    assert opened.request_id is not None and e.value.request_id == opened.request_id


def test_a_stream_without_the_sync_scope_is_refused(hub: Hub, tenant: Tenant, log: RequestLog, logged: Logged) -> None:
    reader = logged(tenant, api_key=hub.api_key(tenant.name, scope="read"))
    with pytest.raises(agentdb.ForbiddenError) as e, reader.changes() as stream:
        next(stream)
    assert e.value.code == "forbidden"
    assert log.count("GET", "/v1/changes") == 1, "a refusal is not retried"
