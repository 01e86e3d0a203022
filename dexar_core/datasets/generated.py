"""What the generated image sets share: a split whose items are drawn on demand.

The shapes benchmark (:mod:`dexar_core.datasets.shapes`) and the scenes set
(:mod:`dexar_core.datasets.scenes`) draw their images differently but hold their items
the same way: a named split of a given size, an image size, a seed, the question kinds
to ask, and item ``i`` made from ``(seed, split, i)`` alone, so items can be read in any
order and come out the same on every machine.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from typing import ClassVar, Generic, TypeVar

from dexar_core.errors import DatasetError

__all__ = ["GeneratedSplit"]

ItemT = TypeVar("ItemT")


class GeneratedSplit(ABC, Generic[ItemT]):
    """A split of a generated image set: indexable, iterable, each item drawn when read.

    Subclasses name their ``splits`` (name -> default size), the smallest image side
    their layout allows (``min_side``) and the question ``kinds`` they know, and draw
    one item in :meth:`_item`.

    Args:
        split: a key of ``splits``.
        size: number of items; the split's default size when None.
        image_size: side of square images, or ``(height, width)``.
        seed: seed of the whole set; each split has its own stream under it.
        kinds: question kinds to draw from; all of ``known_kinds`` when None.

    Raises:
        DatasetError: for an unknown split or kind, a bad size or a too small image.
    """

    splits: ClassVar[Mapping[str, int]]
    min_side: ClassVar[int]
    known_kinds: ClassVar[tuple[str, ...]]

    def __init__(
        self,
        split: str = "test",
        size: int | None = None,
        *,
        image_size: int | tuple[int, int] = 64,
        seed: int = 0,
        kinds: Sequence[str] | None = None,
    ) -> None:
        name = type(self).__name__
        if split not in self.splits:
            raise DatasetError(
                f"{name}: expected split to be one of {list(self.splits)}, found {split!r}."
            )
        count = self.splits[split] if size is None else size
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise DatasetError(f"{name}: expected size to be a positive integer, found {size!r}.")
        sides = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        if len(sides) != 2 or not all(isinstance(s, int) and s >= self.min_side for s in sides):
            raise DatasetError(
                f"{name}: expected image_size to be an integer or (height, width) of "
                f"integers >= {self.min_side}, found {image_size!r}."
            )
        chosen = tuple(self.known_kinds if kinds is None else kinds)
        if not chosen or any(kind not in self.known_kinds for kind in chosen):
            raise DatasetError(
                f"{name}: expected kinds from {list(self.known_kinds)}, found {list(chosen)}."
            )
        self.split = split
        self.size = count
        self.image_size = (int(sides[0]), int(sides[1]))
        self.seed = int(seed)
        self.kinds = chosen

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[ItemT]:
        return map(self.__getitem__, range(self.size))

    def __getitem__(self, index: int) -> ItemT:
        if not -self.size <= index < self.size:
            raise IndexError(
                f"{type(self).__name__}({self.split!r}): index {index} out of range for size "
                f"{self.size}."
            )
        return self._item(index % self.size)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(split={self.split!r}, size={self.size}, "
            f"image_size={self.image_size}, seed={self.seed})"
        )

    @abstractmethod
    def _item(self, index: int) -> ItemT:
        """Draw item ``index`` (``0 <= index < size``) from its own random stream."""
