"""Frozen value records shared by the core, the plugins and the adapters.

Records are ``attrs.frozen(kw_only=True)``: converters normalise, validators enforce,
arrays are stored read-only and compared with ``numpy.array_equal``.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np

from dexar_core.errors import LayoutError, PluginError

if TYPE_CHECKING:
    from dexar_core.interfaces import ModelAdapter
    from dexar_core.methods.base import Method
    from dexar_core.zoo.recipes import TrainingRecipe


def readonly_bool_vector(value: Any) -> np.ndarray:
    """Convert to a read-only 1-D boolean array."""
    array = np.array(value, dtype=bool).reshape(-1)
    array.setflags(write=False)
    return array


def readonly_index_vector(value: Any) -> np.ndarray:
    """Convert to a read-only 1-D int64 array."""
    array = np.array(value, dtype=np.int64).reshape(-1)
    array.setflags(write=False)
    return array


_array_eq = attrs.cmp_using(eq=np.array_equal)


def _positive(instance: Any, attribute: attrs.Attribute, value: int) -> None:
    if value < 1:
        raise LayoutError(
            f"{type(instance).__name__}.{attribute.name} must be a positive integer, got {value}."
        )


@attrs.frozen(kw_only=True)
class Grid:
    """One 2D grid of visual tokens: an image, a tile or a group of video frames.

    Attributes:
        name: what the grid shows, e.g. ``"image 0"`` or ``"video 0, frames 0-1"``.
        height: rows of tokens.
        width: columns of tokens.
        positions: key-sequence index of each token, in row-major order (``height*width``).
        pixel_box: ``(left, top, right, bottom)`` in the original image's pixels that the
            grid covers after the processor's resize and crop.
        image_index: which input image (or video) the grid belongs to.
    """

    name: str
    height: int = attrs.field(validator=_positive)
    width: int = attrs.field(validator=_positive)
    positions: np.ndarray = attrs.field(converter=readonly_index_vector, eq=_array_eq)
    pixel_box: tuple[float, float, float, float] = attrs.field(
        converter=lambda box: tuple(float(v) for v in box)
    )
    image_index: int = 0

    def __attrs_post_init__(self) -> None:
        if self.positions.size != self.height * self.width:
            raise LayoutError(
                f"Grid {self.name!r}: positions has {self.positions.size} entries but the grid "
                f"is {self.height}x{self.width} = {self.height * self.width} cells; "
                "give exactly one key position per grid cell."
            )
        if len(self.pixel_box) != 4:
            raise LayoutError(
                f"Grid {self.name!r}: pixel_box must be (left, top, right, bottom), "
                f"got {self.pixel_box!r}."
            )
        left, top, right, bottom = self.pixel_box
        if right <= left or bottom <= top:
            raise LayoutError(
                f"Grid {self.name!r}: pixel_box {self.pixel_box!r} has no area; "
                "right must exceed left and bottom must exceed top."
            )

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)`` of the token grid."""
        return (self.height, self.width)


def _grid_tuple(grids: Iterable[Grid]) -> tuple[Grid, ...]:
    """Convert to a tuple; a typed converter so mypy checks what callers pass."""
    return tuple(grids)


def _readonly_weights(value: Any) -> np.ndarray:
    array = np.array(value, dtype=np.float32)
    array.setflags(write=False)
    return array


def _plain_details(value: Mapping[str, Any]) -> dict[str, Any]:
    return dict(value)


