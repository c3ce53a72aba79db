"""``telephony-fsm check TRACE.jsonl`` (spec/harness.md): check a recorded trace.

Prints one line per violation, ``LINE  RULE-ID  explanation``, in line
order; exits 0 when the trace is clean, 1 when it breaks a rule, 2 when the
file cannot be read (missing, not UTF-8, a line that is not a JSON object)
or the command line is wrong. ``--policy NAME=VALUE`` (repeatable, the names
of ``run``) tells the checker the deployment's choices the rules depend on,
e.g. ``transfer_while_consult_ringing=true`` (D-XFER-1).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from adapters.options import add_policy, add_processor_client, policy_of, targets_of
from fsm.checker import UnreadableTrace, check_lines

PROG = "telephony-fsm check"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Check a recorded trace against the rules of spec/protocol.md; print one line "
        "per violation: LINE  RULE-ID  explanation.",
    )
    parser.add_argument("trace", metavar="TRACE.jsonl", help="the trace (one JSON object per line)")
    add_policy(parser, "a policy the run used, repeatable (e.g. transfer_while_consult_ringing=true)")
    add_processor_client(parser, agents=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
        policy = policy_of(args, parser)
    except SystemExit as exc:  # a usage error (2), or --help (0)
        return exc.code if isinstance(exc.code, int) else 2
    try:
        with open(args.trace, encoding="utf-8") as trace:
            violations = check_lines(trace, policy=policy, targets=targets_of(args))
    except OSError as exc:
        print(f"{PROG}: cannot read {args.trace}: {exc.strerror}", file=sys.stderr)
        return 2
    except UnicodeDecodeError as exc:
        print(f"{PROG}: {args.trace} is not UTF-8 text: {exc.reason}", file=sys.stderr)
        return 2
    except UnreadableTrace as exc:
        print(f"{PROG}: {args.trace}: unreadable trace at line {exc.line}: {exc.reason}", file=sys.stderr)
        return 2
    for violation in violations:
        explanation = " ".join(violation.explanation.split())
        print(f"{violation.line}  {violation.rule}  {explanation}")
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main())
