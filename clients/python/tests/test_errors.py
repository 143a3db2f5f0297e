"""Typed errors from a real hub: each bad request raises its class with the hub's code and
status, in one line, and writes nothing."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import agentdb
from agentdb import AgentDBClient, NewEpisode, Vector

from support import Hub, Tenant


@pytest.fixture
def written(client: AgentDBClient) -> Iterator[Callable[[], None]]:
    """Call it to assert that nothing was written since the test began: the same episodes,
    and no new change in the tenant's change log."""
    keep = client.store_episode(task="already there", reward=0.5)
    before = (client.stats().episodes, client.changes_page().next_cursor)

    def nothing() -> None:
        assert (client.stats().episodes, client.changes_page().next_cursor) == before
        assert client.get_episode(keep.id).task == "already there"

    yield nothing


def expect(
    error: type[agentdb.AgentDBError], code: str, status: int, call: Callable[[], object]
) -> agentdb.AgentDBError:
    with pytest.raises(error) as raised:
        call()
    e = raised.value
    assert (type(e), e.code, e.status) == (error, code, status), repr(e)
    # An answer of the hub names its request (the id its audit log records it under); an
    # error raised before anything was sent has none.
    assert (e.request_id is not None and len(e.request_id) == 36) == (status != 0), repr(e)
    assert e.message and "\n" not in e.message and "\n" not in str(e)
    return e


def test_malformed_bodies_are_400(client: AgentDBClient, written: Callable[[], None]) -> None:
    expect(agentdb.InvalidRequestError, "invalid_request", 400, lambda: client.query("invoice", outcome="sometimes"))  # type: ignore[arg-type]
    expect(
        agentdb.InvalidRequestError,
        "invalid_request",
        400,
        lambda: client.store_episode(task="t", reward=0.5, session="not-a-uuid"),
    )
    expect(agentdb.InvalidRequestError, "invalid_request", 400, lambda: client.store_episode(task="t", reward="high"))  # type: ignore[arg-type]
    expect(agentdb.InvalidRequestError, "invalid_request", 400, lambda: client.list_episodes(cursor="zzz"))
    written()


def test_rule_breaking_bodies_are_422(client: AgentDBClient, written: Callable[[], None]) -> None:
    expect(agentdb.InvalidRequestError, "invalid_request", 422, lambda: client.store_episode(task="", reward=0.5))
    expect(agentdb.InvalidRequestError, "invalid_request", 422, lambda: client.store_episodes([]))
    expect(
        agentdb.InvalidRequestError,
        "invalid_request",
        422,
        lambda: client.store_episodes([NewEpisode(task="fine", reward=0.5), NewEpisode(task="", reward=0.1)]),
    )
    expect(agentdb.InvalidRequestError, "invalid_request", 422, lambda: client.query("invoice", k=0))
    expect(agentdb.InvalidRequestError, "invalid_request", 422, lambda: client.query("invoice", k=1_000_000))
    expect(
        agentdb.InvalidRequestError, "invalid_request", 422, lambda: client.query(Vector("other-model", [0.5] * 384))
    )
    expect(
        agentdb.InvalidRequestError,
        "invalid_request",
        422,
        lambda: client.store_episode(task="t", reward=0.5, embedding=Vector("agentdb-lexical-v1", [0.5, 0.5])),
    )
    written()


def test_a_query_vector_of_the_wrong_dimension_is_422(client: AgentDBClient) -> None:
    # The tenant's index (and with it its dimension) exists once it holds an episode.
    client.store_episode(task="summarise invoice", reward=0.5)
    expect(
        agentdb.InvalidRequestError,
        "invalid_request",
        422,
        lambda: client.query(Vector("agentdb-lexical-v1", [0.5, 0.5])),
    )


def test_a_body_that_is_not_json_is_refused_before_sending(client: AgentDBClient, written: Callable[[], None]) -> None:
    e = expect(
        agentdb.InvalidRequestError, "invalid_request", 0, lambda: client.store_episode(task="t", reward=float("nan"))
    )
    assert "JSON" in e.message
    written()


