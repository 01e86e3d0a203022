"""The pixels a person reads: an input upscaled, a map coloured over its greyed copy.

Every figure and the HTML report draw with these. Small inputs (the embedded models'
64-pixel images) are shown at :data:`DISPLAY_SIDE` pixels: the image with nearest
neighbour, so its pixels stay sharp, the map bilinearly, so its token grid does not read
as the image's own blocks. The map is coloured with a perceptual colour map over a
desaturated copy of the image, so the image's own colours never read as heat; what lies
outside every grid's pixel box (a processor's centre crop) was not seen by the model and
is hatched grey.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
from PIL import Image

from dexar_core.errors import InputError
from dexar_core.heatmap import upsample

if TYPE_CHECKING:
    from matplotlib.colors import Colormap

__all__ = [
    "DEFAULT_ALPHA",
    "DEFAULT_CMAP",
    "DISPLAY_SIDE",
    "colour_map",
    "display_size",
    "grey_picture",
    "heat_picture",
    "seen_mask",
    "shown_picture",
]

DEFAULT_CMAP = "inferno"
DEFAULT_ALPHA = 0.6
#: The longer side, in pixels, at least, of an input as shown.
DISPLAY_SIDE = 448
# The largest side drawn: a photograph is shown smaller, not at its full resolution.
MAX_DISPLAY_SIDE = 640
_HATCH_PERIOD = 10
_UNSEEN_GREY = (150, 150, 150)
_UNSEEN_LINE = (95, 95, 95)


def colour_map(cmap: str) -> Colormap:
    """The matplotlib colour map named ``cmap``, importing matplotlib only now."""
    import matplotlib

    try:
        return matplotlib.colormaps[cmap]
    except KeyError:
        raise InputError(
            f"unknown colour map {cmap!r}; use a matplotlib name such as 'inferno', "
            "'viridis' or 'magma'."
        ) from None


def display_size(size: tuple[int, int]) -> tuple[int, int]:
    """``(width, height)`` an input of ``size`` is shown at, its aspect ratio kept."""
    width, height = size
    longer = max(width, height)
    side = min(max(longer, DISPLAY_SIDE), MAX_DISPLAY_SIDE)
    scale = side / longer
    return max(1, round(width * scale)), max(1, round(height * scale))


def shown_picture(image: Image.Image) -> Image.Image:
    """The RGB image at its display size: nearest neighbour up, Lanczos down."""
    size = display_size(image.size)
    rgb = image.convert("RGB")
    if size == rgb.size:
        return rgb
    upscaling = size[0] >= rgb.width
    return rgb.resize(size, Image.Resampling.NEAREST if upscaling else Image.Resampling.LANCZOS)


def grey_picture(image: Image.Image) -> npt.NDArray[np.float32]:
    """The shown image desaturated and lightened, ``[H, W, 3]`` in ``[0, 1]``."""
    grey = np.asarray(shown_picture(image).convert("L"), dtype=np.float32) / 255
    # Lifted toward white so that dark image regions do not read as cold heat.
    lifted = 0.35 + 0.65 * grey
    return np.repeat(lifted[..., None], 3, axis=2)


def seen_mask(
    pixel_boxes: Sequence[Sequence[float]], image_size: tuple[int, int]
) -> npt.NDArray[np.bool_]:
    """``[H, W]`` at display size: True where some grid's pixel box covers the image."""
    width, height = display_size(image_size)
    scale_x, scale_y = width / image_size[0], height / image_size[1]
    columns = np.arange(width) + 0.5
    rows = np.arange(height) + 0.5
    mask = np.zeros((height, width), dtype=bool)
    for left, top, right, bottom in pixel_boxes:
        inside_x = (columns >= left * scale_x) & (columns < right * scale_x)
        inside_y = (rows >= top * scale_y) & (rows < bottom * scale_y)
        mask |= inside_y[:, None] & inside_x[None, :]
    return mask


def heat_picture(
    image: Image.Image,
    map2d: npt.ArrayLike,
    pixel_box: Sequence[float],
    *,
    seen: npt.NDArray[np.bool_] | None = None,
    alpha: float = DEFAULT_ALPHA,
    cmap: str = DEFAULT_CMAP,
    value_range: tuple[float, float] = (0.0, 1.0),
) -> Image.Image:
    """A grid's map coloured over the greyed image, unseen regions hatched.

    Args:
        image: the original picture.
        map2d: the grid's ``[h, w]`` map at token-grid resolution.
        pixel_box: ``(left, top, right, bottom)`` of the original image the grid covers.
        seen: where any grid saw the image (:func:`seen_mask`); the box alone when None.
        alpha: weight of the colours; 0 shows the greyed image only.
        cmap: a matplotlib colour map name.
        value_range: the values drawn at the colour map's two ends (``(0, 1)`` for a
            normalised map; a raw map's own range to compare magnitudes).

    Returns:
        An RGB image at :func:`display_size`.

    Raises:
        InputError: for an ``alpha`` outside ``[0, 1]``, an empty value range, an
            unknown colour map or a map that is not finite and 2-D.
    """
    if not 0 <= alpha <= 1:
        raise InputError(f"heat_picture: alpha must lie in [0, 1], got {alpha}.")
    low, high = value_range
    if not high > low:
        raise InputError(f"heat_picture: value_range must rise, got {value_range}.")
    colours_of = colour_map(cmap)
    width, height = display_size(image.size)
    scale_x, scale_y = width / image.size[0], height / image.size[1]
    left, top, right, bottom = pixel_box
    box = (
        round(left * scale_x),
        round(top * scale_y),
        max(round(right * scale_x), round(left * scale_x) + 1),
        max(round(bottom * scale_y), round(top * scale_y) + 1),
    )
    base = grey_picture(image)
    inside = np.clip(
        (upsample(map2d, (box[2] - box[0], box[3] - box[1])) - low) / (high - low), 0, 1
    )
    region = base[max(box[1], 0) : box[3], max(box[0], 0) : box[2]]
    cut = inside[
        max(-box[1], 0) : max(-box[1], 0) + region.shape[0],
        max(-box[0], 0) : max(-box[0], 0) + region.shape[1],
    ]
    colours = np.asarray(colours_of(cut), dtype=np.float32)[..., :3]
    region[...] = (1 - alpha) * region + alpha * colours
    pixels = np.round(base * 255).astype(np.uint8)
    unseen = ~(seen if seen is not None else seen_mask([pixel_box], image.size))
    pixels[unseen] = hatched(unseen.shape)[unseen]
    return Image.fromarray(pixels)


def hatched(shape: tuple[int, ...]) -> npt.NDArray[np.uint8]:
    """``[H, W, 3]`` grey with diagonal lines: the look of a region the model did not see."""
    rows, columns = np.indices(shape[:2])
    lines = (rows + columns) % _HATCH_PERIOD < 2
    pixels = np.empty((*shape[:2], 3), dtype=np.uint8)
    pixels[:] = _UNSEEN_GREY
    pixels[lines] = _UNSEEN_LINE
    return pixels
