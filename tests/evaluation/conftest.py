"""The shapes benchmark's test split, opened once per module for the evaluation tests."""

from __future__ import annotations

import pytest

from dexar_core.evaluation.run import open_dataset


@pytest.fixture(scope="module")
def shapes():
    """``open_dataset("shapes", "test")``, as ``dexar evaluate --dataset shapes`` opens it."""
    return open_dataset("shapes", "test")
