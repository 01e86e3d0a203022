"""Noise images of a given size, the inputs of the adapters' end-to-end tests."""

from __future__ import annotations

import numpy as np
from PIL import Image


def noise_image(width: int, height: int, seed: int = 0) -> Image.Image:
    """An RGB image of uniform noise, the same for the same size and seed."""
    pixels = np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)
