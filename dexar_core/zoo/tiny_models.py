"""What every tiny-model builder does the same way: sizes, config fields, seeded weights.

Each adapter ships a ``build_tiny_*`` function that builds its real transformers model
class from a small config (the tests' models and the embedded checkpoints' starting
points). The config classes differ family by family; what they are fed does not, and
lives here so a new adapter's builder, a third party's included, gets it right in one
line each:

* :class:`TinySizes` holds the sizes every family has (image and patch side, width,
  heads, layers); a builder's defaults are one ``TinySizes`` value and
  :meth:`TinySizes.given` takes the caller's keyword arguments over them, refusing
  (with :func:`check_sizes`) sizes transformers would fail on later with a vaguer error;
* :meth:`TinySizes.vision_tower_fields`, :meth:`TinySizes.language_model_fields` and
  :func:`special_token_fields` are the keyword arguments of the vision-tower and
  language-model configs (SigLIP / CLIP, Llama / Qwen2 / Mistral / Gemma alike);
* :func:`tiny_tokenizer` is the word-level tokenizer over the prompt words and the
  shapes benchmark's vocabulary, :func:`square_resize` the image processor settings
  that resize straight to the tower's square;
* :func:`instantiate` builds the model under a forked, seeded random generator (the
  same seed gives the same weights, and the caller's random state is left alone), gives
  its generation config the tokenizer's special ids and puts it in eval mode.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from dexar_core.datasets.shapes import VOCABULARY as SHAPES_VOCABULARY
from dexar_core.errors import InputError
from dexar_core.zoo.tokenizer import build_word_tokenizer

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

DIVIDES: tuple[tuple[str, str], ...] = (
    ("patch_size", "image_size"),
    ("heads", "hidden_size"),
    ("kv_heads", "heads"),
)
"""What must divide what in most families: patches tile the image, heads the width,
key/value heads the heads (by :class:`TinySizes` field names)."""


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


SIZE_ARGUMENTS: tuple[str, ...] = (
    "image_size",
    "patch_size",
    "text_layers",
    "vision_layers",
    "hidden_size",
    "heads",
    "kv_heads",
)
"""The builder arguments of every :class:`TinySizes` field a caller may set, by its name."""

IMAGE_ARGUMENTS = ("tile_size", "longest_edge")
"""Builder names of ``image_size`` where the tower sees one tile, or the longest side."""


@attrs.frozen(kw_only=True)
class TinySizes:
    """The sizes of a tiny model: a vision tower and a language model of a few layers.

    A builder's defaults are one value of this record; :meth:`given` takes the caller's
    keyword arguments over them and checks the result once, so every builder refuses a
    bad size with the same message (its name, the argument, the value).

    Attributes:
        image_size: side of the vision tower's square input (the image, or one tile).
        patch_size: side of a vision patch.
        hidden_size: width of the tower and of the language model.
        heads: attention heads per layer.
        kv_heads: key/value heads of the language model (grouped-query attention);
            ``None`` for one per ``kv_group`` heads (see :attr:`key_value_heads`).
        kv_group: attention heads sharing a key/value head when ``kv_heads`` is
            ``None``.
        text_layers: language-model layers.
        vision_layers: vision-tower layers.
        mlp_ratio: the MLPs' width over ``hidden_size`` (see :attr:`intermediate_size`).
        arguments: the builder's keyword arguments that set these sizes, by the
            builder's names: ``layers`` sets both layer counts, one of
            :data:`IMAGE_ARGUMENTS` sets ``image_size``.
        divides: ``(divisor, dividend)`` pairs of field names that must divide.
    """

    image_size: int
    patch_size: int
    hidden_size: int
    heads: int = 4
    kv_heads: int | None = None
    kv_group: int = 1
    text_layers: int = 2
    vision_layers: int = 2
    mlp_ratio: int = 2
    arguments: tuple[str, ...] = SIZE_ARGUMENTS
    divides: tuple[tuple[str, str], ...] = DIVIDES

    @property
    def key_value_heads(self) -> int:
        """Key/value heads of the language model: :attr:`kv_heads`, or one per group."""
        if self.kv_heads is None:
            return max(1, self.heads // self.kv_group)
        return self.kv_heads

    @property
    def intermediate_size(self) -> int:
        """Width of the MLPs: ``mlp_ratio * hidden_size``."""
        return self.mlp_ratio * self.hidden_size

    @property
    def image_argument(self) -> str:
        """The builder's name for ``image_size``."""
        return next((name for name in IMAGE_ARGUMENTS if name in self.arguments), "image_size")

    def layer_fields(self, layers: int) -> dict[str, int]:
        """The fields a tower and a decoder share: width, MLP width, depth, heads."""
        return {
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": layers,
            "num_attention_heads": self.heads,
        }

    def vision_tower_fields(self) -> dict[str, Any]:
        """The keyword arguments of a SigLIP / CLIP-like vision tower config of these sizes."""
        image = {"image_size": self.image_size, "patch_size": self.patch_size}
        return {**self.layer_fields(self.vision_layers), **image}

    def language_model_fields(
        self, tokenizer: Any, *, max_positions: int, **published: Any
    ) -> dict[str, Any]:
        """The keyword arguments of a Llama / Qwen2 / Mistral / Gemma-like decoder config.

        Args:
            tokenizer: the model's tokenizer, whose size is the vocabulary's.
            max_positions: the longest sequence the model must take.
            **published: fields the published family sets, over these.
        """
        return {
            "vocab_size": len(tokenizer),
            **self.layer_fields(self.text_layers),
            "num_key_value_heads": self.key_value_heads,
            "max_position_embeddings": max_positions,
            **published,
        }

    def evolve(self, **changes: Any) -> TinySizes:
        """These sizes with ``changes`` (field names), as another builder's defaults."""
        return attrs.evolve(self, **changes)

    def given(self, builder: str, options: Mapping[str, Any], **family: int) -> TinySizes:
        """These defaults with the builder's keyword arguments over them, checked.

        Args:
            builder: the builder's name, which starts every message.
            options: the caller's size arguments, by the builder's names.
            **family: sizes of the builder's own (``max_tiles``, a window...) checked
                with these: positive, and in :attr:`divides` by name.

        Returns:
            The sizes the builder builds.

        Raises:
            TypeError: an argument the builder does not take, as Python says it.
            InputError: a size that is not a positive integer or does not divide as it
                must, named by the builder's argument.
        """
        unknown = [name for name in options if name not in self.arguments]
        if unknown:
            raise TypeError(f"{builder}() got an unexpected keyword argument {unknown[0]!r}")
        fields = {("image_size" if n == self.image_argument else n): v for n, v in options.items()}
        if "layers" in fields:
            fields["text_layers"] = fields["vision_layers"] = fields.pop("layers")
        sizes = self.evolve(**fields)
        # the messages name the builder's arguments (tile_size, not image_size)
        named = {"image_size": self.image_argument}
        divides = [(named.get(a, a), named.get(b, b)) for a, b in self.divides]
        check_sizes(builder, {**sizes.by_argument(), **family}, divides=divides)
        return sizes

    def by_argument(self) -> dict[str, int]:
        """The sizes by the builder's argument names, as its messages name them."""
        layers = (
            {"layers": self.text_layers}
            if "layers" in self.arguments
            else {"text_layers": self.text_layers, "vision_layers": self.vision_layers}
        )
        return {
            self.image_argument: self.image_size,
            "patch_size": self.patch_size,
            "hidden_size": self.hidden_size,
            "heads": self.heads,
            "kv_heads": self.key_value_heads,
            **layers,
        }


