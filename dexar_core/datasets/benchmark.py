"""One item shape for every dataset ``dexar evaluate`` reads, and ``--dataset`` parsing.

Each reader keeps its own records (:class:`~dexar_core.datasets.shapes.ShapesItem`,
:class:`~dexar_core.datasets.voc.SegmentationItem`, ...); the benchmark sees them as a
:class:`BenchmarkItem`: an image, the question to ask, the reference answers, and, where
the dataset has them, the union mask of its objects and the words that name objects.

========================  ===========================  ==========  ================
``--dataset``             question                     masks       object words
========================  ===========================  ==========  ================
``shapes``                the item's question          per object  colours, shapes
``scenes``                the item's question          per object  colours, shapes
``voc:PATH``              ``describe the image.``      per class   VOC class names
``imagenet:PATH``         ``what is in the image?``    none        none
``vqa:PATH``              the line's question          none        none
========================  ===========================  ==========  ================

The metrics that need masks (segmentation, grounding) run only where a dataset has them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs
import numpy as np
from PIL import Image

from dexar_core.datasets import scenes
from dexar_core.datasets.imagenet import ClassifiedImage, ImageFolderDataset
from dexar_core.datasets.shapes import (
    CAPTION_QUESTION,
    COLORS,
    SHAPES,
    SPLITS,
    ShapesDataset,
    ShapesItem,
)
from dexar_core.datasets.voc import SegmentationItem, VOCSegmentation
from dexar_core.datasets.vqa import VQADataset, VQAItem
from dexar_core.errors import DatasetError

__all__ = [
    "DATASET_KINDS",
    "VOC_CLASS_WORDS",
    "Benchmark",
    "BenchmarkItem",
    "as_benchmark_item",
    "open_benchmark",
]

DATASET_KINDS = ("shapes", "scenes", "voc", "imagenet", "vqa")
"""The dataset kinds of ``--dataset``: ``shapes``, ``scenes``, or ``KIND:PATH`` for the others."""

GENERATED: dict[str, tuple[Callable[..., Any], tuple[str, ...]]] = {
    "shapes": (ShapesDataset, tuple(SPLITS)),
    "scenes": (scenes.ScenesDataset, tuple(scenes.SPLITS)),
}
"""The generated image sets, opened by name alone: their reader and their splits."""

IMAGENET_QUESTION = "what is in the image?"

VOC_CLASS_WORDS: dict[int, tuple[str, ...]] = {
    1: ("aeroplane", "airplane", "plane", "aircraft", "jet"),
    2: ("bicycle", "bike"),
    3: ("bird",),
    4: ("boat", "ship"),
    5: ("bottle",),
    6: ("bus",),
    7: ("car",),
    8: ("cat",),
    9: ("chair",),
    10: ("cow", "cattle"),
    11: ("table",),
    12: ("dog", "puppy"),
    13: ("horse",),
    14: ("motorbike", "motorcycle"),
    15: ("person", "man", "woman", "people", "men", "women", "boy", "girl", "child"),
    16: ("plant",),
    17: ("sheep",),
    18: ("sofa", "couch"),
    19: ("train",),
    20: ("tv", "monitor", "television", "screen"),
}
"""PascalVOC class index -> the single words that name it (their plurals in ``s`` and
``es`` count too). Multi-token words cannot be matched to one answer token."""


@attrs.frozen(kw_only=True)
class BenchmarkItem:
    """One item as the benchmark sees it, whatever dataset it comes from.

    Attributes:
        index: its position in the dataset (the key of resumed runs).
        item_id: the dataset's own id (a VOC image id, a VQA question id, a file path).
        kind: its question kind (``color``... for shapes, ``caption``, ``class``, ``vqa``).
        question: the prompt to ask.
        references: the reference answers; empty when the dataset has none (VOC).
        scoring: how an answer is judged: ``exact`` (shapes), ``vqa`` (case- and
            punctuation-insensitive match of any reference), ``contains`` (a reference
            name appears in the answer) or ``none``.
        image: the RGB image.
        mask: the union of all objects, ``(height, width)`` boolean; None without masks.
        valid: the pixels that count when scoring (VOC: all but the void border); None
            means all.
        object_masks: object id -> its ``(height, width)`` boolean mask.
        object_words: every word of the dataset that names objects -> the ids of the
            objects of *this* item it names (empty: the word names nothing here).
        description: a text naming every object of the image (shapes: its caption,
            whatever the question kind), the prompt contrastive models are explained
            with; "" when the dataset has none.
    """

    index: int
    item_id: str
    kind: str
    question: str
    references: tuple[str, ...]
    scoring: str
    image: Image.Image = attrs.field(eq=False, repr=False)
    mask: np.ndarray | None = attrs.field(default=None, eq=False, repr=False)
    valid: np.ndarray | None = attrs.field(default=None, eq=False, repr=False)
    object_masks: Mapping[int, np.ndarray] = attrs.field(factory=dict, eq=False, repr=False)
    object_words: Mapping[str, tuple[int, ...]] = attrs.field(factory=dict, repr=False)
    description: str = ""

    @property
    def answer(self) -> str:
        """The first reference answer, or "" when there is none."""
        return self.references[0] if self.references else ""

    def is_correct(self, answer: str) -> bool | None:
        """Whether ``answer`` matches the references; None when nothing can be judged."""
        if self.scoring == "exact":
            return answer.strip() == self.answer
        if self.scoring == "vqa":
            return _normalised(answer) in {_normalised(r) for r in self.references}
        if self.scoring == "contains":
            words = f" {_normalised(answer)} "
            return any(f" {_normalised(name)} " in words for name in self.references)
        return None

    def union_of(self, objects: tuple[int, ...]) -> np.ndarray:
        """The union of the masks of ``objects``."""
        return np.any([self.object_masks[obj] for obj in objects], axis=0)


class Benchmark:
    """A dataset read through :func:`as_benchmark_item`: indexable, with its facts.

    Attributes:
        name: the ``--dataset`` value it was opened from.
        split: the split (``""`` for datasets without splits).
        has_masks: its items carry object masks (segmentation can be scored).
        has_object_words: its items name objects (token grounding can be scored).
    """

    def __init__(
        self,
        name: str,
        split: str,
        dataset: Any,
        *,
        has_masks: bool,
        has_object_words: bool,
        convert: Callable[[Any, int], BenchmarkItem] | None = None,
    ) -> None:
        self.name = name
        self.split = split
        self.dataset = dataset
        self.has_masks = has_masks
        self.has_object_words = has_object_words
        self._convert = convert or as_benchmark_item

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> BenchmarkItem:
        return self._convert(self.dataset[index], index)

    def __repr__(self) -> str:
        return repr(self.dataset)


def open_benchmark(
    spec: str,
    split: str | None = None,
    *,
    seed: int = 0,
    image_size: int = 64,
    prompt: str | None = None,
    class_index: str | None = None,
) -> Benchmark:
    """Open ``shapes``, ``scenes``, ``voc:PATH``, ``imagenet:PATH`` or ``vqa:PATH``.

    Args:
        spec: the ``--dataset`` value.
        split: shapes: ``train``, ``val``, ``test`` (default) or ``heldout``; scenes:
            ``val`` or ``test`` (default); VOC: the
            split list's name (default ``val``); ImageNet and VQA have none.
        seed: the generated sets' seed (shapes, scenes).
        image_size: the generated images' side.
        prompt: the question for datasets without one (VOC, ImageNet).
        class_index: ImageNet: a class-index JSON (needed by a file list with names).

    Raises:
        DatasetError: an unknown kind, a missing path, a split where the dataset has
            none, or what the reader finds wrong with the files.
    """
    kind, _, path = spec.partition(":")
    if kind not in DATASET_KINDS or (kind in GENERATED) != (path == ""):
        raise DatasetError(
            f"evaluate: cannot read dataset {spec!r}; expected 'shapes', 'scenes', "
            "'voc:PATH', 'imagenet:PATH' or 'vqa:PATH' (PATH: a VOC folder, an image folder "
            "or file list, a .jsonl file)."
        )
    if kind in GENERATED:
        reader, splits = GENERATED[kind]
        chosen = "test" if split is None else split
        if chosen not in splits:
            raise DatasetError(
                f"evaluate: dataset {kind!r} has no split {chosen!r}; its splits are "
                f"{list(splits)}. Pass one of them (choose options on 'val', report 'test')."
            )
        generated = reader(chosen, seed=seed, image_size=image_size)
        return Benchmark(spec, chosen, generated, has_masks=True, has_object_words=True)
    if kind == "voc":
        chosen = "val" if split is None else split
        voc = VOCSegmentation(path, chosen)
        question = prompt or CAPTION_QUESTION
        return Benchmark(
            spec,
            chosen,
            voc,
            has_masks=True,
            has_object_words=True,
            convert=lambda item, index: _from_voc(item, index, question),
        )
    if split is not None:
        raise DatasetError(
            f"evaluate: {kind} datasets have no split, got --split {split}; leave it out."
        )
    if kind == "vqa":
        return Benchmark(spec, "", VQADataset(path), has_masks=False, has_object_words=False)
    where = Path(path)
    images = (
        ImageFolderDataset(where.parent, file_list=where, class_index=class_index)
        if where.is_file()
        else ImageFolderDataset(where, class_index=class_index)
    )
    question = prompt or IMAGENET_QUESTION
    return Benchmark(
        spec,
        "",
        images,
        has_masks=False,
        has_object_words=False,
        convert=lambda item, index: _from_imagenet(item, index, question),
    )


def as_benchmark_item(item: Any, index: int | None = None) -> BenchmarkItem:
    """The :class:`BenchmarkItem` of a reader's item (a BenchmarkItem is returned as is).

    Args:
        item: a ShapesItem (or a record with its ``objects``, ``union_mask``, ``question``,
            ``answer``, ``kind``, ``index`` and ``image``), SegmentationItem,
            ClassifiedImage, VQAItem or BenchmarkItem.
        index: its position in its dataset; shapes items know theirs.
    """
    if isinstance(item, BenchmarkItem):
        return item
    if isinstance(item, ShapesItem) or all(
        hasattr(item, name) for name in ("objects", "union_mask", "question", "kind", "index")
    ):
        return _from_shapes(item)  # also ShapesItem-like records of other generators
    position = -1 if index is None else index
    if isinstance(item, SegmentationItem):
        return _from_voc(item, position, CAPTION_QUESTION)
    if isinstance(item, ClassifiedImage):
        return _from_imagenet(item, position, IMAGENET_QUESTION)
    if isinstance(item, VQAItem):
        return BenchmarkItem(
            index=position,
            item_id=item.question_id,
            kind="vqa",
            question=item.question,
            references=item.answers,
            scoring="vqa",
            image=item.image,
        )
    raise DatasetError(
        f"evaluate: cannot score a {type(item).__name__}; give items of the shapes, VOC, "
        "ImageNet or VQA readers, or BenchmarkItem records."
    )


def _from_shapes(item: Any) -> BenchmarkItem:
    masks = {number: obj.mask for number, obj in enumerate(item.objects)}
    words = {
        word: tuple(
            number
            for number, obj in enumerate(item.objects)
            if word in (obj.color, obj.shape) and obj.mask.any()
        )
        for word in (*COLORS, *SHAPES)
    }
    return BenchmarkItem(
        index=item.index,
        item_id=str(item.index),
        kind=item.kind,
        question=item.question,
        references=(item.answer,),
        scoring="exact",
        image=item.image,
        mask=item.union_mask,
        object_masks=masks,
        object_words=words,
        description=str(getattr(item, "caption", "")),
    )


def _from_voc(item: SegmentationItem, index: int, question: str) -> BenchmarkItem:
    present = item.present_classes
    masks = {cls: item.classes == cls for cls in present}
    words: dict[str, tuple[int, ...]] = {}
    for cls, names in VOC_CLASS_WORDS.items():
        for name in names:
            for form in (name, f"{name}s", f"{name}es"):
                words[form] = (cls,) if cls in present else ()
    return BenchmarkItem(
        index=index,
        item_id=item.image_id,
        kind="caption",
        question=question,
        references=(),
        scoring="none",
        image=item.image,
        mask=item.object_mask,
        valid=item.valid,
        object_masks=masks,
        object_words=words,
    )


def _from_imagenet(item: ClassifiedImage, index: int, question: str) -> BenchmarkItem:
    names = tuple(name.strip() for name in item.readable_name.split(",") if name.strip())
    return BenchmarkItem(
        index=index,
        item_id=str(item.path),
        kind="class",
        question=question,
        references=names or (item.class_name,),
        scoring="contains",
        image=item.image,
    )


def _normalised(text: str) -> str:
    """Lower case, punctuation as spaces, single spaces: how answers are compared."""
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())
