"""Plain-text tables and JSON for the command line's printed output."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any, TextIO


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns separated by two spaces, headers first."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]
    lines = [
        "  ".join(str(cell).ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in (headers, *rows)
    ]
    return "\n".join(lines)


def print_json(value: Any, stream: TextIO | None = None) -> None:
    """Print JSON with a stable layout (two-space indent, keys in given order)."""
    print(json.dumps(value, indent=2), file=stream or sys.stdout)
