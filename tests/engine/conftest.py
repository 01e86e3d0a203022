"""Fixtures of the engine's tests: the PaliGemma example adapter (a prefix-LM)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from dexar_core.records import LoadedModel

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "dexar-paligemma"


@pytest.fixture
def paligemma(monkeypatch):
    """Builds the example adapter's tiny model, its package imported from its folder (no
    plugin registration): ``paligemma(**options)`` passes the options to its builder."""
    monkeypatch.syspath_prepend(str(EXAMPLE))
    from dexar_paligemma.adapter import PaliGemmaAdapter
    from dexar_paligemma.tiny import build_tiny_paligemma

    def build(**options) -> LoadedModel:
        model, processor = build_tiny_paligemma(seed=2, **options)
        return LoadedModel(
            model=model, processor=processor, adapter=PaliGemmaAdapter(), model_id="t"
        )

    yield build
    for name in [name for name in sys.modules if name.startswith("dexar_paligemma")]:
        del sys.modules[name]
