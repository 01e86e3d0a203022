"""The pytest side of dexar's conformance kit, loaded through the ``pytest11`` entry point.

It registers the ``dexar_conformance`` marker and puts it on every test of an
:class:`~dexar_plugins.testing.conformance.AdapterConformance` subclass, so that
``pytest -m dexar_conformance`` runs the suite alone and ``-m "not dexar_conformance"``
skips it. It imports nothing heavy: pytest starts as fast as without it.
"""

from __future__ import annotations

import sys
from typing import Any

MARKER = "dexar_conformance"
CONFORMANCE_MODULE = "dexar_plugins.testing.conformance"


def pytest_configure(config: Any) -> None:
    """Register the marker (``--strict-markers`` accepts it)."""
    config.addinivalue_line("markers", f"{MARKER}: a check of dexar's adapter conformance suite")


def pytest_collection_modifyitems(items: list[Any]) -> None:
    """Mark the tests of every ``AdapterConformance`` subclass."""
    # Only a test module that imported the kit can hold a conformance class.
    conformance = sys.modules.get(CONFORMANCE_MODULE)
    if conformance is None:
        return
    for item in items:
        cls = getattr(item, "cls", None)
        if cls is not None and issubclass(cls, conformance.AdapterConformance):
            item.add_marker(MARKER)
