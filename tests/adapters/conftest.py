"""The family's tiny model for the tests in its folder, tests/adapters/<family>/."""

from __future__ import annotations

import pytest
from tiny_families import tiny_model

from dexar_core.records import LoadedModel


@pytest.fixture(scope="module")
def tiny(request: pytest.FixtureRequest) -> LoadedModel:
    """The tiny model named as the test's folder (support/tiny_families.py), built once.

    A folder whose family has no entry there defines its own ``tiny``.
    """
    return tiny_model(request.path.parent.name)
