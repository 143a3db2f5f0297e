"""Typed readers for the fields of the hub's JSON answers.

Each reader takes the decoded object and a field name and returns the field with its Python
type, or raises ``InvalidResponseError`` naming the field: a hub that answers something else
than the API promises fails loudly at the boundary, not later in the caller's code.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from .errors import InvalidResponseError

T = TypeVar("T")

JsonObject = Mapping[str, Any]


def obj(value: object, what: str) -> JsonObject:
    """``value`` as a JSON object."""
    if not isinstance(value, dict):
        raise InvalidResponseError(f"{what} is not a JSON object")
    return value


def string(o: JsonObject, key: str) -> str:
    """A required string field."""
    v = o.get(key)
    if not isinstance(v, str):
        raise InvalidResponseError(f"field {key!r} is not a string")
    return v


def opt_string(o: JsonObject, key: str) -> str | None:
    """An optional (absent or null) string field."""
    v = o.get(key)
    if v is None:
        return None
    if not isinstance(v, str):
        raise InvalidResponseError(f"field {key!r} is not a string")
    return v


def integer(o: JsonObject, key: str) -> int:
    """A required integer field."""
    v = o.get(key)
    if not isinstance(v, int) or isinstance(v, bool):
        raise InvalidResponseError(f"field {key!r} is not an integer")
    return v


def opt_integer(o: JsonObject, key: str) -> int | None:
    """An optional (absent or null) integer field."""
    v = o.get(key)
    if v is None:
        return None
    if not isinstance(v, int) or isinstance(v, bool):
        raise InvalidResponseError(f"field {key!r} is not an integer")
    return v


def number(o: JsonObject, key: str) -> float:
    """A required number field."""
    v = o.get(key)
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        raise InvalidResponseError(f"field {key!r} is not a number")
    return float(v)


def boolean(o: JsonObject, key: str) -> bool:
    """A required boolean field."""
    v = o.get(key)
    if not isinstance(v, bool):
        raise InvalidResponseError(f"field {key!r} is not a boolean")
    return v


def strings(o: JsonObject, key: str) -> tuple[str, ...]:
    """A required list of strings."""
    return items(o, key, lambda v: _str_item(v, key))


def items(o: JsonObject, key: str, parse: Callable[[Any], T]) -> tuple[T, ...]:
    """A required list, each element parsed by ``parse``."""
    v = o.get(key)
    if not isinstance(v, list):
        raise InvalidResponseError(f"field {key!r} is not a list")
    return tuple(parse(x) for x in v)


def _str_item(v: object, key: str) -> str:
    if not isinstance(v, str):
        raise InvalidResponseError(f"field {key!r} holds a non-string")
    return v
