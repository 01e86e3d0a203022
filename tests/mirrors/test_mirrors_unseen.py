"""What a processor crops away is reported as not seen and left out of every metric.

LLaVA-1.5's processor resizes the short side and centre-crops a square: of a 16:9 frame
the model sees the middle 9/16; the side bands (44 %) it never sees.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from dexar_core.api import explain
from dexar_core.datasets.benchmark import BenchmarkItem
from dexar_core.evaluation.run import score_item
from dexar_core.metrics import segmentation_scores
from dexar_core.seen import scored_pixels, seen_boxes, seen_fraction, seen_mask

WIDTH, HEIGHT = 320, 180
LLAVA = "llava-1.5-7b-hf"


@pytest.fixture(scope="module")
def wide_explanation(loaded_mirror):
    image = Image.fromarray(
        np.random.default_rng(5).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    )
    return explain(loaded_mirror(LLAVA), image, "what is in the image?", answer="a red circle")


def rectangle(left: int, top: int, right: int, bottom: int) -> np.ndarray:
    mask = np.zeros((HEIGHT, WIDTH), dtype=bool)
    mask[top:bottom, left:right] = True
    return mask


def test_the_side_bands_of_a_wide_frame_are_unseen(wide_explanation):
    band = (WIDTH - HEIGHT) / 2  # the crop keeps HEIGHT x HEIGHT in the middle
    assert seen_boxes(wide_explanation) == ((round(band), 0, round(band) + HEIGHT, HEIGHT),)
    seen = seen_mask(wide_explanation, (WIDTH, HEIGHT))
    assert not seen[:, : round(band)].any() and not seen[:, round(band) + HEIGHT :].any()
    assert seen[:, round(band) : round(band) + HEIGHT].all()
    assert seen_fraction(wide_explanation, (WIDTH, HEIGHT)) == pytest.approx(9 / 16, abs=0.01)
    # the maps are zero there because nothing was seen, which the mask tells apart
    _, sequence_map = wide_explanation.upsample(0)
    assert not sequence_map[~seen].any()


def test_metrics_leave_the_unseen_part_of_an_object_out(wide_explanation):
    # the object spans the left band and the seen square; the second lies in the band only
    straddling = rectangle(20, 40, 130, 140)
    hidden = rectangle(5, 10, 60, 60)
    item = BenchmarkItem(
        index=0,
        item_id="wide",
        kind="caption",
        question="what is in the image?",
        references=("a red circle",),
        scoring="exact",
        image=Image.new("RGB", (WIDTH, HEIGHT)),
        mask=straddling | hidden,
        object_masks={1: straddling, 2: hidden},
        object_words={"circle": (1,), "red": (2,)},
    )
    result = score_item(item, wide_explanation)
    _, sequence_map = wide_explanation.upsample(0)
    seen = seen_mask(wide_explanation, (WIDTH, HEIGHT))
    assert result.segmentation == segmentation_scores(sequence_map, item.mask, seen)
    assert result.segmentation != segmentation_scores(sequence_map, item.mask)
    # 'red' names only the object the model never saw: it is not scored at all;
    # 'circle' is scored over the seen part of its object
    scored = {grounding.word: grounding for grounding in result.token_grounding}
    assert set(scored) == {"circle"}
    assert scored["circle"].uniform_pointing_chance == pytest.approx(float(straddling[seen].mean()))


def test_scored_pixels_keep_the_datasets_void_out_too(wide_explanation):
    void = np.ones((HEIGHT, WIDTH), dtype=bool)
    void[:, 150:160] = False
    counted = scored_pixels(void, wide_explanation, (HEIGHT, WIDTH))
    assert not counted[:, 150:160].any() and not counted[:, :60].any()
    assert counted[:, 100:150].all()


@pytest.mark.parametrize("replacement", ["mean", "blur"])
def test_cropped_off_pixels_do_not_change_the_perturbation_score(
    replacement, wide_explanation, loaded_mirror
):
    from dexar_core.metrics.perturbation import perturbation_curve

    image = Image.fromarray(
        np.random.default_rng(5).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    )
    # the bands beyond the reach of the resize filter (a few pixels next to the crop are
    # blended into its edge when the short side is resized)
    band = round((WIDTH - HEIGHT) / 2) - 8
    pixels = np.asarray(image).copy()
    pixels[:, :band] = 255 - pixels[:, :band]
    pixels[:, WIDTH - band :] = 0
    other_bands = Image.fromarray(pixels)
    explanation = wide_explanation
    curves = [
        perturbation_curve(
            loaded_mirror(LLAVA),
            frame,
            explanation.prompt,
            explanation.token_ids,
            explanation.sequence_maps,
            explanation.grids,
            replacement=replacement,
            fractions=(0.0, 0.2, 0.5),
        )
        for frame in (image, other_bands)
    ]
    # the bands never reach the model: every level's perplexity is the same
    assert curves[0].perplexities == pytest.approx(curves[1].perplexities, rel=1e-5)
    assert curves[0].auc == pytest.approx(curves[1].auc, rel=1e-5)
