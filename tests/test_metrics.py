"""``serve --metrics HOST:PORT``: Prometheus metrics and /healthz
(harness.md), scraped over loopback HTTP from a running serve process;
and the bound on every label's values, whatever the bridge sends."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

from adapters.serve.metrics import Metrics
from fsm.codec import dumps
from tests.driver import CONTROL, Driver
from tests.test_bridge_serve_e2e import finish, start_bridge, start_serve


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _get(port: int, request: bytes) -> tuple[int, str]:
    """One HTTP exchange on loopback: the status code and the body."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode()


def _scrape_until(port: int, path: str, wanted: str, seconds: float = 15.0) -> tuple[int, str]:
    deadline = time.monotonic() + seconds
    while True:
        try:
            status, body = _get(port, f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            if wanted in body or time.monotonic() > deadline:
                return status, body
        except OSError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.1)


def test_serve_answers_scrapes_and_health_checks(tmp_path: Path) -> None:
    """While serve is connected and its agent logged in: /healthz is 200
    ``ok``; /metrics counts the login's requests and the engine's state; other
    paths, methods and malformed requests get 404, 405, 400."""
    steps = tmp_path / "agent.jsonl"
    steps.write_text(json.dumps({"actor": "bridge", "wait": {"seconds": 3}}) + "\n", encoding="utf-8")
    bridge, port = start_bridge(tmp_path, "--steps", str(steps))
    metrics_port = _free_port()
    serve = start_serve(tmp_path, port, "--metrics", f"127.0.0.1:{metrics_port}", customers=[])
    try:
        login = 'telephony_fsm_responses_total{name="channel.request.ready",result="SUCCESS"} 1.0'
        status, body = _scrape_until(metrics_port, "/metrics", login)
        assert 200 == status
        assert login in body, body
        assert 'telephony_fsm_status{status="started"} 1.0' in body
        assert "telephony_fsm_sessions 1.0" in body
        assert 'telephony_fsm_commands_total{op="login"} 1.0' in body
        assert 'telephony_fsm_events_total{name="channel.activated"} 1.0' in body
        assert "telephony_fsm_healthy 1.0" in body
        assert (200, "ok\n") == _get(metrics_port, b"GET /healthz HTTP/1.1\r\n\r\n")
        assert 404 == _get(metrics_port, b"GET /other HTTP/1.1\r\n\r\n")[0]
        assert 405 == _get(metrics_port, b"POST /metrics HTTP/1.1\r\n\r\n")[0]
        assert 400 == _get(metrics_port, b"\xff\xfe nonsense\r\n\r\n")[0]
    finally:
        bridge_code, bridge_err = finish(bridge)
        serve_code, serve_err = finish(serve)
    assert (0, 0) == (bridge_code, serve_code), (bridge_err, serve_err)


def test_labels_stay_bounded_whatever_the_bridge_sends() -> None:
    """A message of an unknown name and an unknown rule's shape are
    counted under ``other``: a hostile bridge cannot grow the metrics."""
    d = Driver()
    metrics = Metrics(d.engine, lambda: "")
    for n in range(50):
        item = {
            "from": "bridge",
            "message": {
                "header": {"type": "cti.request", "name": f"x.{n}", "target": CONTROL, "requestId": f"h{n}"}
            },
        }
        metrics.count(item, d.feed(item))
    text = metrics.render().decode()
    assert 'telephony_fsm_responses_total{name="other",result="FAILURE"} 50.0' in text, text
    assert 'telephony_fsm_inputs_total{source="bridge"} 50.0' in text
    assert "x.1" not in text
    assert len(dumps(text)) < 20_000


def test_healthz_is_503_while_no_bridge_is_connected(tmp_path: Path) -> None:
    """serve keeps trying a bridge that is not there: /healthz says why it is not healthy."""
    metrics_port = _free_port()
    serve = start_serve(tmp_path, _free_port(), "--metrics", f"127.0.0.1:{metrics_port}", customers=[])
    try:
        status, body = _scrape_until(metrics_port, "/healthz", "not connected")
        assert (503, "not connected to the bridge\n") == (status, body)
        assert "telephony_fsm_healthy 0.0" in _get(metrics_port, b"GET /metrics HTTP/1.1\r\n\r\n")[1]
    finally:
        serve.terminate()
        finish(serve)
