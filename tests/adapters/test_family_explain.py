"""What every generative family does the same way, end to end on a saved tiny checkpoint:
``load`` picks the family's adapter, explain() free-runs and explains a given answer with a
map on every grid, ``dexar explain`` writes the explanation with the family's grids; and
the families that explain images only refuse a video, naming what is missing."""

from __future__ import annotations

import json
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

import numpy as np
import pytest
from noise_images import noise_image
from PIL import Image
from tiny_families import TINY_MODELS, tiny_model, video

from dexar_core.api import explain, load
from dexar_core.cli.main import main
from dexar_core.errors import InputError, UnsupportedModelError
from dexar_core.explanation import Explanation

QUESTION = "what color is the circle?"
Grids = tuple[tuple[str, tuple[int, int]], ...]  # (name, shape) of each grid, in prompt order


class Family(NamedTuple):
    """What a family's saved checkpoint (its builder's defaults, seed 2) gives."""

    free: Grids  # the free run's, on the saved 90 x 40 image (seed 5)
    given_images: tuple[tuple[int, int, int], ...]  # (width, height, seed) of the given run
    given: Grids
    # the image-processor settings of the checkpoint `dexar explain` reads, and its grids
    # when they are not the free run's
    cli_settings: Mapping[str, Any] = MappingProxyType({})
    cli_grids: tuple[str, ...] | None = None


SAVED_IMAGE = (90, 40, 5)
BASE_AND_TILES: Grids = (("image 0, base", (4, 4)), ("image 0, tiles", (4, 8)))
FAMILIES = {
    "llava_next": Family(BASE_AND_TILES, (SAVED_IMAGE,), BASE_AND_TILES),
    # several images are base views only
    "llava_onevision": Family(
        BASE_AND_TILES,
        (SAVED_IMAGE, (30, 60, 0)),
        (("image 0", (4, 4)), ("image 1", (4, 4))),
    ),
    # native resolution: a 90 x 40 image is 2 x 4 cells of 28 px, a 40 x 70 one 3 x 2
    "mistral3": Family(
        (("image 0", (2, 4)),),
        (SAVED_IMAGE, (40, 70, 0)),
        (("image 0", (2, 4)), ("image 1", (3, 2))),
    ),
    # the CLI reads a checkpoint saved with pan-and-scan on: a grid per crop
    "gemma3": Family(
        (("image 0", (4, 4)),),
        (SAVED_IMAGE, (30, 60, 0)),
        (("image 0", (4, 4)), ("image 1", (4, 4))),
        cli_settings={"do_pan_and_scan": True, "pan_and_scan_min_crop_size": 20},
        cli_grids=("image 0", "image 0, crop 0", "image 0, crop 1"),
    ),
    # the tiling families: a tile grid and the whole-image view; a large image, more tiles
    "idefics3": Family(
        (("image 0, 2x4 tiles", (4, 8)), ("image 0, global", (2, 2))),
        ((1280, 720, 3),),
        (("image 0, 3x4 tiles", (6, 8)), ("image 0, global", (2, 2))),
    ),
    "internvl": Family(
        (("image 0, 1x2 tiles", (2, 4)), ("image 0, thumbnail", (2, 2))),
        ((1280, 720, 3),),
        (("image 0, 2x4 tiles", (4, 8)), ("image 0, thumbnail", (2, 2))),
    ),
}


def grids_of(explanation: Explanation) -> Grids:
    return tuple((grid.name, grid.shape) for grid in explanation.grids)


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def saved(request, tmp_path_factory):
    builder, _, _ = TINY_MODELS[request.param]
    folder = tmp_path_factory.mktemp(f"tiny-{request.param}")
    model, processor = builder(seed=2)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    noise_image(*SAVED_IMAGE).save(folder / "image.png")
    return request.param, folder


def test_explain_free_run_and_given_answer_on_a_saved_checkpoint(saved):
    name, folder = saved
    family = FAMILIES[name]
    loaded = load(str(folder))
    _, adapter_class, _ = TINY_MODELS[name]
    assert isinstance(loaded.adapter, adapter_class)
    free = explain(loaded, Image.open(folder / "image.png"), QUESTION, max_new_tokens=3)
    assert free.generated and 1 <= len(free.token_ids) <= 3
    assert free.adapter == name
    assert grids_of(free) == family.free
    for grid in range(len(free.grids)):
        tokens, sequence = free.upsample(grid)
        assert sequence.shape == (40, 90) and np.isfinite(tokens).all()
    given_images = [noise_image(*image) for image in family.given_images]
    given = explain(loaded, given_images, QUESTION, answer="a red circle")
    assert given.tokens == ("a", "red", "circle") and not given.generated
    assert grids_of(given) == family.given
    assert [stack.shape for stack in given.token_maps] == [(3, *shape) for _, shape in family.given]


def test_dexar_explain_on_the_saved_checkpoint(saved, tmp_path, capsys):
    name, folder = saved
    family = FAMILIES[name]
    checkpoint = folder
    if family.cli_settings:
        checkpoint = tmp_path / "checkpoint"
        checkpoint.mkdir()
        for path in folder.iterdir():
            (checkpoint / path.name).write_bytes(path.read_bytes())
        config = json.loads((folder / "processor_config.json").read_text())
        config["image_processor"].update(family.cli_settings)
        (checkpoint / "processor_config.json").write_text(json.dumps(config))
    args = ["explain", "--model", str(checkpoint), "--image", str(folder / "image.png")]
    args += ["--prompt", QUESTION, "--answer", "red circle", "--out", str(tmp_path / "out")]
    code = main(args)
    assert code == 0, capsys.readouterr().err
    written = json.loads((tmp_path / "out" / "explanation.json").read_text())
    assert written["adapter"] == name
    expected = family.cli_grids or tuple(grid_name for grid_name, _ in family.free)
    assert tuple(grid["name"] for grid in written["grids"]) == expected


VIDEO_REFUSALS = {
    "llava_onevision": (UnsupportedModelError, "pools each video frame"),
    "idefics3": (UnsupportedModelError, "the idefics3 adapter explains images only"),
    "internvl": (UnsupportedModelError, "the internvl adapter explains images only"),
    "mllama": (InputError, "explains images only"),
}


@pytest.mark.parametrize("name", list(VIDEO_REFUSALS))
def test_a_video_is_refused_naming_what_is_missing(name):
    error, message = VIDEO_REFUSALS[name]
    loaded = tiny_model(name)
    with pytest.raises(error, match=message):
        loaded.adapter.prepare(loaded, [video(2)], QUESTION)
