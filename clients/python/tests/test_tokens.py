"""Tokens against a real hub: cached, refreshed before expiry by the client's clock, refreshed
once after a 401 (a token really expired at the hub, or revoked), shared by concurrent callers."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

import agentdb
from agentdb import AgentDBClient

from support import FakeClock, Hub, RequestLog, Tenant

Logged = Callable[..., AgentDBClient]


def test_the_token_is_cached(hub: Hub, tenant: Tenant, log: RequestLog, logged: Logged) -> None:
    c = logged(tenant, api_key=tenant.api_key)
    for _ in range(5):
        c.stats()
    assert log.count("POST", "/v1/token") == 1
    assert {s.headers["authorization"] for s in log.sent if s.path == "/v1/stats"} == {f"Bearer {c.token_info.token}"}  # type: ignore[union-attr]
    assert log.sent[0].headers["authorization"] == f"ApiKey {tenant.api_key}"


def test_refreshed_before_expiry_by_the_clients_clock(
    hub: Hub, tenant: Tenant, log: RequestLog, clock: FakeClock, logged: Logged
) -> None:
    c = logged(tenant, api_key=tenant.api_key, clock=clock)
    c.stats()
    first = c.token_info
    assert first is not None and first.expires_at == pytest.approx(clock.now + 300, abs=2)
    clock.advance(239)  # within the 5-minute token's last minute only from 240 s on
    c.stats()
    assert log.count("POST", "/v1/token") == 1
    clock.advance(2)
    c.stats()
    assert log.count("POST", "/v1/token") == 2
    second = c.token_info
    assert second is not None and second.token != first.token
    assert second.expires_at == pytest.approx(clock.now + 300, abs=2)
    # The first token was not revoked: it is simply no longer used.
    with hub.client(tenant, token=first.token) as old:
        assert old.stats().episodes == 0


def test_short_tokens_are_refreshed_half_way(
    hub: Hub, tenant: Tenant, log: RequestLog, clock: FakeClock, logged: Logged
) -> None:
    c = logged(tenant, api_key=tenant.api_key, clock=clock, token_ttl=20)
    c.stats()
    clock.advance(9)
    c.stats()
    assert log.count("POST", "/v1/token") == 1
    clock.advance(2)
    c.stats()
    assert log.count("POST", "/v1/token") == 2


def test_a_token_expired_at_the_hub_is_replaced_once(hub: Hub, tenant: Tenant, log: RequestLog, logged: Logged) -> None:
    now = time.time()
    tokens = [hub.forge_token(tenant.name, iat=now - 400, exp=now - 100), hub.issue_token(tenant.name)]
    handed: list[str] = []

    def provider() -> str:
        handed.append(tokens[len(handed)])
        return handed[-1]

    c = logged(tenant, token_provider=provider)
    assert c.stats().episodes == 0
    assert handed == tokens
    assert [(s.path, s.status) for s in log.sent] == [("/v1/stats", 401), ("/v1/stats", 200)]
    assert [s.headers["authorization"] for s in log.sent] == [f"Bearer {t}" for t in tokens]

    # A provider that only has expired tokens: one refresh, then the typed error.
    log.sent.clear()
    expired = logged(tenant, token_provider=lambda: hub.forge_token(tenant.name, iat=now - 400, exp=now - 100))
    with pytest.raises(agentdb.TokenExpiredError) as e:
        expired.stats()
    assert (e.value.code, e.value.status) == ("token_expired", 401)
    assert [s.status for s in log.sent] == [401, 401]


def test_a_token_revoked_behind_the_clients_back_is_replaced(
    hub: Hub, tenant: Tenant, log: RequestLog, logged: Logged
) -> None:
    c = logged(tenant, api_key=tenant.api_key)
    first = c.authenticate().token
    with hub.client(tenant, token=first) as other:
        other.revoke_token()
    assert c.stats().episodes == 0
    assert log.count("POST", "/v1/token") == 2
    assert [s.status for s in log.sent if s.path == "/v1/stats"] == [401, 200]
    assert c.token_info is not None and c.token_info.token != first


def test_concurrent_callers_share_one_token(hub: Hub, tenant: Tenant, log: RequestLog, logged: Logged) -> None:
    c = logged(tenant, api_key=tenant.api_key)
    barrier = threading.Barrier(8)
    failures: list[BaseException] = []

    def work() -> None:
        try:
            barrier.wait(10)
            c.stats()
        except BaseException as e:  # reported below
            failures.append(e)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert failures == []
    assert log.count("GET", "/v1/stats") == 8
    assert log.count("POST", "/v1/token") == 1


def test_token_info_reads_the_claims_of_a_given_token(hub: Hub, tenant: Tenant) -> None:
    token = hub.issue_token(tenant.name, agent="reader-1", ttl=120, scope="read")
    with hub.client(tenant, token=token) as c:
        info = c.authenticate()
    assert (info.tenant, info.agent, info.scopes) == (tenant.name, "reader-1", ("read",))
    assert info.expires_at == pytest.approx(time.time() + 120, abs=5)
    assert "token=" not in repr(info), "the token itself stays out of reprs"
