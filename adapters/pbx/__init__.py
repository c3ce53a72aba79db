"""The simulated PBX as its own process (``telephony-fsm pbx``), and the
switch driver that reaches it over a CTI link (``serve --switch pbx``).

The CTI link is one TCP connection per adapter process, in the frames of
the bridge wire (F-WIRE: a 4-byte big-endian length, then that many bytes
of UTF-8 JSON, one object; at most 1 MiB, D-BOUND).

- adapter -> PBX: first ``{"hello": {"devices": [END-POINT, ...]}}`` (the
  end-points of its agent directory: it claims them), then
  ``{"command": COMMAND}`` in harness.md's switch command shape
  (``{"id": "cmd-3", "op": "answer", "call": "c1"}``, H-CMD);
- PBX -> adapter: ``{"hello": {"devices": [...]}}`` once the claim is
  accepted, then ``{"event": EVENT}`` in harness.md's switch event shape
  (H-SW-1) for every event of a claimed device and its calls, and
  ``{"error": TEXT}`` for a frame it cannot use, naming the problem (not
  UTF-8, not JSON, not an object, neither a hello nor a command, a bad
  field, an unknown operation, a command before the hello or for a call or
  device that is not this connection's); such a frame changes nothing and
  the connection goes on. After the error frame the PBX closes the
  connection when the frame was a hello claiming a device another live
  connection holds, or a length above the bound (the stream cannot be
  followed).

Modules: :mod:`adapters.pbx.core` (the model, without IO),
:mod:`adapters.pbx.server` (the process's connections and script player),
:mod:`adapters.pbx.script` (the script's lines), :mod:`adapters.pbx.cli`
(the command line), :mod:`adapters.pbx.link` (serve's driver).
"""
