"""The simulated PBX as its own process (``telephony-fsm pbx``), and the
switch driver that reaches it over a CTI link (``serve --switch pbx``).

The CTI link is one TCP connection per adapter process, in the frames of
the bridge wire (a 4-byte length, then one UTF-8 JSON object; F-WIRE).

- adapter -> PBX: first ``{"hello": {"devices": [END-POINT, ...]}}`` (the
  end-points of its agent directory: it claims them), then
  ``{"command": COMMAND}`` in harness.md's switch command shape;
- PBX -> adapter: ``{"hello": {"devices": [...]}}`` once the claim is
  accepted, then ``{"event": EVENT}`` in harness.md's switch event shape for
  every event of a claimed device and its calls, and ``{"error": TEXT}`` for
  a frame it cannot use (the frame changes nothing). A claim of a device
  that another live connection holds is an error, and that connection is
  closed.
"""
