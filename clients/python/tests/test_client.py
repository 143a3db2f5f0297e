"""AgentDBClient against a real hub: every endpoint, and its answers as typed models."""

from __future__ import annotations

import math
import re
import uuid

import httpx
import pytest

import agentdb
from agentdb import AgentDBClient, NewEpisode, Vector

from support import Hub, RequestLog, Tenant

UUID7 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def test_health_and_openapi_need_no_token(hub: Hub, tenant: Tenant) -> None:
    with hub.client(tenant, token="not-a-token") as bare:
        assert bare.health() == agentdb.Health(status="ok", hub="hub-1")
        doc = bare.openapi()
    assert str(doc["openapi"]).startswith("3.1")
    assert {"/v1/episodes", "/v1/query", "/v1/changes", "/v1/token"} <= set(doc["paths"])


def test_an_episode_with_an_expiry_shows_it_and_is_hidden_once_past(client: AgentDBClient) -> None:
    later = client.store_episode(task="rotate keys", reward=0.8, ttl_secs=3600)
    episode = client.get_episode(later.id)
    assert episode.expires_at_ms is not None
    assert 0 <= episode.created_ms + 3_600_000 - episode.expires_at_ms <= 1_000
    past = client.store_episode(task="rotate keys", reward=0.8, expires_at_ms=1_000)
    with pytest.raises(agentdb.NotFoundError):
        client.get_episode(past.id)
    with pytest.raises(agentdb.InvalidRequestError):
        client.store_episode(task="rotate keys", reward=0.8, ttl_secs=60, expires_at_ms=1_000)
    assert client.get_episode(client.store_episode(task="t", reward=0.5).id).expires_at_ms is None


def test_store_get_update_delete(client: AgentDBClient, tenant: Tenant) -> None:
    stored = client.store_episode(
        task="summarise invoice",
        input="invoice #4411 (PDF)",
        output="Total: 300 EUR",
        reward=0.95,
        critique="correct total and currency",
        tags=["invoice"],
        metadata={"customer": "acme-gmbh"},
        session="0190a000-0000-7000-8000-0000000000aa",
        tokens_used=120,
        latency_ms=850,
    )
    assert stored.inserted is True
    assert UUID7.match(stored.id), "the client mints UUIDv7 ids"

    episode = client.get_episode(stored.id)
    assert episode == agentdb.Episode(
        id=stored.id,
        task="summarise invoice",
        input="invoice #4411 (PDF)",
        output="Total: 300 EUR",
        reward=0.95,
        success=True,
        critique="correct total and currency",
        tags=("invoice",),
        metadata={"customer": "acme-gmbh"},
        tokens_used=120,
        latency_ms=850,
        created_ms=episode.created_ms,
        embedding_model="agentdb-lexical-v1",
        agent=episode.agent,
        session="0190a000-0000-7000-8000-0000000000aa",
        origin="hub-1",
    )
    assert episode.agent == f"key-{tenant.api_key.split('_')[1]}", "the hub names the agent after the key"
    assert abs(episode.created_at.timestamp() * 1000 - episode.created_ms) < 1

    # Storing the same id again is not a second episode.
    again = client.store_episode(id=stored.id, task="summarise invoice", reward=0.1)
    assert again == agentdb.Stored(id=stored.id, inserted=False)
    assert client.get_episode(stored.id).reward == 0.95
    assert client.stats().episodes == 1

    patched = client.update_episode(
        stored.id, reward=0.3, critique="ask for a scan first", tags=["invoice", "scan"], metadata={"customer": "x"}
    )
    assert (patched.reward, patched.success, patched.critique) == (0.3, False, "ask for a scan first")
    assert patched.tags == ("invoice", "scan")
    assert patched.metadata == {"customer": "x"}
    # Absent fields keep their value; critique=None clears it.
    cleared = client.update_episode(stored.id, critique=None)
    assert (cleared.critique, cleared.reward, cleared.tags) == (None, 0.3, ("invoice", "scan"))
    assert client.get_episode(stored.id) == cleared

    client.delete_episode(stored.id)
    with pytest.raises(agentdb.NotFoundError) as e:
        client.get_episode(stored.id)
    assert (e.value.code, e.value.status) == ("not_found", 404)
    stats = client.stats()
    assert (stats.episodes, stats.deleted) == (0, 1)


def test_batch_is_stored_whole_with_the_ids_given(client: AgentDBClient) -> None:
    ids = [str(uuid.uuid4()), str(uuid.uuid4())]
    results = client.store_episodes(
        [
            NewEpisode(id=ids[0], task="summarise invoice", output="Total: unreadable", reward=0.2, tags=["invoice"]),
            NewEpisode(id=ids[1], task="triage bug report", output="severity high", reward=0.8),
            NewEpisode(task="minted id", reward=0.5),
        ]
    )
    assert [r.id for r in results][:2] == ids
    assert UUID7.match(results[2].id)
    assert all(r.inserted for r in results)
    assert client.get_episode(ids[1]).output == "severity high"
    # A batch with one bad episode stores nothing.
    with pytest.raises(agentdb.InvalidRequestError):
        client.store_episodes([NewEpisode(task="fine", reward=0.5), NewEpisode(task="", reward=0.5)])
    assert client.stats().episodes == 3


def test_list_pages_and_iterate_every_episode(client: AgentDBClient) -> None:
    ids = {client.store_episode(task=f"task {i}", reward=0.5).id for i in range(5)}
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        page = client.list_episodes(cursor=cursor, limit=2)
        pages += 1
        assert len(page.episodes) <= 2
        seen += [e.id for e in page.episodes]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert pages >= 3
    assert sorted(seen) == sorted(ids)
    assert sorted(e.id for e in client.iter_episodes(limit=2)) == sorted(ids)


