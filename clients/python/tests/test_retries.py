"""Retries, Retry-After, timeouts and stream errors against stubs (httpx.MockTransport), which
answer what a hub rarely does on demand: 429, 503, resets, a proxy's page. No real waits:
the client's sleep only records."""

from __future__ import annotations

import base64
import email.utils
import json
import socket
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

import agentdb
from agentdb import AgentDBClient, AsyncAgentDBClient
from agentdb._sse import ServerSentEvent, SSEParser

from support import FakeClock, Sleeps

HUB = "https://hub.test"
NOW = int(time.time())
FAKE_JWT = (
    "x."
    + base64.urlsafe_b64encode(json.dumps({"tenant": "demo", "sub": "a", "iat": NOW, "exp": NOW + 3600}).encode())
    .decode()
    .rstrip("=")
    + ".y"
)
HEALTH = {"status": "ok", "hub": "h"}

Handler = Callable[[httpx.Request], httpx.Response]


def error(status: int, code: str, **headers: str) -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": code, "message": f"{code}\nsecond line"}}, headers=headers)


def stub(handler: Handler, sleeps: Sleeps, **kwargs: Any) -> AgentDBClient:
    http = httpx.Client(transport=httpx.MockTransport(handler))
    return AgentDBClient(HUB, http_client=http, sleep=sleeps, token=FAKE_JWT, **kwargs)


def scripted(*answers: httpx.Response | Exception) -> tuple[Handler, list[httpx.Request]]:
    """A handler that answers (or raises) these in turn, and the requests it saw."""
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = answers[min(len(seen), len(answers)) - 1]
        if isinstance(answer, Exception):
            raise answer
        return answer

    return handle, seen


def test_429_is_retried_after_retry_after(sleeps: Sleeps) -> None:
    handle, seen = scripted(error(429, "overloaded", **{"retry-after": "1"}), httpx.Response(200, json=HEALTH))
    assert stub(handle, sleeps).health() == agentdb.Health(status="ok", hub="h")
    assert len(seen) == 2
    assert sleeps == [1.0]


def test_retry_after_is_capped_and_retries_run_out_into_the_typed_error(sleeps: Sleeps) -> None:
    handle, seen = scripted(error(503, "unavailable", **{"retry-after": "3600"}))
    with pytest.raises(agentdb.UnavailableError) as e:
        stub(handle, sleeps, max_retries=2, max_retry_after=0.05).stats()
    assert (e.value.code, e.value.status, e.value.retry_after) == ("unavailable", 503, 3600.0)
    assert e.value.message == "unavailable", "the message is one line"
    assert len(seen) == 3 and sleeps == [0.05, 0.05]

    handle, seen = scripted(error(429, "overloaded", **{"retry-after": "1"}))
    with pytest.raises(agentdb.OverloadedError):
        stub(handle, sleeps, max_retries=0).stats()
    assert len(seen) == 1


def test_retry_after_as_an_http_date(sleeps: Sleeps, clock: FakeClock) -> None:
    at = email.utils.formatdate(clock.now + 5, usegmt=True)
    handle, _ = scripted(error(503, "unavailable", **{"retry-after": at}), httpx.Response(200, json=HEALTH))
    stub(handle, sleeps, clock=clock).health()
    assert sleeps == [pytest.approx(5, abs=1)]


def test_connection_failures_back_off_then_raise(sleeps: Sleeps) -> None:
    handle, seen = scripted(httpx.ConnectError("refused"), httpx.ReadError("reset"), httpx.Response(200, json=HEALTH))
    assert stub(handle, sleeps).health().status == "ok"
    assert len(seen) == 3
    assert 0.375 <= sleeps[0] <= 0.625 and 0.75 <= sleeps[1] <= 1.25, sleeps

    sleeps.clear()
    handle, seen = scripted(httpx.ConnectError("refused"))
    with pytest.raises(agentdb.TransportError) as e:
        stub(handle, sleeps, max_retries=3).health()
    assert (e.value.code, e.value.status) == ("connection", 0)
    assert "GET /healthz" in e.value.message
    assert len(seen) == 4 and len(sleeps) == 3
    assert sleeps == sorted(sleeps), "the backoff grows"


def test_a_closed_port_is_a_transport_error(sleeps: Sleeps) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = AgentDBClient(f"http://127.0.0.1:{port}", token=FAKE_JWT, sleep=sleeps, max_retries=2)
    with client, pytest.raises(agentdb.TransportError) as e:
        client.health()
    assert type(e.value) is agentdb.TransportError and e.value.code == "connection"
    assert len(sleeps) == 2


def test_timeouts_are_retried_then_raised(sleeps: Sleeps) -> None:
    handle, seen = scripted(httpx.ReadTimeout("slow"))
    with pytest.raises(agentdb.RequestTimeoutError) as e:
        stub(handle, sleeps, max_retries=1, timeout=0.5).stats()
    assert (e.value.code, e.value.status) == ("timeout", 0)
    assert len(seen) == 2
    assert seen[0].extensions["timeout"] == {"connect": 0.5, "read": 0.5, "write": 0.5, "pool": 0.5}


def test_500_is_not_retried_and_a_proxy_page_keeps_its_status(sleeps: Sleeps) -> None:
    handle, seen = scripted(error(500, "internal"))
    with pytest.raises(agentdb.InternalError):
        stub(handle, sleeps).stats()
    assert len(seen) == 1 and sleeps == []

    handle, _ = scripted(httpx.Response(502, text="<html>\n<h1>Bad gateway</h1>\n</html>"))
    with pytest.raises(agentdb.InternalError) as e:
        stub(handle, sleeps).stats()
    assert (e.value.code, e.value.status, e.value.message) == ("internal", 502, "<html>")


