"""``AgentDBClient`` and ``AsyncAgentDBClient``: the HTTPS/JSON gateway (docs/http.md).

The twins have the same methods and the same behaviour: both run the shared sans-IO core
(``_core``) and differ only in how they perform its effects — ``httpx.Client`` and
``time.sleep``, or ``httpx.AsyncClient`` and ``asyncio.sleep``::

    with AgentDBClient("https://hub:8443", api_key=key, ca="ca.pem", cert="c.pem", key="c.key") as db:
        stored = db.store_episode(task="summarise invoice", output="Total: 300 EUR", reward=0.95)
        matches = db.query("summarise the invoice", k=5).matches

Credentials: an API key (traded for short tokens at ``POST /v1/token``, refreshed before they
expire and once more after a 401), a static ``token`` (used as given), a ``token_provider``
(called whenever a token is needed), or none: the client certificate itself is the credential.
The tenant is always the credential's.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import ssl
import threading
import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Generator,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar, cast

import httpx

from . import _calls
from ._calls import UNSET, Unset
from ._core import Core, Settings
from ._effects import (
    CloseStream,
    Effect,
    Emit,
    HttpRequest,
    ItemSteps,
    Locked,
    OpenedStream,
    OpenStream,
    ProvideToken,
    RawResponse,
    ReadStream,
    Send,
    Sleep,
    Steps,
)
from ._transport import StrPath, timeouts, tls_verify, transport_error
from .models import (
    Change,
    ChangePage,
    Episode,
    EpisodePage,
    Health,
    NewEpisode,
    Outcome,
    QueryResult,
    Stored,
    TenantStats,
    TokenGrant,
    TokenInfo,
    Vector,
)

__all__ = ["AgentDBClient", "AsyncAgentDBClient", "AsyncChangeStream", "ChangeStream"]

T = TypeVar("T")

_STREAM_WHAT = "GET /v1/changes"


def _build(http: httpx.Client | httpx.AsyncClient, r: HttpRequest) -> httpx.Request:
    return http.build_request(r.method, r.url, headers=dict(r.headers), content=r.content, timeout=r.timeout)


def _raw(response: httpx.Response) -> RawResponse:
    return RawResponse(response.status_code, response.headers, response.content)


@dataclass(frozen=True, slots=True)
class _Stream:
    """A streaming answer and its chunks, as the sync driver reads them."""

    response: httpx.Response
    chunks: Iterator[bytes]


@dataclass(frozen=True, slots=True)
class _AsyncStream:
    """A streaming answer and its chunks, as the async driver reads them."""

    response: httpx.Response
    chunks: AsyncIterator[bytes]


class ChangeStream:
    """The tenant's changes as they happen (``AgentDBClient.changes``).

    Iterate it; leave the ``with`` block (or ``close()``) to hang up. ``last_event_id`` is the
    cursor of the last change yielded: pass it as ``since`` to resume later.
    """

    def __init__(self, changes: Generator[Change, None, None], since: str | None) -> None:
        self._changes = changes
        self.last_event_id = since

    def __iter__(self) -> ChangeStream:
        return self

    def __next__(self) -> Change:
        change = next(self._changes)
        self.last_event_id = change.cursor
        return change

    def close(self) -> None:
        """Closes the connection; iteration ends."""
        self._changes.close()

    def __enter__(self) -> ChangeStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncChangeStream:
    """The tenant's changes as they happen (``AsyncAgentDBClient.changes``).

    ``async for`` over it; leave the ``async with`` block (or ``await aclose()``) to hang up.
    ``last_event_id`` is the cursor of the last change yielded.
    """

    def __init__(self, changes: AsyncGenerator[Change, None], since: str | None) -> None:
        self._changes = changes
        self.last_event_id = since

    def __aiter__(self) -> AsyncChangeStream:
        return self

    async def __anext__(self) -> Change:
        change = await self._changes.__anext__()
        self.last_event_id = change.cursor
        return change

    async def aclose(self) -> None:
        """Closes the connection; iteration ends."""
        await self._changes.aclose()

    async def __aenter__(self) -> AsyncChangeStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class AgentDBClient:
    """A client of one hub's gateway, over ``httpx.Client``. Thread-safe; use it as a context manager.

    Args:
        endpoint: the gateway, e.g. ``https://hub.example.com:8443``.
        api_key: an API key (``agentdb tenant key create``), traded for short tokens.
        token: a bearer token, used as given (it cannot be refreshed).
        token_provider: called for a token whenever one is needed.
        ca: the deployment's CA certificate (PEM path) to trust the hub with.
        cert: the client certificate (PEM path) for mutual TLS.
        key: its private key (PEM path), unless ``cert`` holds it.
        ssl_context: a ready context instead of ``ca``/``cert``/``key``.
        http_client: a caller's ``httpx.Client`` (with its own TLS settings); not closed by ``close()``.
        agent_id: the agent tokens are asked for (their ``sub``).
        token_ttl: the token lifetime to ask for, in seconds (the hub's default is 300).
        scopes: the scopes to ask for (default: all the credential's).
        timeout: seconds for connecting and for each read and write of a request.
        stream_idle_timeout: a change stream silent this long is reconnected (the hub sends
            a keep-alive every 15 s).
        max_retries: retries of 429, 503, timeouts and connection failures.
        max_retry_after: the longest wait a ``Retry-After`` may impose, in seconds.
        clock: Unix time in seconds; decides when tokens are refreshed.
        sleep: waits between retries.
    """

    def __init__(
        self,
        endpoint: str,
        *,
        api_key: str | None = None,
        token: str | None = None,
        token_provider: Callable[[], str] | None = None,
        ca: StrPath | None = None,
        cert: StrPath | None = None,
        key: StrPath | None = None,
        ssl_context: ssl.SSLContext | None = None,
        http_client: httpx.Client | None = None,
        agent_id: str | None = None,
        token_ttl: int | None = None,
        scopes: Sequence[str] | None = None,
        timeout: float = 10.0,
        stream_idle_timeout: float = 45.0,
        max_retries: int = 3,
        max_retry_after: float = 30.0,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._core = Core(
            Settings.of(
                endpoint,
                api_key=api_key,
                token=token,
                has_provider=token_provider is not None,
                agent_id=agent_id,
                token_ttl=token_ttl,
                scopes=scopes,
                timeout=timeout,
                stream_idle_timeout=stream_idle_timeout,
                max_retries=max_retries,
                max_retry_after=max_retry_after,
                clock=clock,
            )
        )
        verify = tls_verify(ca=ca, cert=cert, key=key, ssl_context=ssl_context, caller_client=http_client is not None)
        self._owns_http = http_client is None
        self._http = http_client if http_client is not None else httpx.Client(verify=verify, timeout=timeouts(timeout))
        self._provider = token_provider
        self._sleep = sleep
        self._lock = threading.Lock()

    @property
    def endpoint(self) -> str:
        """The gateway's URL."""
        return self._core.settings.endpoint

    # ---------------------------------------------------------------- episodes

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
        session: str | None = None,
        tokens_used: int = 0,
        latency_ms: int = 0,
        embedding: Vector | None = None,
        id: str | None = None,
        ttl_secs: int | None = None,
        expires_at_ms: int | None = None,
    ) -> Stored:
        """Stores one episode. Without an ``id`` the client mints a UUIDv7, so a retry cannot store it twice."""
        episode = NewEpisode(
            task=task,
            reward=reward,
            input=input,
            output=output,
            critique=critique,
            tags=tags,
            metadata=dict(metadata) if metadata is not None else None,
            session=session,
            tokens_used=tokens_used,
            latency_ms=latency_ms,
            embedding=embedding,
            id=id,
            ttl_secs=ttl_secs,
            expires_at_ms=expires_at_ms,
        )
        return self._run(self._core.call(_calls.store_one(episode)))

    def store_episodes(self, episodes: Iterable[NewEpisode]) -> tuple[Stored, ...]:
        """Stores a batch atomically (every episode or none); results in the order sent."""
        return self._run(self._core.call(_calls.store_batch(episodes)))

    def get_episode(self, episode_id: str) -> Episode:
        """One episode; ``NotFoundError`` when the tenant has none with this id."""
        return self._run(self._core.call(_calls.get_episode(episode_id)))

    def update_episode(
        self,
        episode_id: str,
        *,
        reward: float | None = None,
        critique: str | Unset | None = UNSET,
        tags: Sequence[str] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Episode:
        """Changes the given fields (``critique=None`` clears it; ``metadata`` replaces the old
        as a whole); answers the episode as it is now."""
        call = _calls.update_episode(episode_id, reward=reward, critique=critique, tags=tags, metadata=metadata)
        return self._run(self._core.call(call))

    def delete_episode(self, episode_id: str) -> None:
        """Deletes an episode; ``NotFoundError`` when the tenant has none with this id."""
        self._run(self._core.call(_calls.delete_episode(episode_id)))

    def list_episodes(self, *, cursor: str | None = None, limit: int | None = None) -> EpisodePage:
        """One page of live episodes; only a ``None`` ``next_cursor`` means there is no more."""
        return self._run(self._core.call(_calls.list_episodes(cursor, limit)))

    def iter_episodes(self, *, limit: int | None = None) -> Generator[Episode, None, None]:
        """Every live episode, fetched a page (of ``limit``) at a time."""
        return self._iterate(self._core.list_all(limit))

    # ------------------------------------------------------------------- query

    def query(
        self,
        q: str | Vector,
        /,
        *,
        k: int | None = None,
        min_reward: float | None = None,
        outcome: Outcome | None = None,
        created_from_ms: int | None = None,
        created_until_ms: int | None = None,
        tags: Sequence[str] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> QueryResult:
        """The ``k`` (default 10) episodes nearest a text (the hub embeds it) or a ``Vector``,
        best first, among those that pass the filter: ``min_reward``, ``outcome``, created in
        ``[created_from_ms, created_until_ms)``, carrying every one of ``tags``, and having
        these exact ``metadata`` values."""
        call = _calls.query(
            q,
            k=k,
            min_reward=min_reward,
            outcome=outcome,
            created_from_ms=created_from_ms,
            created_until_ms=created_until_ms,
            tags=tags,
            metadata=metadata,
        )
        return self._run(self._core.call(call))

    def stats(self) -> TenantStats:
        """The tenant's numbers."""
        return self._run(self._core.call(_calls.stats()))

    # ----------------------------------------------------------------- changes

    def changes_page(self, *, since: str | None = None, limit: int | None = None) -> ChangePage:
        """One page of changes after ``since`` (from the start when ``None``)."""
        return self._run(self._core.call(_calls.changes_page(since, limit)))

    def changes(self, *, since: str | None = None) -> ChangeStream:
        """The tenant's changes after ``since``, as they happen (Server-Sent Events).

        Each change is yielded once, in order: a dropped connection is resumed with
        ``Last-Event-ID``, and a stream the hub ends because the token expired is resumed with
        a fresh token. Raises the typed error when the hub ends the stream for another reason,
        or after ``max_retries`` failed reconnections in a row.
        """
        return ChangeStream(self._iterate(self._core.changes(since)), since)

    # ------------------------------------------------------------------ tokens

    @property
    def token_info(self) -> TokenInfo | None:
        """The token held now, if any (no request is made)."""
        return self._core.token_info

    def authenticate(self) -> TokenInfo:
        """The token the client holds, obtaining one if it holds none or it is near expiry."""
        return self._run(self._core.authenticate())

    def exchange_token(
        self, *, agent: str | None = None, scopes: Sequence[str] | None = None, ttl: int | None = None
    ) -> TokenGrant:
        """A new token from the client's API key (with none, its certificate), which the client does not hold."""
        return self._run(self._core.exchange(agent=agent, scopes=scopes, ttl=ttl))

    def revoke_token(self) -> None:
        """Revokes the token held now (``DELETE /v1/token``) and forgets it. Does nothing when
        none is held; a refreshable client obtains a new one on its next request."""
        self._run(self._core.revoke())

    # -------------------------------------------------------------------- misc

    def health(self) -> Health:
        """``GET /healthz`` (no token)."""
        return self._run(self._core.call(_calls.health()))

    def openapi(self) -> dict[str, Any]:
        """The gateway's OpenAPI 3.1 document (no token)."""
        return self._run(self._core.call(_calls.openapi()))

    def close(self) -> None:
        """Closes the connections (not a caller's ``http_client``). The token stays valid until it expires."""
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> AgentDBClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ driver

    def _run(self, steps: Steps[T]) -> T:
        """Performs the core's effects until its steps end; their value."""
        with contextlib.closing(steps):
            reply: object = None
            failure: Exception | None = None
            while True:
                try:
                    effect = steps.throw(failure) if failure is not None else steps.send(reply)
                except StopIteration as done:
                    return cast(T, done.value)
                reply, failure = None, None
                try:
                    reply = self._perform(effect)
                except Exception as e:
                    failure = e

    def _iterate(self, steps: ItemSteps[T]) -> Generator[T, None, None]:
        """Performs the core's effects, yielding what it emits; closes any stream left open."""
        opened: list[OpenedStream] = []
        try:
            reply: object = None
            failure: Exception | None = None
            while True:
                try:
                    effect = steps.throw(failure) if failure is not None else steps.send(reply)
                except StopIteration:
                    return
                reply, failure = None, None
                if isinstance(effect, Emit):
                    yield effect.item
                    continue
                try:
                    reply = self._perform(effect)
                except Exception as e:
                    failure = e
                if isinstance(reply, OpenedStream):
                    opened.append(reply)
                elif isinstance(effect, CloseStream):
                    opened.remove(effect.stream)
        finally:
            steps.close()
            for stream in opened:
                cast(_Stream, stream.handle).response.close()

    def _perform(self, effect: Effect) -> object:
        try:
            if isinstance(effect, Send):
                return _raw(self._http.send(_build(self._http, effect.request)))
            if isinstance(effect, Sleep):
                self._sleep(effect.seconds)
                return None
            if isinstance(effect, ProvideToken):
                return cast(Callable[[], str], self._provider)()
            if isinstance(effect, Locked):
                with self._lock:
                    return self._run(effect.steps)
            if isinstance(effect, OpenStream):
                response = self._http.send(_build(self._http, effect.request), stream=True)
                if response.is_success:
                    return OpenedStream(_Stream(response, response.iter_bytes()), response.headers.get("x-request-id"))
                try:
                    response.read()
                finally:
                    response.close()
                return _raw(response)
            stream = cast(_Stream, effect.stream.handle)
            if isinstance(effect, ReadStream):
                return next(stream.chunks, None)
            stream.response.close()  # CloseStream, the one effect left
            return None
        except httpx.HTTPError as e:
            what = effect.request.what if isinstance(effect, (Send, OpenStream)) else _STREAM_WHAT
            raise transport_error(e, what) from e


class AsyncAgentDBClient:
    """``AgentDBClient``'s async twin, over ``httpx.AsyncClient``: the same arguments (``http_client``
    is an ``httpx.AsyncClient``, ``token_provider`` and ``sleep`` may be async) and the same
    methods, awaited; ``iter_episodes`` and ``changes`` are async iterators. Use it with ``async with``.
    """

    def __init__(
        self,
        endpoint: str,
        *,
        api_key: str | None = None,
        token: str | None = None,
        token_provider: Callable[[], str | Awaitable[str]] | None = None,
        ca: StrPath | None = None,
        cert: StrPath | None = None,
        key: StrPath | None = None,
        ssl_context: ssl.SSLContext | None = None,
        http_client: httpx.AsyncClient | None = None,
        agent_id: str | None = None,
        token_ttl: int | None = None,
        scopes: Sequence[str] | None = None,
        timeout: float = 10.0,
        stream_idle_timeout: float = 45.0,
        max_retries: int = 3,
        max_retry_after: float = 30.0,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._core = Core(
            Settings.of(
                endpoint,
                api_key=api_key,
                token=token,
                has_provider=token_provider is not None,
                agent_id=agent_id,
                token_ttl=token_ttl,
                scopes=scopes,
                timeout=timeout,
                stream_idle_timeout=stream_idle_timeout,
                max_retries=max_retries,
                max_retry_after=max_retry_after,
                clock=clock,
            )
        )
        verify = tls_verify(ca=ca, cert=cert, key=key, ssl_context=ssl_context, caller_client=http_client is not None)
        self._owns_http = http_client is None
        self._http = (
            http_client if http_client is not None else httpx.AsyncClient(verify=verify, timeout=timeouts(timeout))
        )
        self._provider = token_provider
        self._sleep = sleep
        self._lock = asyncio.Lock()

    @property
    def endpoint(self) -> str:
        """The gateway's URL."""
        return self._core.settings.endpoint

    # ---------------------------------------------------------------- episodes

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
        session: str | None = None,
        tokens_used: int = 0,
        latency_ms: int = 0,
        embedding: Vector | None = None,
        id: str | None = None,
        ttl_secs: int | None = None,
        expires_at_ms: int | None = None,
    ) -> Stored:
        """Stores one episode. Without an ``id`` the client mints a UUIDv7, so a retry cannot store it twice."""
        episode = NewEpisode(
            task=task,
            reward=reward,
            input=input,
            output=output,
            critique=critique,
            tags=tags,
            metadata=dict(metadata) if metadata is not None else None,
            session=session,
            tokens_used=tokens_used,
            latency_ms=latency_ms,
            embedding=embedding,
            id=id,
            ttl_secs=ttl_secs,
            expires_at_ms=expires_at_ms,
        )
        return await self._run(self._core.call(_calls.store_one(episode)))

    async def store_episodes(self, episodes: Iterable[NewEpisode]) -> tuple[Stored, ...]:
        """Stores a batch atomically (every episode or none); results in the order sent."""
        return await self._run(self._core.call(_calls.store_batch(episodes)))

    async def get_episode(self, episode_id: str) -> Episode:
        """One episode; ``NotFoundError`` when the tenant has none with this id."""
        return await self._run(self._core.call(_calls.get_episode(episode_id)))

    async def update_episode(
        self,
        episode_id: str,
        *,
        reward: float | None = None,
        critique: str | Unset | None = UNSET,
        tags: Sequence[str] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Episode:
        """Changes the given fields (``critique=None`` clears it; ``metadata`` replaces the old
        as a whole); answers the episode as it is now."""
        call = _calls.update_episode(episode_id, reward=reward, critique=critique, tags=tags, metadata=metadata)
        return await self._run(self._core.call(call))

    async def delete_episode(self, episode_id: str) -> None:
        """Deletes an episode; ``NotFoundError`` when the tenant has none with this id."""
        await self._run(self._core.call(_calls.delete_episode(episode_id)))

    async def list_episodes(self, *, cursor: str | None = None, limit: int | None = None) -> EpisodePage:
        """One page of live episodes; only a ``None`` ``next_cursor`` means there is no more."""
        return await self._run(self._core.call(_calls.list_episodes(cursor, limit)))

    def iter_episodes(self, *, limit: int | None = None) -> AsyncGenerator[Episode, None]:
        """Every live episode, fetched a page (of ``limit``) at a time."""
        return self._iterate(self._core.list_all(limit))

    # ------------------------------------------------------------------- query

    async def query(
        self,
        q: str | Vector,
        /,
        *,
        k: int | None = None,
        min_reward: float | None = None,
        outcome: Outcome | None = None,
        created_from_ms: int | None = None,
        created_until_ms: int | None = None,
        tags: Sequence[str] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> QueryResult:
        """The ``k`` (default 10) episodes nearest a text or a ``Vector``, best first, among
        those that pass the filter (see ``AgentDBClient.query``)."""
        call = _calls.query(
            q,
            k=k,
            min_reward=min_reward,
            outcome=outcome,
            created_from_ms=created_from_ms,
            created_until_ms=created_until_ms,
            tags=tags,
            metadata=metadata,
        )
        return await self._run(self._core.call(call))

    async def stats(self) -> TenantStats:
        """The tenant's numbers."""
        return await self._run(self._core.call(_calls.stats()))

    # ----------------------------------------------------------------- changes

    async def changes_page(self, *, since: str | None = None, limit: int | None = None) -> ChangePage:
        """One page of changes after ``since`` (from the start when ``None``)."""
        return await self._run(self._core.call(_calls.changes_page(since, limit)))

    def changes(self, *, since: str | None = None) -> AsyncChangeStream:
        """The tenant's changes after ``since``, as they happen; see ``AgentDBClient.changes``."""
        return AsyncChangeStream(self._iterate(self._core.changes(since)), since)

    # ------------------------------------------------------------------ tokens

    @property
    def token_info(self) -> TokenInfo | None:
        """The token held now, if any (no request is made)."""
        return self._core.token_info

    async def authenticate(self) -> TokenInfo:
        """The token the client holds, obtaining one if it holds none or it is near expiry."""
        return await self._run(self._core.authenticate())

    async def exchange_token(
        self, *, agent: str | None = None, scopes: Sequence[str] | None = None, ttl: int | None = None
    ) -> TokenGrant:
        """A new token from the client's API key (with none, its certificate), which the client does not hold."""
        return await self._run(self._core.exchange(agent=agent, scopes=scopes, ttl=ttl))

    async def revoke_token(self) -> None:
        """Revokes the token held now and forgets it; see ``AgentDBClient.revoke_token``."""
        await self._run(self._core.revoke())

    # -------------------------------------------------------------------- misc

    async def health(self) -> Health:
        """``GET /healthz`` (no token)."""
        return await self._run(self._core.call(_calls.health()))

    async def openapi(self) -> dict[str, Any]:
        """The gateway's OpenAPI 3.1 document (no token)."""
        return await self._run(self._core.call(_calls.openapi()))

    async def aclose(self) -> None:
        """Closes the connections (not a caller's ``http_client``)."""
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncAgentDBClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ driver

    async def _run(self, steps: Steps[T]) -> T:
        """Performs the core's effects until its steps end; their value."""
        with contextlib.closing(steps):
            reply: object = None
            failure: Exception | None = None
            while True:
                try:
                    effect = steps.throw(failure) if failure is not None else steps.send(reply)
                except StopIteration as done:
                    return cast(T, done.value)
                reply, failure = None, None
                try:
                    reply = await self._perform(effect)
                except Exception as e:
                    failure = e

    async def _iterate(self, steps: ItemSteps[T]) -> AsyncGenerator[T, None]:
        """Performs the core's effects, yielding what it emits; closes any stream left open."""
        opened: list[OpenedStream] = []
        try:
            reply: object = None
            failure: Exception | None = None
            while True:
                try:
                    effect = steps.throw(failure) if failure is not None else steps.send(reply)
                except StopIteration:
                    return
                reply, failure = None, None
                if isinstance(effect, Emit):
                    yield effect.item
                    continue
                try:
                    reply = await self._perform(effect)
                except Exception as e:
                    failure = e
                if isinstance(reply, OpenedStream):
                    opened.append(reply)
                elif isinstance(effect, CloseStream):
                    opened.remove(effect.stream)
        finally:
            steps.close()
            for stream in opened:
                await cast(_AsyncStream, stream.handle).response.aclose()

    async def _perform(self, effect: Effect) -> object:
        try:
            if isinstance(effect, Send):
                return _raw(await self._http.send(_build(self._http, effect.request)))
            if isinstance(effect, Sleep):
                await self._sleep(effect.seconds)
                return None
            if isinstance(effect, ProvideToken):
                token = cast(Callable[[], Any], self._provider)()
                return await token if inspect.isawaitable(token) else token
            if isinstance(effect, Locked):
                async with self._lock:
                    return await self._run(effect.steps)
            if isinstance(effect, OpenStream):
                response = await self._http.send(_build(self._http, effect.request), stream=True)
                if response.is_success:
                    return OpenedStream(
                        _AsyncStream(response, response.aiter_bytes()), response.headers.get("x-request-id")
                    )
                try:
                    await response.aread()
                finally:
                    await response.aclose()
                return _raw(response)
            stream = cast(_AsyncStream, effect.stream.handle)
            if isinstance(effect, ReadStream):
                return await anext(stream.chunks, None)
            await stream.response.aclose()  # CloseStream, the one effect left
            return None
        except httpx.HTTPError as e:
            what = effect.request.what if isinstance(effect, (Send, OpenStream)) else _STREAM_WHAT
            raise transport_error(e, what) from e
