"""The tiny BLIP-2's sine-cosine start for its vision tower's position embeddings."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dexar_blip2.tiny import build_tiny_blip2, sincos_positions
from dexar_core import errors


@settings(max_examples=25, deadline=None)
@given(grid=st.integers(1, 12), quarter=st.integers(1, 16))
def test_each_half_of_the_table_encodes_one_coordinate(grid: int, quarter: int) -> None:
    width = 4 * quarter
    table = sincos_positions(grid, width)
    assert table.shape == (grid * grid, width)
    assert table.abs().max() <= 1.0
    by_cell = table.reshape(grid, grid, width)
    half = width // 2
    # the first half depends on the row only, the second on the column only
    assert torch.equal(by_cell[:, :, :half], by_cell[:, :1, :half].expand(-1, grid, -1))
    assert torch.equal(by_cell[:, :, half:], by_cell[:1, :, half:].expand(grid, -1, -1))
    # sin^2 + cos^2 = 1 at every frequency: each coordinate's code has the same norm
    assert torch.allclose(table.pow(2).sum(1), torch.full((grid * grid,), float(half)), atol=1e-4)


def test_every_patch_of_a_grid_gets_its_own_code() -> None:
    table = sincos_positions(8, 64)
    distances = torch.cdist(table, table) + torch.eye(64) * 1e3
    assert distances.min() > 0.1


def test_sincos_start_changes_only_the_position_embeddings() -> None:
    plain, _ = build_tiny_blip2(seed=3, hidden_size=64, image_size=48, patch_size=8)
    sincos, _ = build_tiny_blip2(
        seed=3, hidden_size=64, image_size=48, patch_size=8, position_init="sincos"
    )
    table = sincos.vision_model.embeddings.position_embedding[0]
    assert torch.equal(table[0], torch.zeros(64))
    assert torch.equal(table[1:], sincos_positions(6, 64))
    plain_weights = dict(plain.named_parameters())
    for name, weight in sincos.named_parameters():
        if name != "vision_model.embeddings.position_embedding":
            assert torch.equal(weight, plain_weights[name]), name


def test_an_unknown_position_start_is_refused() -> None:
    with pytest.raises(errors.InputError, match=r"position_init.*'normal', 'sincos'.*'learned'"):
        build_tiny_blip2(hidden_size=64, position_init="learned")


def test_a_width_not_divisible_by_four_is_refused() -> None:
    with pytest.raises(errors.InputError, match="divisible by 4, found 6"):
        sincos_positions(4, 6)
