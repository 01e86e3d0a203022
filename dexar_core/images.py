"""Reading images and videos (frame sequences) into RGB PIL images, with clear errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import numpy as np
from PIL import Image, UnidentifiedImageError

from dexar_core.errors import ImageError

MAX_PIXELS = 20_000 * 20_000
"""Larger images are refused rather than risking a decompression bomb."""


def _to_rgb(image: Image.Image) -> Image.Image:
    """Convert any mode (RGBA, LA, P, L, I;16, I, F, CMYK) to 8-bit RGB."""
    if image.mode in ("RGB",):
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        low, high = float(values.min()), float(values.max())
        scaled = np.zeros_like(values) if high == low else (values - low) / (high - low)
        image = Image.fromarray((scaled * 255).round().astype(np.uint8), mode="L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def load_image(source: Any) -> Image.Image:
    """An RGB PIL image from a path, a PIL image or an ``[H, W(, C)]`` uint8 array.

    Transparent images are composited on white; 16-bit and float images are rescaled.

    Raises:
        ImageError: for a missing, unreadable or non-image file, or an unusable array.
    """
    if isinstance(source, Image.Image):
        return _to_rgb(source)
    if isinstance(source, np.ndarray):
        if source.ndim not in (2, 3) or source.size == 0:
            raise ImageError(
                f"an image array must be [H, W] or [H, W, C], got shape {source.shape}."
            )
        array = source if source.dtype == np.uint8 else np.clip(source, 0, 255).astype(np.uint8)
        return _to_rgb(Image.fromarray(array))
    if not isinstance(source, (str, Path)):
        raise ImageError(
            f"an image must be a file path, a PIL image or a numpy array, got "
            f"{type(source).__name__}."
        )
    path = Path(source)
    if not path.exists():
        raise ImageError(f"image file {str(path)!r} does not exist; check the path.")
    if not path.is_file():
        raise ImageError(f"image path {str(path)!r} is not a file.")
    previous = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        with Image.open(path) as opened:
            opened.load()
            return _to_rgb(opened)
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as error:
        raise ImageError(
            f"{str(path)!r} could not be read as an image ({error}); give a PNG, JPEG or "
            "another format Pillow reads."
        ) from error
    finally:
        Image.MAX_IMAGE_PIXELS = previous


def _load_frames(frames: Any) -> tuple[Image.Image, ...]:
    if isinstance(frames, (str, Path, Image.Image, np.ndarray)) or not hasattr(frames, "__iter__"):
        raise ImageError(
            f"Video.frames must be a sequence of frames (paths, PIL images or arrays), got "
            f"{type(frames).__name__}; wrap a single image as [image]."
        )
    loaded = tuple(load_image(frame) for frame in frames)
    if not loaded:
        raise ImageError("Video.frames is empty; a video needs at least one frame.")
    sizes = sorted({frame.size for frame in loaded})
    if len(sizes) > 1:
        raise ImageError(
            f"Video.frames have different sizes {sizes} (width, height); every frame of a "
            "video must have the same size. Resize them to one size first."
        )
    return loaded


@attrs.frozen(kw_only=True)
class Video:
    """A video given as its frames in order: one visual input of ``explain()``.

    Pass it where an image goes, alone or in the list of visual inputs
    (``explain(loaded, [image, Video(frames=frames)], prompt)``); adapters that take
    videos lay its tokens out on one grid per temporal group of frames. Every frame is
    used as given: dexar does not sample frames.

    Attributes:
        frames: the frames as RGB PIL images, all of one size (paths, PIL images and
            arrays are read like images).
    """

    frames: tuple[Image.Image, ...] = attrs.field(converter=_load_frames)

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` of every frame."""
        return self.frames[0].size

    @property
    def num_frames(self) -> int:
        """Number of frames."""
        return len(self.frames)


def load_visual(source: Any) -> Image.Image | Video:
    """An RGB PIL image (see :func:`load_image`), or a :class:`Video` passed through."""
    if isinstance(source, Video):
        return source
    return load_image(source)
