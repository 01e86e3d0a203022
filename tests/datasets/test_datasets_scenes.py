"""The scenes image set: determinism, exact masks, no overlaps, splits, its own look."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from dexar_core.datasets.benchmark import open_benchmark
from dexar_core.datasets.scenes import SPLITS, ScenesDataset
from dexar_core.datasets.shapes import COLORS, POSITIONS, VOCABULARY, ShapesDataset
from dexar_core.errors import DatasetError
from dexar_core.evaluation.run import open_dataset


def _digest(item) -> str:
    return hashlib.sha256(item.pixels.tobytes()).hexdigest()


@pytest.fixture(scope="module")
def scenes():
    return [ScenesDataset("test", 120)[index] for index in range(120)]


def _gap(first: np.ndarray, second: np.ndarray) -> int:
    """The Chebyshev distance between two masks' nearest pixels."""
    ys1, xs1 = np.nonzero(first)
    ys2, xs2 = np.nonzero(second)
    dy = np.abs(ys1[:, None] - ys2[None, :])
    dx = np.abs(xs1[:, None] - xs2[None, :])
    return int(np.maximum(dy, dx).min())


def test_the_same_seed_split_and_index_give_the_same_bytes_whatever_the_order():
    first = ScenesDataset("val", 12, seed=5)
    again = ScenesDataset("val", 12, seed=5)
    forward = [_digest(item) for item in first]
    backward = [_digest(again[index]) for index in reversed(range(12))]
    assert forward == backward[::-1]
    assert first[3] == again[3]
    assert _digest(first[-1]) == forward[-1]
    assert [_digest(item) for item in ScenesDataset("val", 12, seed=6)] != forward


def test_masks_cover_the_drawn_objects_up_to_the_antialiased_rim(scenes):
    for item in scenes:
        for obj in item.objects:
            rim = (obj.coverage > 0) & (obj.coverage < 1)
            # the mask is the pixels covered at least half: it misses or adds rim pixels only
            assert abs(obj.mask.sum() - obj.area) <= 0.5 * rim.sum() + 1
            assert abs(float(obj.coverage.sum()) - obj.area) <= 0.1 * rim.sum() + 1
            assert obj.mask.sum() >= 12
            full = obj.coverage == 1
            assert full.any()
            assert (item.pixels[full] == obj.rgb).all()
            # a mask pixel is at least half the object's colour
            pixels = item.pixels[obj.mask].astype(int)
            to_object = np.abs(pixels - np.array(obj.rgb)).sum(axis=1)
            to_background = np.abs(pixels - item.background[obj.mask].astype(int)).sum(axis=1)
            assert (to_object <= to_background + 3).all()
        painted = np.logical_or.reduce([obj.coverage > 0 for obj in item.objects])
        assert (item.pixels[~painted] == item.background[~painted]).all()


def test_no_two_objects_overlap_or_touch_but_some_come_close(scenes):
    gaps = []
    for item in scenes:
        supports = [obj.coverage > 0 for obj in item.objects]
        for i in range(len(supports)):
            for j in range(i + 1, len(supports)):
                gaps.append(_gap(supports[i], supports[j]))
    assert min(gaps) >= 2  # at least one clear pixel between any two objects
    assert sum(gap <= 4 for gap in gaps) >= 3  # close pairs exist


def test_objects_reach_near_the_border_and_span_more_sizes_than_shapes(scenes):
    height, width = scenes[0].pixels.shape[:2]
    near_edge = 0
    relative = []
    for item in scenes:
        for obj in item.objects:
            ys, xs = np.nonzero(obj.coverage > 0)
            assert ys.min() >= 1 and xs.min() >= 1
            assert ys.max() <= height - 2 and xs.max() <= width - 2
            near_edge += min(ys.min(), xs.min(), height - 1 - ys.max(), width - 1 - xs.max()) <= 2
            relative.append(obj.size / (min(height, width) / 3))
    assert near_edge >= 10
    # shapes draws radii of 0.34-0.46 of a cell
    assert min(relative) < 0.3 and max(relative) > 0.44


