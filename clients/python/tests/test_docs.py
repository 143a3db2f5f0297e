"""The Python examples of docs/python.md and of the package's README run as written, in order,
against a real hub, from a directory laid out as they assume (agentdb-data/dev, the two
environment variables)."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

import agentdb

from support import REPO, Hub

DOCS = [REPO / "docs" / "python.md", REPO / "clients" / "python" / "README.md"]


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", path.read_text(), flags=re.DOTALL | re.MULTILINE)


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_the_examples_run(path: Path, hub: Hub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = python_blocks(path)
    assert len(blocks) >= 2
    (tmp_path / "agentdb-data").mkdir()
    (tmp_path / "agentdb-data" / "dev").symlink_to(hub.dev)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FEDERATION_HUB_ENDPOINT", hub.endpoint)
    monkeypatch.setenv("AGENTDB_API_KEY", hub.api_key("demo"))
    namespace: dict[str, object] = {"__name__": "__docs__"}
    try:
        for number, block in enumerate(blocks, 1):
            exec(compile(block, f"{path.name}, Python block {number}", "exec"), namespace)
    finally:
        # The reader's session ends here: close the clients it left open.
        for value in namespace.values():
            if isinstance(value, (agentdb.AgentDBClient, httpx.Client)):
                value.close()
