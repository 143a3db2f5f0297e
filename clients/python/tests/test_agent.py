"""EphemeralAgent against a real hub: the lifecycle, its end (destroy, or its lifetime on an
injected clock), its token, and the environment's defaults."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

import agentdb
from agentdb import AgentDBClient, EphemeralAgent

from support import FakeClock, Hub, RequestLog, Tenant


@pytest.fixture
def http(hub: Hub, tenant: Tenant, log: RequestLog) -> Iterator[httpx.Client]:
    """An httpx client with the tenant's certificate whose requests go to ``log``."""
    with httpx.Client(verify=hub.ssl_context(tenant), event_hooks=log.hooks()) as c:
        yield c


def test_lifecycle(
    hub: Hub, tenant: Tenant, client: AgentDBClient, http: httpx.Client, log: RequestLog, clock: FakeClock
) -> None:
    best = client.store_episode(task="summarise invoice", output="Total: 300 EUR", reward=0.9, tags=["invoice"]).id
    client.store_episode(task="triage bug report", output="severity high", reward=0.7)

    with EphemeralAgent.spawn(
        tenant_id=tenant.name,
        lifetime=60,
        hub_endpoint=hub.endpoint,
        api_key=tenant.api_key,
        http_client=http,
        clock=clock,
    ) as agent:
        assert agent.is_alive and agent.remaining_lifetime == 60
        assert re.fullmatch(r"agent-[0-9a-f-]{36}", agent.agent_id)
        assert agent.tenant_id == tenant.name
        assert [m.task for m in agent.memories] == ["triage bug report", "summarise invoice"], "newest first"
        clock.advance(15)
        assert agent.remaining_lifetime == 45

        episode_id = agent.store_episode(
            task="summarise invoice",
            input="invoice #9",
            output="Total: 12 EUR",
            reward=0.8,
            critique="fine",
            tags=["invoice"],
            metadata={"customer": "acme"},
        )
        stored = agent.get_episode(episode_id)
        assert (stored.agent, stored.input, stored.metadata) == (agent.agent_id, "invoice #9", {"customer": "acme"})

        matches = agent.query_memories("summarise the invoice", k=2)
        assert len(matches) == 2 and all("invoice" in m.episode.task for m in matches)
        assert matches[0].score >= matches[1].score
        assert [m.episode.id for m in agent.query_memories("invoice", tags=["invoice"], min_reward=0.85)] == [best]

        updated = agent.update_episode(episode_id, reward=0.4, critique=None)
        assert (updated.reward, updated.critique) == (0.4, None)
        assert agent.stats().episodes == 3
        agent.delete_episode(episode_id)
        with pytest.raises(agentdb.NotFoundError):
            agent.get_episode(episode_id)
        token = agent.client.token_info
        assert token is not None and token.agent == agent.agent_id

    # Leaving the block destroyed the agent: its token is revoked at the hub.
    assert not agent.is_alive and agent.remaining_lifetime == 0
    assert log.count("DELETE", "/v1/token") == 1
    agent.destroy()  # idempotent
    assert log.count("DELETE", "/v1/token") == 1
    with hub.client(tenant, token=token.token) as old, pytest.raises(agentdb.AuthenticationError) as e:
        old.stats()
    assert e.value.code == "unauthenticated"

    work: list[Callable[[], object]] = [
        lambda: agent.query_memories("x"),
        lambda: agent.store_episode(task="late", reward=0.1),
        lambda: agent.get_episode(episode_id),
        lambda: agent.update_episode(episode_id, reward=0.1),
        lambda: agent.delete_episode(episode_id),
        agent.stats,
        agent.client.stats,
    ]
    for attempt in work:
        with pytest.raises(agentdb.AgentExpiredError) as expired:
            attempt()
        assert (expired.value.code, expired.value.status) == ("agent_expired", 0)
    assert client.stats().episodes == 2, "nothing was written after the end"


