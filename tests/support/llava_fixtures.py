"""Tiny LLaVA models and images shared by the engine and API tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from dexar_core.records import LoadedModel
from dexar_llava.adapter import LlavaAdapter
from dexar_llava.tiny import build_tiny_llava


def tiny_llava(
    seed: int = 0, attn_implementation: str = "sdpa", kv_heads: int | None = None, layers: int = 2
) -> LoadedModel:
    """A random tiny LLaVA of the real classes, wrapped as ``load`` would return it."""
    model, processor = build_tiny_llava(
        seed=seed,
        attn_implementation=attn_implementation,
        kv_heads=kv_heads,
        text_layers=layers,
    )
    return LoadedModel(model=model, processor=processor, adapter=LlavaAdapter(), model_id="tiny")


def noise_image(seed: int = 0, size: tuple[int, int] = (64, 64)) -> Image.Image:
    """A reproducible RGB noise image of ``(width, height)``."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def explain_argv(folder: Path, out: Path, *extra: str) -> list[str]:
    """``dexar explain`` of the tiny LLaVA saved in ``folder`` on its ``image.png``,
    teacher-forcing "red circle" for the CLI tests' question, writing into ``out``."""
    return [
        "explain",
        "--model",
        str(folder),
        "--image",
        str(folder / "image.png"),
        "--prompt",
        "what color is the circle?",
        "--answer",
        "red circle",
        "--out",
        str(out),
        *extra,
    ]


def saved_tiny_llava(folder: Path) -> Path:
    """Save a random tiny LLaVA (seed 0) and its processor into ``folder``, a checkpoint."""
    model, processor = build_tiny_llava(seed=0)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder
