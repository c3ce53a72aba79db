"""Durable state of ``telephony-fsm serve --state FILE`` (adapters/state.py).

1. The store: a round trip at every input of the full call, the outbox's
   order, a real SIGKILL between a commit and the sending, WAL mode, and
   files that are refused.
2. A request pending on the switch when serve is killed is answered after
   the restart, or times out (D-ASYNC; the time spent down counts); a
   requestId answered before the kill is refused after it (D-DUP).
3. The bridge and serve processes run the demo's call once without a kill;
   then serve is killed with SIGKILL right after committing input N, for
   every input N of the call, and restarted on the same state file. The
   bridge must see what the run without a kill showed: the same events in
   the same order, the same answers to the agent's and the dispose
   requests, one response per message it sent (S-REQ-1) apart from the
   re-init answers (D-LIFE-5) and D-DUP refusals of re-sent requests, and
   serve must run every switch command exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from adapters.bridge import Send
from adapters.runner import Runner
from adapters.session import DEMO_CALL
from adapters.simulated import ScriptedSwitch, SimulatedSwitch
from adapters.state import APPLICATION_ID, StateError, StateStore, Store, resume
from adapters.transport import FramedConnection, TransportError, serve
from fsm.checker import Violation, check_lines
from fsm.outputs import Targets
from fsm.snapshot import snapshot
from tests.driver import CH, DEVICE, cmd_id, logged_in_bridge
from tests.scenario import (
    ACCEPT,
    INIT,
    IT,
    Entry,
    Line,
    full_call,
    login_lines,
    make_runner,
    offered,
    query,
    request,
    switch,
)

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "adapters.cli"]
SERVE = [*CLI, "serve"]


def crashing(n: int) -> list[str]:
    """serve, killed right after committing input ``n`` (tests/crashing_serve.py)."""
    return [sys.executable, "-m", "tests.crashing_serve", str(n)]


#: inputs serve processes in the demo's call: the login's 7 bridge messages,
#: the offer, 18 bridge messages of the call, the logout and the session's dispose
CALL_INPUTS = 28

# --------------------------------------------------------------------------
# 1. The store.


def feed_and_save(runner: Runner, store: Store, lines: list[Line], start: int) -> list[Entry]:
    """Feed ``lines`` one by one, committing each as serve does; all outputs."""
    out: list[Entry] = []
    for number, line in enumerate(lines, start=start):
        entries = json.loads(json.dumps(runner.feed(json.dumps(line), number)))
        store.save(
            runner.engine,
            runner.switch,
            inputs=number,
            switch_events=0,
            outputs=[e["message"] for e in entries if e.get("to") == "bridge"],
        )
        out += entries
    return out


@pytest.mark.parametrize("k", range(len(full_call()) + 1))
def test_restart_from_the_file_at_every_input_of_the_full_call(tmp_path: Path, k: int) -> None:
    """A process that stops after input k and resumes from the file produces
    what one that never stopped produces, and ends in the same state; the
    last message answered before the stop is refused after it (D-DUP)."""
    restart_at(lambda: StateStore(tmp_path / "state.db"), k)


def restart_at(open_store: Callable[[], Store], k: int) -> None:
    """The full call, stopped after input ``k`` and resumed from the store
    ``open_store`` opens (once to write, once to resume)."""
    lines = full_call()
    reference = make_runner()
    expected = [
        json.loads(json.dumps(reference.feed(json.dumps(line), n))) for n, line in enumerate(lines, 1)
    ]
    store = open_store()
    try:
        feed_and_save(make_runner(), store, lines[:k], 1)
    finally:
        store.close()
    store = open_store()
    try:
        saved = store.load()
        if k == 0:
            assert saved is None
            runner = make_runner()
        else:
            assert saved is not None
            assert k == saved.inputs
            runner = Runner(*resume(saved, SimulatedSwitch(), Targets()))
            sent = [line for line in lines[:k] if isinstance(line, dict) and line["from"] == "bridge"]
            if sent and k < len(lines):  # the last one disposes the interaction
                probe = Runner(*resume(saved, SimulatedSwitch(), Targets()))
                again = probe.feed(json.dumps(sent[-1]), k + 1)
                assert "duplicate requestId" in again[0]["message"]["header"]["errorMessage"]
        got = feed_and_save(runner, store, lines[k:], k + 1)
    finally:
        store.close()
    assert [e for group in expected[k:] for e in group] == got
    assert snapshot(reference.engine) == snapshot(runner.engine)
    assert reference.switch == runner.switch


def message(n: int) -> dict[str, Any]:
    return {"header": {"type": "cti.event", "name": f"interaction.event-{n}", "target": IT}}


def test_the_outbox_keeps_order_and_forgets_what_was_sent(tmp_path: Path) -> None:
    runner = make_runner()
    with StateStore(tmp_path / "state.db") as store:
        store.save(runner.engine, runner.switch, inputs=1, switch_events=1, outputs=[message(1), message(2)])
        store.save(runner.engine, runner.switch, inputs=2, switch_events=1, outputs=[])
        store.save(runner.engine, runner.switch, inputs=3, switch_events=1, outputs=[message(3)])
        unsent = store.unsent()
        assert [message(1), message(2), message(3)] == [m for _, m in unsent]
        store.mark_sent(unsent[0][0])
        assert [message(2), message(3)] == [m for _, m in store.unsent()]
        dropped = store.save(
            runner.engine, runner.switch, inputs=4, switch_events=1, outputs=[message(4)], max_unsent=2
        )
        assert 1 == dropped  # D-BOUND: the oldest unsent one
    with StateStore(tmp_path / "state.db") as store:
        assert [message(3), message(4)] == [m for _, m in store.unsent()]
        saved = store.load()
        assert saved is not None
        assert (4, 1, "simulated") == (saved.inputs, saved.switch_events, saved.switch_kind)


CRASH_CHILD = """
import json, os, signal, sys
from adapters.state import StateStore
from tests.scenario import full_call, make_runner
from tests.test_durable import feed_and_save
store = StateStore(sys.argv[1])
feed_and_save(make_runner(), store, full_call()[:5], 1)   # committed: the accept's outputs are unsent
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_kill_between_commit_and_send_leaves_the_outputs_unsent(tmp_path: Path) -> None:
    """SIGKILL after the commit: every output of the committed inputs is in
    the outbox, in order; once sent (marked) they are gone for good."""
    path = tmp_path / "state.db"
    child = subprocess.run([sys.executable, "-c", CRASH_CHILD, str(path)], cwd=ROOT, capture_output=True)
    assert -9 == child.returncode, child.stderr
    expected = [e["message"] for e in make_runner_output(full_call()[:5]) if e.get("to") == "bridge"]
    with StateStore(path) as store:
        saved = store.load()
        assert saved is not None
        assert 5 == saved.inputs
        unsent = store.unsent()
        assert expected == [m for _, m in unsent]
        for entry, _ in unsent:  # handed to a connection
            store.mark_sent(entry)
    with StateStore(path) as store:
        assert [] == store.unsent()


