"""The core spells no built-in adapter's name in its code: plugins own their models.

Docstrings and comments may name an adapter as an example; code (identifiers, imports,
string literals that are not docstrings) may not, so a third-party adapter can do
everything a built-in one does.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[2] / "dexar_core"

ADAPTER_NAMES = re.compile(r"llava|qwen|blip|florence|open_?clip|(?<![a-z_])clip(?![a-z_])", re.I)
"""The built-in adapters' names, as an identifier or a word of a string would spell them."""

NUMPY_CLIP = ("np", "clip")
"""``np.clip``, numpy's function, is not the model."""


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the string constants that stand alone as statements (docstrings)."""
    return {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
    }


def _spelled(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, text) of every identifier, import and non-docstring string in the tree."""
    docstrings = _docstrings(tree)
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if id(node) not in docstrings:
                found.append((line, node.value))
        elif isinstance(node, ast.Name):
            found.append((line, node.id))
        elif isinstance(node, ast.Attribute):
            owner = node.value.id if isinstance(node.value, ast.Name) else ""
            if (owner, node.attr) != NUMPY_CLIP:
                found.append((line, node.attr))
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            found.append((line, node.name))
        elif isinstance(node, ast.arg):
            found.append((line, node.arg))
        elif isinstance(node, ast.ImportFrom):
            found.append((line, node.module or ""))
        elif isinstance(node, ast.alias):
            found.append((line, node.name))
    return found


def adapter_names_in(source: str) -> list[tuple[int, str]]:
    """(line, text) of each spelling of a built-in adapter's name in a module's code."""
    return [
        (line, text) for line, text in _spelled(ast.parse(source)) if ADAPTER_NAMES.search(text)
    ]


@pytest.mark.parametrize(
    "source",
    [
        'DEFAULT_MODEL = "shapes-llava"\n',
        "from dexar_qwen_vl.tiny import format_prompt\n",
        'RECIPES = {"florence2": 1}\n',
        'def f():\n    """Docs."""\n    raise ValueError(f"e.g. open_clip:{1}")\n',
        "x = model.blip2_projection\n",
        'help = "a contrastive model such as shapes-clip"\n',
    ],
)
def test_the_check_finds_an_adapter_name_in_code(source):
    assert adapter_names_in(source)


@pytest.mark.parametrize(
    "source",
    [
        '"""Florence-2 and LLaVA are examples in a docstring."""\n',
        "x = 1  # LLaVA-1.5's grid, in a comment\n",
        "import numpy as np\ny = np.clip(x, 0, 1)\n",
        "torch.nn.utils.clip_grad_norm_(parameters, 1.0)\n",
        'def f():\n    """Qwen2-VL, say."""\n    return 1\n',
    ],
)
def test_the_check_leaves_docstrings_comments_and_numpy_alone(source):
    assert adapter_names_in(source) == []


@pytest.mark.parametrize(
    "module", sorted(CORE.rglob("*.py")), ids=lambda path: str(path.relative_to(CORE))
)
def test_core_module_spells_no_adapter_name(module):
    found = adapter_names_in(module.read_text())
    assert found == [], f"{module.relative_to(CORE.parent)} names adapters at {found}"
