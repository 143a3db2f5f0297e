"""Typed errors: one class per stable error code of the gateway, and the client's own.

Every error the hub answers is ``{"error": {"code", "message"}}`` with an HTTP status
(docs/http.md). The client raises the class for the code, so callers catch what they mean::

    try:
        client.get_episode(episode_id)
    except agentdb.NotFoundError:
        ...

Classes that share a status share a parent: ``TokenExpiredError`` is an
``AuthenticationError`` (401), ``TenantMismatchError`` and ``QuotaExceededError`` are
``ForbiddenError`` s (403).
Errors the client makes itself (no answer, an expired agent) have status 0.
"""

from __future__ import annotations

__all__ = [
    "AgentDBError",
    "AgentExpiredError",
    "AuthenticationError",
    "ForbiddenError",
    "InternalError",
    "InvalidRequestError",
    "InvalidResponseError",
    "NotFoundError",
    "OverloadedError",
    "QuotaExceededError",
    "RequestTimeoutError",
    "TLSError",
    "TenantMismatchError",
    "TokenExpiredError",
    "TooLargeError",
    "TransportError",
    "UnavailableError",
    "error_for",
]


def _one_line(text: str) -> str:
    """The first non-empty line of ``text``, stripped."""
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


class AgentDBError(Exception):
    """The base of every error this package raises.

    Attributes:
        code: the hub's stable code (``not_found``, ``token_expired``, …) or the client's
            (``connection``, ``timeout``, ``tls``, ``invalid_response``, ``agent_expired``).
        status: the HTTP status; 0 when no answer was received.
        message: one line, for people.
        retry_after: for 429 and 503, the seconds the hub asked the client to wait.
        request_id: the hub's id of the request (its ``x-request-id`` header), under which the
            hub's audit log records it: quote it to the hub's operator. ``None`` when no answer
            was received.
    """

    code: str
    status: int
    message: str
    retry_after: float | None
    request_id: str | None

    def __init__(
        self,
        message: str,
        *,
        code: str,
        status: int = 0,
        retry_after: float | None = None,
        request_id: str | None = None,
    ) -> None:
        self.message = _one_line(message) or code
        self.code = code
        self.status = status
        self.retry_after = retry_after
        self.request_id = request_id
        super().__init__(self.message)

    def __str__(self) -> str:
        where = f", HTTP {self.status}" if self.status else ""
        return f"{self.message} ({self.code}{where})"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, code={self.code!r}, status={self.status})"


class InvalidRequestError(AgentDBError):
    """400 or 422 ``invalid_request``: malformed, or breaks a rule; nothing was written."""


class AuthenticationError(AgentDBError):
    """401 ``unauthenticated``: no token, a forged or revoked one, an unknown API key."""


class TokenExpiredError(AuthenticationError):
    """401 ``token_expired``: the token expired (refreshable credentials get a new one first)."""


class ForbiddenError(AgentDBError):
    """403 ``forbidden``: the token's scope does not allow it."""


class TenantMismatchError(ForbiddenError):
    """403 ``tenant_mismatch``: the token (or key) and the client certificate name different tenants."""


class QuotaExceededError(ForbiddenError):
    """403 ``quota_exceeded``: the write would pass one of the tenant's quotas (episodes, stored
    bytes, writes per second); nothing was written. Not retried."""


class NotFoundError(AgentDBError):
    """404 ``not_found``: no such episode for this tenant (another tenant's id answers the same)."""


class TooLargeError(AgentDBError):
    """413 ``too_large``: the body, or a field of it, is over the hub's limit; nothing was written."""


class OverloadedError(AgentDBError):
    """429 ``overloaded``: too many requests of the tenant in flight (raised after the retries)."""


class UnavailableError(AgentDBError):
    """503 ``unavailable``: the hub cannot serve now (raised after the retries)."""


class InternalError(AgentDBError):
    """500 ``internal`` (or another 5xx): a fault on the hub. Not retried."""


class InvalidResponseError(AgentDBError):
    """The hub's answer is not what the gateway's API promises."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="invalid_response")


class TransportError(AgentDBError):
    """The hub could not be reached or the connection failed (after the retries)."""

    def __init__(self, message: str, *, code: str = "connection") -> None:
        super().__init__(message, code=code)


class RequestTimeoutError(TransportError):
    """No answer within the timeout (after the retries)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="timeout")


class TLSError(TransportError):
    """The TLS handshake failed: no or a refused client certificate, or an untrusted hub.

    Not retried: the same handshake would fail the same way.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message, code="tls")


class AgentExpiredError(AgentDBError):
    """Work was asked of an ephemeral agent after its lifetime ended or after ``destroy()``."""

    def __init__(self, message: str = "the agent's lifetime has ended") -> None:
        super().__init__(message, code="agent_expired")


_BY_CODE: dict[str, tuple[type[AgentDBError], int]] = {
    "invalid_request": (InvalidRequestError, 400),
    "unauthenticated": (AuthenticationError, 401),
    "token_expired": (TokenExpiredError, 401),
    "forbidden": (ForbiddenError, 403),
    "tenant_mismatch": (TenantMismatchError, 403),
    "quota_exceeded": (QuotaExceededError, 403),
    "not_found": (NotFoundError, 404),
    "too_large": (TooLargeError, 413),
    "overloaded": (OverloadedError, 429),
    "unavailable": (UnavailableError, 503),
    "internal": (InternalError, 500),
}
"""The hub's stable codes: the class raised for each, and the status it usually comes with."""

_CODE_BY_STATUS: dict[int, str] = {
    400: "invalid_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    413: "too_large",
    422: "invalid_request",
    429: "overloaded",
    503: "unavailable",
}


def default_code(status: int) -> str:
    """The stable code a status stands for, when an answer carried none."""
    if status in _CODE_BY_STATUS:
        return _CODE_BY_STATUS[status]
    return "internal" if status >= 500 else "unknown"


def status_for(code: str) -> int:
    """The status the hub answers ``code`` with, for errors that arrive without one (a change
    stream's ``error`` event); 0 for a code the hub does not answer."""
    return _BY_CODE[code][1] if code in _BY_CODE else 0


def error_for(
    status: int,
    code: str,
    message: str,
    retry_after: float | None = None,
    request_id: str | None = None,
) -> AgentDBError:
    """The typed error for an answer's status and code (an unknown code falls back to the status's)."""
    known = _BY_CODE.get(code) or _BY_CODE.get(default_code(status))
    cls = known[0] if known is not None else AgentDBError
    return cls(message, code=code, status=status, retry_after=retry_after, request_id=request_id)
