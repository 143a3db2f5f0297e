"""Fixtures: one real hub per test session (stopped and removed at the end), a fresh tenant and
client per test, and the test doubles of ``support``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support import FakeClock, Hub, RequestLog, Sleeps, Tenant

import agentdb


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
