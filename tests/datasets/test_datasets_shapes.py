"""The synthetic shapes benchmark: determinism, masks, words, splits, held-out combos."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from dexar_core.datasets.shapes import (
    COLORS,
    HELDOUT_COMBOS,
    KINDS,
    POSITIONS,
    SHAPES,
    VOCABULARY,
    ShapesDataset,
)
from dexar_core.errors import DatasetError
from dexar_core.zoo.tokenizer import build_word_tokenizer


def _digest(item) -> str:
    return hashlib.sha256(item.pixels.tobytes()).hexdigest()


def test_same_seed_gives_identical_items_and_other_seeds_differ():
    first = ShapesDataset("train", 20, seed=3, occlusion=0.5)
    second = ShapesDataset("train", 20, seed=3, occlusion=0.5)
    other = ShapesDataset("train", 20, seed=4, occlusion=0.5)
    for index in range(20):
        assert first[index] == second[index]
        assert first[index].image.tobytes() == second[index].image.tobytes()
    assert [_digest(i) for i in first] != [_digest(i) for i in other]


def test_items_are_independent_of_access_order():
    dataset = ShapesDataset("val", 10)
    forward = [_digest(item) for item in dataset]
    backward = [_digest(dataset[index]) for index in reversed(range(10))]
    assert forward == backward[::-1]
    assert _digest(dataset[-1]) == forward[-1]


@pytest.mark.parametrize("image_size", [64, (48, 96)])
def test_masks_cover_exactly_the_drawn_object_pixels(image_size):
    dataset = ShapesDataset("test", 60, image_size=image_size, occlusion=0.5)
    height, width = dataset.image_size
    saw_occlusion = False
    for item in dataset:
        assert item.pixels.shape == (height, width, 3)
        assert item.image.size == (width, height)
        assert 1 <= len(item.objects) <= 3
        covered = np.zeros((height, width), dtype=bool)
        for obj in item.objects:
            assert obj.mask.shape == (height, width)
            assert obj.mask.sum() >= 5
            assert (item.pixels[obj.mask] == obj.rgb).all()
            # The object's colour appears nowhere else in the image except on other
            # objects of the same colour.
            same_colour = np.all(item.pixels == obj.rgb, axis=-1)
            others = [o.mask for o in item.objects if o.color == obj.color]
            assert np.array_equal(same_colour, np.any(others, axis=0))
            assert not (covered & obj.mask).any()
            covered |= obj.mask
            saw_occlusion |= obj.occluded
        assert np.array_equal(item.union_mask, covered)
        assert item.target_mask[item.union_mask].any()
        assert not item.target_mask[~item.union_mask].any()
        assert not item.pixels.flags.writeable
    assert saw_occlusion


def test_objects_lie_in_the_cell_their_position_names():
    for item in ShapesDataset("train", 50, image_size=(60, 90)):
        for obj in item.objects:
            rows, cols = np.nonzero(obj.mask)
            row, col = divmod(POSITIONS.index(obj.position), 3)
            assert row * 20 <= rows.min() and rows.max() < (row + 1) * 20
            assert col * 30 <= cols.min() and cols.max() < (col + 1) * 30


def test_questions_are_unambiguous_and_answers_match_targets():
    for item in ShapesDataset("train", 200, occlusion=0.2):
        assert item.kind in KINDS
        if item.kind == "caption":
            assert item.answer == item.caption
            assert item.targets == tuple(range(len(item.objects)))
            continue
        (target,) = item.targets
        obj = item.objects[target]
        expected = {"color": obj.color, "shape": obj.shape, "position": obj.position}[item.kind]
        assert item.answer == expected
        assert _referents(item.question, item.objects) == [target], item.question


def _referents(question, objects):
    """Indices of the objects a question's colour, shape and position words describe."""
    words = question.rstrip("?").split()
    position = question.rstrip("?").split("at the ")[1] if "at the " in question else None
    colors = [w for w in words if w in COLORS]
    shapes = [w for w in words if w in SHAPES]
    return [
        i
        for i, obj in enumerate(objects)
        if all(obj.color == c for c in colors)
        and all(obj.shape == s for s in shapes)
        and position in (None, obj.position)
    ]


def test_every_question_answer_and_caption_word_is_in_the_tokenizer_vocabulary():
    tokenizer = build_word_tokenizer(VOCABULARY)
    unk = tokenizer.unk_token_id
    for split in ("train", "heldout"):
        for item in ShapesDataset(split, 150, occlusion=0.2):
            for text in (item.question, item.answer, item.caption):
                assert unk not in tokenizer(text).input_ids, text
    assert all(word in VOCABULARY for word in [*COLORS, *SHAPES, "top", "left", "center"])


def test_captions_read_in_layout_order_with_articles():
    item = next(i for i in ShapesDataset("train", 100) if len(i.objects) == 3)
    phrases = item.caption.split(" and ")
    assert len(phrases) == 3
    for phrase, obj in zip(phrases, item.objects, strict=True):
        article = "an" if obj.color == "orange" else "a"
        assert phrase == f"{article} {obj.color} {obj.shape} at the {obj.position}"
    order = [POSITIONS.index(obj.position) for obj in item.objects]
    assert order == sorted(order)


def test_kinds_can_be_restricted():
    kinds = {item.kind for item in ShapesDataset("train", 40, kinds=["color", "caption"])}
    assert kinds == {"color", "caption"}


def test_splits_are_disjoint():
    digests = {
        split: {_digest(item) for item in ShapesDataset(split, 300)}
        for split in ("train", "val", "test", "heldout")
    }
    splits = list(digests)
    for i, first in enumerate(splits):
        for second in splits[i + 1 :]:
            assert not digests[first] & digests[second], (first, second)


def test_heldout_combinations_never_appear_outside_the_heldout_split():
    for split in ("train", "val", "test"):
        for item in ShapesDataset(split, 400):
            for obj in item.objects:
                assert (obj.color, obj.shape, obj.position) not in HELDOUT_COMBOS
    for item in ShapesDataset("heldout", 100):
        combos = [(o.color, o.shape, o.position) for o in item.objects]
        assert any(combo in HELDOUT_COMBOS for combo in combos)
        targets = [item.objects[i] for i in item.targets]
        assert any((o.color, o.shape, o.position) in HELDOUT_COMBOS for o in targets)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"split": "validation"}, "split to be one of"),
        ({"size": 0}, "positive integer"),
        ({"size": -3}, "positive integer"),
        ({"image_size": 8}, "image_size"),
        ({"kinds": ["colour"]}, "kinds"),
        ({"occlusion": 1.5}, "probability"),
    ],
)
def test_bad_arguments_raise_dataset_error(arguments, message):
    with pytest.raises(DatasetError, match=message):
        ShapesDataset(**{"split": "train", **arguments})


def test_out_of_range_index_raises_index_error():
    with pytest.raises(IndexError):
        ShapesDataset("test", 5)[5]
