"""Lists the tools of an `agentdb mcp` server and calls each one, printing what goes over
the wire: the transcript of one LLM agent's use of its memory.

    python3 examples/mcp/client.py agentdb mcp --dev agentdb-data/dev --tenant demo

Everything after the script's name is the command that starts the server (stdio); or give
the URL of one started with `--http`:

    python3 examples/mcp/client.py http://127.0.0.1:8765/mcp

Needs the `mcp` package (pip install mcp).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import anyio
from mcp.client import Client
from mcp.client.stdio import StdioServerParameters


def show(direction: str, value: Any) -> None:
    print(f"{direction} {json.dumps(value, sort_keys=True)}")


async def call(client: Client, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    show(">", {"tool": name, "arguments": arguments})
    result = await client.call_tool(name, arguments)
    answer = result.structured_content or {}
    show("<" if not result.is_error else "< error", answer)
    return answer


async def main(target: list[str]) -> None:
    server: str | StdioServerParameters
    if len(target) == 1 and target[0].startswith("http"):
        server = target[0]
    else:
        # The server inherits this environment (AGENTDB_API_KEY, FEDERATION_HUB_ENDPOINT, ...).
        server = StdioServerParameters(command=target[0], args=target[1:], env=dict(os.environ))
    async with Client(server) as client:
        for tool in (await client.list_tools()).tools:
            hints = tool.annotations
            kind = ("read-only" if hints and hints.read_only_hint
                    else "destructive" if hints and hints.destructive_hint else "additive")
            print(f"tool {tool.name} ({kind}): {tool.description}")
        stored = await call(client, "store_episode", {
            "task": "summarise invoice", "input": "invoice #4411 (PDF)",
            "output": "Total: 300 EUR", "reward": 0.95, "critique": "correct total and currency",
            "tags": ["invoice"], "metadata": {"customer": "acme-gmbh"},
        })
        episode = stored["id"]
        await call(client, "search_memories", {"query": "summarise the invoice", "k": 3,
                                               "tags": ["invoice"]})
        await call(client, "get_episode", {"id": episode})
        await call(client, "update_episode", {"id": episode, "reward": 0.4,
                                              "critique": "the total was in USD"})
        await call(client, "memory_stats", {})
        await call(client, "search_memories", {"query": "invoice", "tenant": "someone-else"})
        await call(client, "delete_episode", {"id": episode})
        await call(client, "get_episode", {"id": episode})


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    anyio.run(main, sys.argv[1:])
