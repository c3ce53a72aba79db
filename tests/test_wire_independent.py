"""The wire as the family's pages describe it, checked without our own codec.

F-WIRE, D-WIRE, F-ENV: a plain socket peer written here (``struct`` for the
4-byte big-endian length, ``json`` for the contents; nothing of
``adapters.framing`` or ``adapters.transport``) talks to ``telephony-fsm
bridge --listen`` as the client, and to ``telephony-fsm serve --connect`` as
the bridge. Every frame either side sends must be a length and exactly that
many bytes of UTF-8 JSON, an object ``{"header": ..., "body": ...}``.
"""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from fsm.checker import check_lines

ROOT = Path(__file__).resolve().parents[1]
CH = "S1.G1.1001"
TIMEOUT = 20.0

pytestmark = pytest.mark.e2e


def send_frame(sock: socket.socket, message: dict[str, Any]) -> None:
    contents = json.dumps(message, separators=(",", ":")).encode("utf-8")
    sock.sendall(struct.pack(">I", len(contents)) + contents)


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise EOFError(f"the peer closed after {len(data)} of {size} bytes")
        data += chunk
    return data


def recv_frame(sock: socket.socket) -> dict[str, Any] | None:
    """The next frame as a message; None when the peer closed at a frame boundary."""
    first = sock.recv(1)
    if not first:
        return None
    (length,) = struct.unpack(">I", first + _read_exactly(sock, 3))
    assert 0 < length <= 1 << 20, f"frame length {length}"
    message = json.loads(_read_exactly(sock, length).decode("utf-8"))
    assert isinstance(message, dict), message
    assert {"header", "body"} == set(message), f"not the envelope {{header, body}}: {message}"
    assert isinstance(message["header"], dict) and isinstance(message["body"], dict), message
    return message


def event(name: str, target: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"header": {"type": "cti.event", "name": name, "target": target}, "body": body or {}}


def response(request: dict[str, Any], body: dict[str, Any] | None = None) -> dict[str, Any]:
    h = request["header"]
    return {
        "header": {
            "type": "cti.response",
            "name": h["name"],
            "target": h["target"],
            "requestId": h["requestId"],
            "result": "SUCCESS",
        },
        "body": body or {},
    }