def test_objects_are_jittered_rotated_stretched_and_antialiased(scenes):
    objects = [obj for item in scenes for obj in item.objects]
    assert max(abs(obj.rotation) for obj in objects if obj.shape == "square") > 8
    assert min(obj.aspect for obj in objects) < 0.9 < 1.1 < max(obj.aspect for obj in objects)
    assert len({obj.rgb for obj in objects if obj.color == "red"}) > 3
    assert sum(obj.rgb != COLORS[obj.color] for obj in objects) > 0.9 * len(objects)
    assert all(((obj.coverage > 0) & (obj.coverage < 1)).any() for obj in objects)


def test_answers_name_what_was_drawn(scenes):
    height, width = scenes[0].pixels.shape[:2]
    hues = {name: np.array(rgb) for name, rgb in COLORS.items()}
    for item in scenes:
        for obj in item.objects:
            col, row = int(obj.center[0] // (width / 3)), int(obj.center[1] // (height / 3))
            assert obj.position == POSITIONS[3 * row + col]
            nearest = min(hues, key=lambda name: np.abs(hues[name] - obj.rgb).sum())
            assert nearest == obj.color
        if item.kind == "position":
            assert item.answer == item.objects[item.targets[0]].position
        if item.kind == "caption":
            assert item.answer == item.caption
        words = f"{item.question} {item.answer}".replace("?", " ").replace(".", " ").split()
        assert set(words) <= set(VOCABULARY)
    counts = [len(item.objects) for item in scenes]
    assert sum(count >= 2 for count in counts) >= 0.7 * len(counts)


def test_the_splits_share_no_image_with_each_other_or_with_shapes():
    val = {_digest(item) for item in ScenesDataset("val", 150)}
    test = {_digest(item) for item in ScenesDataset("test", 150)}
    assert len(val) == 150 and len(test) == 150
    assert not val & test
    shapes = {_digest(item) for split in ("val", "test") for item in ShapesDataset(split, 150)}
    assert not shapes & (val | test)


def test_backgrounds_are_tinted_unlike_the_grey_shapes_backgrounds(scenes):
    for item in ShapesDataset("test", 30):
        background = ~item.union_mask
        channels = item.pixels[background].astype(int)
        assert (channels.max(axis=1) == channels.min(axis=1)).all()
    for item in scenes:
        channels = item.background.reshape(-1, 3).astype(int)
        chroma = channels.max(axis=1) - channels.min(axis=1)
        assert np.median(chroma) >= 4


def test_open_benchmark_and_open_dataset_serve_both_splits():
    benchmark = open_benchmark("scenes", "val", image_size=48)
    assert benchmark.split == "val" and len(benchmark) == SPLITS["val"]
    assert benchmark.has_masks and benchmark.has_object_words
    item = benchmark[0]
    source = benchmark.dataset[0]
    assert item.image.size == (48, 48)
    assert item.description == source.caption
    assert np.array_equal(item.mask, source.union_mask)
    for word, objects in item.object_words.items():
        assert objects == tuple(
            number for number, obj in enumerate(source.objects) if word in (obj.color, obj.shape)
        )
    assert open_benchmark("scenes").split == "test"
    assert _digest(open_dataset("scenes", "test")[7]) == _digest(ScenesDataset("test")[7])


@pytest.mark.parametrize(
    ("spec", "split", "message"),
    [
        ("scenes", "train", "has no split 'train'"),
        ("scenes:/data", None, "cannot read dataset 'scenes:/data'"),
    ],
)
def test_bad_specs_are_refused(spec, split, message):
    with pytest.raises(DatasetError, match=message):
        open_benchmark(spec, split)


@pytest.mark.parametrize(
    "arguments",
    [{"split": "heldout"}, {"size": 0}, {"image_size": 20}, {"kinds": ("count",)}],
)
def test_bad_arguments_are_refused(arguments):
    with pytest.raises(DatasetError, match="ScenesDataset"):
        ScenesDataset(**arguments)


def test_a_wide_image_keeps_every_centre_in_the_cell_its_position_names():
    for item in ScenesDataset("test", 20, image_size=(48, 96)):
        assert item.pixels.shape == (48, 96, 3)
        for obj in item.objects:
            col, row = int(obj.center[0] // 32), int(obj.center[1] // 16)
            assert obj.position == POSITIONS[3 * row + col]
            assert obj.mask.shape == (48, 96)
