"""``telephony-fsm pbx --listen HOST:PORT``: the simulated PBX as its own
process, reached by adapters (``serve --switch pbx``) over the CTI link
(:mod:`adapters.pbx`), its customers and far parties played by a script.

The script (``--script FILE``, ``-`` for stdin) has one JSON object per
line; blank lines and lines starting with ``#`` are skipped:

- a switch event (harness.md's shape): applied to the PBX and sent to the
  connection holding its device (``offered``, ``ended``, ``connected``, ...
  for calls; ``agent`` ``taken`` / ``free`` / ``removed`` for devices);
- ``{"wait": {"device": D, "state": S}, "timeout": T}``: until device ``D``'s
  last agent state is ``S`` (``loggedin``, ``ready``, ...);
  ``{"wait": {"call": C, "state": S}}``: until call ``C`` is ``S``
  (``ALERTING``, ``DIALING``, ``TALKING``, ``HELD`` or ``ended``);
  ``{"wait": {"connected": D}}``: until an adapter holds device ``D``;
  ``timeout`` in seconds (default 30): a wait that times out is logged,
  naming what it waited for, and the process exits 1;
- ``{"sleep": S}``: pause ``S`` seconds.

A file is read and checked whole before anything is played (a bad line:
exit 2 naming its number); stdin is read as it comes. Without
``--exit-when-done`` the process runs until SIGTERM or SIGINT (exit 0);
with it, it exits 0 once the script is over and, after an adapter has
connected, none is connected any more.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import AsyncIterator, Callable, Hashable
from pathlib import Path
from typing import Any, Final

from adapters.pbx.core import DEFAULT_MAX_HELD, LinkError, Pbx, Sends
from adapters.transport import FramedConnection, TransportError, serve
from fsm.codec import JSONDecodeError, loads

logger = logging.getLogger("telephony_fsm.pbx")

#: a wait's bound when the step gives none, in seconds
WAIT_TIMEOUT: Final = 30.0
#: how often a wait looks again, in seconds
POLL: Final = 0.02
_WAIT_KINDS: Final = ({"device", "state"}, {"call", "state"}, {"connected"})


class ScriptError(Exception):
    """A script line that cannot be played; its text names the line."""


class WaitTimedOut(Exception):
    """A wait of the script that did not come true in time."""


def check_step(step: object, where: str) -> dict[str, Any]:
    """A script step, checked; raises ScriptError naming ``where``."""
    if not isinstance(step, dict):
        raise ScriptError(f"{where}: a step must be a JSON object")
    if "wait" in step:
        wait = step["wait"]
        if set(step) - {"wait", "timeout"} or not isinstance(wait, dict) or set(wait) not in _WAIT_KINDS:
            raise ScriptError(
                f'{where}: a wait is {{"wait": {{"device": D, "state": S}} | {{"call": C, "state": S}} '
                f'| {{"connected": D}}, "timeout": SECONDS}}'
            )
        if not all(isinstance(v, str) and v for v in wait.values()):
            raise ScriptError(f"{where}: a wait's values must be non-empty strings")
        timeout = step.get("timeout", WAIT_TIMEOUT)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= 3600:
            raise ScriptError(f"{where}: timeout must be a number of seconds in (0, 3600]")
    elif "sleep" in step:
        pause = step["sleep"]
        if set(step) != {"sleep"} or isinstance(pause, bool) or not isinstance(pause, int | float):
            raise ScriptError(f'{where}: a pause is {{"sleep": SECONDS}}')
        if not 0 <= pause <= 3600:
            raise ScriptError(f"{where}: sleep must be in [0, 3600] seconds")
    elif "kind" not in step:
        raise ScriptError(f"{where}: a step is a switch event (with 'kind'), a wait or a sleep")
    return step


def parse_line(text: str, where: str) -> dict[str, Any] | None:
    """One script line: a step, or None for a blank line or a comment."""
    if not text.strip() or text.lstrip().startswith("#"):
        return None
    try:
        step = loads(text)
    except (JSONDecodeError, ValueError) as exc:
        raise ScriptError(f"{where}: not JSON ({exc})") from None
    return check_step(step, where)


def load_script(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """A script file, checked whole: (line number, step)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScriptError(f"cannot read the script {path}: {exc}") from None
    steps = []
    for number, line in enumerate(text.splitlines(), 1):
        step = parse_line(line, f"{path}:{number}")
        if step is not None:
            steps.append((number, step))
    return steps


