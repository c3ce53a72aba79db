"""What the tests against independent SIP software share (tests/test_sip_peers.py):
free loopback ports, the peers' binaries (skipping, naming the Debian
package, where one is missing), Kamailio as a process with
tests/peers/kamailio.cfg, certificates, serve with the softphone, SIPp
customers, and the readers of what the peers and the traces say."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from tests.test_bridge_serve_e2e import CLI

ROOT = Path(__file__).resolve().parent.parent
PEERS = Path(__file__).resolve().parent / "peers"
PASSWORD = "s3cret-Pa55"
#: the agent's SIP account: the end-point of the default directory's agent-1
ACCOUNT = "1001"


def sipp_customers(sipp: str, workdir: Path, address: str, *options: str) -> subprocess.CompletedProcess[str]:
    """SIPp playing customers (tests/peers/sipp/customer.xml) who call the
    agent's account at ``address``; its errors go to customers.errors."""
    return subprocess.run(
        [
            sipp,
            *("-sf", str(PEERS / "sipp" / "customer.xml"), "-s", ACCOUNT, address),
            *("-i", "127.0.0.1", "-p", str(free_port()), *options, "-timeout", "110", "-nostdin"),
            *("-trace_err", "-error_file", str(workdir / "customers.errors")),
        ],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=120,
    )


