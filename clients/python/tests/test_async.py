"""The async twins against a real hub: the agent's lifecycle, the client's endpoints and
iterators, the change stream with resume, token refresh and sharing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest

import agentdb
from agentdb import AsyncAgentDBClient, AsyncEphemeralAgent, NewEpisode

from support import FakeClock, Hub, RequestLog, Tenant


@pytest.fixture
async def ahttp(hub: Hub, tenant: Tenant, log: RequestLog) -> AsyncIterator[httpx.AsyncClient]:
    """An async httpx client with the tenant's certificate whose requests go to ``log``."""
    async with httpx.AsyncClient(verify=hub.ssl_context(tenant), event_hooks=log.async_hooks()) as c:
        yield c


async def test_agent_lifecycle(
    hub: Hub, tenant: Tenant, ahttp: httpx.AsyncClient, log: RequestLog, clock: FakeClock
) -> None:
    async with AsyncAgentDBClient(hub.endpoint, api_key=tenant.api_key, **hub.tls(tenant)) as db:
        await db.store_episode(task="summarise invoice", output="Total: 300 EUR", reward=0.9, tags=["invoice"])

    async with AsyncEphemeralAgent.spawn(
        tenant_id=tenant.name,
        lifetime=60,
        hub_endpoint=hub.endpoint,
        api_key=tenant.api_key,
        http_client=ahttp,
        clock=clock,
    ) as agent:
        assert agent.is_alive and agent.remaining_lifetime == 60
        assert [m.task for m in agent.memories] == ["summarise invoice"]
        episode_id = await agent.store_episode(
            task="summarise invoice", input="invoice #9", reward=0.8, tags=["invoice"]
        )
        assert (await agent.get_episode(episode_id)).agent == agent.agent_id
        matches = await agent.query_memories("summarise the invoice", k=2)
        assert len(matches) == 2 and episode_id in {m.episode.id for m in matches}
        updated = await agent.update_episode(episode_id, reward=0.3, critique="redo", tags=["invoice", "redo"])
        assert (updated.reward, updated.critique, updated.tags) == (0.3, "redo", ("invoice", "redo"))
        assert (await agent.stats()).episodes == 2
        await agent.delete_episode(episode_id)
        with pytest.raises(agentdb.NotFoundError):
            await agent.get_episode(episode_id)
        token = agent.client.token_info
        assert token is not None

    assert not agent.is_alive and log.count("DELETE", "/v1/token") == 1
    await agent.destroy()  # idempotent
    assert log.count("DELETE", "/v1/token") == 1
    with pytest.raises(agentdb.AgentExpiredError):
        await agent.query_memories("invoice")
    with pytest.raises(agentdb.AgentExpiredError):
        await agent.store_episode(task="late", reward=0.1)
    with pytest.raises(agentdb.AgentExpiredError):
        await agent.client.stats()
    async with AsyncAgentDBClient(hub.endpoint, token=token.token, **hub.tls(tenant)) as old:
        with pytest.raises(agentdb.AuthenticationError) as e:
            await old.stats()
    assert e.value.code == "unauthenticated", "the token was revoked at the hub"


async def test_awaited_spawn_lifetime_by_the_clock(
    hub: Hub, tenant: Tenant, ahttp: httpx.AsyncClient, log: RequestLog, clock: FakeClock
) -> None:
    agent = await AsyncEphemeralAgent.spawn(
        tenant_id=tenant.name,
        lifetime=10,
        hub_endpoint=hub.endpoint,
        api_key=tenant.api_key,
        http_client=ahttp,
        clock=clock,
        memory_sync=False,
    )
    assert (await agent.stats()).episodes == 0
    clock.advance(10)
    with pytest.raises(agentdb.AgentExpiredError, match="lifetime"):
        await agent.stats()
    assert log.count("DELETE", "/v1/token") == 1


async def test_a_credential_of_another_tenant_is_refused_at_spawn(
    hub: Hub, tenant: Tenant, ahttp: httpx.AsyncClient
) -> None:
    with pytest.raises(agentdb.TenantMismatchError):
        async with AsyncEphemeralAgent.spawn(
            tenant_id="someone-else", hub_endpoint=hub.endpoint, api_key=tenant.api_key, http_client=ahttp
        ):
            pytest.fail("spawned for the wrong tenant")


async def test_client_endpoints_and_iterators(hub: Hub, tenant: Tenant) -> None:
    async with AsyncAgentDBClient(hub.endpoint, api_key=tenant.api_key, **hub.tls(tenant)) as db:
        assert (await db.health()).status == "ok"
        assert str((await db.openapi())["openapi"]).startswith("3.1")
        since = (await db.changes_page()).next_cursor
        stored = await db.store_episodes([NewEpisode(task=f"async {i}", reward=0.5) for i in range(5)])
        ids = [s.id for s in stored]
        assert sorted([e.id async for e in db.iter_episodes(limit=2)]) == sorted(ids)
        page = await db.list_episodes(limit=2)
        assert len(page.episodes) == 2 and page.next_cursor is not None
        assert (await db.query("async 3", k=1)).matches[0].episode.id == ids[3]

        seen: list[str] = []
        async with db.changes(since=since) as stream:
            async for change in stream:
                seen.append(change.id)
                if len(seen) == 3:
                    break
            resume_at = stream.last_event_id
        await db.delete_episode(ids[0])
        async with db.changes(since=resume_at) as stream:
            rest = [await stream.__anext__() for _ in range(3)]
        assert seen + [c.id for c in rest[:2]] == ids
        assert (rest[2].type, rest[2].id) == ("deleted", ids[0])

        grant = await db.exchange_token(scopes=["read"], ttl=30)
        assert grant.scopes == ("read",)
        await db.revoke_token()
        assert db.token_info is None


async def test_async_token_provider_refresh_and_sharing(
    hub: Hub, tenant: Tenant, ahttp: httpx.AsyncClient, log: RequestLog
) -> None:
    now = time.time()
    tokens = [hub.forge_token(tenant.name, iat=now - 400, exp=now - 100), hub.issue_token(tenant.name)]
    handed: list[str] = []

    async def provider() -> str:
        await asyncio.sleep(0)
        handed.append(tokens[len(handed)])
        return handed[-1]

    db = AsyncAgentDBClient(hub.endpoint, token_provider=provider, http_client=ahttp)
    results = await asyncio.gather(*(db.stats() for _ in range(6)))
    assert all(r.episodes == 0 for r in results)
    assert handed == tokens, "concurrent callers shared each token; the expired one was replaced once"
    assert sorted(s.status or 0 for s in log.sent) == [200] * 6 + [401] * 6, "all tried the first, then the second"