@attrs.frozen(kw_only=True)
class RelevanceProjection:
    """A linear map from relevance over V to relevance over units that lie on image grids.

    Most models put image patches in the key sequence, and V lies on the image directly.
    Some do not: BLIP-2's language model sees learned query tokens, each a mixture of
    patches. Their adapter gives the weight of every patch in every visual token, and the
    maps are drawn over the patches from ``relevance @ weights`` (a plain matrix product,
    applied to the raw relevance before any normalisation).

    Attributes:
        name: what the weights are, e.g. ``"qformer_cross_attention_mean"``; recorded in
            each Explanation's metadata.
        weights: ``[N, U]`` float32: row k belongs to the k-th visual position (increasing
            key order), column u to unit u.
        grids: grids over the units: their ``positions`` are unit indices ``0..U-1``, each
            unit in exactly one grid cell.
        details: plain, JSON-ready facts about how the weights were made (recorded too).
    """

    name: str
    weights: np.ndarray = attrs.field(converter=_readonly_weights, eq=_array_eq)
    grids: tuple[Grid, ...] = attrs.field(converter=_grid_tuple)
    details: Mapping[str, Any] = attrs.field(factory=dict, converter=_plain_details)

    def __attrs_post_init__(self) -> None:
        if self.weights.ndim != 2 or 0 in self.weights.shape:
            raise LayoutError(
                f"RelevanceProjection {self.name!r}: weights must be a non-empty [N, U] matrix "
                f"(visual tokens x units), got shape {self.weights.shape}."
            )
        if not np.isfinite(self.weights).all():
            raise LayoutError(
                f"RelevanceProjection {self.name!r}: weights hold NaN or infinite entries; "
                "check how the adapter computed them."
            )
        # Building the layout over the units checks that the grids cover each unit once.
        _ = self.unit_layout

    @property
    def units(self) -> int:
        """U, the number of units the relevance is projected onto."""
        return int(self.weights.shape[1])

    @property
    def unit_layout(self) -> VisualLayout:
        """A layout over the U units (all visual), whose grids the maps are drawn on."""
        return VisualLayout(
            visual_mask=np.ones(self.units, dtype=bool),
            text_mask=np.zeros(self.units, dtype=bool),
            template_mask=np.zeros(self.units, dtype=bool),
            grids=self.grids,
        )

    def project(self, relevance: Any) -> np.ndarray:
        """``[..., N]`` relevance over V to ``[..., U]`` over the units (float32).

        Raises:
            LayoutError: when the last axis is not N.
        """
        array = np.asarray(relevance, dtype=np.float64)
        if array.ndim < 1 or array.shape[-1] != self.weights.shape[0]:
            raise LayoutError(
                f"RelevanceProjection {self.name!r} maps {self.weights.shape[0]} visual tokens "
                f"but the relevance has shape {array.shape}; pass relevance over V."
            )
        return (array @ self.weights.astype(np.float64)).astype(np.float32)

    def describe(self) -> dict[str, Any]:
        """What an Explanation's metadata records about the projection."""
        return {"name": self.name, "units": self.units, **self.details}


@attrs.frozen(kw_only=True)
class VisualLayout:
    """Where the visual tokens sit in the key sequence, and how they form grids.

    Attributes:
        visual_mask: True at key positions holding visual tokens (the set V).
        text_mask: True at the key positions of the text set T_set (every non-visual
            position in the paper's reading).
        template_mask: True at chat-template and special-token positions; the
            ``text_set="prompt_only"`` option drops them from the text set.
        grids: one grid per image, tile or frame group; together they cover V exactly once.
        projection: for visual tokens that are not image patches (BLIP-2's query tokens),
            how relevance over V maps onto patch grids; the maps are then drawn over the
            projection's grids. None (the default) draws them over ``grids``.
    """

    visual_mask: np.ndarray = attrs.field(converter=readonly_bool_vector, eq=_array_eq)
    text_mask: np.ndarray = attrs.field(converter=readonly_bool_vector, eq=_array_eq)
    template_mask: np.ndarray = attrs.field(converter=readonly_bool_vector, eq=_array_eq)
    grids: tuple[Grid, ...] = attrs.field(converter=_grid_tuple)
    projection: RelevanceProjection | None = None

    def __attrs_post_init__(self) -> None:
        length = self.visual_mask.size
        for name in ("text_mask", "template_mask"):
            other = getattr(self, name)
            if other.size != length:
                raise LayoutError(
                    f"VisualLayout.{name} has length {other.size} but visual_mask has "
                    f"{length}; both must cover the whole key sequence."
                )
        if np.any(self.visual_mask & self.text_mask):
            overlap = np.flatnonzero(self.visual_mask & self.text_mask)[:5].tolist()
            raise LayoutError(
                f"VisualLayout.text_mask overlaps visual_mask at positions {overlap}; "
                "a key position is either visual or text, never both."
            )
        if not self.grids:
            raise LayoutError("VisualLayout.grids is empty; give one grid per image.")
        if not self.visual_mask.any():
            raise LayoutError(
                "VisualLayout.visual_mask selects no position: the prompt holds no image "
                "tokens. Put the model's image placeholder in the prompt."
            )
        covered = np.concatenate([grid.positions for grid in self.grids])
        if covered.min() < 0 or covered.max() >= length:
            raise LayoutError(
                f"VisualLayout.grids name positions outside the key sequence of length {length}."
            )
        if covered.size != np.unique(covered).size:
            raise LayoutError("VisualLayout.grids name some visual position twice.")
        expected = np.flatnonzero(self.visual_mask)
        if covered.size != expected.size or not np.array_equal(np.sort(covered), expected):
            raise LayoutError(
                f"VisualLayout.grids cover {covered.size} positions but visual_mask holds "
                f"{expected.size}, or they differ; every visual position belongs to exactly "
                "one grid cell."
            )
        if self.projection is not None and self.projection.weights.shape[0] != expected.size:
            raise LayoutError(
                f"VisualLayout.projection {self.projection.name!r} has weights for "
                f"{self.projection.weights.shape[0]} visual tokens but visual_mask holds "
                f"{expected.size}; give one weight row per visual position."
            )

    @property
    def sequence_length(self) -> int:
        """Length of the key sequence the masks cover."""
        return int(self.visual_mask.size)

    @property
    def visual_positions(self) -> np.ndarray:
        """Key indices of V in increasing order."""
        return np.flatnonzero(self.visual_mask)

    def text_set(self, mode: str = "all_non_visual") -> np.ndarray:
        """The T_set mask for a ``text_set`` option value.

        Args:
            mode: ``"all_non_visual"`` (the paper) or ``"prompt_only"`` (drops template
                and special-token positions).

        Raises:
            LayoutError: for an unknown mode.
        """
        if mode == "all_non_visual":
            return self.text_mask
        if mode == "prompt_only":
            return self.text_mask & ~self.template_mask
        raise LayoutError(f"text_set must be 'all_non_visual' or 'prompt_only', got {mode!r}.")

    def with_length(self, length: int) -> VisualLayout:
        """The same layout over a longer key sequence; new positions are text."""
        extra = length - self.sequence_length
        if extra < 0:
            raise LayoutError(
                f"VisualLayout.with_length({length}) would cut the sequence of "
                f"{self.sequence_length}."
            )
        pad_false = np.zeros(extra, dtype=bool)
        return attrs.evolve(
            self,
            visual_mask=np.concatenate([self.visual_mask, pad_false]),
            text_mask=np.concatenate([self.text_mask, ~pad_false]),
            template_mask=np.concatenate([self.template_mask, pad_false]),
        )