def test_query_text_vector_and_every_filter(client: AgentDBClient) -> None:
    good = client.store_episode(
        task="summarise invoice", input="invoice #1", reward=0.9, tags=["invoice", "pdf"], metadata={"customer": "acme"}
    )
    bad = client.store_episode(task="summarise invoice", input="invoice #2", reward=0.2, tags=["invoice"])
    other = client.store_episode(task="triage bug report", input="crash on start", reward=0.75, tags=["bug"])
    created = {i: client.get_episode(i).created_ms for i in (good.id, bad.id, other.id)}

    result = client.query("summarise the invoice", k=3)
    assert result.model == "agentdb-lexical-v1"
    assert [m.episode.id for m in result.matches][:2] in ([good.id, bad.id], [bad.id, good.id])
    scores = [m.score for m in result.matches]
    assert scores == sorted(scores, reverse=True)

    def ids(**filters: object) -> set[str]:
        return {m.episode.id for m in client.query("summarise invoice", k=10, **filters).matches}  # type: ignore[arg-type]

    assert ids(min_reward=0.5) == {good.id, other.id}
    assert ids(outcome="successes") == {good.id, other.id}
    assert ids(outcome="failures") == {bad.id}
    assert ids(tags=["invoice", "pdf"]) == {good.id}
    assert ids(metadata={"customer": "acme"}) == {good.id}
    since_other = ids(created_from_ms=created[other.id])
    assert other.id in since_other and all(created[i] >= created[other.id] for i in since_other)
    before_other = ids(created_until_ms=created[other.id])
    assert other.id not in before_other and all(created[i] < created[other.id] for i in before_other)
    assert ids(created_from_ms=max(created.values()) + 1) == set()
    assert ids(created_until_ms=min(created.values())) == set()
    assert ids(tags=["nothing"]) == set()

    stats = client.stats()
    assert stats.embedding_model == "agentdb-lexical-v1"
    vector = [math.sin(i + 1) for i in range(384)]
    by_vector = client.query(Vector(stats.embedding_model, vector), k=2)
    assert len(by_vector.matches) == 2


def test_stats_count_the_tenants_episodes(client: AgentDBClient) -> None:
    client.store_episodes(
        [NewEpisode(task="a", reward=1.0), NewEpisode(task="a", reward=0.5), NewEpisode(task="b", reward=0.0)]
    )
    stats = client.stats()
    assert (stats.episodes, stats.deleted, stats.key_version) == (3, 0, 1)
    assert stats.success_rate == pytest.approx(1 / 3)
    assert stats.avg_reward == pytest.approx(0.5)
    assert stats.top_tasks[0] == agentdb.TaskCount(task="a", count=2, avg_reward=0.75)


def test_changes_page(client: AgentDBClient) -> None:
    start = client.changes_page().next_cursor
    stored = [client.store_episode(task=f"change {i}", reward=0.5).id for i in range(3)]
    client.delete_episode(stored[0])
    first = client.changes_page(since=start, limit=2)
    assert len(first.changes) == 2 and first.more is True
    rest = client.changes_page(since=first.next_cursor, limit=100)
    assert rest.more is False
    changes = list(first.changes) + list(rest.changes)
    assert changes[-1].type == "deleted" and changes[-1].id == stored[0] and changes[-1].episode is None
    puts = [c for c in changes if c.type == "put"]
    assert {c.id for c in puts} == set(stored[1:])
    assert all(c.episode is not None and c.episode.id == c.id for c in puts)
    assert [int(c.cursor) for c in changes] == sorted(int(c.cursor) for c in changes)


def test_token_exchange_revoke_and_the_certificate_as_credential(hub: Hub, tenant: Tenant, log: RequestLog) -> None:
    with hub.client(tenant) as keyed:
        grant = keyed.exchange_token(agent="worker-7", scopes=["read"], ttl=60)
        assert keyed.token_info is None, "exchange_token does not change the client's own token"
    assert (grant.tenant, grant.agent, grant.scopes, grant.token_type) == (tenant.name, "worker-7", ("read",), "Bearer")
    assert 55 <= grant.expires_in <= 60

    with hub.client(tenant, token=grant.token) as reader:
        assert reader.stats().episodes == 0
        with pytest.raises(agentdb.ForbiddenError):
            reader.store_episode(task="t", reward=0.5)
        info = reader.token_info
        assert info is not None and (info.tenant, info.agent, info.scopes) == (tenant.name, "worker-7", ("read",))
        reader.revoke_token()
        with pytest.raises(agentdb.AuthenticationError) as e:
            reader.stats()
        assert e.value.code == "unauthenticated"

    # With no other credential, the client certificate is one.
    http = httpx.Client(verify=hub.ssl_context(tenant), event_hooks=log.hooks())
    with http, AgentDBClient(hub.endpoint, http_client=http) as by_cert:
        info = by_cert.authenticate()
        assert info.tenant == tenant.name and info.scopes == ("read", "write", "sync")
        assert by_cert.stats().episodes == 0
        by_cert.revoke_token()
        assert by_cert.token_info is None
        by_cert.revoke_token()  # nothing held: nothing to do
    assert [s.headers.get("authorization") for s in log.sent if s.path == "/v1/token"] == [
        None,
        log.sent[-1].headers["authorization"],
    ]
    assert log.count("DELETE", "/v1/token") == 1
