"""Python client of Federated AgentDB's HTTPS/JSON gateway.

- ``EphemeralAgent`` / ``AsyncEphemeralAgent``: a short-lived agent with its own token, used
  as a context manager.
- ``AgentDBClient`` / ``AsyncAgentDBClient``: every gateway endpoint, with token exchange and
  refresh, retries honouring ``Retry-After``, and the resumable change stream.
- ``agentdb.models``: the typed answers; ``agentdb.errors``: one exception per error code.
"""

from ._calls import UNSET
from ._version import __version__
from .agent import AgentSpawn, AsyncEphemeralAgent, EphemeralAgent
from .client import AgentDBClient, AsyncAgentDBClient, AsyncChangeStream, ChangeStream
from .errors import (
    AgentDBError,
    AgentExpiredError,
    AuthenticationError,
    ForbiddenError,
    InternalError,
    InvalidRequestError,
    InvalidResponseError,
    NotFoundError,
    OverloadedError,
    QuotaExceededError,
    RequestTimeoutError,
    TenantMismatchError,
    TLSError,
    TokenExpiredError,
    TooLargeError,
    TransportError,
    UnavailableError,
)
from .models import (
    Change,
    ChangePage,
    Episode,
    EpisodePage,
    Health,
    NewEpisode,
    QueryMatch,
    QueryResult,
    Stored,
    TaskCount,
    TenantStats,
    TokenGrant,
    TokenInfo,
    Vector,
)

__all__ = [
    "UNSET",
    "AgentDBClient",
    "AgentDBError",
    "AgentExpiredError",
    "AgentSpawn",
    "AsyncAgentDBClient",
    "AsyncChangeStream",
    "AsyncEphemeralAgent",
    "AuthenticationError",
    "Change",
    "ChangePage",
    "ChangeStream",
    "EphemeralAgent",
    "Episode",
    "EpisodePage",
    "ForbiddenError",
    "Health",
    "InternalError",
    "InvalidRequestError",
    "InvalidResponseError",
    "NewEpisode",
    "NotFoundError",
    "OverloadedError",
    "QueryMatch",
    "QueryResult",
    "QuotaExceededError",
    "RequestTimeoutError",
    "Stored",
    "TLSError",
    "TaskCount",
    "TenantMismatchError",
    "TenantStats",
    "TokenExpiredError",
    "TokenGrant",
    "TokenInfo",
    "TooLargeError",
    "TransportError",
    "UnavailableError",
    "Vector",
    "__version__",
]
