"""The fuzz suite's budget and its tally of outcomes, printed at the end of the run.

CI runs the ``ci`` (or ``dev``) hypothesis profile: every fuzz test is bounded so the
folder takes about a minute. ``--hypothesis-profile=long`` is the manual run whose
figures docs/reliability.md records.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from hypothesis import settings

HANG_SECONDS = 120.0
"""No call may take longer (a tiny model on a loaded 2-core CPU takes a few seconds)."""


def model_examples() -> int:
    """Examples of a target that runs the tiny model: a fiftieth of the profile's, >= 3.

    The cheap targets take the profile's own number. Call this where a test module is
    imported (after pytest has loaded ``--hypothesis-profile``), not in this conftest.
    """
    return max(3, settings.default.max_examples // 50)


TALLY: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
SLOWEST: dict[str, float] = collections.defaultdict(float)


@contextmanager
def timed(target: str) -> Iterator[None]:
    """Count one call of ``target`` and fail it when it runs past :data:`HANG_SECONDS`."""
    start = time.perf_counter()
    yield
    seconds = time.perf_counter() - start
    SLOWEST[target] = max(SLOWEST[target], seconds)
    assert seconds < HANG_SECONDS, f"{target} took {seconds:.0f} s (bound {HANG_SECONDS:.0f} s)"


def record(target: str, outcome: str) -> None:
    """Tally one outcome (``result``, ``error`` ...) of ``target``."""
    TALLY[target][outcome] += 1


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The figures of this run: calls per target and outcome, and the slowest call."""
    if not TALLY:
        return
    terminalreporter.section("dexar fuzz figures")
    profile = settings.default
    terminalreporter.write_line(
        f"profile max_examples={profile.max_examples} (model targets: {model_examples()})"
    )
    for target in sorted(TALLY):
        outcomes = ", ".join(f"{name} {count}" for name, count in sorted(TALLY[target].items()))
        terminalreporter.write_line(
            f"{target}: {sum(TALLY[target].values())} calls: {outcomes}; slowest "
            f"{SLOWEST[target]:.2f} s"
        )
