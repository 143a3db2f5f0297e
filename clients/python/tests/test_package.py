"""The tests run against the installed wheel, and the wheel is what it should be."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import agentdb


def test_imported_from_the_installed_package_not_the_source_tree() -> None:
    where = Path(agentdb.__file__).resolve()
    assert "site-packages" in where.parts, where
    assert "src" not in where.parts, where
    assert (where.parent / "py.typed").is_file(), "the wheel carries py.typed"


def test_distribution_metadata() -> None:
    meta = importlib.metadata.metadata("agentdb-client")
    assert importlib.metadata.version("agentdb-client") == agentdb.__version__
    assert meta["License-Expression"] == "Apache-2.0"
    requires = importlib.metadata.requires("agentdb-client") or []
    assert [r.replace(" ", "") for r in requires] == ["httpx<1,>=0.27"]
    assert meta["Requires-Python"] == ">=3.10"


def test_public_names_resolve() -> None:
    for name in agentdb.__all__:
        assert getattr(agentdb, name) is not None, name
    assert issubclass(agentdb.TokenExpiredError, agentdb.AuthenticationError)
    assert issubclass(agentdb.TenantMismatchError, agentdb.ForbiddenError)
    assert issubclass(agentdb.QuotaExceededError, agentdb.ForbiddenError)
    quota = agentdb.errors.error_for(403, "quota_exceeded", "episodes quota of tenant t exceeded")
    assert type(quota) is agentdb.QuotaExceededError and quota.status == 403
    assert agentdb.errors.status_for("quota_exceeded") == 403
    assert issubclass(agentdb.TLSError, agentdb.TransportError)
    assert issubclass(agentdb.RequestTimeoutError, agentdb.TransportError)
