"""The gateway's bodies as frozen dataclasses (docs/http.md; ``GET /v1/openapi.json``).

Answers are parsed into these types by ``from_json``, which checks every field and raises
``InvalidResponseError`` for an answer the API does not promise. Inputs are ``NewEpisode``
(for batches) and ``Vector``; everything else is passed as keyword arguments.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from . import _json as j
from .errors import InvalidResponseError

__all__ = [
    "Change",
    "ChangePage",
    "ChangeType",
    "Episode",
    "EpisodePage",
    "Health",
    "NewEpisode",
    "Outcome",
    "QueryMatch",
    "QueryResult",
    "Stored",
    "TaskCount",
    "TenantStats",
    "TokenGrant",
    "TokenInfo",
    "Vector",
]

Outcome = Literal["any", "successes", "failures"]
"""Which episodes a query wants: all, those whose reward reached the success threshold, or the rest."""

ChangeType = Literal["put", "deleted"]
"""``put``: stored or updated (the change carries the episode as it is now); ``deleted``."""


@dataclass(frozen=True, slots=True)
class Vector:
    """A vector the caller embedded itself, with the tenant's model (``TenantStats.embedding_model``)."""

    model: str
    vector: Sequence[float]

    def to_json(self) -> dict[str, Any]:
        """The JSON body form."""
        return {"model": self.model, "vector": [float(x) for x in self.vector]}