async def stdin_script() -> AsyncIterator[tuple[int, dict[str, Any]]]:
    """The script from stdin, step by step as lines arrive."""
    loop = asyncio.get_running_loop()
    number = 0
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            return
        number += 1
        step = parse_line(line, f"stdin:{number}")
        if step is not None:
            yield number, step


def describe(step: dict[str, Any]) -> str:
    wait = step["wait"]
    if "connected" in wait:
        return f"an adapter holding device {wait['connected']}"
    what = "device" if "device" in wait else "call"
    return f"{what} {wait[what]} to be {wait['state']}"


class PbxServer:
    """The PBX, its connections and its script."""

    def __init__(self, pbx: Pbx) -> None:
        self.pbx = pbx
        self.conns: dict[Hashable, FramedConnection] = {}
        self.ever_connected = asyncio.Event()
        self.changed = asyncio.Event()

    async def deliver(self, sends: Sends) -> None:
        for conn_id, frame in sends:
            conn = self.conns.get(conn_id)
            if conn is None:
                continue
            try:
                await conn.send(frame)
            except TransportError as exc:
                logger.warning("cannot send to %s: %s", conn.peer, exc)

    async def handle(self, conn: FramedConnection) -> None:
        """One adapter connection: its hello, then its commands."""
        key: Hashable = conn
        self.conns[key] = conn
        logger.info("adapter connected from %s", conn.peer)
        self.ever_connected.set()
        self.changed.set()
        try:
            while (frame := await conn.recv()) is not None:
                if not await self._frame(key, conn, frame):
                    break
        finally:
            self.pbx.closed(key)
            del self.conns[key]
            logger.info("adapter at %s disconnected", conn.peer)
            self.changed.set()

    async def _frame(self, key: Hashable, conn: FramedConnection, frame: dict[str, Any]) -> bool:
        """Handle one frame; False to close the connection."""
        if set(frame) == {"hello"}:
            try:
                await self.deliver(self.pbx.hello(key, frame["hello"]))
            except LinkError as exc:
                logger.error("refused the hello of %s: %s", conn.peer, exc)
                await conn.send({"error": f"hello refused: {exc}"})
                return False
            logger.info("%s holds device(s) %s", conn.peer, ", ".join(self.pbx.devices_of(key)))
            self.changed.set()
            return True
        if set(frame) == {"command"}:
            try:
                sends = self.pbx.command(key, frame["command"])
            except LinkError as exc:
                logger.warning("command from %s refused: %s", conn.peer, exc)
                await conn.send({"error": str(exc)})
                return True
            await self.deliver(sends)
            self.changed.set()
            return True
        keys = ", ".join(sorted(map(repr, frame))) or "none"
        logger.warning("a frame from %s with key(s) %s", conn.peer, keys)
        await conn.send(
            {"error": f'a frame is {{"hello": ...}} or {{"command": ...}}, not one with key(s) {keys}'}
        )
        return True

    async def until(self, holds: Callable[[], bool], timeout: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not holds():
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), min(POLL * 10, remaining))
        return True

    def _condition(self, wait: dict[str, str]) -> Callable[[], bool]:
        pbx = self.pbx

        def holds() -> bool:
            if "connected" in wait:
                return wait["connected"] in pbx.owner
            if "device" in wait:
                return pbx.device_state(wait["device"]) == wait["state"]
            return pbx.call_state(wait["call"]) == wait["state"]

        return holds

    async def play(self, steps: AsyncIterator[tuple[int, dict[str, Any]]]) -> None:
        async for number, step in steps:
            if "wait" in step:
                holds = self._condition(step["wait"])
                timeout = float(step.get("timeout", WAIT_TIMEOUT))
                if not await self.until(holds, timeout):
                    raise WaitTimedOut(f"script line {number}: waited {timeout:g} s for {describe(step)}")
            elif "sleep" in step:
                await asyncio.sleep(float(step["sleep"]))
            else:
                try:
                    sends = self.pbx.play(step)
                except LinkError as exc:
                    raise ScriptError(f"script line {number}: {exc}") from None
                await self.deliver(sends)
                self.changed.set()


