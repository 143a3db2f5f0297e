"""``EphemeralAgent`` and ``AsyncEphemeralAgent``: a short-lived agent with its own token.

::

    with EphemeralAgent.spawn(tenant_id="acme", lifetime=300) as agent:
        past = agent.query_memories("summarise invoice", k=5)
        agent.store_episode(task="summarise invoice", input="invoice #4411",
                            output="Total: 300 EUR", reward=0.95)
    # destroyed: its token is revoked

    async with AsyncEphemeralAgent.spawn(tenant_id="acme") as agent:
        past = await agent.query_memories("summarise invoice")

Spawning obtains a token for the agent (through the exchange, so it is refreshed for as long
as the agent lives), checks that the credential is worth ``tenant_id``, and, with
``memory_sync``, pulls up to 100 of the tenant's episodes (``agent.memories``, newest first).
Work asked of the agent after its lifetime or after ``destroy()`` raises
``AgentExpiredError``; the first such call also destroys it. Lifetime and token refresh read
the ``clock`` given to ``spawn`` (Unix seconds), so tests can move time without sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import ssl
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Generator, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Generic, TypeVar

import httpx

from . import _calls
from ._calls import UNSET, Unset
from ._core import Core
from ._effects import Steps
from ._transport import StrPath
from .client import AgentDBClient, AsyncAgentDBClient
from .errors import AgentDBError, AgentExpiredError, TenantMismatchError
from .models import Episode, Outcome, QueryMatch, TenantStats

__all__ = ["AgentSpawn", "AsyncEphemeralAgent", "EphemeralAgent"]

ENDPOINT_ENV = "FEDERATION_HUB_ENDPOINT"
"""Where ``spawn`` finds the gateway when ``hub_endpoint`` is not given."""
API_KEY_ENV = "AGENTDB_API_KEY"
"""Where ``spawn`` finds the API key when no credential is given."""
MEMORY_PAGE = 100
"""Episodes pulled at spawn."""
MAX_TOKEN_TTL = 300
"""The longest token an agent asks for, in seconds."""


@dataclass(frozen=True, slots=True, kw_only=True)
class _Plan:
    """``spawn``'s arguments, checked, with the environment's defaults filled in."""

    endpoint: str
    api_key: str | None
    agent_id: str
    token_ttl: int

    @classmethod
    def of(
        cls,
        *,
        tenant_id: str,
        lifetime: float,
        hub_endpoint: str | None,
        api_key: str | None,
        other_credential: bool,
        agent_id: str | None,
        token_ttl: int | None,
    ) -> _Plan:
        if not isinstance(tenant_id, str) or not tenant_id:
            raise ValueError("tenant_id is required")
        if not (isinstance(lifetime, (int, float)) and math.isfinite(lifetime) and lifetime > 0):
            raise ValueError("lifetime must be a positive number of seconds")
        endpoint = hub_endpoint or os.environ.get(ENDPOINT_ENV)
        if not endpoint:
            raise ValueError(f"hub_endpoint is required (or {ENDPOINT_ENV})")
        if api_key is None and not other_credential:
            api_key = os.environ.get(API_KEY_ENV) or None
        return cls(
            endpoint=endpoint,
            api_key=api_key,
            agent_id=agent_id or f"agent-{uuid.uuid4()}",
            token_ttl=token_ttl or min(MAX_TOKEN_TTL, max(1, math.ceil(lifetime))),
        )


class _Lifetime:
    """When an agent ends, by its clock; and whether it was destroyed."""

    def __init__(self, clock: Callable[[], float], ends_at: float) -> None:
        self._clock = clock
        self._ends_at = ends_at
        self.destroyed = False

    @property
    def remaining(self) -> float:
        return 0.0 if self.destroyed else max(0.0, self._ends_at - self._clock())

    @property
    def alive(self) -> bool:
        return not self.destroyed and self._clock() < self._ends_at

    def guard(self) -> None:
        """Raises ``AgentExpiredError`` once the agent is gone."""
        if self._clock() >= self._ends_at:
            raise AgentExpiredError("the agent's lifetime has ended")
        if self.destroyed:
            raise AgentExpiredError("the agent was destroyed")


def _spawned(core: Core, tenant_id: str, memory_sync: bool) -> Steps[tuple[str | None, tuple[Episode, ...]]]:
    """The agent's token, checked against ``tenant_id``, and its memories; revokes the token
    when any of it fails."""
    try:
        info = yield from core.authenticate()
        if info.tenant is not None and info.tenant != tenant_id:
            raise TenantMismatchError(
                f"the credential is for tenant {info.tenant}, not {tenant_id}", code="tenant_mismatch"
            )
        memories: tuple[Episode, ...] = ()
        if memory_sync:
            page = yield from core.call(_calls.list_episodes(None, MEMORY_PAGE))
            memories = tuple(sorted(page.episodes, key=lambda e: e.created_ms, reverse=True))
        return info.agent, memories
    except Exception:
        with contextlib.suppress(AgentDBError):  # the spawn's own error says more
            yield from core.revoke()
        raise


ClientT = TypeVar("ClientT", AgentDBClient, AsyncAgentDBClient)


class _Agent(Generic[ClientT]):
    """What the twins share: the agent's state, its client bound to its lifetime, and the
    lifetime's properties."""

    client: ClientT

    def __init__(
        self, client: ClientT, agent_id: str, tenant_id: str, life: _Lifetime, memories: tuple[Episode, ...]
    ) -> None:
        self.client = client
        self.agent_id = agent_id
        self.tenant_id = tenant_id
        self.memories = memories
        self._life = life
        client._core.guard = life.guard

    @property
    def remaining_lifetime(self) -> float:
        """Seconds the agent has left (0 once it is gone)."""
        return self._life.remaining

    @property
    def is_alive(self) -> bool:
        """Whether the agent still takes work."""
        return self._life.alive


