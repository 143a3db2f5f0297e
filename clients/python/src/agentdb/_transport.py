"""What the clients need of httpx: the TLS context for mutual TLS, and what its errors mean.

Hubs require a client certificate by default (``mtls = true``), checked in the TLS handshake
itself. A client is given the deployment's CA and its certificate and key as paths
(``ca``/``cert``/``key``), or a ready ``ssl.SSLContext``, or a whole ``httpx.Client`` /
``httpx.AsyncClient`` of the caller's. The context goes to httpx as ``verify=`` (httpx 0.28
deprecated ``cert=`` and ``verify=<path>``).
"""

from __future__ import annotations

import os
import ssl

import httpx

from .errors import AgentDBError, InvalidResponseError, RequestTimeoutError, TLSError, TransportError

StrPath = str | os.PathLike[str]


def tls_verify(
    *,
    ca: StrPath | None,
    cert: StrPath | None,
    key: StrPath | None,
    ssl_context: ssl.SSLContext | None,
    caller_client: bool,
) -> ssl.SSLContext | bool:
    """The ``verify=`` for httpx: the caller's context, one built from paths, or httpx's default.

    ``caller_client``: the caller brings its own httpx client, which holds its TLS settings.
    """
    if caller_client and (ca is not None or cert is not None or key is not None or ssl_context is not None):
        raise ValueError("an http_client brings its own TLS settings: give ca/cert/key/ssl_context to it instead")
    if ssl_context is not None:
        if ca is not None or cert is not None or key is not None:
            raise ValueError("give either ssl_context or ca/cert/key, not both")
        return ssl_context
    if key is not None and cert is None:
        raise ValueError("key needs cert")
    if ca is None and cert is None:
        return True
    context = ssl.create_default_context(cafile=os.fspath(ca) if ca is not None else None)
    if cert is not None:
        context.load_cert_chain(os.fspath(cert), os.fspath(key) if key is not None else None)
    return context


def _ssl_error(exc: BaseException) -> ssl.SSLError | None:
    """The ``ssl.SSLError`` behind an httpx error, if there is one."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def transport_error(exc: httpx.HTTPError, what: str) -> AgentDBError:
    """The client's error for an httpx failure during ``what`` (e.g. ``GET /v1/stats``)."""
    tls = _ssl_error(exc)
    if tls is not None:
        detail = str(tls)
        if "CERTIFICATE_REQUIRED" in detail:
            hint = "the hub requires a client certificate: pass cert= and key= (or an ssl_context that loads one)"
        elif "CERTIFICATE_VERIFY_FAILED" in detail:
            hint = "the hub's certificate is not trusted: pass ca= with the deployment's CA certificate"
        elif "UNKNOWN_CA" in detail or "BAD_CERTIFICATE" in detail:
            hint = "the hub refused the client certificate (is it from the deployment's CA?)"
        else:
            hint = "the TLS handshake failed"
        return TLSError(f"{what}: {hint}: {detail}")
    if isinstance(exc, httpx.TimeoutException):
        return RequestTimeoutError(f"{what}: no answer in time ({type(exc).__name__})")
    if isinstance(exc, httpx.DecodingError):
        return InvalidResponseError(f"{what}: the answer cannot be decoded: {exc}")
    return TransportError(f"{what}: {type(exc).__name__}: {exc}")


def timeouts(timeout: float, read: float | None = None) -> httpx.Timeout:
    """Per-operation timeouts: connect, write and pool ``timeout``, read ``read`` (default the same)."""
    return httpx.Timeout(timeout, read=timeout if read is None else read)
