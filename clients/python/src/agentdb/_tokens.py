"""The token a client holds, and when to refresh it.

A token from the exchange (``POST /v1/token``) expires ``expires_in`` seconds after it was asked
for, by the client's clock; a token from a static credential or a provider is read as a JWT
(its ``exp``, ``iat``, ``tenant``, ``sub`` and ``scope`` claims, unchecked: the hub checks it).
Either is refreshed ``REFRESH_MARGIN`` seconds before it expires, or half-way through its life
when it lives less than twice that.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from dataclasses import dataclass
from typing import Any

from .models import TokenGrant, TokenInfo

REFRESH_MARGIN = 60.0
"""Seconds before expiry that a token is refreshed."""


@dataclass(frozen=True, slots=True)
class HeldToken:
    """A token and the time, by the client's clock, to stop using it."""

    info: TokenInfo
    refresh_at: float


def jwt_claims(token: str) -> dict[str, Any] | None:
    """The claims of a JWT, read without checking it; ``None`` when it is not one."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (binascii.Error, ValueError):
        return None
    return claims if isinstance(claims, dict) else None


def _refresh_at(expires_at: float, life: float) -> float:
    return expires_at - min(REFRESH_MARGIN, life / 2)


def from_grant(grant: TokenGrant, asked_at: float) -> HeldToken:
    """A token the exchange granted, asked for at ``asked_at`` by the client's clock."""
    expires_at = asked_at + grant.expires_in
    info = TokenInfo(
        token=grant.token,
        expires_at=expires_at,
        tenant=grant.tenant,
        agent=grant.agent,
        scopes=grant.scopes,
    )
    return HeldToken(info=info, refresh_at=_refresh_at(expires_at, grant.expires_in))


def from_jwt(token: str) -> HeldToken:
    """A token given as it is (static or from a provider), read as a JWT where it is one."""
    claims = jwt_claims(token) or {}
    exp, iat = claims.get("exp"), claims.get("iat")
    expires_at = float(exp) if isinstance(exp, (int, float)) else None
    scope = claims.get("scope")
    info = TokenInfo(
        token=token,
        expires_at=expires_at,
        tenant=claims.get("tenant") if isinstance(claims.get("tenant"), str) else None,
        agent=claims.get("sub") if isinstance(claims.get("sub"), str) else None,
        scopes=tuple(s for s in scope if isinstance(s, str)) if isinstance(scope, list) else None,
    )
    if expires_at is None:
        return HeldToken(info=info, refresh_at=math.inf)
    life = expires_at - float(iat) if isinstance(iat, (int, float)) else 2 * REFRESH_MARGIN
    return HeldToken(info=info, refresh_at=_refresh_at(expires_at, life))
