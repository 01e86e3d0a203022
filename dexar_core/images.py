"""Reading images and videos (frame sequences) into RGB PIL images, with clear errors."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import attrs
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

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


def _from_array(source: np.ndarray) -> Image.Image:
    """An image from an ``[H, W]``, ``[H, W, C]`` or channel-first ``[C, H, W]`` array.

    The convention: uint8 values are 0..255; float values are 0..1 (values outside
    are refused, not clipped to black or white); bool is black and white; other integer
    types must hold 0..255. ``C`` is 1 (grey), 3 (RGB) or 4 (RGBA); a first axis of
    1, 3 or 4 that is not larger than the last is read as channel-first.
    """
    array = source
    if (
        array.ndim == 3
        and array.shape[0] in (1, 3, 4)
        and array.shape[-1] not in (1, 3, 4)
        and array.shape[0] <= array.shape[-1]
    ):
        # Channel-first, as torch and torchvision give it; when both ends could be the
        # channels ((3, H, 3)), the numpy and PIL convention (channels last) is kept.
        array = np.moveaxis(array, 0, -1)
    if array.ndim not in (2, 3) or array.size == 0 or (array.ndim == 3 and 0 in array.shape):
        raise ImageError(
            f"an image array must be [H, W], [H, W, C] or [C, H, W] with C in 1, 3, 4 and no "
            f"side of 0, got shape {source.shape}."
        )
    if array.ndim == 3 and array.shape[-1] not in (1, 3, 4):
        raise ImageError(
            f"an image array has {array.shape[-1]} channels (shape {source.shape}); give 1 "
            "(grey), 3 (RGB) or 4 (RGBA) channels, last or first."
        )
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.dtype == np.bool_:
        array = array.astype(np.uint8) * 255
    elif np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise ImageError("an image array holds NaN or infinity; give finite pixel values.")
        low, high = float(array.min()), float(array.max())
        if low < 0 or high > 1:
            raise ImageError(
                f"a float image array must hold values in [0, 1], found {low:.4g}..{high:.4g}; "
                "divide 0..255 values by 255 (or give a uint8 array)."
            )
        array = (array * 255).round().astype(np.uint8)
    elif np.issubdtype(array.dtype, np.integer):
        low, high = int(array.min()), int(array.max())
        if low < 0 or high > 255:
            raise ImageError(
                f"an integer image array must hold 0..255, found {low}..{high}; give uint8 "
                "values (or floats in [0, 1])."
            )
        array = array.astype(np.uint8)
    else:
        raise ImageError(
            f"an image array of dtype {array.dtype} is not an image; give uint8 0..255 or "
            "float 0..1 values."
        )
    return _to_rgb(Image.fromarray(np.ascontiguousarray(array)))


def _from_tensor(source: Any) -> Image.Image:
    """A torch tensor read as an array (channel-first ``[C, H, W]`` as torchvision gives)."""
    if source.ndim == 4 and source.shape[0] == 1:
        source = source[0]
    if source.ndim == 4:
        raise ImageError(
            f"an image tensor of shape {tuple(source.shape)} is a batch; give one image "
            "(index it, e.g. images[0]) or a list of them."
        )
    return _from_array(source.detach().cpu().numpy())


def _is_tensor(source: Any) -> bool:
    # torch is not imported for a path or an array: ``import dexar_core`` stays light.
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(source, torch.Tensor)


def _one_frame(image: Image.Image, frame: int | None, name: str) -> Image.Image:
    """The chosen frame of a multi-frame file (GIF, TIFF, WebP); a single frame as is."""
    frames = getattr(image, "n_frames", 1)
    if frames <= 1 and frame in (None, 0):
        return image
    if frame is None:
        raise ImageError(
            f"{name} has {frames} frames; choose one (0..{frames - 1}) with --frame N, or "
            "from Python load_image(path, frame=N), or pass the frames as a Video where the "
            "model takes videos."
        )
    if isinstance(frame, bool) or not isinstance(frame, int) or not 0 <= frame < frames:
        raise ImageError(
            f"{name} has {frames} frame(s); frame must be 0..{frames - 1}, got {frame!r}."
        )
    image.seek(frame)
    return image


def load_image(source: Any, *, frame: int | None = None) -> Image.Image:
    """An RGB PIL image from a path, a PIL image, a numpy array or a torch tensor.

    A file's EXIF orientation is applied (a phone photo is explained upright, as it is
    shown). Arrays follow :func:`_from_array`'s convention: uint8 0..255 or float 0..1,
    ``[H, W]``, ``[H, W, C]`` or ``[C, H, W]``. Transparent images are composited on
    white; 16-bit images are rescaled. A file or PIL image with several frames (an
    animated GIF, a multi-page TIFF) needs ``frame``, rather than silently using one.

    Args:
        source: the image.
        frame: which frame of a multi-frame image (0 is the first).

    Raises:
        ImageError: for a missing, unreadable or non-image file, an unusable array, or
            a multi-frame image without a valid ``frame``.
    """
    if isinstance(source, Image.Image):
        if 0 in source.size:
            raise ImageError(f"the image has size {source.size}; it is empty.")
        return _to_rgb(ImageOps.exif_transpose(_one_frame(source, frame, "the image")))
    if isinstance(source, np.ndarray):
        return _from_array(source)
    if _is_tensor(source):
        return _from_tensor(source)
    if not isinstance(source, (str, Path)):
        raise ImageError(
            f"an image must be a file path, a PIL image, a numpy array or a torch tensor, got "
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
            chosen = _one_frame(opened, frame, repr(str(path)))
            chosen.load()
            if 0 in chosen.size:
                raise ImageError(f"{str(path)!r} is an image of size {chosen.size}; it is empty.")
            return _to_rgb(ImageOps.exif_transpose(chosen))
    except (
        UnidentifiedImageError,
        OSError,
        SyntaxError,
        ValueError,
        Image.DecompressionBombError,
    ) as error:
        if isinstance(error, ImageError):
            raise
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