def make_runner_output(lines: list[Line]) -> list[Entry]:
    runner = make_runner()
    return [
        e for n, line in enumerate(lines, 1) for e in json.loads(json.dumps(runner.feed(json.dumps(line), n)))
    ]


def test_wal_mode_full_sync_and_an_exclusive_lock(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with StateStore(path) as store:
        expected = {"journal_mode": "wal", "synchronous": "2", "locking_mode": "exclusive"}
        assert expected == store.settings
        with pytest.raises(StateError, match="in use by another process"):
            StateStore(path, timeout=0.05)
    header = path.read_bytes()[:20]
    assert b"\x02\x02" == header[18:20]  # the file format's WAL marker (read and write version 2)


def other_sqlite(path: Path) -> None:
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.execute("CREATE TABLE notes (text TEXT)")


def future_schema(path: Path) -> None:
    StateStore(path).close()
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.execute("PRAGMA user_version=99")


def missing_table(path: Path) -> None:
    StateStore(path).close()
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.execute("DROP TABLE outbox")


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda p: p.write_text("not a database, just text\n" * 100), "not a telephony-fsm state file"),
        (other_sqlite, "not a telephony-fsm state file"),
        (future_schema, "schema version 99"),
        (missing_table, "table(s) outbox missing"),
    ],
)
def test_a_file_that_is_not_ours_is_refused(tmp_path: Path, make: Any, words: str) -> None:
    path = tmp_path / "state.db"
    make(path)
    with pytest.raises(StateError, match=words.replace("(", r"\(").replace(")", r"\)")):
        StateStore(path)


