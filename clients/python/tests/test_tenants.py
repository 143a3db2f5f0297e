"""Two tenants on one hub are isolated: B cannot see, change or stream A's episodes."""

from __future__ import annotations

import uuid

import pytest

import agentdb

from support import Hub


def test_tenant_b_cannot_reach_tenant_a(hub: Hub) -> None:
    a_tenant, b_tenant = hub.tenant("a"), hub.tenant("b")
    marker = f"marker-{uuid.uuid4().hex}"
    with hub.client(a_tenant) as a, hub.client(b_tenant) as b:
        a_ids = {
            a.store_episode(task=f"{marker} invoice {i}", input=marker, reward=0.9, tags=[marker]).id for i in range(3)
        }
        b_own = b.store_episode(task="b's own episode", reward=0.5).id
        a_id = sorted(a_ids)[0]

        # Reads: nothing of A's.
        assert [e.id for e in b.iter_episodes()] == [b_own]
        assert all(m.episode.id == b_own for m in b.query(marker, k=10).matches)
        assert b.query(marker, k=10, tags=[marker]).matches == ()
        assert [c.id for c in b.changes_page().changes] == [b_own]
        with b.changes() as stream:
            first = next(stream)
        assert first.id == b_own, "B's stream starts with B's own change"
        stats = b.stats()
        assert (stats.episodes, [t.task for t in stats.top_tasks]) == (1, ["b's own episode"])

        # A's id answers 404, exactly like an id that does not exist.
        for attempt in (
            lambda: b.get_episode(a_id),
            lambda: b.update_episode(a_id, reward=0.0, critique="overwritten by b"),
            lambda: b.delete_episode(a_id),
        ):
            with pytest.raises(agentdb.NotFoundError) as e:
                attempt()
            assert (e.value.code, e.value.status, e.value.message) == ("not_found", 404, "no such episode")

        # A's episodes are untouched.
        assert {e.id for e in a.iter_episodes()} == a_ids
        untouched = a.get_episode(a_id)
        assert (untouched.reward, untouched.critique) == (0.9, None)
        assert {m.episode.id for m in a.query(marker, k=10, tags=[marker]).matches} == a_ids
        assert a.stats().episodes == 3


def test_a_token_of_one_tenant_is_refused_with_the_others_certificate(hub: Hub) -> None:
    a_tenant, b_tenant = hub.tenant("a"), hub.tenant("b")
    with hub.client(a_tenant) as a:
        a.store_episode(task="secret of a", reward=0.5)
        token = a.authenticate().token
    with hub.client(b_tenant, token=token) as b_with_a_token, pytest.raises(agentdb.TenantMismatchError):
        next(b_with_a_token.iter_episodes())
