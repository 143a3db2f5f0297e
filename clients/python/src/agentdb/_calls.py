"""Every gateway endpoint as a ``Call``: what to send and how to read the answer (docs/http.md).

Both clients build their requests here and nowhere else; ``_core.Core.call`` sends a ``Call``
(with the token, retries and refresh) and hands the decoded JSON to its ``parse``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import quote

from . import _json
from ._ids import uuid7
from .errors import InvalidResponseError
from .models import (
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
    Vector,
)

T = TypeVar("T")


@dataclass(frozen=True, slots=True, kw_only=True)
class Call(Generic[T]):
    """One endpoint call."""

    method: str
    path: str
    parse: Callable[[Any], T]
    """Reads the decoded JSON answer (``None`` for an empty one)."""
    query: Mapping[str, str | int] = field(default_factory=dict)
    body: Any = None
    """A JSON value to send, or ``None`` for no body."""
    headers: Mapping[str, str] = field(default_factory=dict)
    auth: bool = True
    """Send the client's bearer token (obtaining one if needed)."""
    guarded: bool = True
    """Refused once an ephemeral agent is gone (revocation is not)."""
    idempotent_delete: bool = False
    """A 404 after an attempt that may have landed means the delete was done."""


class Unset:
    """The type of ``UNSET``: a field left out of an update (``None`` may mean "clear")."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET = Unset()


def _path_id(episode_id: str) -> str:
    return quote(episode_id, safe="")


def _none(_: object) -> None:
    return None


def _first(results: tuple[Stored, ...]) -> Stored:
    if not results:
        raise InvalidResponseError("the store answer has no result")
    return results[0]


def _params(**values: str | int | None) -> dict[str, str | int]:
    return {k: v for k, v in values.items() if v is not None}


def store_one(episode: NewEpisode) -> Call[Stored]:
    """``POST /v1/episodes`` with one episode; its id is minted here when it has none."""
    return Call(
        method="POST",
        path="/v1/episodes",
        body=episode.to_json(episode.id or uuid7()),
        parse=lambda v: _first(Stored.list_from_json(v)),
    )


def store_batch(episodes: Iterable[NewEpisode]) -> Call[tuple[Stored, ...]]:
    """``POST /v1/episodes`` with ``{"episodes": [...]}``: all stored or none."""
    body = {"episodes": [e.to_json(e.id or uuid7()) for e in episodes]}
    return Call(method="POST", path="/v1/episodes", body=body, parse=Stored.list_from_json)


def get_episode(episode_id: str) -> Call[Episode]:
    """``GET /v1/episodes/{id}``."""
    return Call(method="GET", path=f"/v1/episodes/{_path_id(episode_id)}", parse=Episode.from_json)


def update_episode(
    episode_id: str,
    *,
    reward: float | None,
    critique: str | Unset | None,
    tags: Sequence[str] | None,
    metadata: Mapping[str, Any] | None,
) -> Call[Episode]:
    """``PATCH /v1/episodes/{id}``: only the given fields change; ``critique=None`` clears it."""
    body: dict[str, Any] = {}
    if reward is not None:
        body["reward"] = reward
    if not isinstance(critique, Unset):
        body["critique"] = critique
    if tags is not None:
        body["tags"] = list(tags)
    if metadata is not None:
        body["metadata"] = dict(metadata)
    return Call(method="PATCH", path=f"/v1/episodes/{_path_id(episode_id)}", body=body, parse=Episode.from_json)


def delete_episode(episode_id: str) -> Call[None]:
    """``DELETE /v1/episodes/{id}``."""
    return Call(
        method="DELETE",
        path=f"/v1/episodes/{_path_id(episode_id)}",
        parse=_none,
        idempotent_delete=True,
    )


def list_episodes(cursor: str | None, limit: int | None) -> Call[EpisodePage]:
    """``GET /v1/episodes?cursor&limit``."""
    return Call(
        method="GET",
        path="/v1/episodes",
        query=_params(cursor=cursor, limit=limit),
        parse=EpisodePage.from_json,
    )


def query(
    q: str | Vector,
    *,
    k: int | None,
    min_reward: float | None,
    outcome: Outcome | None,
    created_from_ms: int | None,
    created_until_ms: int | None,
    tags: Sequence[str] | None,
    metadata: Mapping[str, Any] | None,
) -> Call[QueryResult]:
    """``POST /v1/query`` with a text (the hub embeds it) or a vector, and a filter."""
    body: dict[str, Any] = {"vector": q.to_json()} if isinstance(q, Vector) else {"text": q}
    if k is not None:
        body["k"] = k
    filters: dict[str, Any] = {
        "min_reward": min_reward,
        "outcome": outcome,
        "created_from_ms": created_from_ms,
        "created_until_ms": created_until_ms,
        "tags": list(tags) if tags is not None else None,
        "metadata": dict(metadata) if metadata is not None else None,
    }
    given = {name: value for name, value in filters.items() if value is not None}
    if given:
        body["filter"] = given
    return Call(method="POST", path="/v1/query", body=body, parse=QueryResult.from_json)


def stats() -> Call[TenantStats]:
    """``GET /v1/stats``."""
    return Call(method="GET", path="/v1/stats", parse=TenantStats.from_json)


def changes_page(since: str | None, limit: int | None) -> Call[ChangePage]:
    """``GET /v1/changes?since&limit`` as one JSON page."""
    return Call(
        method="GET",
        path="/v1/changes",
        query=_params(since=since, limit=limit),
        parse=ChangePage.from_json,
    )


CHANGES_PATH = "/v1/changes"
"""The change stream (``Accept: text/event-stream``); read by ``_core.Core.changes``."""


def exchange(
    api_key: str | None,
    *,
    agent: str | None,
    scopes: Sequence[str] | None,
    ttl: int | None,
) -> Call[TokenGrant]:
    """``POST /v1/token``: an API key (or, with none, the client certificate) for a token."""
    body: dict[str, Any] = {}
    if agent is not None:
        body["agent"] = agent
    if scopes is not None:
        body["scopes"] = list(scopes)
    if ttl is not None:
        body["ttl_secs"] = ttl
    return Call(
        method="POST",
        path="/v1/token",
        body=body or None,
        headers={"authorization": f"ApiKey {api_key}"} if api_key is not None else {},
        auth=False,
        parse=TokenGrant.from_json,
    )


def revoke(token: str) -> Call[None]:
    """``DELETE /v1/token``: revokes ``token`` itself (works after an agent is gone)."""
    return Call(
        method="DELETE",
        path="/v1/token",
        headers={"authorization": f"Bearer {token}"},
        auth=False,
        guarded=False,
        parse=_none,
    )


def health() -> Call[Health]:
    """``GET /healthz`` (no token)."""
    return Call(method="GET", path="/healthz", auth=False, parse=Health.from_json)


def openapi() -> Call[dict[str, Any]]:
    """``GET /v1/openapi.json`` (no token)."""
    return Call(method="GET", path="/v1/openapi.json", auth=False, parse=lambda v: dict(_json.obj(v, "the document")))
