"""Benchmarks of the engine (run on demand: ``python -m tests.benchmarks.bench``).

Nothing here is collected by pytest: no module is named ``test_*``.
"""
