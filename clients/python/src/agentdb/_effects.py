"""The effects the client's sans-IO core asks its driver to perform.

The core (``_core.Core``) is written as generators that *yield* effects and receive their
results: ``Send`` an HTTP request and get the whole answer, ``Sleep`` before a retry, ask the
caller's token provider (``ProvideToken``), run steps under the token lock (``Locked``), and
read a change stream (``OpenStream``, ``ReadStream``, ``CloseStream``). Streams also yield
``Emit``: an item for the caller's iterator.

::

    core steps                        driver (AgentDBClient / AsyncAgentDBClient)
      yield Send(request)       ──►     httpx send            ──► RawResponse sent back
      yield Sleep(0.5)          ──►     sleep / await sleep
      yield Emit(change)        ──►     handed to the caller's for / async for

A failure of the transport is thrown back into the generator, already translated into the
client's errors (``_transport.transport_error``). So the sync and async clients share every
decision — what to send, how to parse, when to retry or refresh — and differ only in I/O.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import httpx

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """A request, fully built: the driver only sends it."""

    method: str
    url: str
    headers: Mapping[str, str]
    content: bytes | None
    timeout: httpx.Timeout

    @property
    def what(self) -> str:
        """``METHOD path``, for error messages."""
        return f"{self.method} {httpx.URL(self.url).path}"


@dataclass(frozen=True, slots=True)
class RawResponse:
    """An answer, with its whole body."""

    status: int
    headers: httpx.Headers
    content: bytes


@dataclass(eq=False, slots=True)
class OpenedStream:
    """A streaming answer being read; ``handle`` belongs to the driver that opened it;
    ``request_id`` is the answer's ``x-request-id``."""

    handle: Any
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class Send:
    """Send a request; the result is its ``RawResponse``."""

    request: HttpRequest


@dataclass(frozen=True, slots=True)
class Sleep:
    """Wait before a retry (through the client's injectable sleep)."""

    seconds: float


@dataclass(frozen=True, slots=True)
class ProvideToken:
    """Call the caller's token provider; the result is the token (a ``str``)."""


@dataclass(frozen=True, slots=True)
class Locked:
    """Run ``steps`` while holding the client's token lock; the result is theirs."""

    steps: Steps[Any]


@dataclass(frozen=True, slots=True)
class OpenStream:
    """Send a request whose answer is read as it arrives: an ``OpenedStream`` when it
    succeeded, else the ``RawResponse`` with its whole body."""

    request: HttpRequest


@dataclass(frozen=True, slots=True)
class ReadStream:
    """The next bytes of an opened stream, or ``None`` at its end."""

    stream: OpenedStream


@dataclass(frozen=True, slots=True)
class CloseStream:
    """Close an opened stream (drivers also close any left open when the steps end)."""

    stream: OpenedStream


@dataclass(frozen=True, slots=True)
class Emit(Generic[T]):
    """An item for the caller's iterator."""

    item: T


Effect = Send | Sleep | ProvideToken | Locked | OpenStream | ReadStream | CloseStream

Steps = Generator[Effect, Any, T]
"""Core steps that end with a ``T``."""

ItemSteps = Generator[Effect | Emit[T], Any, None]
"""Core steps that emit ``T`` items."""