TWO_HEADS = TinySizes(
    arguments=("image_size", "hidden_size", "layers"),
    image_size=112,
    patch_size=14,
    hidden_size=32,
    heads=2,
    kv_heads=1,
    divides=(("heads", "hidden_size"),),
)
"""The smallest model that keeps a published tower's 14 px patch and grouped-query
attention: width 32, two heads sharing one key/value head, two layers of each; the
caller sets the image side, the width and the layers."""

SQUARE_64 = TinySizes(image_size=64, patch_size=8, hidden_size=128, mlp_ratio=4)
"""64 px square images of 8 px patches (an 8 x 8 grid), width 128 with MLPs four times as
wide, two layers of four heads: the first tiny builders' sizes, which their embedded
checkpoints were trained from."""

TILE_SIZES = TinySizes(
    arguments=("tile_size", "patch_size", "text_layers", "hidden_size", "heads"),
    image_size=32,
    patch_size=8,
    hidden_size=64,
    kv_group=2,
    vision_layers=1,
    divides=(("patch_size", "image_size"), ("heads", "hidden_size")),
)
"""Sizes for a tiled family: 32 px tiles of 4 x 4 patches, width 64, half as many
key/value heads as heads, a one-layer tower (its tests are about many tiles, not depth);
the caller sets all but the tower's depth."""


def special_token_fields(tokenizer: Any) -> dict[str, Any]:
    """The ``pad`` / ``bos`` / ``eos`` token ids of a config, the tokenizer's."""
    return {
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }


def decoder_config(
    config_class: Any, sizes: TinySizes, tokenizer: Any, *, max_positions: int, **published: Any
) -> Any:
    """An untied language model config of these sizes, with the tokenizer's special ids.

    Args:
        config_class: the text config class, e.g. ``LlamaConfig`` or ``MistralConfig``.
        sizes: its sizes.
        tokenizer: the word-level tokenizer, whose size and special ids it takes.
        max_positions: the longest sequence the model must take.
        **published: fields the published family sets (Mistral's ``rope_theta``...),
            over the sizes' own.
    """
    untied = {**special_token_fields(tokenizer), "tie_word_embeddings": False}
    fields = sizes.language_model_fields(tokenizer, max_positions=max_positions, **untied)
    return config_class(**{**fields, **published})


def tiny_tokenizer(
    vocabulary: Iterable[str] | None, *prompt_words: str, **options: Any
) -> PreTrainedTokenizerFast:
    """The word-level tokenizer of a tiny model: its prompt words, then the vocabulary.

    Args:
        vocabulary: the words the model knows; the shapes benchmark's when ``None``.
        *prompt_words: words of the prompt format, always known, first.
        **options: :func:`dexar_core.zoo.tokenizer.build_word_tokenizer` options.
    """
    words = [*prompt_words, *(SHAPES_VOCABULARY if vocabulary is None else vocabulary)]
    return build_word_tokenizer(words, **options)


def square_resize(side: int) -> dict[str, Any]:
    """Image processor settings resizing straight to ``side x side``, without a crop."""
    square = {"height": side, "width": side}
    return {"do_resize": True, "size": square, "do_center_crop": False, "crop_size": square}


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
