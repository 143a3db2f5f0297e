"""Fixtures: one real hub per test session (stopped and removed at the end), a fresh tenant and
client per test, and the test doubles of ``support``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

import agentdb

from support import FakeClock, Hub, RequestLog, Sleeps, Tenant


@pytest.fixture(scope="session")
def hub() -> Iterator[Hub]:
    """One hub for the whole session."""
    h = Hub()
    try:
        yield h
    finally:
        h.stop()


@pytest.fixture
def tenant(hub: Hub) -> Tenant:
    """A tenant of this test alone."""
    return hub.tenant("a")


@pytest.fixture
def client(hub: Hub, tenant: Tenant) -> Iterator[agentdb.AgentDBClient]:
    """A client of ``tenant`` with its API key."""
    with hub.client(tenant) as c:
        yield c


@pytest.fixture
def clock() -> FakeClock:
    """A clock the test moves."""
    return FakeClock()


@pytest.fixture
def sleeps() -> Sleeps:
    """A sleep that only records."""
    return Sleeps()


@pytest.fixture
def log() -> RequestLog:
    """A log of the requests a client sends (pass ``log.hooks()`` as httpx event hooks)."""
    return RequestLog()


@pytest.fixture
def logged(hub: Hub, log: RequestLog) -> Iterator[Callable[..., agentdb.AgentDBClient]]:
    """Makes clients of a tenant whose requests go to ``log``: ``logged(tenant, **client_kwargs)``."""
    made: list[httpx.Client] = []

    def make(tenant: Tenant, **kwargs: Any) -> agentdb.AgentDBClient:
        http = httpx.Client(verify=hub.ssl_context(tenant), event_hooks=log.hooks())
        made.append(http)
        return agentdb.AgentDBClient(hub.endpoint, http_client=http, **kwargs)

    yield make
    for http in made:
        http.close()
