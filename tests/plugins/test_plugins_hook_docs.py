"""Every hook is documented in docs/plugins.md with its exact signature, and tested."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from dexar_plugins import hookspecs

ROOT = Path(__file__).resolve().parents[2]
PLUGINS_DOC = ROOT / "docs" / "plugins.md"


class _Annotation(str):
    """A string annotation that inspect renders without quotes, as it is written."""

    def __repr__(self) -> str:
        return str(self)


def rendered_signature(function) -> str:
    """``name(params) -> return`` as inspect renders it, string annotations unquoted."""
    signature = inspect.signature(function)
    unquoted = signature.replace(
        parameters=[
            parameter.replace(annotation=_Annotation(parameter.annotation))
            if isinstance(parameter.annotation, str)
            else parameter
            for parameter in signature.parameters.values()
        ],
        return_annotation=_Annotation(signature.return_annotation)
        if isinstance(signature.return_annotation, str)
        else signature.return_annotation,
    )
    return f"{function.__name__}{unquoted}"


HOOKS = [
    function
    for _, function in inspect.getmembers(hookspecs, inspect.isfunction)
    if hasattr(function, f"{hookspecs.PROJECT_NAME}_spec")
]


def test_hookspecs_are_found():
    assert {hook.__name__ for hook in HOOKS} >= {
        "dexar_adapters",
        "dexar_methods",
        "dexar_embedded_models",
    }


@pytest.mark.parametrize("hook", HOOKS, ids=lambda hook: hook.__name__)
def test_hook_is_documented_with_its_exact_signature(hook):
    signature = rendered_signature(hook)
    documented_lines = {line.strip() for line in PLUGINS_DOC.read_text().splitlines()}

    assert signature in documented_lines, f"docs/plugins.md lacks the line {signature!r}"
    assert signature in inspect.getdoc(hook), f"the docstring of {hook.__name__} lacks it"


@pytest.mark.parametrize("hook", HOOKS, ids=lambda hook: hook.__name__)
def test_hook_is_named_by_a_test(hook):
    naming = [
        path.name
        for path in (ROOT / "tests").rglob("test_*.py")
        if path.resolve() != Path(__file__).resolve() and hook.__name__ in path.read_text()
    ]

    assert naming, f"no test in tests/ names {hook.__name__}"