def test_the_lifetime_ends_by_the_clock(
    hub: Hub, tenant: Tenant, http: httpx.Client, log: RequestLog, clock: FakeClock
) -> None:
    agent = EphemeralAgent.spawn(
        tenant_id=tenant.name,
        lifetime=30,
        hub_endpoint=hub.endpoint,
        api_key=tenant.api_key,
        http_client=http,
        clock=clock,
        memory_sync=False,
    )
    agent.store_episode(task="in time", reward=0.5)
    token = agent.client.token_info
    assert token is not None
    clock.advance(30)
    assert not agent.is_alive and agent.remaining_lifetime == 0
    with pytest.raises(agentdb.AgentExpiredError, match="lifetime"):
        agent.store_episode(task="too late", reward=0.5)
    assert log.count("DELETE", "/v1/token") == 1, "the agent destroyed itself, revoking its token"
    with pytest.raises(agentdb.AgentExpiredError):
        agent.client.store_episode(task="too late", reward=0.5)
    with hub.client(tenant) as c:
        assert [e.task for e in c.iter_episodes()] == ["in time"]
    with hub.client(tenant, token=token.token) as old, pytest.raises(agentdb.AuthenticationError):
        old.stats()


def test_an_agent_outlives_its_tokens(
    hub: Hub, tenant: Tenant, http: httpx.Client, log: RequestLog, clock: FakeClock
) -> None:
    with EphemeralAgent.spawn(
        tenant_id=tenant.name,
        lifetime=900,
        hub_endpoint=hub.endpoint,
        api_key=tenant.api_key,
        http_client=http,
        clock=clock,
        memory_sync=False,
    ) as agent:
        tokens = [agent.client.token_info]
        for _ in range(3):
            clock.advance(250)
            agent.store_episode(task="tick", reward=0.5)
            tokens.append(agent.client.token_info)
        assert agent.stats().episodes == 3
    assert log.count("POST", "/v1/token") == 4, "a token at spawn and one per 250 s"
    assert len({t.token for t in tokens if t is not None}) == 4
    assert all(t is not None and t.agent == agent.agent_id for t in tokens)


def test_token_ttl_follows_a_short_lifetime(hub: Hub, tenant: Tenant, http: httpx.Client, log: RequestLog) -> None:
    with EphemeralAgent.spawn(
        tenant_id=tenant.name,
        lifetime=42.5,
        hub_endpoint=hub.endpoint,
        api_key=tenant.api_key,
        http_client=http,
        memory_sync=False,
    ) as agent:
        info = agent.client.token_info
        assert info is not None and info.expires_at is not None
        assert 41 <= info.expires_at - time.time() <= 43
    assert json.loads(log.sent[0].body) == {"agent": agent.agent_id, "ttl_secs": 43}


def test_a_credential_of_another_tenant_is_refused_at_spawn(
    hub: Hub, tenant: Tenant, http: httpx.Client, log: RequestLog
) -> None:
    with pytest.raises(agentdb.TenantMismatchError) as e:
        EphemeralAgent.spawn(
            tenant_id="someone-else", hub_endpoint=hub.endpoint, api_key=tenant.api_key, http_client=http
        )
    assert e.value.code == "tenant_mismatch" and tenant.name in e.value.message
    assert log.count("DELETE", "/v1/token") == 1, "the token obtained for it is revoked"
    assert log.count("GET", "/v1/episodes") == 0


def test_endpoint_and_api_key_from_the_environment(
    hub: Hub, tenant: Tenant, http: httpx.Client, log: RequestLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FEDERATION_HUB_ENDPOINT", raising=False)
    with pytest.raises(ValueError, match="FEDERATION_HUB_ENDPOINT"):
        EphemeralAgent.spawn(tenant_id=tenant.name, http_client=http)
    monkeypatch.setenv("FEDERATION_HUB_ENDPOINT", hub.endpoint)
    monkeypatch.setenv("AGENTDB_API_KEY", tenant.api_key)
    with EphemeralAgent.spawn(tenant_id=tenant.name, http_client=http, memory_sync=False) as agent:
        assert agent.remaining_lifetime > 299
        assert agent.stats().episodes == 0
    assert log.sent[0].path == "/v1/token"
    assert log.sent[0].headers["authorization"] == f"ApiKey {tenant.api_key}"


def test_spawn_checks_its_arguments(hub: Hub, tenant: Tenant) -> None:
    with pytest.raises(ValueError, match="tenant_id"):
        EphemeralAgent.spawn(tenant_id="", hub_endpoint=hub.endpoint)
    with pytest.raises(ValueError, match="lifetime"):
        EphemeralAgent.spawn(tenant_id=tenant.name, lifetime=0, hub_endpoint=hub.endpoint)
