"""``serve --metrics HOST:PORT``: Prometheus metrics and a health check.

``GET /metrics`` answers the Prometheus text format (``prometheus_client``
renders it: the format and the metric types are that library's job);
``GET /healthz`` answers 200 ``ok`` while serve is connected to its bridge
and every background task runs, 503 with the reason otherwise. The HTTP
side is a small asyncio server in serve's own loop, a task watched like the
others: no thread of its own, nothing that can die unseen.

Every label has a bounded set of values, whatever the bridge sends: a
message name is labelled only when it is a name of the request catalog
(``other`` otherwise), a rule only when it is a rule ID's shape, an event or
a command by the engine's own names.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from fsm.catalog import CATALOG, CHANNEL_EVENTS, CONTROL_EVENTS, CONVERSATION_EVENTS, INTERACTION_EVENTS
from fsm.engine import Engine
from fsm.machines import CONTROL_STATES

logger = logging.getLogger("telephony_fsm.serve")

#: a rule ID (spec: S-, F-, D-, H- rules)
_RULE: Final = re.compile(r"[SFDH]-[A-Z]+(-[0-9]+)?")
#: the longest request line read (anything longer is refused)
_MAX_LINE: Final = 2048


_REASONS: Final = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    503: "Unavailable",
}


def _is_status(engine: Engine, name: str) -> Callable[[], float]:
    return lambda: float(engine.control.state == name)


def _name(name: object) -> str:
    return name if isinstance(name, str) and name in CATALOG else "other"


class Metrics:
    """What serve counts, and what it reads off the engine at each scrape."""

    def __init__(self, engine: Engine, health: Callable[[], str]) -> None:
        #: "" when healthy, else why not (connected to no bridge, a task failed)
        self.health = health
        self.registry = registry = CollectorRegistry(auto_describe=True)

        def counter(name: str, what: str, *labels: str) -> Counter:
            return Counter(f"telephony_fsm_{name}", what, labels, registry=registry)

        def gauge(name: str, what: str, read: Callable[[], float]) -> None:
            Gauge(f"telephony_fsm_{name}", what, registry=registry).set_function(read)

        self.inputs = counter("inputs", "Inputs processed, by source", "source")
        self.responses = counter("responses", "Responses sent to the bridge", "name", "result")
        self.refusals = counter("refusals", "FAILURE responses, by the rule they cite", "rule")
        self.events = counter("events", "Events sent to the bridge", "name")
        self.commands = counter("commands", "Commands sent to the switch", "op")
        self.errors = counter("errors", "Switch errors and protocol errors", "kind")
        gauge("interactions", "Live interactions", lambda: len(engine.interactions))
        gauge("sessions", "Agent sessions", lambda: len(engine.sessions))
        gauge("healthy", "1 while /healthz answers 200", lambda: float(not self.health()))
        status = Gauge("telephony_fsm_status", "1 for the client's status", ["status"], registry=registry)
        for name in CONTROL_STATES:
            status.labels(name).set_function(_is_status(engine, name))

    def count(self, item: dict[str, Any], outputs: list[dict[str, Any]]) -> None:
        """One input of the ``run`` line protocol and what it caused."""
        source = item.get("from")
        self.inputs.labels(source if source in ("bridge", "switch", "clock") else "other").inc()
        for entry in outputs:
            if "error" in entry or "protocol_error" in entry:
                self.errors.labels("protocol" if "protocol_error" in entry else "switch").inc()
            elif entry.get("to") == "switch":
                op = entry["command"].get("op")
                self.commands.labels(op if op in _OPS else "other").inc()
            elif entry.get("to") == "bridge":
                self._to_bridge(entry)

    def _to_bridge(self, entry: dict[str, Any]) -> None:
        header = entry["message"]["header"]
        name = header.get("name")
        if header.get("type") == "cti.event":
            self.events.labels(name if name in _EVENTS else "other").inc()
            return
        ok = header.get("result") == "SUCCESS"
        self.responses.labels(_name(name), "SUCCESS" if ok else "FAILURE").inc()
        if not ok:
            rule = entry.get("rule")
            self.refusals.labels(rule if isinstance(rule, str) and _RULE.fullmatch(rule) else "other").inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)

    # -- the HTTP side

    async def serve(self, host: str, port: int, on_listening: Callable[[int], None] | None = None) -> None:
        """Answer HTTP until cancelled."""
        server = await asyncio.start_server(self._answer, host, port)
        bound = server.sockets[0].getsockname()[1]
        logger.info("metrics at http://%s:%d/metrics, health at /healthz", host, bound)
        if on_listening is not None:
            on_listening(bound)
        async with server:
            await server.serve_forever()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 5.0)
            method, path = _request_line(line)
            while (header := await asyncio.wait_for(reader.readline(), 5.0)) not in (b"\r\n", b"\n", b""):
                if len(header) > _MAX_LINE:
                    raise ValueError("header line too long")
            if method != "GET":
                await _reply(writer, 405, b"only GET\n")
            elif path == "/metrics":
                await _reply(writer, 200, self.render(), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                why = self.health()
                await _reply(writer, 503 if why else 200, (why or "ok").encode() + b"\n")
            else:
                await _reply(writer, 404, b"/metrics or /healthz\n")
        except (ValueError, TimeoutError, asyncio.LimitOverrunError) as exc:
            await _reply(writer, 400, f"bad request: {exc}\n".encode())
        except ConnectionError:
            pass
        finally:
            writer.close()


def _request_line(line: bytes) -> tuple[str, str]:
    if len(line) > _MAX_LINE or not line.endswith(b"\n"):
        raise ValueError("no request line")
    parts = line.decode("ascii", "replace").split()
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise ValueError("not an HTTP/1.x request line")
    return parts[0], parts[1].partition("?")[0]


async def _reply(writer: asyncio.StreamWriter, status: int, body: bytes, kind: str = "text/plain") -> None:
    head = f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: {kind}\r\nContent-Length: {len(body)}\r\n"
    writer.write(head.encode() + b"Connection: close\r\n\r\n" + body)
    with contextlib.suppress(ConnectionError):
        await writer.drain()


_OPS: Final = frozenset(spec.op for spec in CATALOG.values() if spec.op is not None)
_EVENTS: Final = frozenset((*CONTROL_EVENTS, *CHANNEL_EVENTS, *INTERACTION_EVENTS, *CONVERSATION_EVENTS))