class EphemeralAgent(_Agent[AgentDBClient]):
    """A short-lived agent of one tenant. Make one with ``spawn``; use it with ``with``.

    Attributes:
        agent_id: its name (its tokens' ``sub``).
        tenant_id: its tenant (the credential's).
        client: its ``AgentDBClient``, for everything else; it refuses work once the agent is gone.
        memories: what spawn pulled: up to 100 of the tenant's episodes, newest first.
    """

    @classmethod
    def spawn(
        cls,
        *,
        tenant_id: str,
        lifetime: float = 300.0,
        hub_endpoint: str | None = None,
        api_key: str | None = None,
        token: str | None = None,
        token_provider: Callable[[], str] | None = None,
        agent_id: str | None = None,
        memory_sync: bool = True,
        ca: StrPath | None = None,
        cert: StrPath | None = None,
        key: StrPath | None = None,
        ssl_context: ssl.SSLContext | None = None,
        http_client: httpx.Client | None = None,
        token_ttl: int | None = None,
        timeout: float = 10.0,
        max_retries: int = 3,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> EphemeralAgent:
        """Spawns an agent that lives ``lifetime`` seconds.

        ``hub_endpoint`` defaults to ``$FEDERATION_HUB_ENDPOINT``; with no ``api_key``, ``token``
        or ``token_provider``, the API key is ``$AGENTDB_API_KEY``, and with none the client
        certificate is the credential. ``token_ttl`` defaults to the lifetime, at most 300 s.
        The TLS arguments, ``timeout``, ``max_retries``, ``clock`` and ``sleep`` are
        ``AgentDBClient``'s. Raises ``TenantMismatchError`` when the credential is for another tenant.
        """
        plan = _Plan.of(
            tenant_id=tenant_id,
            lifetime=lifetime,
            hub_endpoint=hub_endpoint,
            api_key=api_key,
            other_credential=token is not None or token_provider is not None,
            agent_id=agent_id,
            token_ttl=token_ttl,
        )
        started = clock()
        client = AgentDBClient(
            plan.endpoint,
            api_key=plan.api_key,
            token=token,
            token_provider=token_provider,
            ca=ca,
            cert=cert,
            key=key,
            ssl_context=ssl_context,
            http_client=http_client,
            agent_id=plan.agent_id,
            token_ttl=plan.token_ttl,
            timeout=timeout,
            max_retries=max_retries,
            clock=clock,
            sleep=sleep,
        )
        try:
            agent, memories = client._run(_spawned(client._core, tenant_id, memory_sync))
        except BaseException:
            client.close()
            raise
        return cls(client, agent or plan.agent_id, tenant_id, _Lifetime(clock, started + lifetime), memories)

    def query_memories(
        self,
        text: str,
        k: int = 5,
        *,
        min_reward: float | None = None,
        outcome: Outcome | None = None,
        created_from_ms: int | None = None,
        created_until_ms: int | None = None,
        tags: Sequence[str] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> tuple[QueryMatch, ...]:
        """The ``k`` of the tenant's episodes nearest ``text`` that pass the filter, best first."""
        self._check()
        return self.client.query(
            text,
            k=k,
            min_reward=min_reward,
            outcome=outcome,
            created_from_ms=created_from_ms,
            created_until_ms=created_until_ms,
            tags=tags,
            metadata=metadata,
        ).matches

    def store_episode(
        self,
        *,
        task: str,
        reward: float,
        input: str = "",
        output: str = "",
        critique: str | None = None,
        tags: Sequence[str] = (),
        metadata: Mapping[str, Any] | None = None,
        ttl_secs: int | None = None,
    ) -> str:
        """Stores an episode as this agent; answers its id. With ``ttl_secs`` it expires that many
        seconds from now."""
        self._check()
        stored = self.client.store_episode(
            task=task,
            reward=reward,
            input=input,
            output=output,
            critique=critique,
            tags=tags,
            metadata=metadata,
            ttl_secs=ttl_secs,
        )
        return stored.id

    def get_episode(self, episode_id: str) -> Episode:
        """One of the tenant's episodes."""
        self._check()
        return self.client.get_episode(episode_id)

    def update_episode(
        self,
        episode_id: str,
        *,
        reward: float | None = None,
        critique: str | Unset | None = UNSET,
        tags: Sequence[str] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Episode:
        """Changes an episode's reward, critique (``None`` clears it), tags or metadata."""
        self._check()
        return self.client.update_episode(episode_id, reward=reward, critique=critique, tags=tags, metadata=metadata)

    def delete_episode(self, episode_id: str) -> None:
        """Deletes one of the tenant's episodes."""
        self._check()
        self.client.delete_episode(episode_id)

    def stats(self) -> TenantStats:
        """The tenant's numbers."""
        self._check()
        return self.client.stats()

    def destroy(self) -> None:
        """Ends the agent and revokes its token at the hub. Idempotent."""
        if self._life.destroyed:
            return
        self._life.destroyed = True
        try:
            self.client.revoke_token()
        finally:
            self.client.close()

    def __enter__(self) -> EphemeralAgent:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.destroy()

    def _check(self) -> None:
        """Raises ``AgentExpiredError`` once the agent is gone; destroys it first when its
        lifetime has just ended."""
        if not self._life.alive and not self._life.destroyed:
            try:
                self.destroy()
            except AgentDBError as e:
                raise AgentExpiredError("the agent's lifetime has ended") from e
        self._life.guard()


class AsyncEphemeralAgent(_Agent[AsyncAgentDBClient]):
    """``EphemeralAgent``'s async twin: the same attributes and methods, awaited; ``client`` is an
    ``AsyncAgentDBClient``. ``spawn`` is awaited, or used directly with ``async with``.
    """

    @classmethod
    def spawn(
        cls,
        *,
        tenant_id: str,
        lifetime: float = 300.0,
        hub_endpoint: str | None = None,
        api_key: str | None = None,
        token: str | None = None,
        token_provider: Callable[[], str | Awaitable[str]] | None = None,
        agent_id: str | None = None,
        memory_sync: bool = True,
        ca: StrPath | None = None,
        cert: StrPath | None = None,
        key: StrPath | None = None,
        ssl_context: ssl.SSLContext | None = None,
        http_client: httpx.AsyncClient | None = None,
        token_ttl: int | None = None,
        timeout: float = 10.0,
        max_retries: int = 3,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> AgentSpawn:
        """Spawns an agent; see ``EphemeralAgent.spawn``. ``await`` the answer, or ``async with`` it."""
        plan = _Plan.of(
            tenant_id=tenant_id,
            lifetime=lifetime,
            hub_endpoint=hub_endpoint,
            api_key=api_key,
            other_credential=token is not None or token_provider is not None,
            agent_id=agent_id,
            token_ttl=token_ttl,
        )

        async def spawning() -> AsyncEphemeralAgent:
            started = clock()
            client = AsyncAgentDBClient(
                plan.endpoint,
                api_key=plan.api_key,
                token=token,
                token_provider=token_provider,
                ca=ca,
                cert=cert,
                key=key,
                ssl_context=ssl_context,
                http_client=http_client,
                agent_id=plan.agent_id,
                token_ttl=plan.token_ttl,
                timeout=timeout,
                max_retries=max_retries,
                clock=clock,
                sleep=sleep,
            )
            try:
                agent, memories = await client._run(_spawned(client._core, tenant_id, memory_sync))
            except BaseException:
                await client.aclose()
                raise
            return cls(client, agent or plan.agent_id, tenant_id, _Lifetime(clock, started + lifetime), memories)

        return AgentSpawn(spawning)

    async def query_memories(
        self,
        text: str,
        k: int = 5,
        *,
        min_reward: float | None = None,
        outcome: Outcome | None = None,
        created_from_ms: int | None = None,
        created_until_ms: int | None = None,
        tags: Sequence[str] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> tuple[QueryMatch, ...]:
        """The ``k`` of the tenant's episodes nearest ``text`` that pass the filter, best first."""
        await self._check()
        result = await self.client.query(
            text,
            k=k,
            min_reward=min_reward,
            outcome=outcome,
            created_from_ms=created_from_ms,
            created_until_ms=created_until_ms,
            tags=tags,
            metadata=metadata,
        )
        return result.matches

    async def store_episode(
        self,
        *,
        task: str,
        reward: float,
        input: str = "",
        output: str = "",
        critique: str | None = None,
        tags: Sequence[str] = (),
        metadata: Mapping[str, Any] | None = None,
        ttl_secs: int | None = None,
    ) -> str:
        """Stores an episode as this agent; answers its id. With ``ttl_secs`` it expires that many
        seconds from now."""
        await self._check()
        stored = await self.client.store_episode(
            task=task,
            reward=reward,
            input=input,
            output=output,
            critique=critique,
            tags=tags,
            metadata=metadata,
            ttl_secs=ttl_secs,
        )
        return stored.id

    async def get_episode(self, episode_id: str) -> Episode:
        """One of the tenant's episodes."""
        await self._check()
        return await self.client.get_episode(episode_id)

    async def update_episode(
        self,
        episode_id: str,
        *,
        reward: float | None = None,
        critique: str | Unset | None = UNSET,
        tags: Sequence[str] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Episode:
        """Changes an episode's reward, critique (``None`` clears it), tags or metadata."""
        await self._check()
        return await self.client.update_episode(
            episode_id, reward=reward, critique=critique, tags=tags, metadata=metadata
        )

    async def delete_episode(self, episode_id: str) -> None:
        """Deletes one of the tenant's episodes."""
        await self._check()
        await self.client.delete_episode(episode_id)

    async def stats(self) -> TenantStats:
        """The tenant's numbers."""
        await self._check()
        return await self.client.stats()

    async def destroy(self) -> None:
        """Ends the agent and revokes its token at the hub. Idempotent."""
        if self._life.destroyed:
            return
        self._life.destroyed = True
        try:
            await self.client.revoke_token()
        finally:
            await self.client.aclose()

    async def __aenter__(self) -> AsyncEphemeralAgent:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.destroy()

    async def _check(self) -> None:
        """Raises ``AgentExpiredError`` once the agent is gone; destroys it first when its
        lifetime has just ended."""
        if not self._life.alive and not self._life.destroyed:
            try:
                await self.destroy()
            except AgentDBError as e:
                raise AgentExpiredError("the agent's lifetime has ended") from e
        self._life.guard()


class AgentSpawn:
    """What ``AsyncEphemeralAgent.spawn`` answers: ``await`` it for the agent, or
    ``async with`` it to have the agent destroyed at the end of the block."""

    def __init__(self, spawning: Callable[[], Coroutine[Any, Any, AsyncEphemeralAgent]]) -> None:
        self._spawning = spawning
        self._agent: AsyncEphemeralAgent | None = None

    def __await__(self) -> Generator[Any, None, AsyncEphemeralAgent]:
        return self._spawning().__await__()

    async def __aenter__(self) -> AsyncEphemeralAgent:
        self._agent = await self._spawning()
        return self._agent

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._agent is not None:
            await self._agent.destroy()
