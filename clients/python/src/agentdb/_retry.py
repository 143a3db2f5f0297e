"""When a failed request is tried again, and after how long.

Retried: 429 ``overloaded`` and 503 ``unavailable`` answers, timeouts and connection failures
(not TLS handshake failures, which would fail the same way again). Every request the client
makes is safe to repeat: stores carry client-minted ids, updates set values, a delete whose
earlier attempt may have landed treats 404 as done, and the rest only read. The wait is the
hub's ``Retry-After`` (capped), or exponential backoff with jitter.
"""

from __future__ import annotations

import datetime as _dt
import email.utils
import random
from dataclasses import dataclass

from .errors import AgentDBError, TLSError, TransportError

BACKOFF_BASE = 0.5
"""Seconds before the first retry without ``Retry-After``; doubles with each retry."""
BACKOFF_MAX = 8.0
"""The longest backoff between two attempts, in seconds."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How many retries, and the longest wait a ``Retry-After`` may impose."""

    max_retries: int = 3
    max_retry_after: float = 30.0

    def delay(self, retry: int, error: AgentDBError) -> float:
        """Seconds to wait before retry number ``retry`` (0 for the first) after ``error``."""
        if error.retry_after is not None:
            return min(error.retry_after, self.max_retry_after)
        backoff = min(BACKOFF_BASE * 2.0**retry, BACKOFF_MAX)
        return backoff * random.uniform(0.75, 1.25)


def retryable(error: AgentDBError) -> bool:
    """Whether the same request may succeed if tried again."""
    if isinstance(error, TLSError):
        return False
    return isinstance(error, TransportError) or error.status in (429, 503)


def parse_retry_after(value: str | None, now: float) -> float | None:
    """``Retry-After`` in seconds: delay-seconds or an HTTP date (``now`` is Unix seconds)."""
    if value is None:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            at = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        if at.tzinfo is None:
            at = at.replace(tzinfo=_dt.timezone.utc)
        return max(0.0, at.timestamp() - now)
    return seconds if seconds >= 0 else None
