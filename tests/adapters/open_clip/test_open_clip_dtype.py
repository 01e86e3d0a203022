"""shapes-clip explains in bfloat16 as it does in float32.

open_clip's ``precision="bf16"`` keeps some parameters in float32, so the pixels must
take the dtype of the patch embedding that reads them, not of any parameter.
"""

from __future__ import annotations

import numpy as np
import pytest

import dexar_core
from dexar_core.cli.main import main
from dexar_open_clip import CHECKPOINTS

MIN_CORRELATION = 0.9
"""bfloat16 keeps 8 bits of mantissa: the maps move by a few percent of their range, so
they must still correlate (Pearson, over the grid) above 0.9 with the float32 ones."""


@pytest.fixture(scope="module")
def explanations():
    from PIL import Image

    image = Image.open(CHECKPOINTS / "shapes-clip" / "example.png").convert("RGB")
    prompts = ["a red circle", "a blue square"]
    return {
        dtype: dexar_core.explain(dexar_core.load("shapes-clip", dtype=dtype), image, prompts)
        for dtype in ("float32", "bfloat16")
    }


def test_bfloat16_maps_correlate_with_the_float32_ones(explanations):
    full, reduced = explanations["float32"], explanations["bfloat16"]
    assert len(reduced.token_maps) == len(full.token_maps)
    for mine, theirs in zip(reduced.token_maps, full.token_maps, strict=True):
        assert np.isfinite(mine).all()
        correlation = np.corrcoef(np.ravel(mine), np.ravel(theirs))[0, 1]
        assert correlation > MIN_CORRELATION, correlation


def test_dexar_explain_runs_shapes_clip_in_bfloat16(tmp_path, capsys):
    out = tmp_path / "out"
    command = ["explain", "--model", "shapes-clip", "--example", "--dtype", "bfloat16"]
    code = main([*command, "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    assert list(out.glob("*.npz"))