async def _listed(steps: list[tuple[int, dict[str, Any]]]) -> AsyncIterator[tuple[int, dict[str, Any]]]:
    for item in steps:
        yield item


async def run_pbx(
    host: str,
    port: int,
    script: list[tuple[int, dict[str, Any]]] | str | None = None,
    *,
    exit_when_done: bool = False,
    max_held: int = DEFAULT_MAX_HELD,
    on_listening: Callable[[int], None] | None = None,
    stop: asyncio.Event | None = None,
) -> int:
    """Serve until stopped (0), or with ``exit_when_done`` until the script
    is over and the adapters are gone (0); 1 when a wait times out or a
    step cannot be played. ``script``: checked steps, ``"-"`` for stdin, or None."""
    stop = stop or asyncio.Event()
    server_state = PbxServer(Pbx(max_held=max_held))
    server = await serve(host, port, server_state.handle)
    bound = server.sockets[0].getsockname()[1]
    logger.info("PBX listening on %s:%s", host, bound)
    if on_listening is not None:
        on_listening(bound)
    failed: list[str] = []

    async def script_then_idle() -> None:
        try:
            if script == "-":
                await server_state.play(stdin_script())
            elif isinstance(script, list):
                await server_state.play(_listed(script))
        except (WaitTimedOut, ScriptError) as exc:
            logger.error("%s", exc)
            failed.append(str(exc))
            stop.set()
            return
        logger.info("the script is over")
        if exit_when_done:
            await server_state.ever_connected.wait()
            await server_state.until(lambda: not server_state.conns, float("inf"))
            logger.info("no adapter is connected: done")
            stop.set()

    def watch(task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            logger.error("the script task failed", exc_info=task.exception())
            failed.append("script")
            stop.set()

    task = asyncio.create_task(script_then_idle(), name="script")
    task.add_done_callback(watch)
    try:
        await stop.wait()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        server.close()
        for conn in list(server_state.conns.values()):
            await conn.close()
        await server.wait_closed()
    return 1 if failed else 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--listen", required=True, metavar="HOST:PORT", help="where adapters connect (port 0: any)"
    )
    parser.add_argument("--script", metavar="FILE", help="the customers and far parties, JSONL ('-': stdin)")
    parser.add_argument(
        "--exit-when-done",
        action="store_true",
        help="exit 0 once the script is over and no adapter is connected any more (after one was)",
    )
    parser.add_argument(
        "--max-held", type=int, default=DEFAULT_MAX_HELD, metavar="N", help="events held per unclaimed device"
    )


def run_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    host, _, port_text = args.listen.rpartition(":")
    host = host.strip("[]")
    if not host or not port_text.isdigit() or not 0 <= int(port_text) < 65536:
        parser.error(f"--listen takes HOST:PORT, got {args.listen!r}")
    if args.max_held < 1:
        parser.error("--max-held must be at least 1")
    script: list[tuple[int, dict[str, Any]]] | str | None = None
    if args.script == "-":
        script = "-"
    elif args.script:
        try:
            script = load_script(Path(args.script))
        except ScriptError as exc:
            parser.error(str(exc))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    def listening(port: int) -> None:
        print(f"listening on {host}:{port}", flush=True)

    async def main_async() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        try:
            return await run_pbx(
                host,
                int(port_text),
                script,
                exit_when_done=args.exit_when_done,
                max_held=args.max_held,
                on_listening=listening,
                stop=stop,
            )
        except OSError as exc:
            logger.error("cannot listen on %s: %s", args.listen, exc)
            return 1

    return asyncio.run(main_async())
