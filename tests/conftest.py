"""Hypothesis profiles for the property tests (tests/test_properties.py).

``ci`` (the default): deterministic and small enough that the property
tests run in well under a minute on two cores. ``thorough``: many more and
longer runs, for a bounded soak. Choose one with ``--hypothesis-profile=NAME``
or the ``HYPOTHESIS_PROFILE`` environment variable.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    derandomize=True,
    database=None,
    max_examples=150,
    stateful_step_count=50,
    deadline=None,
    print_blob=False,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "thorough",
    max_examples=2000,
    stateful_step_count=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session")
def postgresql() -> Iterator[str]:
    """A real PostgreSQL server on loopback for the session (tests/pg.py)."""
    from tests.pg import postgresql_server

    with postgresql_server() as conninfo:
        yield conninfo