def test_a_corrupt_snapshot_or_another_switch_or_processor_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with StateStore(path) as store:
        feed_and_save(make_runner(), store, full_call()[:2], 1)
        saved = store.load()
    assert saved is not None
    with pytest.raises(StateError, match="written with the simulated switch, not scripted"):
        resume(saved, ScriptedSwitch(), Targets())
    with pytest.raises(StateError, match=r"processor 'proc-1', not 'other'"):
        resume(saved, SimulatedSwitch(), Targets("other"))
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.execute("UPDATE record SET data = '{\"clock\": 1' WHERE kind = 'processor'")
    with StateStore(path) as store, pytest.raises(StateError, match="corrupt"):
        store.load()
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.execute("UPDATE record SET data = '{\"clock\": \"soon\"}' WHERE kind = 'processor'")
    with StateStore(path) as store:
        saved = store.load()
    assert saved is not None
    with pytest.raises(StateError, match="records cannot be restored"):
        resume(saved, SimulatedSwitch(), Targets())
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.execute("DELETE FROM record WHERE kind = 'config'")
    with StateStore(path) as store, pytest.raises(StateError, match="records are incomplete"):
        store.load()


def test_serve_refuses_a_bad_state_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.db"
    bad.write_text("hello\n" * 1000)
    done = subprocess.run(
        [*CLI, "serve", "--connect", "127.0.0.1:9", "--state", str(bad)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert 2 == done.returncode
    assert "--state" in done.stderr


# --------------------------------------------------------------------------
# 2. A request pending on the switch across a kill (D-ASYNC), D-DUP after it.


async def serve_process(
    port: int, tmp_path: Path, n: int, *extra: str, crash_after: int | None = None
) -> asyncio.subprocess.Process:
    """serve as a process (killed right after committing input ``crash_after``, if given)."""
    return await asyncio.create_subprocess_exec(
        *(SERVE if crash_after is None else crashing(crash_after)),
        "--connect",
        f"127.0.0.1:{port}",
        "--switch",
        "scripted",
        "--switch-events",
        "-",
        "--state",
        str(tmp_path / "state.db"),
        "--trace",
        str(tmp_path / f"serve{n}.jsonl"),
        "--exit-on-close",
        *extra,
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )


async def send_line(process: asyncio.subprocess.Process, line: Entry) -> None:
    assert process.stdin is not None
    process.stdin.write((json.dumps(line) + "\n").encode())
    await process.stdin.drain()


async def answer_of(conn: FramedConnection, rid: str, seen: list[Any]) -> dict[str, Any]:
    while True:
        got = await conn.recv()
        assert isinstance(got, dict), got
        seen.append(got)
        if got["header"].get("requestId") == rid:
            return got


#: the inputs of :func:`log_in`: seven messages and two agent events
LOGIN_INPUTS = 9


async def log_in(conn: FramedConnection, process: asyncio.subprocess.Process, trace: Path) -> None:
    """The bridge's start-up and agent-1's login (tests.scenario.login_lines);
    the scripted switch, on the process's stdin, reports the agent's login and
    ready state once asked: once serve's ``trace`` shows the command (sent
    before it, the event would come first, and the request would find the
    device already in that state and need no command)."""
    asked = {"channel.request.activate": "login", "channel.request.ready": "ready"}
    for line in login_lines("scripted"):
        if line["from"] == "switch":
            await send_line(process, line)
            continue
        await conn.send(line["message"])
        op = asked.get(line["message"]["header"]["name"])
        if op is not None:  # answered once the agent event that follows has come
            await command_in(trace, op)
            continue
        await answer_of(conn, line["message"]["header"]["requestId"], [])
    await answer_of(conn, "login-7", [])


async def command_in(trace: Path, op: str, timeout: float = 10.0) -> None:
    """Until serve's trace holds a command ``op`` to the switch."""
    wanted = f'"op":"{op}"'
    deadline = asyncio.get_running_loop().time() + timeout
    while not (
        trace.exists()
        and any(
            line.startswith('{"to":"switch"') and wanted in line for line in trace.read_text().splitlines()
        )
    ):
        assert asyncio.get_running_loop().time() < deadline, f"serve sent no {op} command"
        await asyncio.sleep(0.02)


async def pending_across_a_kill(tmp_path: Path, policy: list[str], downtime: float) -> list[Any]:
    """offered, init r1, accept r2 (answer: cmd-1, pending on the scripted
    switch), SIGKILL after that input, restart; the bridge re-inits (r3).
    What the second connection received, in order."""
    conns: asyncio.Queue[FramedConnection] = asyncio.Queue()
    done = asyncio.Event()

    async def handler(conn: FramedConnection) -> None:
        await conns.put(conn)
        await done.wait()

    server = await serve("127.0.0.1", 0, handler)
    port = server.sockets[0].getsockname()[1]
    first = await serve_process(port, tmp_path, 1, *policy, crash_after=LOGIN_INPUTS + 3)
    conn = await conns.get()
    await log_in(conn, first, tmp_path / "serve1.jsonl")
    await send_line(first, offered("c1"))
    created = await conn.recv()  # serve takes switch events from its first connection on
    assert created is not None, created
    assert "interaction.created" == created["header"]["name"], created
    await conn.send(query(INIT, IT, "r1")["message"])
    await answer_of(conn, "r1", [])
    await conn.send(request(ACCEPT, IT, "r2")["message"])
    assert -9 == await first.wait()
    with contextlib.suppress(TransportError):
        assert await conn.recv() is None  # no answer to r2 came before the kill
    await asyncio.sleep(downtime)
    second = await serve_process(port, tmp_path, 2, *policy)
    for line in [*(x for x in login_lines("scripted") if x["from"] == "switch"), offered("c1")]:
        await send_line(second, line)  # the same source again: consumed before, skipped
    conn = await conns.get()
    seen: list[Any] = []
    await conn.send(query(INIT, IT, "r3")["message"])
    await answer_of(conn, "r3", seen)
    await send_line(second, switch("connected", "c1"))
    if not any(m["header"].get("requestId") == "r2" for m in seen):
        await answer_of(conn, "r2", seen)
    await conn.send(request(ACCEPT, IT, "r2")["message"])  # re-sent, as a bridge does after a reconnect
    await answer_of(conn, "r2", seen)
    await conn.close()  # a clean close: serve --exit-on-close exits 0
    done.set()
    assert 0 == await second.wait()
    server.close()
    return seen


def names(seen: list[Any]) -> list[tuple[str, str, str]]:
    return [
        (m["header"]["name"], m["header"].get("requestId", ""), m["header"].get("result", "")) for m in seen
    ]


def serve_commands(tmp_path: Path, runs: int = 2) -> list[dict[str, Any]]:
    lines = [
        json.loads(x)
        for n in range(1, runs + 1)
        for x in (tmp_path / f"serve{n}.jsonl").read_text().splitlines()
    ]
    return [line["command"] for line in lines if line.get("to") == "switch"]


def test_a_pending_request_is_answered_after_a_restart(tmp_path: Path) -> None:
    """D-ASYNC: accept waits for the leg to connect; serve is killed while it
    waits. After the restart the connected event answers it SUCCESS, and
    the re-sent requestId is refused (D-DUP): answered once, run once."""
    seen = asyncio.run(asyncio.wait_for(pending_across_a_kill(tmp_path, [], 0.0), 30))
    expected = [
        (INIT, "r3", "SUCCESS"),
        ("interaction.started", "", ""),
        (ACCEPT, "r2", "SUCCESS"),
        (ACCEPT, "r2", "FAILURE"),
    ]
    assert expected == names(seen)
    assert "ALERTING" == seen[0]["body"]["interaction-state"]
    assert "duplicate requestId r2" in seen[-1]["header"]["errorMessage"]
    login = [
        {"id": "cmd-1", "op": "login", "device": DEVICE},
        {"id": "cmd-2", "op": "ready", "device": DEVICE},
    ]
    assert [*login, {"id": cmd_id(1), "op": "answer", "call": "c1"}] == serve_commands(tmp_path)
    assert '"kind":"offered"' not in (tmp_path / "serve2.jsonl").read_text()


def test_a_pending_request_times_out_after_a_restart_counting_the_downtime(tmp_path: Path) -> None:
    """D-ASYNC: request_timeout 2 s; serve stays down 2.2 s. The restored
    deadline has passed: the FAILURE comes before the re-init's answer."""
    policy = ["--policy", "request_timeout=2"]
    seen = asyncio.run(asyncio.wait_for(pending_across_a_kill(tmp_path, policy, 2.2), 30))
    assert (ACCEPT, "r2", "FAILURE") == names(seen)[0]
    assert "2 seconds" in seen[0]["header"]["errorMessage"]
    assert (INIT, "r3", "SUCCESS") == names(seen)[1]
    assert "duplicate requestId r2" in seen[-1]["header"]["errorMessage"]


# --------------------------------------------------------------------------
# 3. The demo's call between the bridge and serve processes, serve killed
#    with SIGKILL after every input.

#: the bridge gives up after 20 s (a whole call takes about one)
BRIDGE = ("--timeout", "20")
LIFECYCLE = frozenset(
    {
        INIT,
        "interaction.request.createconversation",
        "conversation.query.init",
        # each connection's start-up and re-init (F-CTRL-2, D-LIFE-5, F-SESS-2)
        "cti.request.status",
        "cti.query.capabilities",
        "session.query.init",
        "channelgroup.query.init",
        "channel.query.init",
    }
)
#: events compared apart: each connection's start-up sends a status event
#: (F-CTRL-2); the customer's call is announced, or listed in the channel's
#: init when it comes first (D-NEW, D-LIFE-3: serve reads the customer's
#: file from its first connection on, while the bridge logs the agent in)
START_UP_EVENTS = frozenset({"cti.status", "interaction.created"})


def test_bridge_accepts_a_late_answer_after_reconnect() -> None:
    """S-REQ-1, D-LIFE-5: a response, on a new connection, to a message sent
    before the old one dropped (a durable client sends it from its outbox) is
    taken once and is no violation."""
    bridge = logged_in_bridge()
    created = {
        "header": {"type": "cti.event", "name": "interaction.created", "target": CH},
        "body": {"interactionid": "c1", "type": "telephony"},
    }
    sent = [o.message for o in bridge.receive(created) if isinstance(o, Send)]
    bridge.connection_lost()
    bridge.reinitialize()
    late = {
        "header": {**sent[0]["header"], "type": "cti.response", "result": "SUCCESS"},
        "body": {"interaction-state": "ALERTING", "interaction-data": {}, "conversations": {}},
    }
    found = [o for o in bridge.receive(late) if isinstance(o, Violation)]
    assert [] == found
    again = [o.rule for o in bridge.receive(late) if isinstance(o, Violation)]
    assert ["S-REQ-1"] == again  # a late answer is taken once only


class CallRun:
    """One run of the call: the bridge process and one or more serve
    processes on the same state file, one after the other."""

    def __init__(self, tmp_path: Path, state: str | None = None) -> None:
        self.dir = tmp_path
        #: the store: an SQLite file in tmp_path, or a PostgreSQL database
        self.state = state or str(tmp_path / "state.db")
        self.bridge = subprocess.Popen(
            [*CLI, "bridge", "--listen", "127.0.0.1:0", "--trace", str(tmp_path / "bridge.jsonl"), *BRIDGE],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.bridge.stdout is not None
        line = self.bridge.stdout.readline()
        assert line.startswith("listening on 127.0.0.1:"), line
        self.port = int(line.rsplit(":", 1)[1])
        customer = [s["event"] for s in DEMO_CALL if s["actor"] == "customer"]
        self.events = tmp_path / "customer.jsonl"
        self.events.write_text("".join(json.dumps({"from": "switch", "event": e}) + "\n" for e in customer))
        self.serve_codes: list[int] = []

    def serve(self, crash_after: int | None = None) -> None:
        """One serve process, to its end (killed right after committing input
        ``crash_after``, if given)."""
        n = len(self.serve_codes) + 1
        done = subprocess.run(
            [
                *(SERVE if crash_after is None else crashing(crash_after)),
                *("--connect", f"127.0.0.1:{self.port}", "--switch-events", str(self.events)),
                *("--trace", str(self.dir / f"serve{n}.jsonl"), "--max-reconnects", "10"),
                *("--state", self.state, "--exit-on-close"),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        self.serve_codes.append(done.returncode)

    def finish(self) -> tuple[int, str]:
        try:
            _, err = self.bridge.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.bridge.kill()
            _, err = self.bridge.communicate()
        return self.bridge.returncode, err

    def bridge_trace(self) -> list[str]:
        return (self.dir / "bridge.jsonl").read_text().splitlines()

    def commands(self) -> list[dict[str, Any]]:
        return serve_commands(self.dir, len(self.serve_codes))

    def processed(self) -> Counter[str]:
        """How many times the serve processes took each requestId as input."""
        lines = [
            json.loads(x)
            for n in range(1, len(self.serve_codes) + 1)
            for x in (self.dir / f"serve{n}.jsonl").read_text().splitlines()
        ]
        return Counter(x["message"]["header"]["requestId"] for x in lines if x.get("from") == "bridge")


def call(tmp_path: Path, *crash_points: int, state: str | None = None) -> CallRun:
    """The call, serve killed after each of ``crash_points`` in turn (each
    count is of the state file's inputs), then restarted without a kill."""
    run = CallRun(tmp_path, state)
    for point in crash_points:
        run.serve(crash_after=point)
    run.serve()
    return run


def view(trace: list[str]) -> dict[str, Any]:
    """What the bridge saw of the client, by kind (requestIds left out where
    a crash shifts the bridge's numbering)."""
    entries = [json.loads(x) for x in trace]
    sent = Counter(e["message"]["header"]["requestId"] for e in entries if e.get("from") == "bridge")
    received = [e["message"] for e in entries if e.get("to") == "bridge"]
    answers = [m for m in received if "result" in m["header"]]

    def refused_as_duplicate(m: dict[str, Any]) -> bool:
        return "duplicate requestId" in m["header"].get("errorMessage", "")

    def shape(m: dict[str, Any]) -> tuple[str, str, str, str]:
        h = m["header"]
        return (h["name"], h["target"], h["result"], json.dumps([m.get("body"), m.get("body")]))

    by_request: dict[str, list[dict[str, Any]]] = {}
    for m in answers:
        by_request.setdefault(m["header"]["requestId"], []).append(m)
    return {
        "sent": sent,
        "by_request": by_request,
        "events": [
            m for m in received if "result" not in m["header"] and m["header"]["name"] not in START_UP_EVENTS
        ],
        "start-up events": [m for m in received if m["header"]["name"] in START_UP_EVENTS],
        "answers": [
            shape(m) for m in answers if m["header"]["name"] not in LIFECYCLE and not refused_as_duplicate(m)
        ],
        "lifecycle": Counter(shape(m) for m in answers if m["header"]["name"] in LIFECYCLE),
        "duplicates": [m for m in answers if refused_as_duplicate(m)],
    }


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> tuple[CallRun, dict[str, Any]]:
    run = call(tmp_path_factory.mktemp("baseline"))
    code, err = run.finish()
    assert (0, [0]) == (code, run.serve_codes), err
    assert "11 agent requests, 0 failed, 0 rule violations, 1 connections" in err
    return run, view(run.bridge_trace())


def test_the_call_without_a_kill(baseline: tuple[CallRun, dict[str, Any]]) -> None:
    run, seen = baseline
    assert [] == check_lines(run.bridge_trace())
    with StateStore(run.dir / "state.db") as store:
        saved = store.load()
        assert saved is not None
        assert (CALL_INPUTS, 1) == (saved.inputs, saved.switch_events)
        assert [] == store.unsent()
    call = ["answer", "consult", "alternate", "alternate", "conference", "consult", "transfer"]
    assert ["login", "ready", *call, "logout"] == [c["op"] for c in run.commands()]
    assert all(1 == len(answers) for answers in seen["by_request"].values())


def assert_same_call(
    run: CallRun, baseline: tuple[CallRun, dict[str, Any]], kills: int, *, in_flight: bool = False
) -> None:
    """``in_flight``: the bridge may have had a message in flight at a kill
    (judged as with two kills)."""
    code, err = run.finish()
    assert ([-9] * kills + [0], 0) == (run.serve_codes, code), err
    assert "11 agent requests, 0 failed, 0 rule violations" in err
    reference, expected = baseline
    assert reference.commands() == run.commands()  # no request executed twice (D-DUP)
    trace = run.bridge_trace()
    seen = view(trace)
    assert expected["events"] == seen["events"]  # in the same order, none lost, none twice
    assert seen["start-up events"]  # one per connection whose status request was answered (F-CTRL-2)
    assert expected["answers"] == seen["answers"]
    assert not expected["lifecycle"] - seen["lifecycle"]  # the extra ones answer the re-init (D-LIFE-5)
    processed = run.processed()
    assert processed.keys() == seen["by_request"].keys()
    for rid, answers in seen["by_request"].items():  # S-REQ-1: one answer per message processed
        assert processed[rid] == len(answers), rid
    for refusal in seen["duplicates"]:  # D-DUP: only a re-sent requestId is refused
        assert 2 == processed[refusal["header"]["requestId"]]
    violations = check_lines(trace)
    if kills == 1 and not in_flight:  # the bridge never had two messages in flight when serve was killed
        assert [] == violations
        assert seen["sent"] == processed
        return
    for violation in violations:
        # A message in flight when serve was killed, lost with the connection:
        # the bridge knew (it re-initialized), the trace does not say so.
        assert ("S-REQ-1", "never answered") == (
            violation.rule,
            violation.explanation.split(" (the")[0][-14:],
        )
        rid = json.loads(trace[violation.line - 1])["message"]["header"]["requestId"]
        assert processed[rid] < seen["sent"][rid], violation


@pytest.mark.parametrize("n", range(1, CALL_INPUTS + 1))
def test_serve_killed_after_input_n_and_restarted(
    tmp_path: Path, baseline: tuple[CallRun, dict[str, Any]], n: int
) -> None:
    """SIGKILL right after committing input n (1: the offer; then every
    bridge message of the call: init, accept, consult mid-way, alternate,
    conference, transfer, complete, dispose), restart on the same file."""
    # the bridge may have a message in flight at a kill during the start-up and
    # the login (1: the customer's call; then each answer leads to the next
    # message at once, and the channel's init, which lists the call, to both
    # the interaction's init and activate) and during the logout
    assert_same_call(call(tmp_path, n), baseline, 1, in_flight=n <= 11 or n >= CALL_INPUTS - 1)


@pytest.mark.parametrize("points", [(3, 9), (6, 7), (11, 16)])
def test_serve_killed_twice(
    tmp_path: Path, baseline: tuple[CallRun, dict[str, Any]], points: tuple[int, int]
) -> None:
    """Two kills in one call (the second counts the inputs of both processes)."""
    assert_same_call(call(tmp_path, *points), baseline, 2)


def test_a_version_1_file_is_upgraded_when_opened(tmp_path: Path) -> None:
    """A state file of schema version 1 (the whole engine in one row, the
    layout before the records) is upgraded in place: the same engine, switch
    state, progress and outbox; and the upgraded file goes on."""
    from fsm.messages import converter

    lines = full_call()
    runner = make_runner()
    for n, line in enumerate(lines[:6], 1):
        runner.feed(json.dumps(line), n)
    path = tmp_path / "v1.db"
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:
        for statement in (
            "CREATE TABLE engine (id INTEGER PRIMARY KEY CHECK (id = 1), snapshot TEXT NOT NULL)",
            "CREATE TABLE switch (id INTEGER PRIMARY KEY CHECK (id = 1), kind TEXT NOT NULL,"
            " state TEXT NOT NULL)",
            "CREATE TABLE progress (id INTEGER PRIMARY KEY CHECK (id = 1), inputs INTEGER NOT NULL,"
            " switch_events INTEGER NOT NULL, saved_at REAL NOT NULL)",
            "CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, input INTEGER NOT NULL,"
            " message TEXT NOT NULL)",
        ):
            db.execute(statement)
        db.execute(f"PRAGMA application_id={APPLICATION_ID}")
        db.execute("PRAGMA user_version=1")
        db.execute("INSERT INTO engine VALUES (1, ?)", (json.dumps(snapshot(runner.engine)),))
        state = converter.unstructure(runner.switch)
        db.execute("INSERT INTO switch VALUES (1, 'simulated', ?)", (json.dumps(state),))
        db.execute("INSERT INTO progress VALUES (1, 6, 0, 1000.5)")
        db.execute("INSERT INTO outbox (input, message) VALUES (6, ?)", (json.dumps(message(6)),))
    with StateStore(path) as store:
        saved = store.load()
        assert saved is not None
        assert (6, 0, 1000.5) == (saved.inputs, saved.switch_events, saved.saved_at)
        assert [message(6)] == [m for _, m in store.unsent()]
        engine, switch = resume(saved, SimulatedSwitch(), Targets())
        assert snapshot(runner.engine) == snapshot(engine)
        assert runner.switch == switch
        resumed = Runner(engine, switch)
        feed_and_save(resumed, store, lines[6:], 7)
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:
        assert 2 == db.execute("PRAGMA user_version").fetchone()[0]
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert "engine" not in tables and "record" in tables


def test_each_backend_has_one_statement_for_every_step_of_a_save() -> None:
    """A save is one ordered list of steps (Rows.steps) that SQLite and
    PostgreSQL each execute from a table of their own: both tables cover
    exactly those steps, and the first save of an engine clears first."""
    from adapters import postgres, state

    empty = state.Rows(
        replace_all=True,
        upserts=[],
        deletes=[],
        added=[],
        kept_from=[],
        switch_upserts=[],
        switch_deletes=[],
        inputs=0,
        switch_events=0,
        saved_at=0.0,
        outputs=[],
    )
    names = [name for name, _ in empty.steps()]
    # deletes before writes, memories trimmed after they are added, progress before the outbox
    assert [
        "clear records",
        "clear memories",
        "clear switch",
        "delete records",
        "write records",
        "add memories",
        "trim memories",
        "delete switch",
        "write switch",
        "progress",
        "outbox",
    ] == names
    assert list(state._SQLITE_STEPS) == names == list(postgres._STEPS)
    assert [name for name, params in empty.steps() if params] == [*names[:3], "progress"]
