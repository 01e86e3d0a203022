"""What the file-backed datasets share: items read and checked on opening, RGB images."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Generic, TypeVar

from PIL import Image

from dexar_core.errors import DatasetError

ItemT = TypeVar("ItemT")


class ReadItems(Generic[ItemT]):
    """Length, iteration and indexing over ``items``, which the subclass reads on opening.

    Reading every item up front lets a bad line or file fail when the dataset opens,
    naming where, rather than midway through a run.
    """

    items: tuple[ItemT, ...]

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[ItemT]:
        return iter(self.items)

    def __getitem__(self, index: int) -> ItemT:
        return self.items[index]


def rgb_image(path: Path, where: str = "") -> Image.Image:
    """The image file at ``path``, as RGB.

    Args:
        path: the image file.
        where: what the error adds after the file's name (e.g. ``" (line 3)"``).

    Raises:
        DatasetError: the file cannot be read as an image.
    """
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except OSError as error:
        raise DatasetError(f"cannot read image file {str(path)!r}{where}: {error}.") from error
