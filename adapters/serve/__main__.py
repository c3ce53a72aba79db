"""``python -m adapters.serve``: the same as ``telephony-fsm serve``."""

import sys

from adapters.serve.cli import main

sys.exit(main())
