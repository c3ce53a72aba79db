"""How many calls the SIP stack this process loads really holds at once
(tests/test_sip_peers.py runs it as ``python -m tests.sip_capacity``, with
a ``PYTHONPATH`` naming the stack to try).

One endpoint, set up by the softphone's own :func:`adapters.sip.ua.start_endpoint`
for the stack's whole capacity, calls itself over loopback UDP until every
call slot is taken: each call is two legs (the caller's and the callee's),
each with its own RTP and RTCP sockets. It prints one JSON object: the
capacity the stack declares, the softphone's default maximum, the legs
placed, how many were confirmed with media, the first failure if any, and
the file the stack was loaded from.
"""

from __future__ import annotations

import gc
import json
from typing import Any

from adapters.sip import ua


def probe() -> dict[str, Any]:
    pj = ua.require()
    capacity = ua.capacity()
    # max_calls + 1 slots: the stack's whole capacity
    endpoint, port = ua.start_endpoint("127.0.0.1", 0, max_calls=capacity - 1)
    calls: list[Any] = []

    class Answering(ua.pj.Account):  # type: ignore[misc]
        def onIncomingCall(self, prm: Any) -> None:
            calls.append(pj.Call(self, prm.callId))
            answer = pj.CallOpParam()
            answer.statusCode = 200
            calls[-1].answer(answer)

    account = Answering()
    account.create(ua.account_config(f"sip:probe@127.0.0.1:{port}"))
    failure = ""
    try:
        for n in range(capacity // 2):
            calls.append(pj.Call(account))
            try:
                calls[-1].makeCall(f"sip:leg{n}@127.0.0.1:{port}", pj.CallOpParam(True))
            except pj.Error as exc:
                failure = f"dial {n + 1}: {exc.reason}"
                break
            for _ in range(30):
                endpoint.libHandleEvents(10)
        for _ in range(100):
            endpoint.libHandleEvents(10)
        confirmed = sum(map(_talking, calls))
        return {
            "capacity": capacity,
            "default_max_calls": ua.default_max_calls(),
            "legs": len(calls),
            "confirmed": confirmed,
            "failure": failure,
            "stack": pj.__file__,
        }
    finally:
        endpoint.hangupAllCalls()
        for _ in range(50):
            endpoint.libHandleEvents(10)
        # every Call object must be gone before the library is
        calls.clear()
        account.shutdown()
        gc.collect()
        endpoint.libDestroy()


def _talking(call: Any) -> bool:
    """Confirmed, with audio both ways."""
    pj = ua.require()
    return bool(
        call.isActive()
        and call.getInfo().state == pj.PJSIP_INV_STATE_CONFIRMED
        and ua.media_direction(call) == "sendrecv"
    )


if __name__ == "__main__":
    print(json.dumps(probe()))