def sipp_far_end(sipp: str, workdir: Path, port: int, scenario: str, *options: str) -> subprocess.Popen[str]:
    """SIPp as a far end on loopback ``port``: ``scenario`` is a file of
    tests/peers/sipp or ``uas`` (SIPp's built-in one); it answers until its
    ``-m`` calls are done or its ``-timeout``, both in ``options``."""
    chosen = ("-sn", "uas") if scenario == "uas" else ("-sf", str(PEERS / "sipp" / scenario))
    return subprocess.Popen(
        [sipp, *chosen, "-i", "127.0.0.1", "-p", str(port), "-nostdin", *options],
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


#: the desktop dials 300, hangs up once the far end answered, completes
DIAL_AND_HANG_UP: list[dict[str, object]] = [
    {"actor": "agent", "action": "dial", "body": {"destination": "300"}},
    {"actor": "bridge", "wait": {"state": "STARTED"}, "timeout": 20},
    {"actor": "agent", "action": "release"},
    {"actor": "agent", "action": "complete"},
]


def free_port() -> int:
    """A port free for both UDP and TCP on loopback."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port: int = udp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
    raise AssertionError("no free port on loopback")


def need(binary: str, package: str) -> str:
    found = shutil.which(binary)
    if found is None:
        pytest.skip(f"{binary} is not installed: Debian's package {package} (.ci/run installs it)")
    return found


#: where Debian puts Kamailio's modules
MODULES = "/usr/lib/x86_64-linux-gnu/kamailio/modules"


def certificate(workdir: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key (openssl)."""
    openssl = need("openssl", "openssl")
    cert, key = workdir / f"{name}.pem", workdir / f"{name}.key"
    subprocess.run(
        [
            *(openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"),
            *("-keyout", str(key), "-out", str(cert), "-subj", f"/CN={name}"),
            *("-addext", "subjectAltName=IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


class Kamailio:
    """A registrar and proxy (tests/peers/kamailio.cfg) on loopback UDP and TCP."""

    def __init__(self, workdir: Path, *, far: str, max_expires: int = 3600, tls: bool = False) -> None:
        binary = need("kamailio", "kamailio")
        self.port = free_port()
        self.log_path = workdir / "kamailio.log"
        self.log = self.log_path.open("w")
        rundir = workdir / "kamailio-run"
        rundir.mkdir()
        listen = ["-l", f"udp:127.0.0.1:{self.port}", "-l", f"tcp:127.0.0.1:{self.port}"]
        if tls:  # on the next port: its certificate for 127.0.0.1, made here
            if not Path(MODULES, "tls.so").exists():
                pytest.skip("Kamailio's TLS module is not installed: Debian's kamailio-tls-modules (.ci/run)")
            self.tls_port = free_port()
            self.certificate, key = certificate(workdir, "registrar")
            listen += ["-l", f"tls:127.0.0.1:{self.tls_port}", "-A", "WITH_TLS"]
            listen += ["-A", f'TLS_CERT="{self.certificate}"', "-A", f'TLS_KEY="{key}"']
        self.process = subprocess.Popen(
            [
                binary,
                *("-f", str(PEERS / "kamailio.cfg"), "-DD", "-E", "-n", "1", "-Y", str(rundir)),
                *listen,
                *("-A", f'PASSWORD="{PASSWORD}"', "-A", f'FAR="{far}"', "-A", f"MAXEXPIRES={max_expires}"),
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self._wait_ready()

    def _wait_ready(self) -> None:
        """Kamailio answers a request with Max-Forwards 0 with a 483 at once
        (to the address of its Via)."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            sock.settimeout(0.2)
            mine = sock.getsockname()[1]
            probe = (
                f"OPTIONS sip:probe@127.0.0.1:{self.port} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP 127.0.0.1:{mine};branch=z9hG4bK-probe\r\n"
                "Max-Forwards: 0\r\nFrom: <sip:probe@127.0.0.1>;tag=1\r\nTo: <sip:probe@127.0.0.1>\r\n"
                "Call-ID: probe\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
            ).encode()
            for _ in range(50):
                assert self.process.poll() is None, self.log_path.read_text()
                sock.sendto(probe, ("127.0.0.1", self.port))
                with contextlib.suppress(TimeoutError):
                    if sock.recv(4096).startswith(b"SIP/2.0 483"):
                        return
        raise AssertionError(f"kamailio did not answer: {self.log_path.read_text()}")

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def accepted(self, what: str) -> list[str]:
        """What it logged as accepted: ``REGISTER ...`` or ``INVITE ...`` lines."""
        lines = self.log_path.read_text(errors="replace").splitlines()
        return [line.partition("accepted ")[2] for line in lines if f"accepted {what}" in line]

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


def sip_serve(
    tmp_path: Path, bridge_port: int, *options: str, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    """``serve --switch sip`` connected to the bridge process, until it closes the connection."""
    return subprocess.Popen(
        [
            *CLI,
            "serve",
            *("--connect", f"127.0.0.1:{bridge_port}", "--switch", "sip"),
            *("--trace", str(tmp_path / "serve.jsonl"), "--max-reconnects", "3", "--exit-on-close"),
            *options,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def serve_registered(
    tmp_path: Path, bridge_port: int, kamailio: Kamailio, *options: str, password: str = PASSWORD
) -> subprocess.Popen[str]:
    """agent-1's softphone registering its account at Kamailio; the
    password comes from the environment, never the command line."""
    return sip_serve(
        tmp_path,
        bridge_port,
        *("--sip-listen", f"127.0.0.1:{free_port()}", "--sip-user", ACCOUNT),
        *("--sip-registrar", kamailio.address, "--sip-password-env", "SIP_PASSWORD"),
        *options,
        env={"SIP_PASSWORD": password},
    )


def expires_of(registers: list[str]) -> list[int]:
    return [int(m.group(1)) for line in registers if (m := re.search(r"expires=(\d+)", line))]


def bridge_entries(tmp_path: Path) -> list[dict[str, object]]:
    return [json.loads(x) for x in (tmp_path / "bridge.jsonl").read_text().splitlines()]


def responses(tmp_path: Path, name: str) -> list[dict[str, object]]:
    found = []
    for entry in bridge_entries(tmp_path):
        message = entry.get("message")
        if entry.get("to") == "bridge" and isinstance(message, dict):
            header = message["header"]
            if header["type"] == "cti.response" and header["name"] == name:
                found.append(header)
    return found


def stat(output: str, row: str) -> int:
    """A cumulative figure of SIPp's final statistics screen (its last column)."""
    rows = [line for line in output.splitlines() if line.strip().startswith(row)]
    assert rows, output[-3000:]
    return int(rows[-1].split("|")[-1].strip())


def most_at_once(trace: Path) -> int:
    """The most customer calls live at the same time, from serve's trace."""
    live: set[str] = set()
    most = 0
    for line in trace.read_text().splitlines():
        entry = json.loads(line)
        event = entry.get("event") if entry.get("from") == "switch" else None
        if not isinstance(event, dict):
            continue
        if event["kind"] == "offered":
            live.add(event["call"])
        elif event["kind"] in ("ended", "failed"):
            live.discard(event["call"])
        most = max(most, len(live))
    return most


def steps_file(tmp_path: Path, name: str, steps: list[dict[str, object]]) -> str:
    path = tmp_path / f"{name}.jsonl"
    path.write_text("".join(json.dumps(s) + "\n" for s in steps), encoding="utf-8")
    return str(path)


def switch_events(tmp_path: Path, kind: str) -> list[dict[str, object]]:
    events = []
    for line in (tmp_path / "serve.jsonl").read_text().splitlines():
        entry = json.loads(line)
        if entry.get("from") == "switch" and entry["event"]["kind"] == kind:
            events.append(entry["event"])
    return events
