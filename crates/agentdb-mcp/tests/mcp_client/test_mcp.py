"""`agentdb mcp` driven by the Python MCP SDK's client, over stdio and streamable HTTP,
against a real hub."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from mcp.client import Client
from mcp.types import CallToolResult

from conftest import AGENTDB, Hub, first_line

pytestmark = pytest.mark.anyio

TOOLS = {"store_episode", "search_memories", "get_episode", "update_episode",
         "delete_episode", "memory_stats"}


def ok(result: CallToolResult) -> dict[str, Any]:
    """The structured answer of a call that must have succeeded."""
    assert not result.is_error, result.content
    assert isinstance(result.structured_content, dict)
    return result.structured_content


def failed(result: CallToolResult, code: str) -> str:
    """The message of a call that must have failed with `code`."""
    assert result.is_error, result.structured_content
    assert isinstance(result.structured_content, dict)
    error = result.structured_content["error"]
    assert error["code"] == code, error
    assert "\n" not in error["message"] and error["message"]
    return str(error["message"])


def marker() -> str:
    return f"marker-{uuid.uuid4().hex}"


async def test_the_tools_are_listed_with_schemas_and_annotations(hub: Hub) -> None:
    async with Client(hub.stdio("demo", hub.api_key("demo"))) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    assert set(tools) == TOOLS
    for tool in tools.values():
        assert tool.description, tool.name
        schema = tool.input_schema
        assert schema["type"] == "object"
        assert schema.get("additionalProperties") is False, tool.name
        # The tenant is the credential's: no tool can be told another one.
        assert "tenant" not in schema.get("properties", {}), tool.name
        assert tool.annotations is not None
    assert tools["store_episode"].input_schema["required"] == ["task", "reward"]
    assert set(tools["search_memories"].input_schema["required"]) == {"query"}
    for name in ("delete_episode", "update_episode"):
        assert tools[name].annotations.destructive_hint is True, name
        assert tools[name].annotations.read_only_hint is False, name
    for name in ("search_memories", "get_episode", "memory_stats"):
        assert tools[name].annotations.read_only_hint is True, name
    assert tools["store_episode"].annotations.destructive_hint is False


async def test_every_tool_over_stdio(hub: Hub) -> None:
    tag = marker()
    async with Client(hub.stdio("demo", hub.api_key("demo"))) as client:
        before = ok(await client.call_tool("memory_stats", {}))["episodes"]
        stored = ok(await client.call_tool("store_episode", {
            "task": "summarise invoice", "input": "invoice #4411 (PDF)",
            "output": "Total: 300 EUR", "reward": 0.95, "critique": "correct total",
            "tags": [tag], "metadata": {"customer": "acme-gmbh"},
        }))
        assert stored["durability"] == "acknowledged"
        eid = stored["id"]
        uuid.UUID(eid)

        got = ok(await client.call_tool("get_episode", {"id": eid}))
        assert (got["id"], got["task"], got["output"]) == (eid, "summarise invoice", "Total: 300 EUR")
        assert got["tags"] == [tag] and got["metadata"] == {"customer": "acme-gmbh"}
        assert got["success"] is True

        found = ok(await client.call_tool("search_memories", {
            "query": "summarise the invoice", "k": 3, "tags": [tag],
            "metadata": {"customer": "acme-gmbh"}, "min_reward": 0.5,
        }))["memories"]
        assert [m["id"] for m in found] == [eid]
        assert found[0]["score"] > 0
        none = ok(await client.call_tool("search_memories", {
            "query": "summarise the invoice", "tags": [tag], "outcome": "failures",
        }))["memories"]
        assert none == []

        assert ok(await client.call_tool("update_episode", {
            "id": eid, "reward": 0.2, "critique": "the total was in USD",
        })) == {"id": eid, "updated": True}
        got = ok(await client.call_tool("get_episode", {"id": eid}))
        assert (got["reward"], got["critique"]) == (0.2, "the total was in USD")

        stats = ok(await client.call_tool("memory_stats", {}))
        assert stats["episodes"] == before + 1
        assert any(t["task"] == "summarise invoice" for t in stats["top_tasks"])

        assert ok(await client.call_tool("delete_episode", {"id": eid})) == {"id": eid, "deleted": True}
        failed(await client.call_tool("get_episode", {"id": eid}), "not_found")
        failed(await client.call_tool("delete_episode", {"id": eid}), "not_found")
        assert ok(await client.call_tool("memory_stats", {}))["episodes"] == before


async def test_no_argument_reaches_another_tenant(hub: Hub, workdir: Path) -> None:
    other_cert = hub.tenant_cert("other", workdir / "other-cert")
    secret_of_other = marker()
    async with Client(hub.stdio("other", hub.api_key("other"), other_cert)) as other:
        theirs = ok(await other.call_tool("store_episode", {
            "task": f"note {secret_of_other}", "output": secret_of_other, "reward": 1.0,
            "tags": [secret_of_other],
        }))["id"]

    async with Client(hub.stdio("demo", hub.api_key("demo"))) as demo:
        # Naming the tenant is refused, for every tool, and changes nothing.
        for name, args in [
            ("search_memories", {"query": secret_of_other, "tenant": "other"}),
            ("get_episode", {"id": theirs, "tenant": "other"}),
            ("store_episode", {"task": "x", "reward": 1.0, "tenant": "other"}),
            ("delete_episode", {"id": theirs, "tenant_id": "other"}),
            ("memory_stats", {"tenant": "other"}),
        ]:
            message = failed(await demo.call_tool(name, args), "invalid_request")
            assert "tenant" in message, message
        # Without it, the other tenant's episode is out of reach, as if it did not exist.
        found = ok(await demo.call_tool("search_memories", {"query": secret_of_other, "k": 100}))
        assert secret_of_other not in str(found)
        failed(await demo.call_tool("get_episode", {"id": theirs}), "not_found")
        failed(await demo.call_tool("update_episode", {"id": theirs, "reward": 0.0}), "not_found")
        failed(await demo.call_tool("delete_episode", {"id": theirs}), "not_found")

    async with Client(hub.stdio("other", hub.api_key("other"), other_cert)) as other:
        still = ok(await other.call_tool("get_episode", {"id": theirs}))
        assert (still["output"], still["reward"]) == (secret_of_other, 1.0)


async def test_bad_calls_are_tool_errors_and_the_server_keeps_serving(hub: Hub) -> None:
    tag = marker()
    async with Client(hub.stdio("demo", hub.api_key("demo"))) as client:
        before = ok(await client.call_tool("memory_stats", {}))["episodes"]
        # Arguments that do not fit the schema.
        failed(await client.call_tool("store_episode", {"task": "t", "reward": "high"}), "invalid_request")
        failed(await client.call_tool("store_episode", {"reward": 1.0}), "invalid_request")
        failed(await client.call_tool("get_episode", {"id": "not-a-uuid"}), "invalid_request")
        failed(await client.call_tool("search_memories", {"query": "x", "k": 0}), "invalid_request")
        failed(await client.call_tool("search_memories", {"query": "x", "k": 101}), "invalid_request")
        failed(await client.call_tool("search_memories", {"query": "  "}), "invalid_request")
        failed(await client.call_tool("update_episode", {"id": str(uuid.uuid4())}), "invalid_request")
        # Arguments the hub refuses: an empty task, a field over its limit.
        failed(await client.call_tool("store_episode", {"task": "  ", "reward": 1.0, "tags": [tag]}),
               "invalid_request")
        message = failed(await client.call_tool("store_episode", {
            "task": "t", "reward": 1.0, "tags": [tag], "output": "x" * 70_000,
        }), "invalid_request")
        assert "output is too large" in message
        # An id nobody stored.
        failed(await client.call_tool("get_episode", {"id": str(uuid.uuid4())}), "not_found")
        # Nothing was written, and the server still answers.
        assert ok(await client.call_tool("memory_stats", {}))["episodes"] == before
        found = ok(await client.call_tool("search_memories", {"query": "t", "tags": [tag]}))
        assert found["memories"] == []


async def test_a_key_with_only_the_read_scope_cannot_write(hub: Hub) -> None:
    async with Client(hub.stdio("demo", hub.api_key("demo", scopes="read"))) as client:
        failed(await client.call_tool("store_episode", {"task": "t", "reward": 1.0}), "forbidden")
        assert ok(await client.call_tool("memory_stats", {}))["episodes"] >= 0


def test_a_refused_key_stops_the_server_at_start_with_one_line(hub: Hub) -> None:
    forged = "adb_0123456789abcdef_" + "A" * 43
    run = subprocess.run([AGENTDB, *hub.mcp_args("demo")], input="", capture_output=True,
                         text=True, timeout=60, env={"AGENTDB_API_KEY": forged})
    assert run.returncode == 1
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "unauthenticated" in lines[0], run.stderr
    assert run.stdout == ""


async def test_streamable_http(hub: Hub) -> None:
    server = subprocess.Popen(
        [AGENTDB, *hub.mcp_args("demo"), "--http", "127.0.0.1:0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={"AGENTDB_API_KEY": hub.api_key("demo"), "AGENTDB_LOG": "warn"},
    )
    try:
        line = first_line(server, "agentdb mcp --http")
        assert line.startswith("agentdb mcp listening http://127.0.0.1:"), line
        url = line.rsplit(" ", 1)[1]
        tag = marker()
        async with Client(url) as client:
            assert {t.name for t in (await client.list_tools()).tools} == TOOLS
            eid = ok(await client.call_tool("store_episode", {
                "task": "triage bug report", "output": "severity high", "reward": 0.8,
                "tags": [tag],
            }))["id"]
        # A second connection sees what the first stored.
        async with Client(url) as client:
            found = ok(await client.call_tool("search_memories", {"query": "bug triage", "tags": [tag]}))
            assert [m["id"] for m in found["memories"]] == [eid]
            failed(await client.call_tool("search_memories", {"query": "x", "tenant": "other"}),
                   "invalid_request")
    finally:
        server.terminate()
        assert server.wait(timeout=10) == 0


def test_http_listens_on_loopback_only(hub: Hub) -> None:
    run = subprocess.run([AGENTDB, *hub.mcp_args("demo"), "--http", "0.0.0.0:0"],
                         capture_output=True, text=True, timeout=60,
                         env={"AGENTDB_API_KEY": hub.api_key("demo")})
    assert run.returncode == 1
    assert "loopback" in run.stderr and len(run.stderr.strip().splitlines()) == 1


def test_the_example_client_runs_as_documented(hub: Hub) -> None:
    example = Path(__file__).resolve().parents[4] / "examples" / "mcp" / "client.py"
    run = subprocess.run([sys.executable, str(example), str(AGENTDB), *hub.mcp_args("demo")],
                         capture_output=True, text=True, timeout=120,
                         env={"AGENTDB_API_KEY": hub.api_key("demo")})
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    tools = [line.split(" ")[1] for line in lines if line.startswith("tool ")]
    assert sorted(tools) == sorted(TOOLS)
    assert "tool delete_episode (destructive): " in run.stdout
    assert "tool search_memories (read-only): " in run.stdout
    assert "tool store_episode (additive): " in run.stdout
    answers = [line for line in lines if line.startswith("<")]
    assert len(answers) == 8
    assert answers[0].startswith('< {"durability": "acknowledged", "id": ')
    assert '"task": "summarise invoice"' in answers[1]
    assert answers[5].startswith('< error {"error": {"code": "invalid_request"')
    assert answers[7].startswith('< error {"error": {"code": "not_found"')
