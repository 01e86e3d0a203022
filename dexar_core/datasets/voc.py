"""PascalVOC-style segmentation folders: images, class-index masks and a split list.

Layout (the VOC2012 one)::

    root/JPEGImages/<id>.jpg
    root/SegmentationClass/<id>.png     palette or greyscale PNG of class indices
    root/ImageSets/Segmentation/<split>.txt   one id per line

Class 0 is the background, 255 the void border (ignored when scoring); every other
value is an object class. The segmentation metrics score a sequence map against the
union of objects (docs/method.md §11), over the non-void pixels.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import attrs
import numpy as np
from PIL import Image

from dexar_core.errors import DatasetError

VOID = 255
BACKGROUND = 0
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


@attrs.frozen(kw_only=True)
class SegmentationItem:
    """One image with its class-index mask.

    Attributes:
        image_id: the id from the split list.
        image_path: the image file.
        mask_path: the mask file.
        image: the RGB image.
        classes: ``(height, width)`` uint8 class indices (0 background, 255 void).
    """

    image_id: str
    image_path: Path
    mask_path: Path
    image: Image.Image = attrs.field(eq=False)
    classes: np.ndarray = attrs.field(eq=False)

    @property
    def object_mask(self) -> np.ndarray:
        """Union of every object: pixels neither background nor void."""
        return (self.classes != BACKGROUND) & (self.classes != VOID)

    @property
    def valid(self) -> np.ndarray:
        """Pixels that count when scoring: all but the void border."""
        return self.classes != VOID

    @property
    def present_classes(self) -> tuple[int, ...]:
        """The object classes in the mask, increasing (no background, no void)."""
        values = np.unique(self.classes)
        return tuple(int(v) for v in values if v not in (BACKGROUND, VOID))


class VOCSegmentation:
    """A VOC-style segmentation folder, read lazily item by item.

    Args:
        root: the folder holding ``JPEGImages``, ``SegmentationClass`` and ``ImageSets``.
        split: the split list's name (``val`` reads ``ImageSets/Segmentation/val.txt``).
        image_dir: the images' sub-folder.
        mask_dir: the masks' sub-folder.

    Raises:
        DatasetError: a missing folder or split list, an empty list, or ids without an
            image or a mask (all named, with what to fix).
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "val",
        *,
        image_dir: str = "JPEGImages",
        mask_dir: str = "SegmentationClass",
    ) -> None:
        self.root = Path(root)
        self.split = split
        if not self.root.is_dir():
            raise DatasetError(f"VOC folder {str(self.root)!r} does not exist or is not a folder.")
        listing = self.root / "ImageSets" / "Segmentation" / f"{split}.txt"
        if not listing.is_file():
            raise DatasetError(
                f"VOC folder {str(self.root)!r} has no split list {str(listing)!r}; expected "
                f"ImageSets/Segmentation/{split}.txt with one image id per line."
            )
        self.ids = tuple(line.strip() for line in listing.read_text().splitlines() if line.strip())
        if not self.ids:
            raise DatasetError(f"VOC split list {str(listing)!r} holds no image id.")
        self.image_dir = self.root / image_dir
        self.mask_dir = self.root / mask_dir
        found = {image_id: self._image_file(image_id) for image_id in self.ids}
        self._images = {image_id: path for image_id, path in found.items() if path is not None}
        no_image = [image_id for image_id in self.ids if image_id not in self._images]
        no_mask = [i for i in self.ids if not (self.mask_dir / f"{i}.png").is_file()]
        for missing, what, folder in (
            (no_image, "an image (.jpg, .jpeg or .png)", self.image_dir),
            (no_mask, "a mask <id>.png", self.mask_dir),
        ):
            if missing:
                raise DatasetError(
                    f"VOC split list {str(listing)!r}: {len(missing)} id(s) have no {what} in "
                    f"{str(folder)!r}, e.g. {missing[:3]}; add the files or remove the ids "
                    "from the list."
                )

    def _image_file(self, image_id: str) -> Path | None:
        for extension in IMAGE_EXTENSIONS:
            path = self.image_dir / f"{image_id}{extension}"
            if path.is_file():
                return path
        return None

    def __len__(self) -> int:
        return len(self.ids)

    def __iter__(self) -> Iterator[SegmentationItem]:
        return (self[index] for index in range(len(self)))

    def __getitem__(self, index: int) -> SegmentationItem:
        """Load one item.

        Raises:
            DatasetError: an unreadable file, a colour (RGB) mask, or a mask whose size
                differs from its image's.
        """
        image_id = self.ids[index]
        image_path = self._images[image_id]
        mask_path = self.mask_dir / f"{image_id}.png"
        image = _open(image_path).convert("RGB")
        mask = _open(mask_path)
        if mask.mode not in ("P", "L"):
            raise DatasetError(
                f"VOC mask {str(mask_path)!r} is a {mask.mode} image; expected a palette (P) "
                "or greyscale (L) PNG of class indices, as SegmentationClass holds. Convert "
                "colour-coded masks to class indices first."
            )
        if mask.size != image.size:
            raise DatasetError(
                f"VOC mask {str(mask_path)!r} is {mask.size[0]}x{mask.size[1]} but its image "
                f"{str(image_path)!r} is {image.size[0]}x{image.size[1]} (width x height); "
                "a mask must have its image's size."
            )
        classes = np.asarray(mask, dtype=np.uint8).copy()
        classes.flags.writeable = False
        return SegmentationItem(
            image_id=image_id,
            image_path=image_path,
            mask_path=mask_path,
            image=image,
            classes=classes,
        )

    def __repr__(self) -> str:
        return f"VOCSegmentation(root={str(self.root)!r}, split={self.split!r}, size={len(self)})"


def _open(path: Path) -> Image.Image:
    try:
        image = Image.open(path)
        image.load()
    except OSError as error:
        raise DatasetError(f"cannot read image file {str(path)!r}: {error}.") from error
    return image
