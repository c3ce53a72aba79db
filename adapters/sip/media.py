"""The softphone's audio: its conference bridge, mixed as the legs say.

Port 0 is the softphone's own audio device (the agent). Every call of a
talking leg is connected with it and with the other calls of the leg (the
three-way mix after a conference); nothing else is.
"""

from __future__ import annotations

from typing import Any

from adapters.sip import ua
from adapters.sip.calls import Line, live


def remix(endpoint: Any, line: Line) -> None:
    """Connect, in the conference bridge, the softphone's audio device
    (port 0) with every call of each talking leg, and those calls with
    each other; nothing else."""
    wanted: set[tuple[int, int]] = set()
    for leg in line.legs.values():
        if leg.state != "connected":
            continue
        members = []
        for call in live(leg):
            audio = None if call.ending else ua.audio_of(call)
            if audio is not None and call.media == "sendrecv":
                members.append(audio.getPortId())
        for port in members:
            wanted |= {(0, port), (port, 0)}
            wanted |= {(port, other) for other in members if other != port}
    ports, links = _bridge(endpoint)
    # a call going away takes its ports and their links with it; a
    # disconnect queued for such a port would name a port that is gone
    stable = {0}
    for call in line.calls:
        audio = None if call.ended or call.ending else ua.audio_of(call)
        if audio is not None:
            stable.add(audio.getPortId())
    for source, sink in links - wanted:
        if source in stable and sink in stable and source in ports and sink in ports:
            ports[source].stopTransmit(ports[sink])
    for source, sink in wanted - links:
        if source in ports and sink in ports:
            ports[source].startTransmit(ports[sink])


def mix(endpoint: Any, line: Line) -> dict[str, list[str]]:
    """Who hears whom in the conference bridge: for each call (by its
    remote party) the parties its audio is sent to (``agent``: the
    softphone's own audio device)."""
    names = {0: "agent"}
    for call in line.calls:
        audio = ua.audio_of(call)
        if audio is not None:
            names[audio.getPortId()] = ua.user_of(call.getInfo().remoteUri)
    links = _bridge(endpoint)[1]
    pairs = [(names.get(source, str(source)), names.get(sink, str(sink))) for source, sink in links]
    heard: dict[str, list[str]] = {}
    # by party, the agent first: PJSIP's slot numbers depend on when each
    # call's media came up, which would make the same mix read differently
    for source, sink in sorted(pairs, key=lambda pair: (_party_order(pair[0]), _party_order(pair[1]))):
        heard.setdefault(source, []).append(sink)
    return heard


def _bridge(endpoint: Any) -> tuple[dict[int, Any], set[tuple[int, int]]]:
    """The conference bridge as it is now: its ports, and who transmits to whom."""
    ports = {}
    links = set()
    for media in endpoint.mediaEnumPorts2():
        source = media.getPortId()
        try:
            info = media.getPortInfo()  # keep it: its listeners live inside it
        except Exception:  # pjsua2.Error: PJSIP removes a port after its
            continue  # call's media went away, the enumeration still lists it
        ports[source] = media
        links |= {(source, sink) for sink in info.listeners}
    return ports, links


def _party_order(name: str) -> tuple[bool, str]:
    return (name != "agent", name)
