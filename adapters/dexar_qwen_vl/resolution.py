"""Qwen-VL's dynamic resolution: what the processor does to each image, and its limits.

The Qwen2-VL image and video processors resize every image (or every frame of a video)
with ``smart_resize``: both sides become multiples of ``factor = patch_size *
merge_size`` and the area is brought into ``[min_pixels, max_pixels]``, keeping the
aspect ratio as closely as rounding allows. Nothing is cropped, so the resized image,
and the token grid over it, covers the whole original image. This module reads those
settings from a processor and refuses inputs the resize cannot serve, before the
processor fails on them or silently breaks its own limits.
"""

from __future__ import annotations

from typing import Any

from dexar_core.errors import InputError

MAX_ASPECT_RATIO = 200
"""``smart_resize`` refuses images whose long side exceeds this many short sides."""


def check_pixel_range(min_pixels: Any, max_pixels: Any, factor: int, *, who: str) -> None:
    """Refuse a ``[min_pixels, max_pixels]`` range no resized image can meet.

    ``smart_resize`` makes both sides multiples of ``factor`` (patch x merge), so the
    smallest possible image is ``factor x factor``; a range below that, or an empty
    range, would be silently violated.

    Raises:
        InputError: naming ``who``, the range and what would be admissible.
    """
    for name, value in (("min_pixels", min_pixels), ("max_pixels", max_pixels)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise InputError(f"{who}: expected {name} to be a positive integer, found {value!r}.")
    if min_pixels > max_pixels:
        raise InputError(
            f"{who}: min_pixels={min_pixels} exceeds max_pixels={max_pixels}; no image size "
            "satisfies both. Give min_pixels <= max_pixels."
        )
    if max_pixels < factor * factor:
        raise InputError(
            f"{who}: max_pixels={max_pixels} is below one merged patch ({factor}x{factor} = "
            f"{factor * factor} pixels), the smallest image the model can see; give "
            f"max_pixels >= {factor * factor}."
        )


def resize_settings(part: Any) -> dict[str, int]:
    """``patch_size``, ``merge_size``, ``temporal_patch_size``, ``min_pixels``, ``max_pixels``.

    Args:
        part: a Qwen2-VL image or video processor. Transformers 5 keeps the pixel range
            in ``size`` (``shortest_edge`` is the minimum area, ``longest_edge`` the
            maximum); older saved processors name them ``min_pixels`` / ``max_pixels``.
    """
    size = getattr(part, "size", None)

    def read(*names: str) -> Any:
        for name in names:
            value = size.get(name) if isinstance(size, dict) else getattr(size, name, None)
            if value is None:
                value = getattr(part, name, None)
            if value is not None:
                return value
        return None

    return {
        "patch_size": int(part.patch_size),
        "merge_size": int(part.merge_size),
        "temporal_patch_size": int(part.temporal_patch_size),
        "min_pixels": read("shortest_edge", "min_pixels"),
        "max_pixels": read("longest_edge", "max_pixels"),
    }


def resized_size(width: int, height: int, settings: dict[str, int], *, who: str) -> tuple[int, int]:
    """``(height, width)`` the processor resizes a ``width x height`` image to.

    Raises:
        InputError: for a side shorter than one merged patch, an aspect ratio the
            processor refuses, or a pixel range this image cannot meet.
    """
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

    factor = settings["patch_size"] * settings["merge_size"]
    min_pixels, max_pixels = settings["min_pixels"], settings["max_pixels"]
    check_pixel_range(min_pixels, max_pixels, factor, who=who)
    if min(width, height) < factor:
        raise InputError(
            f"{who} is {width}x{height} pixels, smaller than one merged patch "
            f"({factor}x{factor}: patch {settings['patch_size']} x merge "
            f"{settings['merge_size']}) on its short side; each visual token would cover more "
            f"than the whole image across. Give at least {factor} pixels on each side "
            "(upscale it yourself if that is what you mean)."
        )
    if max(width, height) / min(width, height) > MAX_ASPECT_RATIO:
        raise InputError(
            f"{who} is {width}x{height} pixels, an aspect ratio above the processor's limit "
            f"of {MAX_ASPECT_RATIO}; crop or pad it first."
        )
    resized_height, resized_width = smart_resize(
        height, width, factor=factor, min_pixels=min_pixels, max_pixels=max_pixels
    )
    area = resized_height * resized_width
    if not min_pixels <= area <= max_pixels:
        raise InputError(
            f"{who} is {width}x{height} pixels; at that aspect ratio the processor's resize "
            f"gives {resized_width}x{resized_height} = {area} pixels, outside "
            f"[min_pixels={min_pixels}, max_pixels={max_pixels}]: the range cannot be met. "
            "Widen the range (the processor's size['shortest_edge'] / size['longest_edge']) "
            "or crop the image closer to square."
        )
    return resized_height, resized_width
