"""dexar-paligemma passes dexar's adapter conformance suite (run it with ``pytest``)."""

from __future__ import annotations

from dexar_plugins.testing.conformance import AdapterConformance, ConformanceCase


# --8<-- [start:tests]
class TestPaliGemmaConformance(AdapterConformance):
    """PaliGemma 1 (Gemma decoder, SDPA), the case the manifest declares."""

    adapter_name = "paligemma"


class TestPaliGemma2Conformance(AdapterConformance):
    """PaliGemma 2: Gemma 2 decoder with soft-capping and sliding-window layers."""

    adapter_name = "paligemma"

    def build_case(self) -> ConformanceCase:
        return self.adapter_spec().conformance.with_options(gemma2=True)()


# --8<-- [end:tests]
