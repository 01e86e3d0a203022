"""Synthetic grounded benchmark: coloured shapes with masks, captions and questions.

Vocabulary section only; the generator follows in the next commit.
"""

from __future__ import annotations

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 160, 50),
    "blue": (30, 70, 225),
    "yellow": (240, 215, 25),
    "purple": (140, 45, 185),
    "orange": (245, 130, 20),
}
"""Object colour names and their RGB values (backgrounds are neutral greys)."""

SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
"""Object shape names."""

POSITIONS: tuple[str, ...] = (
    "top left",
    "top",
    "top right",
    "left",
    "center",
    "right",
    "bottom left",
    "bottom",
    "bottom right",
)
"""Position names of the 3x3 layout cells, row by row from the top left."""

PROMPT_WORDS: tuple[str, ...] = (
    "user assistant what which color colour shape where is are the a an at and",
    "describe image picture object of in this",
)
"""Words the prompts and questions use besides the answer words."""

VOCABULARY: tuple[str, ...] = tuple(
    dict.fromkeys(
        word for entry in (*COLORS, *SHAPES, *POSITIONS, *PROMPT_WORDS) for word in entry.split()
    )
)
"""Every word of the benchmark's questions, answers and captions, each once."""
