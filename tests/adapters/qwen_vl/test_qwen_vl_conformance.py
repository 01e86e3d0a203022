"""The built-in Qwen-VL adapter passes the conformance suite, on Qwen2-VL and Qwen2.5-VL.

Both cases hold a non-square image and a three-frame video (two temporal grids, the
second one a repeated frame).
"""

from __future__ import annotations

from dexar_plugins.testing.conformance import AdapterConformance, ConformanceCase
from dexar_qwen_vl import conformance_case


class TestQwen2VLConformance(AdapterConformance):
    adapter_name = "qwen_vl"


class TestQwen2_5VLConformance(AdapterConformance):
    adapter_name = "qwen_vl"

    def build_case(self) -> ConformanceCase:
        return conformance_case("2.5")
