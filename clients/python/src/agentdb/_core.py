"""The client's sans-IO core: tokens, retries, refresh, paging and the change stream.

Everything here is a generator of effects (``_effects``): it decides what to send and what an
answer means, and its driver — ``AgentDBClient`` with httpx.Client, or ``AsyncAgentDBClient``
with httpx.AsyncClient — performs the I/O. One request goes::

    call(Call)
      bearer()            held token, or Locked(refresh): ProvideToken | exchange call
      Send(request)       → 2xx: parse → done
                          → 401 with a refreshable credential: drop the token, once per token
                          → 429/503/transport failure: Sleep(Retry-After or backoff), again
                          → else: the typed error

and the change stream::

    changes(since)
      OpenStream(GET /v1/changes, Last-Event-ID)   → 401: refresh once; 429/503: retry
      ReadStream … Emit(change) …                   each change once, in order
      `error` event token_expired                    → a fresh token, resume after the last id
      dropped connection or end without an event     → Sleep, resume after the last id
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlencode

from . import _calls
from ._calls import Call
from ._effects import (
    CloseStream,
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
from ._retry import RetryPolicy, parse_retry_after, retryable
from ._sse import SSEParser
from ._tokens import HeldToken, from_grant, from_jwt
from ._transport import timeouts
from .errors import (
    AgentDBError,
    AuthenticationError,
    InvalidRequestError,
    InvalidResponseError,
    TokenExpiredError,
    TransportError,
    default_code,
    error_for,
    status_for,
)
from .models import Change, Episode, TokenGrant, TokenInfo

T = TypeVar("T")


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """A client's settings, checked once by ``Settings.of``."""

    endpoint: str
    api_key: str | None
    static_token: str | None
    has_provider: bool
    agent_id: str | None
    token_ttl: int | None
    scopes: tuple[str, ...] | None
    timeout: float
    stream_idle_timeout: float
    retry: RetryPolicy
    clock: Callable[[], float]

    @classmethod
    def of(
        cls,
        endpoint: str,
        *,
        api_key: str | None,
        token: str | None,
        has_provider: bool,
        agent_id: str | None,
        token_ttl: int | None,
        scopes: Sequence[str] | None,
        timeout: float,
        stream_idle_timeout: float,
        max_retries: int,
        max_retry_after: float,
        clock: Callable[[], float],
    ) -> Settings:
        """Checks the constructor's arguments (``ValueError`` for a bad one)."""
        if not isinstance(endpoint, str) or not endpoint.startswith(("https://", "http://")):
            raise ValueError(f"endpoint must be an http(s):// URL, not {endpoint!r}")
        given = [name for name, v in (("api_key", api_key), ("token", token)) if v is not None]
        if has_provider:
            given.append("token_provider")
        if len(given) > 1:
            raise ValueError(f"give one credential, not {' and '.join(given)}")
        if timeout <= 0 or stream_idle_timeout <= 0:
            raise ValueError("timeouts must be positive")
        if max_retries < 0 or max_retry_after < 0:
            raise ValueError("max_retries and max_retry_after must not be negative")
        if token_ttl is not None and token_ttl < 1:
            raise ValueError("token_ttl must be at least 1 second")
        return cls(
            endpoint=endpoint.rstrip("/"),
            api_key=api_key,
            static_token=token,
            has_provider=has_provider,
            agent_id=agent_id,
            token_ttl=token_ttl,
            scopes=tuple(scopes) if scopes is not None else None,
            timeout=timeout,
            stream_idle_timeout=stream_idle_timeout,
            retry=RetryPolicy(max_retries=max_retries, max_retry_after=max_retry_after),
            clock=clock,
        )


def _no_guard() -> None:
    return None


