"""The steps of an explanation, shared by one item (``explain``) and a batch (``explain_batch``).

An explanation checks its request, prepares the item (images, prompt, layout), finds
its units (generated or given answer tokens, or prompts), runs the adapter's pass and
the method, and assembles the frozen :class:`~dexar_core.explanation.Explanation`. A
batch does the first and the units once for all its items (the adapter's
``batched_units`` runs the items through the model together) and every other step per
item, so each item's explanation is the one it gets alone.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import attrs
from PIL import Image

from dexar_core.errors import InputError, MethodError
from dexar_core.explanation import Explanation
from dexar_core.images import load_visual
from dexar_core.interfaces import ANSWER_TOKENS, GradientRequest

if TYPE_CHECKING:
    from dexar_core.methods.base import Method
    from dexar_core.records import ExplainedUnits, LoadedModel, PreparedPrompt
    from dexar_core.values import VisualLayout
    from dexar_plugins.manager import Catalog


@attrs.frozen(kw_only=True)
class BatchItem:
    """One item of :func:`dexar_core.api.explain_batch`: its own images, prompt and answer.

    Attributes:
        image: a path, PIL image or array, or a list of them (several images in this
            item's one prompt), as ``explain``'s ``image``.
        prompt: the question or instruction (a contrastive model: a text or a list).
        answer: the text to explain (teacher-forced); None to generate the answer.
    """

    image: Any
    prompt: str | list[str]
    answer: str | None = None

    @classmethod
    def from_value(cls, value: Any) -> BatchItem:
        """A :class:`BatchItem`, or a tuple ``(image, prompt)`` / ``(image, prompt, answer)``.

        Raises:
            InputError: anything else.
        """
        if isinstance(value, BatchItem):
            return value
        if isinstance(value, tuple) and len(value) in (2, 3):
            return cls(image=value[0], prompt=value[1], answer=value[2] if value[2:] else None)
        raise InputError(
            f"a batch item is a BatchItem(image=..., prompt=..., answer=None) or a tuple "
            f"(image, prompt[, answer]), got {type(value).__name__}."
        )


@attrs.frozen(kw_only=True)
class Prepared:
    """One item after its checks: its visual inputs, prepared prompt and layout."""

    images: list[Any]
    prepared: PreparedPrompt
    layout: VisualLayout
    answer: str | None
    seconds: float


def checked_method(
    loaded: LoadedModel,
    *,
    method: str,
    chunk_size: int | None,
    catalog: Catalog,
    options: dict[str, Any],
) -> Method:
    """The method built with its options, after the checks every item shares.

    Raises:
        InputError: a bad ``chunk_size``.
        MethodError: an unknown method, or options it does not take.
    """
    from dexar_core import validation

    if chunk_size is not None and (
        isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1
    ):
        raise InputError(f"chunk_size must be a whole number of at least 1, got {chunk_size!r}.")
    validation.check_method_options(method, options, catalog)
    try:
        return catalog.method(method).factory(**options)
    except TypeError as error:  # an option the method's constructor does not take
        raise MethodError(
            f"method {method!r} does not take the options {sorted(options)}: {error}; "
            "docs/method.md lists each method's options."
        ) from error


def check_item_texts(
    loaded: LoadedModel, prompt: Any, answer: str | None, max_new_tokens: int
) -> None:
    """Refuse a bad prompt, answer or answer length, before any model work.

    Every mistake the CLI refuses is refused here too.

    Raises:
        InputError: what is wrong with them.
    """
    from dexar_core import validation

    units = loaded.adapter.units
    validation.check_prompt_text(prompt, contrastive=units != ANSWER_TOKENS)
    validation.check_answer_text(answer)
    if answer is None and units == ANSWER_TOKENS:
        validation.check_max_new_tokens(max_new_tokens)


def prepared_item(loaded: LoadedModel, image: Any, prompt: Any, answer: str | None) -> Prepared:
    """Read one item's images and prepare its prompt (after :func:`check_item_texts`).

    Raises:
        InputError: an unreadable image, no image, or a prompt longer than the context.
    """
    from dexar_core import validation

    adapter = loaded.adapter
    start = time.perf_counter()
    images = [
        load_visual(item) for item in (image if isinstance(image, (list, tuple)) else [image])
    ]
    if not images:
        raise InputError("no image given; explain() needs at least one image.")
    prepared = adapter.prepare(loaded, images, prompt)
    validation.check_context(loaded, prepared, answer)  # before generating or explaining
    validation.warn_unknown_tokens(
        loaded, {"prompt": prompt if isinstance(prompt, str) else None, "answer": answer}
    )
    layout = adapter.locator.locate(prepared)
    return Prepared(
        images=images,
        prepared=prepared,
        layout=layout,
        answer=answer,
        seconds=time.perf_counter() - start,
    )


def batch_explanations(
    loaded: LoadedModel,
    items: Sequence[Any],
    *,
    method: str,
    max_new_tokens: int,
    chunk_size: int | None,
    batch_size: int,
    catalog: Catalog,
    options: dict[str, Any],
) -> Iterator[Explanation | InputError]:
    """Each item's explanation, or the ``InputError`` that item alone raised, in order.

    The items go through the adapter's ``batched_units`` ``batch_size`` at a time.

    Raises:
        InputError: a bad ``batch_size`` or item.
        MethodError: see :func:`checked_method`.
    """
    check_batch_size(batch_size)
    requests = [BatchItem.from_value(item) for item in items]
    explainer = checked_method(
        loaded, method=method, chunk_size=chunk_size, catalog=catalog, options=options
    )
    for first in range(0, len(requests), batch_size):
        ready: list[Prepared | InputError] = []
        for request in requests[first : first + batch_size]:
            try:
                check_item_texts(loaded, request.prompt, request.answer, max_new_tokens)
                ready.append(prepared_item(loaded, request.image, request.prompt, request.answer))
            except InputError as error:
                ready.append(error)
        batch = [item for item in ready if isinstance(item, Prepared)]
        start = time.perf_counter()
        units = loaded.adapter.batched_units(
            loaded,
            [item.prepared for item in batch],
            [item.answer for item in batch],
            max_new_tokens=max_new_tokens,
        )
        share = (time.perf_counter() - start) / max(len(batch), 1)
        found = iter(units)
        for item in ready:
            if isinstance(item, InputError):
                yield item
                continue
            item_units = next(found)
            if isinstance(item_units, InputError):
                yield item_units
                continue
            try:
                yield explanation_of(
                    loaded, explainer, method, item, item_units, chunk_size, units_seconds=share
                )
            except InputError as error:
                yield error


def check_batch_size(batch_size: Any, *, flag: str = "batch_size") -> int:
    """``batch_size`` when it is a whole number of at least 1.

    Raises:
        InputError: 0, a negative number, or not a whole number.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(
            f"{flag} must be a whole number of items of at least 1, got {batch_size!r}; "
            "1 explains one item at a time."
        )
    return batch_size


def explanation_of(
    loaded: LoadedModel,
    explainer: Method,
    method: str,
    item: Prepared,
    units: ExplainedUnits,
    chunk_size: int | None,
    *,
    units_seconds: float,
) -> Explanation:
    """Run the adapter's pass and the method on one item's units; assemble the result.

    Args:
        loaded: the model.
        explainer: the method, built with its options.
        method: its name.
        item: the prepared item.
        units: its explained units.
        chunk_size: answer tokens per backward pass, or None.
        units_seconds: the seconds its units took (a batch's: this item's share),
            recorded as ``timings["generate"]`` for a generated answer.
    """
    from dexar_core import validation
    from dexar_core.hf.generation import decoding_facts
    from dexar_core.hf.load_options import runtime_facts

    adapter = loaded.adapter
    prepared = item.prepared
    timings = {"prepare": item.seconds}
    if units.generated:
        timings["generate"] = units_seconds
    start = time.perf_counter()
    layers = explainer.layers(adapter.gradients.num_layers(loaded), units=adapter.units)
    request = GradientRequest(
        loaded, prepared, item.layout, units, layers, chunk_size=chunk_size, needs=explainer.needs
    )
    record = adapter.gradients.attention_gradients(request)
    result = explainer.explain(record)
    validation.check_finite_result(loaded, record, result)
    timings["explain"] = time.perf_counter() - start

    maps_layout = record.layout
    metadata = {**adapter.describe(), **runtime_facts(loaded.model), **record.metadata}
    if loaded.adapter_options:
        metadata["adapter_options"] = dict(loaded.adapter_options)
    if units.generated:
        metadata["decoding"] = decoding_facts(loaded.model)
    if maps_layout.projection is not None:
        # V is not on the image (BLIP-2's query tokens): draw the maps over the units
        # the adapter's projection reaches, from the projected raw relevance.
        projection = maps_layout.projection
        result = attrs.evolve(
            result,
            token_relevance=projection.project(result.token_relevance),
            sequence_relevance=projection.project(result.sequence_relevance),
        )
        maps_layout = projection.unit_layout
        metadata["projection"] = projection.describe()
    token_maps, sequence_maps = result.maps(maps_layout)
    raw_token_maps, raw_sequence_maps = result.raw_maps(maps_layout)
    # Any: mypy reads the field's converter=tuple as an unsolved Iterable[_T_co]
    labels: Any = units.labels
    return Explanation(
        method=method,
        options=explainer.options,
        model_id=loaded.model_id,
        adapter=adapter.name,
        prompt=prepared.prompt,
        answer=units.answer,
        units=units.kind,
        token_ids=units.ids,
        tokens=labels,
        grids=maps_layout.grids,
        image_sizes=prepared.image_sizes,
        token_maps=token_maps,
        sequence_maps=sequence_maps,
        raw_token_maps=raw_token_maps,
        raw_sequence_maps=raw_sequence_maps,
        token_weights=result.token_weights,
        head_weights=result.head_weights,
        layers=layers,
        sequence_fallback=result.sequence_fallback,
        minmax_after_upsampling=result.minmax_after_upsampling,
        generated=units.generated,
        timings=timings,
        metadata=metadata,
        images=_pictures_of(item.images, prepared.image_sizes),
    )


def _pictures_of(images: list[Any], sizes: Any) -> list[Image.Image]:
    """The inputs as pictures to draw on, or none when they are not plain images (video)."""
    if all(isinstance(item, Image.Image) for item in images) and [item.size for item in images] == [
        tuple(size) for size in sizes
    ]:
        return images
    return []
