"""docs/adapters.md shows the tested example's code and names every contract and check."""

from __future__ import annotations

import inspect
import re
import sys
from pathlib import Path

import attrs
import pytest

from dexar_core import interfaces
from dexar_core.hf.decoder_only import HFDecoderOnlyAdapter
from dexar_core.values import AdapterSpec
from dexar_plugins import hookspecs
from dexar_plugins.testing.conformance import CHECKS, ConformanceCase

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "adapters.md"
TEMPLATE = ROOT / "docs" / "examples" / "template"
SNIPPET = re.compile(
    r"<!-- snippet: (?P<path>[^#]+)#(?P<name>[\w-]+) -->\n```\w*\n(?P<code>.*?)\n```", re.S
)


def marked_region(path: Path, name: str) -> str:
    """The lines between ``--8<-- [start:name]`` and ``--8<-- [end:name]`` in a file."""
    lines = path.read_text().splitlines()
    starts = [i for i, line in enumerate(lines) if line.strip().endswith(f"--8<-- [start:{name}]")]
    ends = [i for i, line in enumerate(lines) if line.strip().endswith(f"--8<-- [end:{name}]")]
    assert len(starts) == len(ends) == 1, f"{path} needs one start and one end marker {name!r}"
    return "\n".join(lines[starts[0] + 1 : ends[0]]).strip("\n")


SNIPPETS = list(SNIPPET.finditer(GUIDE.read_text()))


def test_the_guide_includes_the_example_files():
    paths = {match["path"] for match in SNIPPETS}
    example = "docs/examples/dexar-paligemma/"
    assert {
        f"{example}pyproject.toml",
        f"{example}dexar_paligemma/__init__.py",
        f"{example}dexar_paligemma/dexar_plugin.toml",
        f"{example}dexar_paligemma/adapter.py",
        f"{example}tests/test_conformance.py",
    } <= paths


@pytest.mark.parametrize("match", SNIPPETS, ids=lambda m: f"{m['path']}#{m['name']}")
def test_each_snippet_matches_the_tested_file(match):
    expected = marked_region(ROOT / match["path"], match["name"])
    assert match["code"] == expected, (
        f"docs/adapters.md shows an outdated copy of {match['path']}#{match['name']}; "
        "paste the region between the markers again."
    )


def _documented(name: str) -> bool:
    return f"`{name}" in GUIDE.read_text()


def test_the_guide_names_every_check_with_its_summary():
    text = GUIDE.read_text()
    for check in CHECKS.values():
        assert f"| `{check.name}` | {check.summary} |" in text


def test_the_guide_names_every_hook_with_its_signature():
    text = GUIDE.read_text()
    hooks = [
        function
        for _, function in inspect.getmembers(hookspecs, inspect.isfunction)
        if hasattr(function, f"{hookspecs.PROJECT_NAME}_spec")
    ]
    for hook in hooks:
        returned = inspect.signature(hook).return_annotation
        assert f"`{hook.__name__}() -> {returned}`" in text


def test_the_guide_names_every_interface_member_and_spec_field():
    members = [
        name
        for cls in (
            interfaces.ModelAdapter,
            interfaces.GenerativeAdapter,
            interfaces.AttentionCapture,
            interfaces.GradientExtractor,
            HFDecoderOnlyAdapter,
        )
        for name, value in vars(cls).items()
        if callable(value) and not name.startswith("_")
    ]
    members += ["capture", "locator", "gradients", "logit_lens_targets", "locate"]
    members += ["units", "perturbation_measure"]
    members += [field.name for field in attrs.fields(AdapterSpec)]
    members += [field.name for field in attrs.fields(ConformanceCase)]
    missing = [name for name in members if not _documented(name)]
    assert not missing, f"docs/adapters.md does not name {missing}"


def test_the_template_declares_its_plugin_and_a_complete_adapter(monkeypatch):
    pyproject = (TEMPLATE / "pyproject.toml").read_text()
    assert '[project.entry-points.dexar]\nmyvlm = "dexar_myvlm"\n' in pyproject
    for path in TEMPLATE.rglob("*.py"):
        compile(path.read_text(), str(path), "exec")
    monkeypatch.syspath_prepend(str(TEMPLATE))
    try:
        import dexar_myvlm
        from dexar_myvlm.adapter import MyVlmAdapter

        (spec,) = dexar_myvlm.dexar_adapters()
        assert spec.name == MyVlmAdapter.name == "myvlm"
        assert isinstance(spec.factory(), MyVlmAdapter)  # no abstract method left
    finally:
        for name in [name for name in sys.modules if name.startswith("dexar_myvlm")]:
            del sys.modules[name]
