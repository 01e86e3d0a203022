"""The built-in LLaVA adapter passes the conformance suite adapter authors run."""

from __future__ import annotations

from dexar_plugins.testing.conformance import AdapterConformance


class TestLlavaConformance(AdapterConformance):
    adapter_name = "llava"