def _nonempty_name(instance: Any, attribute: attrs.Attribute, value: str) -> None:
    if not isinstance(value, str) or not value.strip() or value != value.strip():
        raise PluginError(
            f"{type(instance).__name__}.{attribute.name} must be a non-empty name without "
            f"surrounding spaces, got {value!r}."
        )


def _callable(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not callable(value):
        raise PluginError(
            f"{type(instance).__name__}.{attribute.name} must be callable, got {value!r}."
        )


def _str_tuple(value: str | Sequence[str]) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    return tuple(value)


IMPORT_REFERENCE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")
"""The form of an :class:`ImportReference`: ``"package.module:attribute"``."""


def _reference_form(instance: Any, attribute: attrs.Attribute, value: str) -> None:
    if not isinstance(value, str) or not IMPORT_REFERENCE.match(value):
        raise PluginError(
            f"{instance.origin}: {value!r} is no import reference; write it as "
            '"package.module:attribute", e.g. "dexar_myvlm.adapter:MyVlmAdapter".'
        )


@attrs.frozen(kw_only=True)
class ImportReference:
    """A callable named by ``"module:attribute"``, imported only when it is called.

    A plugin can then say what it provides without importing its code: dexar lists it,
    and the module (with torch and transformers) is imported when the callable is used.

    Attributes:
        path: ``"package.module:attribute"``.
        origin: where the reference is written (a manifest's file and key, or the spec
            field), named by the errors.
    """

    path: str = attrs.field(validator=_reference_form)
    origin: str = attrs.field(default="an import reference", eq=False, repr=False)

    def resolve(self) -> Callable[..., Any]:
        """Import the module and return the attribute.

        Raises:
            PluginError: the module does not import, has no such attribute, or the
                attribute is not callable; the message names :attr:`origin`.
        """
        module_name, attribute = self.path.split(":")
        try:
            target = getattr(importlib.import_module(module_name), attribute)
        except (ImportError, AttributeError) as exc:
            raise PluginError(
                f"{self.origin}: {self.path!r} does not import ({type(exc).__name__}: {exc}); "
                "correct the module or attribute name, or install what the module needs."
            ) from exc
        if not callable(target):
            raise PluginError(
                f"{self.origin}: {self.path!r} names {target!r}, which is not callable; name "
                "a function or a class."
            )
        return target

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call what :attr:`path` names with these arguments."""
        return self.resolve()(*args, **kwargs)


def _importable(value: Any) -> Any:
    """A ``"module:attribute"`` string as an :class:`ImportReference`; else the value."""
    if isinstance(value, str):
        return ImportReference(path=value, origin="AdapterSpec")
    return value


@attrs.frozen(kw_only=True)
class AdapterSpec:
    """What an adapter plugin registers through the ``dexar_adapters`` hook.

    Attributes:
        name: unique adapter name, e.g. ``"llava"``.
        model_types: Hugging Face ``config.model_type`` values served.
        architectures: model class names (``config.architectures`` entries) served.
        factory: zero-argument callable returning a fresh ``ModelAdapter``. This and
            the other callables may be given as ``"module:attribute"`` strings, which
            become :class:`ImportReference` objects imported when first called.
        priority: the highest priority wins when several adapters serve one model.
        description: one line for ``dexar plugins``.
        conformance: zero-argument callable returning a
            ``dexar_plugins.testing.conformance.ConformanceCase`` (a tiny model the
            adapter serves, an image and a prompt), which ``dexar plugins --check`` and
            the conformance kit run; None when the adapter ships no tiny model.
        refuse_layout: ``(path, config) -> str | None``: the reason a checkpoint whose
            ``config.json`` reads ``config`` (as written) is in a published format dexar
            cannot read, naming the conversion to use; None when it can be read. Asked
            of every installed adapter before the config is parsed. None: nothing is
            refused.
        mend_layout: ``(path, model, processor) -> Sequence[str]``: fill in, on the
            loaded ``model.config`` and ``processor``, what a published checkpoint of
            this adapter's models leaves out and transformers no longer infers, and
            return one sentence per mend made (``dexar_core.hf.published_layouts``
            logs them); raise ``CheckpointError`` where a missing field cannot be
            filled. Called after the adapter's ``load``. None: nothing to mend.
    """

    name: str = attrs.field(validator=_nonempty_name)
    model_types: tuple[str, ...] = attrs.field(converter=_str_tuple, default=())
    architectures: tuple[str, ...] = attrs.field(converter=_str_tuple, default=())
    factory: Callable[[], ModelAdapter] = attrs.field(converter=_importable, validator=_callable)
    priority: int = 0
    description: str = ""
    conformance: Callable[[], Any] | None = attrs.field(
        default=None,
        converter=_importable,
        validator=attrs.validators.optional(_callable),
    )
    refuse_layout: Callable[[str, Mapping[str, Any]], str | None] | None = attrs.field(
        default=None,
        converter=_importable,
        validator=attrs.validators.optional(_callable),
    )
    mend_layout: Callable[[str, Any, Any], Sequence[str]] | None = attrs.field(
        default=None,
        converter=_importable,
        validator=attrs.validators.optional(_callable),
    )

    def __attrs_post_init__(self) -> None:
        if not self.model_types and not self.architectures:
            raise PluginError(
                f"AdapterSpec {self.name!r} serves no model: give model_types or architectures."
            )

    def serves(self, model_type: str | None, class_names: Sequence[str]) -> bool:
        """Whether this adapter claims a model of this type or one of these classes."""
        return (model_type is not None and model_type in self.model_types) or any(
            name in self.architectures for name in class_names
        )


@attrs.frozen(kw_only=True)
class MethodSpec:
    """What the ``dexar_methods`` hook registers: one explanation method.

    Attributes:
        name: unique method name, e.g. ``"dexar"``.
        factory: callable taking the method's options as keyword arguments and
            returning a ``Method``.
        needs_gradients: whether the method needs the backward pass.
        description: one line for ``dexar plugins``.
    """

    name: str = attrs.field(validator=_nonempty_name)
    factory: Callable[..., Method] = attrs.field(validator=_callable)
    needs_gradients: bool = True
    description: str = ""


def _training_recipe(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    from dexar_core.zoo.recipes import TrainingRecipe

    if not isinstance(value, TrainingRecipe):
        raise PluginError(
            f"{type(instance).__name__}.{attribute.name} must be a "
            f"dexar_core.zoo.recipes.TrainingRecipe, got {value!r}."
        )


@attrs.frozen(kw_only=True)
class EmbeddedModelSpec:
    """A checkpoint shipped inside a plugin, named for ``--model``.

    Attributes:
        name: the name users type, e.g. ``"shapes-llava"``.
        path: folder in Hugging Face format (``config.json``, weights, processor files).
        adapter: name of the adapter that serves it.
        description: one line for ``dexar models``.
        example_image: an image shipped with the model for ``dexar explain --example``.
        example_prompt: the prompt of that example, in the form the model takes (a
            question or task for a generative model, a caption for a contrastive one).
        recipe: how the checkpoint is trained from a seed
            (:class:`dexar_core.zoo.recipes.TrainingRecipe`), which
            ``python -m dexar_core.zoo.train --model NAME`` runs; None when the plugin
            ships the checkpoint without one.
        default: whether this is the model ``dexar explain`` uses when none is named;
            exactly one installed embedded model may say so.
    """

    name: str = attrs.field(validator=_nonempty_name)
    path: Path = attrs.field(converter=Path)
    adapter: str = attrs.field(validator=_nonempty_name)
    description: str = ""
    example_image: Path | None = attrs.field(
        default=None, converter=attrs.converters.optional(Path)
    )
    example_prompt: str = ""
    recipe: TrainingRecipe | None = attrs.field(
        default=None, validator=attrs.validators.optional(_training_recipe)
    )
    default: bool = attrs.field(default=False, validator=attrs.validators.instance_of(bool))
