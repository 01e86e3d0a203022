"""The conformance case of the Qwen-VL adapter: an image and a short video, so built here.

``dexar_plugin.toml`` names :func:`conformance_case` as the adapter's ``conformance``.
"""

from __future__ import annotations

from typing import Any


def conformance_case(version: str = "2") -> Any:
    """A random tiny Qwen-VL, a non-square image and a short video, for the conformance kit.

    Args:
        version: ``"2"`` (Qwen2-VL, the default case), ``"2.5"`` (Qwen2.5-VL) or ``"3"``
            (Qwen3-VL, with DeepStack into the first three of four decoder layers).
    """
    import numpy as np
    from PIL import Image

    from dexar_core.images import Video
    from dexar_core.records import LoadedModel
    from dexar_plugins.testing.conformance import ConformanceCase
    from dexar_qwen_vl.adapter import QwenVLAdapter
    from dexar_qwen_vl.tiny import build_tiny_qwen_vl

    # Qwen3-VL: DeepStack from 3 vision blocks into 3 of 4 decoder layers
    text_layers, vision_layers = (4, 3) if version == "3" else (2, 2)
    model, processor = build_tiny_qwen_vl(
        version=version,
        seed=0,
        hidden_size=64,
        text_layers=text_layers,
        vision_layers=vision_layers,
    )
    adapter = QwenVLAdapter()
    adapter.model_class = type(model).__name__
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (48, 80, 3), dtype=np.uint8))
    frames = [rng.integers(0, 256, (32, 48, 3), dtype=np.uint8) for _ in range(3)]
    return ConformanceCase(
        loaded=LoadedModel(
            model=model, processor=processor, adapter=adapter, model_id="tiny-qwen-vl"
        ),
        images=(image, Video(frames=frames)),
        prompt="what color is the circle?",
        answer="a red circle",
    )
