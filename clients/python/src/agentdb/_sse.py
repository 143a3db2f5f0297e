"""A Server-Sent Events parser (the WHATWG event-stream format), fed bytes as they arrive.

Fields ``id``, ``event`` and ``data``; comment lines (``:`` first, the hub's keep-alives);
an event ends at a blank line; lines end with LF, CR or CRLF. An event cut off by the end of
the stream is dropped, as a browser drops it.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

_LINE_END = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    """One event."""

    event: str
    """The event type; ``message`` when none was given."""
    data: str
    """The data lines joined with ``\\n``."""
    id: str | None
    """The event's ``id`` field, if it had one."""


class SSEParser:
    """Incremental parser: ``feed`` it chunks, take the events they complete."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buffer = ""
        self._data: list[str] = []
        self._event = ""
        self._id: str | None = None
        self._saw_field = False

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        """Feeds bytes; returns the events they completed, in order."""
        self._buffer += self._decoder.decode(chunk)
        events: list[ServerSentEvent] = []
        while True:
            m = _LINE_END.search(self._buffer)
            if m is None:
                break
            # A lone CR at the very end may be the first half of a CRLF: wait for more.
            if m.group() == "\r" and m.end() == len(self._buffer):
                break
            line = self._buffer[: m.start()]
            self._buffer = self._buffer[m.end() :]
            event = self._line(line)
            if event is not None:
                events.append(event)
        return events

    def _line(self, line: str) -> ServerSentEvent | None:
        if line == "":
            if not self._saw_field:
                return None
            event = ServerSentEvent(event=self._event or "message", data="\n".join(self._data), id=self._id)
            self._data, self._event, self._id, self._saw_field = [], "", None, False
            return event
        if line.startswith(":"):
            return None  # a comment (keep-alive)
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self._id = value
        else:
            return None  # `retry` and unknown fields are ignored
        self._saw_field = True
        return None
