"""What the tiling families (Idefics3 / SmolVLM, InternVL) share, end to end on a saved tiny
checkpoint: explain() free-run, with a given answer and on a large image; `dexar explain`;
videos refused naming what is missing."""

from __future__ import annotations

import json

import numpy as np
import pytest
from noise_images import noise_image
from PIL import Image

from dexar_core.api import explain, load
from dexar_core.cli.main import main
from dexar_core.errors import UnsupportedModelError
from dexar_core.images import Video
from dexar_idefics3.adapter import Idefics3Adapter
from dexar_idefics3.tiny import build_tiny_idefics3
from dexar_internvl.adapter import InternVLAdapter
from dexar_internvl.tiny import build_tiny_internvl

QUESTION = "what color is the circle?"
FAMILIES = {
    # builder, adapter, the whole-image view's name, grids of the 90x40 and 1280x720 images
    "idefics3": (build_tiny_idefics3, Idefics3Adapter, "global", "2x4", "3x4"),
    "internvl": (build_tiny_internvl, InternVLAdapter, "thumbnail", "1x2", "2x4"),
}


def names(tiles: str, whole_view: str) -> list[str]:
    return [f"image 0, {tiles} tiles", f"image 0, {whole_view}"]


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def saved(request, tmp_path_factory):
    builder, *_ = FAMILIES[request.param]
    folder = tmp_path_factory.mktemp(f"tiny-{request.param}")
    model, processor = builder(seed=2)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    noise_image(90, 40, 5).save(folder / "image.png")
    return request.param, folder


def test_explain_free_run_given_answer_and_a_large_image(saved):
    family, folder = saved
    _, adapter_class, whole_view, small, large = FAMILIES[family]
    loaded = load(str(folder))
    assert isinstance(loaded.adapter, adapter_class)
    image = Image.open(folder / "image.png")
    free = explain(loaded, image, QUESTION, max_new_tokens=3)
    assert free.generated and 1 <= len(free.token_ids) <= 3
    assert [grid.name for grid in free.grids] == [
        f"image 0, {small} tiles",
        f"image 0, {whole_view}",
    ]
    for grid in range(2):
        tokens, sequence = free.upsample(grid)
        assert sequence.shape == (40, 90) and np.isfinite(tokens).all()
    given = explain(loaded, noise_image(1280, 720, 3), QUESTION, answer="a red circle")
    assert given.tokens == ("a", "red", "circle") and not given.generated
    assert [grid.name for grid in given.grids] == [
        f"image 0, {large} tiles",
        f"image 0, {whole_view}",
    ]


def test_dexar_explain_on_the_saved_checkpoint(saved, tmp_path, capsys):
    family, folder = saved
    args = ["explain", "--model", str(folder), "--image", str(folder / "image.png")]
    args += ["--prompt", QUESTION, "--answer", "red circle", "--out", str(tmp_path)]
    code = main(args)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    saved_json = json.loads((tmp_path / "explanation.json").read_text())
    assert saved_json["adapter"] == family
    assert len(saved_json["grids"]) == 2


def test_a_video_is_refused_naming_what_is_missing(saved):
    family, folder = saved
    loaded = load(str(folder))
    frames = [np.zeros((32, 32, 3), dtype=np.uint8)] * 2
    with pytest.raises(UnsupportedModelError, match=rf"the {family} adapter explains images only"):
        loaded.adapter.prepare(loaded, [Video(frames=frames)], QUESTION)