@dataclass(frozen=True, slots=True, kw_only=True)
class NewEpisode:
    """An episode to store. Without an ``id`` the client mints a UUIDv7, so a retry cannot store it twice."""

    task: str
    """What the agent was asked to do (not empty)."""
    reward: float
    """How well it went, 0 to 1; at least 0.7 counts as a success."""
    input: str = ""
    output: str = ""
    critique: str | None = None
    tags: Sequence[str] = ()
    metadata: dict[str, Any] | None = None
    """Any JSON object; queries can match its fields exactly."""
    session: str | None = None
    tokens_used: int = 0
    latency_ms: int = 0
    embedding: Vector | None = None
    """A vector of the tenant's model; without it the hub embeds ``task`` and ``input``."""
    id: str | None = None
    """A UUID; version 7 keeps ids in time order."""
    ttl_secs: int | None = None
    """Seconds until the episode expires (at least 1): it is then no longer returned, and every hub
    deletes it. Not with ``expires_at_ms``."""
    expires_at_ms: int | None = None
    """When the episode expires, in milliseconds since the Unix epoch. Not with ``ttl_secs``."""

    def to_json(self, episode_id: str) -> dict[str, Any]:
        """The JSON body form, with ``episode_id`` as the episode's id."""
        body: dict[str, Any] = {
            "id": episode_id,
            "task": self.task,
            "reward": self.reward,
            "input": self.input,
            "output": self.output,
            "tags": list(self.tags),
        }
        optional: dict[str, Any] = {
            "critique": self.critique,
            "metadata": self.metadata,
            "session": self.session,
            "tokens_used": self.tokens_used or None,
            "latency_ms": self.latency_ms or None,
            "embedding": self.embedding.to_json() if self.embedding is not None else None,
            "ttl_secs": self.ttl_secs,
            "expires_at_ms": self.expires_at_ms,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        return body


@dataclass(frozen=True, slots=True, kw_only=True)
class Episode:
    """An episode as the hub holds it."""

    id: str
    task: str
    input: str
    output: str
    reward: float
    success: bool
    """Whether the reward reached the success threshold."""
    critique: str | None
    tags: tuple[str, ...]
    metadata: dict[str, Any] | str | None
    """The JSON object stored with it (a string only if stored text no longer parses)."""
    tokens_used: int
    latency_ms: int
    created_ms: int
    """When it was stored, in milliseconds since the Unix epoch."""
    embedding_model: str
    agent: str | None = None
    """The agent (token subject) that stored it."""
    session: str | None = None
    origin: str | None = None
    """The hub that first accepted it."""
    expires_at_ms: int | None = None
    """When it expires, in milliseconds since the Unix epoch; ``None`` when it does not."""

    @property
    def created_at(self) -> _dt.datetime:
        """``created_ms`` as an aware UTC datetime."""
        return _dt.datetime.fromtimestamp(self.created_ms / 1000, tz=_dt.timezone.utc)

    @classmethod
    def from_json(cls, value: object) -> Episode:
        """Parses the gateway's episode object."""
        o = j.obj(value, "an episode")
        metadata = o.get("metadata")
        if metadata is not None and not isinstance(metadata, (dict, str)):
            raise InvalidResponseError("field 'metadata' is not an object")
        return cls(
            id=j.string(o, "id"),
            task=j.string(o, "task"),
            input=j.string(o, "input"),
            output=j.string(o, "output"),
            reward=j.number(o, "reward"),
            success=j.boolean(o, "success"),
            critique=j.opt_string(o, "critique"),
            tags=j.strings(o, "tags"),
            metadata=metadata,
            tokens_used=j.integer(o, "tokens_used"),
            latency_ms=j.integer(o, "latency_ms"),
            created_ms=j.integer(o, "created_ms"),
            embedding_model=j.string(o, "embedding_model"),
            agent=j.opt_string(o, "agent"),
            session=j.opt_string(o, "session"),
            origin=j.opt_string(o, "origin"),
            expires_at_ms=j.opt_integer(o, "expires_at_ms"),
        )


@dataclass(frozen=True, slots=True)
class Stored:
    """One stored episode."""

    id: str
    inserted: bool
    """False when an episode with this id already existed (nothing was written). After a retried
    store, False can also mean that the first attempt stored it."""

    @classmethod
    def from_json(cls, value: object) -> Stored:
        """Parses one entry of ``{"results": [...]}``."""
        o = j.obj(value, "a store result")
        return cls(id=j.string(o, "id"), inserted=j.boolean(o, "inserted"))

    @classmethod
    def list_from_json(cls, value: object) -> tuple[Stored, ...]:
        """Parses ``{"results": [...]}``."""
        return j.items(j.obj(value, "the store answer"), "results", cls.from_json)


@dataclass(frozen=True, slots=True)
class EpisodePage:
    """A page of live episodes. Only a ``None`` ``next_cursor`` means there is no more."""

    episodes: tuple[Episode, ...]
    next_cursor: str | None

    @classmethod
    def from_json(cls, value: object) -> EpisodePage:
        """Parses ``GET /v1/episodes``."""
        o = j.obj(value, "an episode page")
        return cls(
            episodes=j.items(o, "episodes", Episode.from_json),
            next_cursor=j.opt_string(o, "next_cursor"),
        )


@dataclass(frozen=True, slots=True)
class QueryMatch:
    """A memory that matched a query."""

    score: float
    """Cosine similarity; higher is closer."""
    episode: Episode

    @classmethod
    def from_json(cls, value: object) -> QueryMatch:
        """Parses one match."""
        o = j.obj(value, "a match")
        return cls(score=j.number(o, "score"), episode=Episode.from_json(o.get("episode")))


@dataclass(frozen=True, slots=True)
class QueryResult:
    """Matches, best first, and the model the query was embedded with."""

    matches: tuple[QueryMatch, ...]
    model: str

    @classmethod
    def from_json(cls, value: object) -> QueryResult:
        """Parses ``POST /v1/query``."""
        o = j.obj(value, "a query result")
        return cls(matches=j.items(o, "matches", QueryMatch.from_json), model=j.string(o, "model"))


@dataclass(frozen=True, slots=True)
class TaskCount:
    """One of a tenant's most frequent tasks."""

    task: str
    count: int
    avg_reward: float

    @classmethod
    def from_json(cls, value: object) -> TaskCount:
        """Parses one entry of ``top_tasks``."""
        o = j.obj(value, "a task count")
        return cls(task=j.string(o, "task"), count=j.integer(o, "count"), avg_reward=j.number(o, "avg_reward"))


@dataclass(frozen=True, slots=True, kw_only=True)
class TenantStats:
    """A tenant's numbers (``GET /v1/stats``)."""

    episodes: int
    """Live episodes."""
    deleted: int
    """Tombstones of deleted episodes."""
    success_rate: float
    avg_reward: float
    top_tasks: tuple[TaskCount, ...]
    embedding_model: str | None
    key_version: int

    @classmethod
    def from_json(cls, value: object) -> TenantStats:
        """Parses ``GET /v1/stats``."""
        o = j.obj(value, "the stats")
        return cls(
            episodes=j.integer(o, "episodes"),
            deleted=j.integer(o, "deleted"),
            success_rate=j.number(o, "success_rate"),
            avg_reward=j.number(o, "avg_reward"),
            top_tasks=j.items(o, "top_tasks", TaskCount.from_json),
            embedding_model=j.opt_string(o, "embedding_model"),
            key_version=j.integer(o, "key_version"),
        )


@dataclass(frozen=True, slots=True)
class Change:
    """One change to the tenant's memory."""

    cursor: str
    """Its position: resume after it with ``since`` (a stream sends it as ``Last-Event-ID``)."""
    type: ChangeType
    id: str
    """The episode's id."""
    episode: Episode | None
    """For ``put``, the episode as it is now."""

    @classmethod
    def from_json(cls, value: object) -> Change:
        """Parses one change (a page's entry or a stream event's data)."""
        o = j.obj(value, "a change")
        name = j.string(o, "type")
        if name not in ("put", "deleted"):
            raise InvalidResponseError(f"unknown change type {name!r}")
        kind: ChangeType = "put" if name == "put" else "deleted"
        episode = o.get("episode")
        return cls(
            cursor=j.string(o, "cursor"),
            type=kind,
            id=j.string(o, "id"),
            episode=None if episode is None else Episode.from_json(episode),
        )


@dataclass(frozen=True, slots=True)
class ChangePage:
    """A page of changes (``GET /v1/changes`` as JSON)."""

    changes: tuple[Change, ...]
    next_cursor: str
    """Pass as ``since`` for the next page."""
    more: bool
    """Whether more changes are waiting now."""

    @classmethod
    def from_json(cls, value: object) -> ChangePage:
        """Parses a page of changes."""
        o = j.obj(value, "a change page")
        return cls(
            changes=j.items(o, "changes", Change.from_json),
            next_cursor=j.string(o, "next_cursor"),
            more=j.boolean(o, "more"),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenGrant:
    """A token from ``POST /v1/token``."""

    token: str
    token_type: str
    expires_at: int
    """Seconds since the Unix epoch, by the hub's clock."""
    expires_in: int
    """Seconds from the answer until it expires."""
    tenant: str
    agent: str
    scopes: tuple[str, ...]

    @classmethod
    def from_json(cls, value: object) -> TokenGrant:
        """Parses ``POST /v1/token``."""
        o = j.obj(value, "the token answer")
        return cls(
            token=j.string(o, "token"),
            token_type=j.string(o, "token_type"),
            expires_at=j.integer(o, "expires_at"),
            expires_in=j.integer(o, "expires_in"),
            tenant=j.string(o, "tenant"),
            agent=j.string(o, "agent"),
            scopes=j.strings(o, "scopes"),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenInfo:
    """The token a client holds. Fields it cannot know (a static token that is not a JWT) are ``None``."""

    token: str = field(repr=False)
    expires_at: float | None
    """Seconds since the Unix epoch, by the client's clock."""
    tenant: str | None
    agent: str | None
    scopes: tuple[str, ...] | None


@dataclass(frozen=True, slots=True)
class Health:
    """``GET /healthz``."""

    status: str
    hub: str

    @classmethod
    def from_json(cls, value: object) -> Health:
        """Parses ``GET /healthz``."""
        o = j.obj(value, "the health answer")
        return cls(status=j.string(o, "status"), hub=j.string(o, "hub"))
