"""A real `agentdb hub` for the MCP tests, and `agentdb mcp` servers connected to it.

The hub runs in dev mode on free loopback ports (its dev CA, a client certificate for tenant
`demo` and a signing key are under DATA/dev); API keys are made with `agentdb tenant key
create` through its admin HTTP. Every process started here is stopped when the test session
ends, and its temporary directory removed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest
from mcp.client.stdio import StdioServerParameters

REPO = Path(__file__).resolve().parents[4]
AGENTDB = Path(os.environ.get("AGENTDB_BIN", REPO / "target" / "debug" / "agentdb"))
FIRST_LINE_TIMEOUT_S = 30


def first_line(process: subprocess.Popen[str], what: str) -> str:
    """The first line `process` prints, or a failure with what it wrote on stderr."""
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        process.kill()
        _, err = process.communicate(timeout=FIRST_LINE_TIMEOUT_S)
        pytest.fail(f"{what} exited before it was ready: {err.strip()}")
    return line.strip()


@dataclass
class Hub:
    """A running hub and what a client needs to reach it."""

    quic: str
    admin: str
    dev: Path

    def api_key(self, tenant: str, scopes: str = "read,write,sync") -> str:
        """A fresh API key of `tenant`."""
        out = subprocess.run(
            [AGENTDB, "tenant", "key", "create", "--tenant", tenant, "--scope", scopes,
             "--http", self.admin, "--signing-key", str(self.dev / "signing.key"), "--json"],
            check=True, capture_output=True, text=True,
        ).stdout
        return str(json.loads(out)["secret"])

    def tenant_cert(self, tenant: str, out: Path) -> tuple[Path, Path]:
        """A tenant-wide client certificate of `tenant`, signed by the hub's dev CA."""
        subprocess.run(
            [AGENTDB, "cert", "issue", "--ca", str(self.dev), "--out", str(out),
             "--agent", "*", "--tenant", tenant],
            check=True, capture_output=True, text=True,
        )
        return out / f"tenant-{tenant}.pem", out / f"tenant-{tenant}.key"

    def mcp_args(self, tenant: str, cert: tuple[Path, Path] | None = None) -> list[str]:
        """`agentdb mcp` arguments connecting to this hub as `tenant` (the API key comes from
        the environment)."""
        pem, key = cert or (self.dev / "client.pem", self.dev / "client.key")
        return ["mcp", "--hub", f"quic://{self.quic}", "--ca", str(self.dev / "ca.pem"),
                "--cert", str(pem), "--key", str(key), "--tenant", tenant]

    def stdio(self, tenant: str, api_key: str,
              cert: tuple[Path, Path] | None = None) -> StdioServerParameters:
        """How the MCP client starts `agentdb mcp` over stdio."""
        return StdioServerParameters(
            command=str(AGENTDB), args=self.mcp_args(tenant, cert),
            env={"AGENTDB_API_KEY": api_key, "AGENTDB_LOG": "warn"},
        )


@pytest.fixture(scope="session")
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="agentdb-mcp-test-") as d:
        yield Path(d)


@pytest.fixture(scope="session")
def hub(workdir: Path) -> Iterator[Hub]:
    if not AGENTDB.exists():
        pytest.fail(f"{AGENTDB} not found: build it with `cargo build --bin agentdb`")
    data = workdir / "hub"
    process = subprocess.Popen(
        [AGENTDB, "hub", "--data", str(data), "--quic", "127.0.0.1:0",
         "--http", "127.0.0.1:0", "--https", "127.0.0.1:0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "AGENTDB_LOG": "warn"},
    )
    try:
        line = first_line(process, "the hub")
        m = re.match(r"agentdb hub listening quic=(\S+) http=(\S+)", line)
        assert m, f"unexpected first line from the hub: {line}"
        yield Hub(quic=m.group(1), admin=m.group(2), dev=data / "dev")
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
