"""The public entry points: ``load`` a model, ``explain`` an answer."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
from PIL import Image

from dexar_core.errors import CheckpointError, InputError, MethodError
from dexar_core.explanation import Explanation
from dexar_core.images import load_visual
from dexar_core.interfaces import ANSWER_TOKENS
from dexar_core.records import LoadedModel

if TYPE_CHECKING:
    from dexar_plugins.manager import Catalog

DTYPES = ("float32", "float16", "bfloat16", "auto")


def _catalog(catalog: Catalog | None) -> Catalog:
    from dexar_plugins.manager import default_catalog

    return default_catalog() if catalog is None else catalog


def _torch_dtype(dtype: Any) -> Any:
    if dtype is None or not isinstance(dtype, str):
        return dtype
    if dtype not in DTYPES:
        raise InputError(f"dtype must be one of {DTYPES} or a torch.dtype, got {dtype!r}.")
    if dtype == "auto":
        return "auto"
    import torch

    return getattr(torch, dtype)


def load(
    model: str | Path,
    *,
    device: str | None = None,
    dtype: Any = None,
    device_map: Any = None,
    catalog: Catalog | None = None,
) -> LoadedModel:
    """Load a model, its processor and the adapter that serves it.

    Args:
        model: an embedded model name (``dexar models``), a local checkpoint folder or a
            hub id already in the local cache, or ``<adapter>:<spec>`` to hand ``spec``
            to the named adapter (e.g. ``open_clip:ViT-B-32:/path/to/weights.pt``).
        device: where to put the model (``"cpu"``, ``"cuda"``, ...); None leaves it.
        dtype: ``"float32"``, ``"bfloat16"``, ``"float16"``, ``"auto"`` or a torch dtype.
        device_map: passed to ``from_pretrained`` (e.g. ``"auto"`` to shard a model
            larger than one GPU through accelerate).
        catalog: the plugin catalog to use; the process-wide one by default.

    Raises:
        UnsupportedModelError: no installed adapter serves the model.
        CheckpointError: the folder is missing or its files cannot be loaded.
    """
    from dexar_core.validation import check_device, check_finite_weights
    from dexar_plugins.registry import resolve_adapter

    check_device(device)

    plugins = _catalog(catalog)
    name = str(model)
    prefix, separator, spec = name.partition(":")
    if name in plugins.embedded_models:
        embedded = plugins.embedded_model(name)
        adapter_spec = plugins.adapter(embedded.adapter)
        path = str(embedded.path)
    elif separator and prefix in plugins.adapters:
        adapter_spec = plugins.adapter(prefix)
        path = spec
    else:
        path = name
        config = _read_config(path)
        adapter_spec = resolve_adapter(config, catalog=plugins)
    adapter = adapter_spec.factory()
    loaded = adapter.load(path, device=device, dtype=_torch_dtype(dtype), device_map=device_map)
    check_finite_weights(loaded.model, name)  # NaN weights: no answer, no map, means anything
    return LoadedModel(
        model=loaded.model, processor=loaded.processor, adapter=adapter, model_id=name
    )


def _read_config(path: str) -> Any:
    from transformers import AutoConfig

    folder = Path(path)
    if (folder / "open_clip_config.json").is_file() and not (folder / "config.json").is_file():
        raise CheckpointError(
            f"{path!r} is an open_clip checkpoint folder (it holds open_clip_config.json); "
            f"give it as open_clip:{path} so the open_clip adapter loads it."
        )
    if folder.exists() and not (folder / "config.json").is_file():
        raise CheckpointError(
            f"{path!r} has no config.json; a checkpoint folder holds config.json, the "
            "weights and the processor files (save it with save_pretrained)."
        )
    try:
        return AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as error:
        raise CheckpointError(
            f"could not read a model config from {path!r}: {error}. Give an embedded model "
            "name (see `dexar models`), a checkpoint folder, or a hub id already in the "
            "local cache (no download is attempted when offline)."
        ) from error


def explain(
    loaded: LoadedModel,
    image: Any,
    prompt: str | list[str],
    answer: str | None = None,
    *,
    method: str = "dexar",
    max_new_tokens: int = 32,
    chunk_size: int | None = None,
    catalog: Catalog | None = None,
    **options: Any,
) -> Explanation:
    """Explain which image regions the model used for each unit: answer token or prompt.

    A generative model's units are the tokens of its answer (generated, or ``answer``
    teacher-forced); a contrastive model's (open_clip) are the prompts, whose
    similarity with the image is explained (``ModelAdapter.units`` says which).

    Args:
        loaded: what :func:`load` returned.
        image: a path, PIL image or array, or a list of them (one map per image); a
            :class:`dexar_core.images.Video` (its frames) where the adapter takes videos.
        prompt: the question or instruction, without template (applied by the adapter)
            or with the model's image placeholder(s) to use it verbatim; for a
            contrastive model, one text or a list of them (one map each).
        answer: explain this text (teacher-forced) instead of generating an answer;
            None for a contrastive model.
        method: ``"dexar"`` or another registered method (``dexar plugins``).
        max_new_tokens: the longest free-run answer.
        chunk_size: explain at most this many answer tokens per backward pass.
        catalog: the plugin catalog to use; the process-wide one by default.
        **options: the method's options (see docs/method.md), e.g. ``layers=8``.

    Returns:
        The frozen :class:`Explanation`; ``Explanation.units`` names its units.
    """
    from dexar_core import validation

    # Every mistake the CLI refuses is refused here too, before any model work.
    adapter = loaded.adapter
    validation.check_prompt_text(prompt, contrastive=adapter.units != ANSWER_TOKENS)
    validation.check_answer_text(answer)
    if answer is None and adapter.units == ANSWER_TOKENS:
        validation.check_max_new_tokens(max_new_tokens)
    if chunk_size is not None and (
        isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1
    ):
        raise InputError(f"chunk_size must be a whole number of at least 1, got {chunk_size!r}.")
    validation.check_method_options(method, options, _catalog(catalog))
    timings: dict[str, float] = {}
    start = time.perf_counter()
    images = [
        load_visual(item) for item in (image if isinstance(image, (list, tuple)) else [image])
    ]
    if not images:
        raise InputError("no image given; explain() needs at least one image.")
    method_spec = _catalog(catalog).method(method)
    try:
        explainer = method_spec.factory(**options)
    except TypeError as error:  # an option the method's constructor does not take
        raise MethodError(
            f"method {method!r} does not take the options {sorted(options)}: {error}; "
            "docs/method.md lists each method's options."
        ) from error
    prepared = adapter.prepare(loaded, images, prompt)
    validation.check_context(loaded, prepared, answer)  # before generating or explaining
    validation.warn_unknown_tokens(
        loaded, {"prompt": prompt if isinstance(prompt, str) else None, "answer": answer}
    )
    layout = adapter.locator.locate(prepared)
    timings["prepare"] = time.perf_counter() - start

    start = time.perf_counter()
    units = adapter.explained_units(loaded, prepared, answer=answer, max_new_tokens=max_new_tokens)
    if units.generated:
        timings["generate"] = time.perf_counter() - start

    start = time.perf_counter()
    layers = explainer.layers(adapter.gradients.num_layers(loaded))
    record = adapter.gradients.attention_gradients(
        loaded, prepared, layout, units, layers, chunk_size=chunk_size, needs=explainer.needs
    )
    result = explainer.explain(record)
    validation.check_finite_result(loaded, record, result)
    timings["explain"] = time.perf_counter() - start

    maps_layout = record.layout
    metadata = {**adapter.describe(), **placement(loaded.model), **record.metadata}
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
    return Explanation(
        method=method,
        options=explainer.options,
        model_id=loaded.model_id,
        adapter=adapter.name,
        prompt=prepared.prompt,
        answer=units.answer,
        units=units.kind,
        token_ids=units.ids,
        tokens=units.labels,
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
        generated=units.generated,
        timings=timings,
        metadata=metadata,
        images=_pictures_of(images, prepared.image_sizes),
    )


def _pictures_of(images: list[Any], sizes: Any) -> list[Image.Image]:
    """The inputs as pictures to draw on, or none when they are not plain images (video)."""
    if all(isinstance(item, Image.Image) for item in images) and [item.size for item in images] == [
        tuple(size) for size in sizes
    ]:
        return images
    return []


def placement(model: Any) -> dict[str, str]:
    """The dtype and device of the model's first parameter, for the explanation's record."""
    parameters = getattr(model, "parameters", None)
    first = next(iter(parameters()), None) if callable(parameters) else None
    if first is None:
        return {}
    return {"dtype": str(first.dtype).removeprefix("torch."), "device": str(first.device)}
