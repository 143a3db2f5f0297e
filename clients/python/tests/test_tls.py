"""Mutual TLS: the hub requires a client certificate, and a client without one fails clearly."""

from __future__ import annotations

import httpx
import pytest

import agentdb
from agentdb import AgentDBClient

from support import Hub, Sleeps, Tenant


def test_without_a_client_certificate_the_handshake_fails_clearly(hub: Hub, tenant: Tenant, sleeps: Sleeps) -> None:
    client = AgentDBClient(hub.endpoint, api_key=tenant.api_key, ca=hub.ca, sleep=sleeps)
    with client, pytest.raises(agentdb.TLSError) as e:
        client.stats()
    assert (e.value.code, e.value.status) == ("tls", 0)
    assert "requires a client certificate" in e.value.message and "cert=" in e.value.message
    assert "\n" not in str(e.value)
    assert sleeps == [], "a refused handshake is not retried"


def test_a_hub_the_client_does_not_trust_fails_clearly(hub: Hub, tenant: Tenant, sleeps: Sleeps) -> None:
    client = AgentDBClient(hub.endpoint, api_key=tenant.api_key, cert=tenant.cert, key=tenant.key, sleep=sleeps)
    with client, pytest.raises(agentdb.TLSError) as e:
        client.health()
    assert "not trusted" in e.value.message and "ca=" in e.value.message
    assert sleeps == []


def test_an_ssl_context_or_an_httpx_client_of_the_callers(hub: Hub, tenant: Tenant) -> None:
    with AgentDBClient(hub.endpoint, api_key=tenant.api_key, ssl_context=hub.ssl_context(tenant)) as c:
        assert c.stats().episodes == 0
    http = httpx.Client(verify=hub.ssl_context(tenant))
    with AgentDBClient(hub.endpoint, api_key=tenant.api_key, http_client=http) as c:
        assert c.stats().episodes == 0
    assert not http.is_closed, "a caller's client is the caller's to close"
    http.close()


def test_conflicting_transport_arguments_are_refused(hub: Hub, tenant: Tenant) -> None:
    with pytest.raises(ValueError, match="http_client"):
        AgentDBClient(hub.endpoint, http_client=httpx.Client(), cert=tenant.cert)
    with pytest.raises(ValueError, match="ssl_context"):
        AgentDBClient(hub.endpoint, ssl_context=hub.ssl_context(tenant), ca=hub.ca)
    with pytest.raises(ValueError, match="one credential"):
        AgentDBClient(hub.endpoint, api_key="k", token="t")
    with pytest.raises(ValueError, match="URL"):
        AgentDBClient("hub:8443")