class Core:
    """The state and decisions a client's driver runs: its token, and every request's steps."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._held: HeldToken | None = None
        self.guard: Callable[[], None] = _no_guard
        """Called before guarded work; an ephemeral agent raises ``AgentExpiredError`` here."""

    # ------------------------------------------------------------------ tokens

    @property
    def refreshable(self) -> bool:
        """Whether a new token can be had (every credential but a static token)."""
        return self.settings.static_token is None

    @property
    def token_info(self) -> TokenInfo | None:
        """The token held now, if any."""
        return self._held.info if self._held is not None else None

    def _invalidate(self, token: str) -> None:
        if self._held is not None and self._held.info.token == token:
            self._held = None

    def bearer(self) -> Steps[HeldToken]:
        """The token to send: the held one while it is fresh, else a new one."""
        held = self._held
        static = self.settings.static_token
        if static is not None:
            if held is None:
                held = self._held = from_jwt(static)
            return held
        if held is not None and self.settings.clock() < held.refresh_at:
            return held
        fresh: HeldToken = yield Locked(self._refresh(stale=held))
        return fresh

    def _refresh(self, stale: HeldToken | None) -> Steps[HeldToken]:
        # Under the token lock: a caller that waited for it takes the token obtained meanwhile.
        current = self._held
        if current is not None and current is not stale:
            return current
        if self.settings.has_provider:
            token: str = yield ProvideToken()
            if not isinstance(token, str) or not token:
                raise TypeError("the token provider must return a non-empty str")
            held = from_jwt(token)
        else:
            asked_at = self.settings.clock()
            grant = yield from self.call(
                _calls.exchange(
                    self.settings.api_key,
                    agent=self.settings.agent_id,
                    scopes=self.settings.scopes,
                    ttl=self.settings.token_ttl,
                )
            )
            held = from_grant(grant, asked_at)
        self._held = held
        return held

    def authenticate(self) -> Steps[TokenInfo]:
        """The token held now, obtaining one if none is held or it is near expiry."""
        self.guard()
        held = yield from self.bearer()
        return held.info

    def exchange(self, *, agent: str | None, scopes: Sequence[str] | None, ttl: int | None) -> Steps[TokenGrant]:
        """A new token from the client's API key (or certificate), not held by the client."""
        grant = yield from self.call(_calls.exchange(self.settings.api_key, agent=agent, scopes=scopes, ttl=ttl))
        return grant

    def revoke(self) -> Steps[None]:
        """Revokes the held token and forgets it; a token the hub already refuses counts as revoked."""
        held = self._held
        if held is None and self.settings.static_token is not None:
            held = from_jwt(self.settings.static_token)
        if held is None:
            return
        self._held = None
        try:
            yield from self.call(_calls.revoke(held.info.token))
        except AuthenticationError:
            return

    # ----------------------------------------------------------------- requests

    def _url(self, path: str, query: dict[str, str | int] | None = None) -> str:
        url = self.settings.endpoint + path
        return f"{url}?{urlencode(query)}" if query else url

    def call(self, c: Call[T]) -> Steps[T]:
        """Sends ``c`` with the token, retrying and refreshing as the module says; its parsed answer."""
        if c.guarded:
            self.guard()
        what = f"{c.method} {c.path}"
        url = self._url(c.path, dict(c.query))
        base = {"accept": "application/json", **c.headers}
        content: bytes | None = None
        if c.body is not None:
            content = _encode(c.body, what)
            base["content-type"] = "application/json"
        refreshed = False
        retries = 0
        landed = False  # an earlier attempt may have reached the hub
        while True:
            headers = dict(base)
            token: str | None = None
            if c.auth:
                token = (yield from self.bearer()).info.token
                headers["authorization"] = f"Bearer {token}"
            request = HttpRequest(c.method, url, headers, content, timeouts(self.settings.timeout))
            error: AgentDBError
            try:
                raw: RawResponse = yield Send(request)
            except TransportError as e:
                error, landed = e, True
            else:
                if 200 <= raw.status < 300:
                    return c.parse(_decode(raw, what))
                error = self._error(raw)
                if raw.status == 404 and c.idempotent_delete and landed:
                    return c.parse(None)
                if raw.status == 401 and token is not None and self.refreshable and not refreshed:
                    # Expired or revoked under us: one fresh token, then the same request again.
                    refreshed = True
                    self._invalidate(token)
                    continue
            yield from self._wait_or_raise(error, retries)
            retries += 1

    def _wait_or_raise(self, error: AgentDBError, retries: int) -> Steps[None]:
        """Sleeps before retry number ``retries`` (0 for the first), or raises ``error`` when it
        is not retryable or the retries are spent."""
        if not retryable(error) or retries >= self.settings.retry.max_retries:
            raise error
        yield Sleep(self.settings.retry.delay(retries, error))

    def _error(self, raw: RawResponse) -> AgentDBError:
        retry_after = parse_retry_after(raw.headers.get("retry-after"), self.settings.clock())
        text = raw.content.decode("utf-8", "replace")
        return error_from_body(raw.status, text, retry_after, raw.headers.get("x-request-id"))

    # -------------------------------------------------------------- iterations

    def list_all(self, limit: int | None) -> ItemSteps[Episode]:
        """Every live episode, a page at a time."""
        cursor: str | None = None
        while True:
            page = yield from self.call(_calls.list_episodes(cursor, limit))
            for episode in page.episodes:
                yield Emit(episode)
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def changes(self, since: str | None) -> ItemSteps[Change]:
        """The tenant's changes after ``since``, as they happen, each once and in order.

        A dropped connection is resumed with ``Last-Event-ID``; a stream the hub ends because
        the token expired is resumed with a fresh token. Raises the typed error when the hub
        ends the stream for another reason, or after ``max_retries`` failed reconnections in
        a row.
        """
        at = _StreamPosition(last=since)
        while True:
            self.guard()
            token = (yield from self.bearer()).info.token
            headers = {"authorization": f"Bearer {token}", "accept": "text/event-stream"}
            if at.last is not None:
                headers["last-event-id"] = at.last
            timeout = timeouts(self.settings.timeout, read=self.settings.stream_idle_timeout)
            request = HttpRequest("GET", self._url(_calls.CHANGES_PATH), headers, None, timeout)
            try:
                opened: OpenedStream | RawResponse = yield OpenStream(request)
            except TransportError as e:
                at.failures += 1
                yield from self._wait_or_raise(e, at.failures - 1)
                continue
            if isinstance(opened, RawResponse):
                error = self._error(opened)
                if opened.status == 401 and self.refreshable and not at.refreshed:
                    at.refreshed = True
                    self._invalidate(token)
                    continue
                at.failures += 1
                yield from self._wait_or_raise(error, at.failures - 1)
                continue
            try:
                yield from self._read(opened, at)
            except TransportError as e:
                yield CloseStream(opened)
                at.failures += 1
                yield from self._wait_or_raise(e, at.failures - 1)
                continue
            # The hub ended the stream because the token expired: at once, with a fresh one.
            yield CloseStream(opened)
            self._invalidate(token)

    def _read(self, opened: OpenedStream, at: _StreamPosition) -> ItemSteps[Change]:
        """Emits the changes of one opened stream after ``at.last``. Returns when the hub ends
        the stream because the token expired (and the credential can be refreshed); raises
        ``TransportError`` when the connection drops or ends without a word, and the typed
        error when the hub ends it for another reason."""
        parser = SSEParser()
        while True:
            chunk: bytes | None = yield ReadStream(opened)
            if chunk is None:
                raise TransportError("GET /v1/changes: the change stream ended")
            for event in parser.feed(chunk):
                if event.event == "error":
                    error = error_from_body(0, event.data, None, opened.request_id)
                    if isinstance(error, TokenExpiredError) and self.refreshable:
                        return
                    raise error
                if event.event not in ("put", "deleted"):
                    continue
                change = Change.from_json(_loads(event.data, "a change event"))
                cursor = event.id or change.cursor
                if at.last is not None and not _is_after(cursor, at.last):
                    continue
                at.last, at.failures, at.refreshed = cursor, 0, False
                yield Emit(change)