def test_a_plain_socket_client_talks_to_the_reference_bridge(tmp_path: Path) -> None:
    """F-WIRE, F-ENV: the bridge process frames what it sends and reads what
    a client written from the pages sends; its session ends with exit 0."""
    steps = tmp_path / "steps.jsonl"
    steps.write_text(
        json.dumps({"actor": "agent", "action": "setdata", "body": {"note": "vip"}})
        + "\n"
        + json.dumps({"actor": "agent", "action": "dispose"})
        + "\n"
    )
    trace = tmp_path / "bridge.jsonl"
    bridge = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "adapters.cli",
            "bridge",
            "--listen",
            "127.0.0.1:0",
            "--steps",
            str(steps),
            "--trace",
            str(trace),
            "--timeout",
            str(TIMEOUT),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert bridge.stdout is not None
        listening = bridge.stdout.readline()
        port = int(listening.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
            created = {
                "header": {"type": "cti.event", "name": "interaction.created", "target": CH},
                "body": {"interactionid": "c1", "type": "telephony"},
            }
            seen: list[str] = []
            data: dict[str, str] = {"ani": "5551000"}
            # what a client written from the pages answers in the start-up and the login
            login_answers: dict[str, dict[str, Any]] = {
                "session.query.init": {"session-state": "LOGGEDIN", "channel-groups": [{"id": "G1"}]},
                "channelgroup.query.init": {"channels": [{"end-point": "1001", "type": "telephony"}]},
                "channel.query.init": {"channel-state": "INACTIVE", "ready-state": None, "interactions": []},
            }
            while (message := recv_frame(sock)) is not None:
                name = message["header"]["name"]
                seen.append(name)
                assert "cti.query" == message["header"]["type"] or "cti.request" == message["header"]["type"]
                if name == "cti.request.status":
                    send_frame(sock, response(message))
                    status = {"status": "started", "reason": ""}
                    send_frame(sock, event("cti.status", "proc-1.CONTROL", status))
                elif name in login_answers:
                    send_frame(sock, response(message, login_answers[name]))
                elif name == "channel.request.activate":
                    send_frame(sock, event("channel.activated", CH))
                    send_frame(sock, response(message))
                elif name == "channel.request.ready":
                    send_frame(sock, event("channel.ready", CH))
                    send_frame(sock, response(message))
                    send_frame(sock, created)
                elif name == "interaction.query.init":
                    send_frame(
                        sock,
                        response(
                            message,
                            {
                                "interaction-state": "ALERTING",
                                "interaction-data": data,
                                "conversations": {"primary": {"id": "c1"}},
                            },
                        ),
                    )
                elif name == "conversation.query.init":
                    state = {"conversation-state": "ALERTING", "nativeid": "c1", "role": "primary"}
                    send_frame(sock, response(message, state))
                elif name == "interaction.request.setdata":
                    send_frame(sock, response(message))
                    data.update(message["body"])
                    changed = {"interaction-data": dict(message["body"])}
                    send_frame(sock, event("interaction.datachanged", f"{CH}.c1", changed))
                elif name == "session.request.logout":
                    send_frame(sock, event("channel.deactivated", CH))
                    send_frame(sock, response(message))
                else:
                    send_frame(sock, response(message))
        code = bridge.wait(TIMEOUT)
        _, err = bridge.communicate()
    finally:
        bridge.kill()
    expected = [
        "cti.request.status",  # F-CTRL-2
        "cti.query.capabilities",
        "session.query.init",  # F-SESS-1
        "channelgroup.query.init",
        "channel.query.init",
        "channel.request.activate",  # D-CH-1
        "channel.request.ready",
        "interaction.query.init",
        "interaction.request.createconversation",
        "conversation.query.init",
        "interaction.request.setdata",
        "interaction.request.dispose",
        "session.request.logout",  # D-SESS-2
        "session.request.dispose",
    ]
    assert expected == seen
    assert {"note": "vip"} == {"note": data["note"]}
    assert 0 == code, err
    assert [] == check_lines(trace.read_text().splitlines())


def test_the_adapter_talks_to_a_plain_socket_bridge(tmp_path: Path) -> None:
    """F-WIRE, F-ENV, D-ENV: serve connects, frames its events and responses,
    reads frames built here, and ends when the bridge closes the connection
    (--exit-on-close)."""
    events = tmp_path / "switch.jsonl"
    events.write_text(
        json.dumps({"from": "switch", "event": {"kind": "offered", "call": "c1", "device": "1001"}}) + "\n"
    )
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(TIMEOUT)
        port = server.getsockname()[1]
        trace = tmp_path / "serve.jsonl"
        serve = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "adapters.cli",
                "serve",
                "--connect",
                f"127.0.0.1:{port}",
                "--switch-events",
                str(events),
                "--exit-on-close",
                "--trace",
                str(trace),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            conn, _ = server.accept()
            with conn:
                conn.settimeout(TIMEOUT)
                numbers = iter(range(100, 200))
                seen_events: list[dict[str, Any]] = []

                def ask(name: str, target: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
                    """Send a query or request; its response (events before it are kept)."""
                    kind = "cti.query" if ".query." in name else "cti.request"
                    rid = f"{{00000000-0000-4000-8000-{next(numbers):012d}}}"
                    header = {"type": kind, "name": name, "target": target, "requestId": rid}
                    send_frame(conn, {"header": header, "body": body or {}})
                    while (answer := recv_frame(conn)) is not None:
                        if answer["header"]["type"] == "cti.event":
                            seen_events.append(answer)
                            continue
                        assert rid == answer["header"]["requestId"]
                        assert "SUCCESS" == answer["header"]["result"], answer
                        return answer
                    raise AssertionError(f"no answer to {name}")

                ask("cti.request.status", "proc-1.CONTROL")  # F-CTRL-2
                ask("cti.query.capabilities", "proc-1.CONTROL")
                ask("session.query.init", "S1", {"name": "agent-1"})
                ask("channelgroup.query.init", "S1.G1")
                listed = ask("channel.query.init", CH)["body"]["interactions"]
                ask("channel.request.activate", CH)
                ask("channel.request.ready", CH)
                if "c1" not in listed:  # offered after the channel's init: announced (D-NEW)
                    created = next(
                        (e for e in seen_events if e["header"]["name"] == "interaction.created"), None
                    )
                    if created is None:
                        created = recv_frame(conn)
                    assert created is not None
                    assert {"type": "cti.event", "name": "interaction.created", "target": CH} == created[
                        "header"
                    ]
                    assert {"interactionid": "c1", "type": "telephony"} == created["body"]
                header = {
                    "type": "cti.query",
                    "name": "interaction.query.init",
                    "target": f"{CH}.c1",
                    "requestId": "{00000000-0000-4000-8000-000000000001}",
                }
                send_frame(conn, {"header": header})  # D-ENV: body may be absent
                init = recv_frame(conn)
                assert init is not None
                assert {**header, "type": "cti.response", "result": "SUCCESS"} == init["header"]
                assert "ALERTING" == init["body"]["interaction-state"]
                dispose = {
                    "type": "cti.request",
                    "name": "interaction.request.dispose",
                    "target": f"{CH}.c1",
                    "requestId": "{00000000-0000-4000-8000-000000000002}",
                }
                send_frame(conn, {"header": dispose, "body": {}})
                disposed = recv_frame(conn)
                assert disposed is not None
                assert {
                    "header": {**dispose, "type": "cti.response", "result": "SUCCESS"},
                    "body": {},
                } == disposed
            code = serve.wait(TIMEOUT)
            _, err = serve.communicate()
        finally:
            serve.kill()
    assert 0 == code, err
    lines = trace.read_text().splitlines()
    assert {"connection": 1} == json.loads(lines[0])
    assert [] == check_lines(lines)