def test_unknown_ids_are_404(client: AgentDBClient, written: Callable[[], None]) -> None:
    unknown = str(uuid.uuid4())
    expect(agentdb.NotFoundError, "not_found", 404, lambda: client.get_episode(unknown))
    expect(agentdb.NotFoundError, "not_found", 404, lambda: client.update_episode(unknown, reward=0.1))
    expect(agentdb.NotFoundError, "not_found", 404, lambda: client.get_episode("not-a-uuid"))
    written()


def test_deleting_an_unknown_id_is_404_and_deletes_nothing(client: AgentDBClient) -> None:
    keep = client.store_episode(task="keep me", reward=0.5)
    expect(agentdb.NotFoundError, "not_found", 404, lambda: client.delete_episode(str(uuid.uuid4())))
    # The hub keeps a tombstone for the unknown id (so that a late copy of it cannot appear),
    # but no episode is gone.
    assert client.stats().episodes == 1
    assert [e.id for e in client.iter_episodes()] == [keep.id]


def test_too_large_is_413(client: AgentDBClient, written: Callable[[], None]) -> None:
    expect(agentdb.TooLargeError, "too_large", 413, lambda: client.store_episode(task="x" * 70_000, reward=0.5))
    e = expect(
        agentdb.TooLargeError,
        "too_large",
        413,
        lambda: client.store_episode(task="t", output="y" * (9 << 20), reward=0.5),
    )
    assert "8388608" in e.message
    written()


def test_forged_and_expired_tokens_are_401(hub: Hub, tenant: Tenant, written: Callable[[], None]) -> None:
    now = time.time()
    forged = hub.forge_token(tenant.name, iat=now, exp=now + 300, key=Ed25519PrivateKey.generate())
    with hub.client(tenant, token=forged) as c:
        expect(agentdb.AuthenticationError, "unauthenticated", 401, lambda: c.store_episode(task="t", reward=0.5))
    with hub.client(tenant, token="not.a.token") as c:
        expect(agentdb.AuthenticationError, "unauthenticated", 401, lambda: c.stats())
    # A static token cannot be refreshed: its expiry is the caller's to handle.
    expired = hub.forge_token(tenant.name, iat=now - 400, exp=now - 100)
    with hub.client(tenant, token=expired) as c:
        expect(agentdb.TokenExpiredError, "token_expired", 401, lambda: c.store_episode(task="t", reward=0.5))
    with hub.client(tenant, api_key="adb_nope_nope") as c:
        e = expect(agentdb.AuthenticationError, "unauthenticated", 401, lambda: c.store_episode(task="t", reward=0.5))
        assert "API key" in e.message
    written()


def test_scopes_are_enforced_with_403(hub: Hub, tenant: Tenant, written: Callable[[], None]) -> None:
    with hub.client(tenant, api_key=hub.api_key(tenant.name, scope="read")) as reader:
        assert reader.stats().episodes == 1
        e = expect(agentdb.ForbiddenError, "forbidden", 403, lambda: reader.store_episode(task="t", reward=0.5))
        assert "write" in e.message
        expect(agentdb.ForbiddenError, "forbidden", 403, lambda: reader.changes_page())
        # More scope than the key grants.
        expect(agentdb.ForbiddenError, "forbidden", 403, lambda: reader.exchange_token(scopes=["read", "write"]))
    written()


def test_a_credential_of_another_tenant_than_the_certificate_is_403(hub: Hub, tenant: Tenant) -> None:
    other = hub.tenant("b")
    with hub.client(tenant, api_key=other.api_key) as c:
        expect(agentdb.TenantMismatchError, "tenant_mismatch", 403, lambda: c.stats())
    with hub.client(tenant, token=hub.issue_token(other.name)) as c:
        expect(agentdb.TenantMismatchError, "tenant_mismatch", 403, lambda: c.store_episode(task="t", reward=0.5))
    with hub.client(other) as c:
        assert c.stats().episodes == 0
