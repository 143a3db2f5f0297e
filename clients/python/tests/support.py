"""The tests' helpers: a real ``agentdb hub``, fresh tenants on it, and test doubles (clock, sleep, request log).

The hub runs in dev mode on free loopback ports with a temporary data directory, once per
test session; it is stopped and its directory removed at the end, and also when the test
process exits any other way. Every test gets its own tenants: a tenant certificate from the
hub's dev CA (mutual TLS is on, as by default) and an API key made through the admin HTTP.
"""

from __future__ import annotations

import atexit
import base64
import json
import os
import shutil
import ssl
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

import agentdb

REPO = Path(__file__).resolve().parents[3]
AGENTDB_BIN = Path(os.environ.get("AGENTDB_BIN", REPO / "target" / "debug" / "agentdb"))
SCOPES = "read,write,sync"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass(frozen=True)
class Tenant:
    """A tenant on the test hub: its certificate and an API key with read, write and sync."""

    name: str
    cert: Path
    key: Path
    api_key: str


class Hub:
    """A running ``agentdb hub`` in dev mode."""

    def __init__(self) -> None:
        if not AGENTDB_BIN.exists():
            raise RuntimeError(f"no agentdb binary at {AGENTDB_BIN} (build it, or set AGENTDB_BIN)")
        self.dir = Path(tempfile.mkdtemp(prefix="agentdb-py-"))
        self.data = self.dir / "data"
        self.dev = self.data / "dev"
        self.ca = self.dev / "ca.pem"
        ports = ["--quic", "127.0.0.1:0", "--http", "127.0.0.1:0", "--https", "127.0.0.1:0"]
        with open(self.dir / "hub.log", "wb") as stderr:  # the hub keeps its own descriptor
            self._process = subprocess.Popen(
                [str(AGENTDB_BIN), "hub", "--data", str(self.data), *ports],
                stdout=subprocess.PIPE,
                stderr=stderr,
                env={**os.environ, "RUST_LOG": "warn"},
            )
        atexit.register(self.stop)
        line = self._first_line(timeout=30)
        fields = dict(part.split("=", 1) for part in line.split() if "=" in part)
        if not line.startswith("agentdb hub listening") or "https" not in fields:
            self.stop()
            raise RuntimeError(f"unexpected first line from the hub: {line!r}")
        self.admin = fields["http"]
        self.endpoint = f"https://{fields['https']}"
        self._signing_key = load_pem_private_key((self.dev / "signing.key").read_bytes(), None)

    def _first_line(self, timeout: float) -> str:
        assert self._process.stdout is not None
        stdout = self._process.stdout
        got: list[bytes] = []
        ready = threading.Event()

        def read() -> None:
            got.append(stdout.readline())
            ready.set()
            while stdout.read(65536):  # keep draining whatever else it prints
                pass

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(timeout) or not got[0]:
            self.stop()
            raise RuntimeError(f"the hub did not start:\n{self.log()}")
        return got[0].decode().strip()

    def log(self) -> str:
        """The end of the hub's stderr."""
        path = self.dir / "hub.log"
        return path.read_text(errors="replace")[-8000:] if path.exists() else ""

    def stop(self) -> None:
        """Stops the hub (SIGTERM, then SIGKILL after 5 s) and removes its data."""
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _cli(self, *args: str) -> str:
        done = subprocess.run([str(AGENTDB_BIN), *args], capture_output=True, text=True, timeout=30)
        if done.returncode != 0:
            raise RuntimeError(f"agentdb {' '.join(args)}: {done.stderr}")
        return done.stdout

    # ----------------------------------------------------------------- tenants

    def tenant(self, prefix: str = "t") -> Tenant:
        """A new tenant: a tenant-wide certificate from the dev CA and an API key."""
        name = f"{prefix}-{uuid.uuid4().hex[:10]}"
        certs = self.dir / "certs"
        out = json.loads(
            self._cli(
                "cert", "issue", "--ca", str(self.dev), "--out", str(certs), "--agent", "*", "--tenant", name, "--json"
            )
        )
        return Tenant(name=name, cert=Path(out["cert"]), key=Path(out["key"]), api_key=self.api_key(name))

    def api_key(self, tenant: str, scope: str = SCOPES) -> str:
        """A new API key for ``tenant`` (``agentdb tenant key create``)."""
        out = self._cli(
            "tenant",
            "key",
            "create",
            "--tenant",
            tenant,
            "--scope",
            scope,
            "--http",
            self.admin,
            "--signing-key",
            str(self.dev / "signing.key"),
            "--json",
        )
        secret: str = json.loads(out)["secret"]
        return secret

    def issue_token(self, tenant: str, *, agent: str = "cli", ttl: int = 300, scope: str = SCOPES) -> str:
        """A token signed with the dev signing key (``agentdb token issue``)."""
        return self._cli(
            "token",
            "issue",
            "--signing-key",
            str(self.dev / "signing.key"),
            "--tenant",
            tenant,
            "--agent",
            agent,
            "--ttl",
            str(ttl),
            "--scope",
            scope,
        ).strip()

    def forge_token(
        self,
        tenant: str,
        *,
        iat: float,
        exp: float,
        agent: str = "forged",
        key: Ed25519PrivateKey | None = None,
    ) -> str:
        """A token with chosen times, signed with the dev signing key (or ``key``): how a test
        gets a token the hub already holds expired, without waiting for it."""
        signer = key if key is not None else self._signing_key
        assert isinstance(signer, Ed25519PrivateKey)
        claims = {
            "iss": "agentdb",
            "aud": "agentdb-hub",
            "sub": agent,
            "tenant": tenant,
            "scope": SCOPES.split(","),
            "iat": int(iat),
            "exp": int(exp),
            "jti": str(uuid.uuid4()),
        }
        signing_input = (
            f"{_b64(json.dumps({'alg': 'EdDSA', 'typ': 'JWT'}).encode())}.{_b64(json.dumps(claims).encode())}"
        )
        return f"{signing_input}.{_b64(signer.sign(signing_input.encode()))}"

    # ----------------------------------------------------------------- clients

    def tls(self, tenant: Tenant) -> dict[str, Any]:
        """The ``ca``/``cert``/``key`` arguments for ``tenant``."""
        return {"ca": self.ca, "cert": tenant.cert, "key": tenant.key}

    def ssl_context(self, tenant: Tenant) -> ssl.SSLContext:
        """A context presenting ``tenant``'s certificate."""
        context = ssl.create_default_context(cafile=str(self.ca))
        context.load_cert_chain(str(tenant.cert), str(tenant.key))
        return context

    def client(self, tenant: Tenant, **kwargs: Any) -> agentdb.AgentDBClient:
        """A client of ``tenant`` with its API key (unless another credential is given)."""
        if not {"token", "token_provider", "api_key", "http_client"} & kwargs.keys():
            kwargs["api_key"] = tenant.api_key
        if "http_client" not in kwargs and "ssl_context" not in kwargs:
            kwargs.update(self.tls(tenant))
        return agentdb.AgentDBClient(self.endpoint, **kwargs)