def test_an_answer_that_breaks_the_api_is_invalid_response(sleeps: Sleeps) -> None:
    handle, _ = scripted(httpx.Response(200, text="not json"))
    with pytest.raises(agentdb.InvalidResponseError):
        stub(handle, sleeps).stats()
    handle, _ = scripted(httpx.Response(200, json={"episodes": "many"}))
    with pytest.raises(agentdb.InvalidResponseError, match="episodes"):
        stub(handle, sleeps).stats()


def test_a_retried_store_sends_the_same_id(sleeps: Sleeps) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        episode_id = json.loads(request.content)["id"]
        return httpx.Response(200, json={"results": [{"id": episode_id, "inserted": False}]})

    bodies: list[dict[str, Any]] = []

    def handle(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        if len(bodies) == 1:
            raise httpx.ReadTimeout("the answer was lost")
        return answer(request)

    stored = stub(handle, sleeps).store_episode(task="t", reward=0.5)
    assert len(bodies) == 2 and bodies[0] == bodies[1]
    assert stored.id == bodies[0]["id"]


def test_a_delete_whose_first_attempt_landed_is_done(sleeps: Sleeps) -> None:
    handle, seen = scripted(httpx.ReadError("reset after the hub deleted it"), error(404, "not_found"))
    stub(handle, sleeps).delete_episode("0190a000-0000-7000-8000-000000000001")
    assert [r.method for r in seen] == ["DELETE", "DELETE"]
    handle, _ = scripted(error(404, "not_found"))
    with pytest.raises(agentdb.NotFoundError):
        stub(handle, sleeps).delete_episode("0190a000-0000-7000-8000-000000000001")


def sse(*events: str) -> httpx.Response:
    return httpx.Response(200, content="".join(events).encode(), headers={"content-type": "text/event-stream"})


def put(cursor: int, episode_id: str) -> str:
    data = json.dumps({"cursor": str(cursor), "type": "put", "id": episode_id, "episode": None})
    return f"id: {cursor}\nevent: put\ndata: {data}\n\n"


def test_stream_error_events(sleeps: Sleeps) -> None:
    opened: list[tuple[str, str | None]] = []

    def handle(request: httpx.Request) -> httpx.Response:
        opened.append((request.headers["authorization"], request.headers.get("last-event-id")))
        if len(opened) == 1:
            expired = '{"error":{"code":"token_expired","message":"expired"}}'
            return sse(": keep-alive\n\n", put(1, "a"), put(2, "b"), f"event: error\ndata: {expired}\n\n")
        # The hub resends 2 (it must not be yielded twice) and goes on, then refuses.
        revoked = '{"error":{"code":"unauthenticated","message":"token has been revoked"}}'
        return sse(put(2, "b"), put(3, "c"), f"event: error\r\ndata: {revoked}\r\n\r\n")

    tokens = iter([f"{FAKE_JWT}{i}" for i in range(5)])
    http = httpx.Client(transport=httpx.MockTransport(handle))
    c = AgentDBClient(HUB, http_client=http, sleep=sleeps, token_provider=lambda: next(tokens))
    got: list[str] = []
    with pytest.raises(agentdb.AuthenticationError) as e, c.changes() as stream:
        for change in stream:
            got.append(change.id)
    assert (e.value.code, e.value.status) == ("unauthenticated", 401)
    assert got == ["a", "b", "c"]
    assert [last for _, last in opened] == [None, "2"]
    assert opened[0][0] != opened[1][0], "a fresh token after the expiry"
    assert sleeps == []


def test_a_stream_that_ends_without_a_word_is_resumed(sleeps: Sleeps) -> None:
    handle, seen = scripted(sse(put(1, "a")), sse(put(2, "b")))
    c = stub(handle, sleeps)
    with c.changes(since="0") as stream:
        assert [next(stream).id, next(stream).id] == ["a", "b"]
    assert [r.headers.get("last-event-id") for r in seen] == ["0", "1"]
    assert len(sleeps) == 1


def test_sse_parser_split_chunks_crlf_comments_multiline_data() -> None:
    parser = SSEParser()
    events: list[ServerSentEvent] = []
    chunks = [
        "id: 7\r",
        '\nevent: put\r\ndata: {"a":',
        "1}\r\n\r\n: ping\n\n",
        "data: x\ndata: y\n\nevent:deleted\nid:8\ndata:z\n\n",
        "data: cut",
    ]
    for chunk in chunks:
        events += parser.feed(chunk.encode())
    assert events == [
        ServerSentEvent(event="put", data='{"a":1}', id="7"),
        ServerSentEvent(event="message", data="x\ny", id=None),
        ServerSentEvent(event="deleted", data="z", id="8"),
    ]
    multibyte = SSEParser()
    encoded = "data: caf\u00e9\n\n".encode()
    assert multibyte.feed(encoded[:8]) == [] and multibyte.feed(encoded[8:])[0].data == "caf\u00e9"


async def test_the_async_client_retries_the_same_way(sleeps: Sleeps) -> None:
    handle, seen = scripted(
        error(429, "overloaded", **{"retry-after": "2"}),
        httpx.ConnectError("refused"),
        httpx.Response(200, json=HEALTH),
    )
    async with httpx.AsyncClient(transport=httpx.MockTransport(handle)) as http:
        c = AsyncAgentDBClient(HUB, http_client=http, sleep=sleeps.asleep, token=FAKE_JWT)
        assert (await c.health()).status == "ok"
    assert len(seen) == 3
    assert sleeps[0] == 2.0 and 0.75 <= sleeps[1] <= 1.25
