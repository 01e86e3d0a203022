"""The tiny-model kit every builder uses: size checks and seeded, isolated weights."""

from __future__ import annotations

import pytest
import torch

from dexar_core.errors import InputError
from dexar_core.zoo.tiny_models import check_sizes, instantiate


@pytest.mark.parametrize(
    ("sizes", "message"),
    [
        ({"hidden_size": 0, "heads": 2}, "expected hidden_size to be a positive integer, found 0"),
        ({"hidden_size": 64, "heads": 2.0}, "expected heads to be a positive integer, found 2.0"),
        ({"hidden_size": 64, "heads": True}, "expected heads to be a positive integer"),
        (
            {"hidden_size": 60, "heads": 8},
            "expected heads to divide hidden_size, found hidden_size=60",
        ),
    ],
)
def test_check_sizes_names_the_wrong_size(sizes: dict, message: str) -> None:
    with pytest.raises(InputError, match=message) as raised:
        check_sizes("build_tiny_x", sizes, divides=[("heads", "hidden_size")])
    assert str(raised.value).startswith("build_tiny_x: ")


def test_check_sizes_accepts_sizes_that_divide() -> None:
    check_sizes("build_tiny_x", {"hidden_size": 64, "heads": 8}, divides=[("heads", "hidden_size")])


class _Config:
    pass


class _Model(torch.nn.Module):
    def __init__(self, config: _Config) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(4, 4)
        self.generation_config = _Config()


class _Tokenizer:
    pad_token_id, bos_token_id, eos_token_id = 0, 1, 2


def test_instantiate_seeds_the_weights_and_leaves_the_callers_generator_alone() -> None:
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    first = instantiate(_Model, _Config(), seed=7)
    after = torch.rand(1)
    second = instantiate(_Model, _Config(), seed=7)
    other = instantiate(_Model, _Config(), seed=8)
    assert torch.equal(after, expected_next)
    assert torch.equal(first.linear.weight, second.linear.weight)
    assert not torch.equal(first.linear.weight, other.linear.weight)
    assert not first.training


def test_instantiate_gives_the_generation_config_the_special_ids_and_runs_initialise() -> None:
    model = instantiate(
        _Model,
        _Config(),
        seed=0,
        tokenizer=_Tokenizer(),
        initialise=lambda model: model.linear.bias.fill_(3.0),
    )
    config = model.generation_config
    assert (config.pad_token_id, config.bos_token_id, config.eos_token_id) == (0, 1, 2)
    assert torch.all(model.linear.bias == 3.0) and model.linear.bias.requires_grad
