"""What every tiny-model builder does the same way: check its sizes, seed its weights.

Each adapter ships a ``build_tiny_*`` function that builds its real transformers model
class from a small config (the tests' models and the embedded checkpoints' starting
points). The configs differ family by family; two steps do not, and live here so a new
adapter's builder, a third party's included, gets them right in one line each:

* :func:`check_sizes` refuses sizes transformers would fail on later with a vaguer
  error (a zero width, heads that do not divide it);
* :func:`instantiate` builds the model under a forked, seeded random generator (the
  same seed gives the same weights, and the caller's random state is left alone), gives
  its generation config the tokenizer's special ids and puts it in eval mode.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from dexar_core.errors import InputError


def check_sizes(
    builder: str,
    positive: dict[str, Any],
    *,
    divides: Iterable[tuple[str, str]] = (),
) -> None:
    """Refuse sizes that are not positive integers or do not divide as they must.

    Args:
        builder: the builder's name, which starts every message.
        positive: each size by its argument name; each must be an int above 0.
        divides: ``(divisor, dividend)`` pairs of names in ``positive``; the dividend
            must be a multiple of the divisor (``("heads", "hidden_size")``).

    Raises:
        InputError: naming the first size that is wrong and its value.
    """
    for name, value in positive.items():
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise InputError(
                f"{builder}: expected {name} to be a positive integer, found {value!r}."
            )
    for divisor, dividend in divides:
        if positive[dividend] % positive[divisor]:
            raise InputError(
                f"{builder}: expected {divisor} to divide {dividend}, found "
                f"{dividend}={positive[dividend]}, {divisor}={positive[divisor]}."
            )


def instantiate(
    model_class: Callable[[Any], Any],
    config: Any,
    *,
    seed: int,
    tokenizer: Any = None,
    initialise: Callable[[Any], None] | None = None,
) -> Any:
    """Build ``model_class(config)`` with seeded weights, ready to explain.

    Weight initialisation draws from the global generator: it is forked, so building a
    model neither depends on nor disturbs the caller's random state.

    Args:
        model_class: the transformers model class (or any callable taking the config).
        config: its config.
        seed: the seed of the weight initialisation.
        tokenizer: when given, its ``pad`` / ``bos`` / ``eos`` token ids are written into
            the model's generation config (a tiny model has no published one).
        initialise: run on the model inside the seeded generator, for weights the class
            initialises to a constant that a trained model would not have.

    Returns:
        The model, in eval mode.
    """
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_class(config)
        if initialise is not None:
            with torch.no_grad():
                initialise(model)
    if tokenizer is not None:
        generation_config = model.generation_config
        generation_config.pad_token_id = tokenizer.pad_token_id
        generation_config.bos_token_id = tokenizer.bos_token_id
        generation_config.eos_token_id = tokenizer.eos_token_id
    model.eval()
    return model