@dataclass(slots=True)
class _StreamPosition:
    """Where a change stream is: the last cursor emitted, the failed connections since, and
    whether a 401 on opening was already answered with a fresh token."""

    last: str | None
    failures: int = 0
    refreshed: bool = False


def _encode(body: Any, what: str) -> bytes:
    try:
        return json.dumps(body, allow_nan=False, separators=(",", ":")).encode()
    except (TypeError, ValueError) as e:
        raise InvalidRequestError(f"{what}: the body cannot be sent as JSON: {e}", code="invalid_request") from e


def _loads(text: str | bytes, what: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as e:
        raise InvalidResponseError(f"{what} is not JSON: {e}") from e


def _decode(raw: RawResponse, what: str) -> Any:
    if raw.status == 204 or not raw.content.strip():
        return None
    return _loads(raw.content, f"the answer to {what}")


def error_from_body(status: int, text: str, retry_after: float | None, request_id: str | None = None) -> AgentDBError:
    """The typed error for an error body ``{"error": {"code", "message"}}`` (any text is
    accepted: a proxy's page keeps the status's code and its first line). ``status`` 0 means
    the status is the code's (a stream's ``error`` event); ``request_id`` is the answer's
    ``x-request-id``."""
    code: str | None = None
    message = text
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        if isinstance(err.get("code"), str):
            code = err["code"]
        if isinstance(err.get("message"), str):
            message = err["message"]
    if status == 0:
        code = code or "internal"
        status = status_for(code)
    code = code or default_code(status)
    if not message.strip():
        message = f"HTTP {status}"
    return error_for(status, code, message, retry_after, request_id)


def _is_after(a: str, b: str) -> bool:
    """Whether cursor ``a`` comes after ``b`` (numeric cursors compare as numbers)."""
    if a.isdigit() and b.isdigit():
        return int(a) > int(b)
    return a != b