# ---------------------------------------------------------------- test doubles


class FakeClock:
    """A clock that moves only when told; starts at the real time (tokens carry real times)."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Sleeps(list[float]):
    """A ``sleep`` that records how long it was asked to wait, and returns at once."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)

    async def asleep(self, seconds: float) -> None:
        self.append(seconds)


@dataclass
class Sent:
    """One request as it left the client."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int | None = None
    request_id: str | None = None


@dataclass
class RequestLog:
    """httpx event hooks that record every request, its status and its answer's request id."""

    sent: list[Sent] = field(default_factory=list)

    def on_request(self, request: httpx.Request) -> None:
        self.sent.append(Sent(request.method, request.url.path, dict(request.headers), request.content))

    def on_response(self, response: httpx.Response) -> None:
        for s in reversed(self.sent):
            if s.status is None and s.path == response.request.url.path:
                s.status = response.status_code
                s.request_id = response.headers.get("x-request-id")
                break

    async def aon_request(self, request: httpx.Request) -> None:
        self.on_request(request)

    async def aon_response(self, response: httpx.Response) -> None:
        self.on_response(response)

    def hooks(self) -> dict[str, list[Any]]:
        return {"request": [self.on_request], "response": [self.on_response]}

    def async_hooks(self) -> dict[str, list[Any]]:
        return {"request": [self.aon_request], "response": [self.aon_response]}

    def count(self, method: str, path: str) -> int:
        return sum(1 for s in self.sent if s.method == method and s.path == path)
