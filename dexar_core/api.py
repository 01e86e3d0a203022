"""The public entry points: ``load`` a model, ``explain`` an answer."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from dexar_core.errors import CheckpointError, InputError
from dexar_core.explanation import Explanation
from dexar_core.images import load_visual
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
    from dexar_plugins.registry import resolve_adapter

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
    return LoadedModel(
        model=loaded.model, processor=loaded.processor, adapter=adapter, model_id=name
    )


def _read_config(path: str) -> Any:
    from transformers import AutoConfig

    from dexar_core.hf.published_layouts import refuse_unreadable_format

    folder = Path(path)
    if folder.exists() and not (folder / "config.json").is_file():
        raise CheckpointError(
            f"{path!r} has no config.json; a checkpoint folder holds config.json, the "
            "weights and the processor files (save it with save_pretrained)."
        )
    refuse_unreadable_format(path)
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
    """Explain which image regions the model used for each token of its answer.

    Args:
        loaded: what :func:`load` returned.
        image: a path, PIL image or array, or a list of them (one map per image); a
            :class:`dexar_core.images.Video` (its frames) where the adapter takes videos.
        prompt: the question or instruction, without template (applied by the adapter)
            or with the model's image placeholder(s) to use it verbatim.
        answer: explain this text (teacher-forced) instead of generating an answer.
        method: ``"dexar"`` or another registered method (``dexar plugins``).
        max_new_tokens: the longest free-run answer.
        chunk_size: explain at most this many answer tokens per backward pass.
        catalog: the plugin catalog to use; the process-wide one by default.
        **options: the method's options (see docs/method.md), e.g. ``layers=8``.

    Returns:
        The frozen :class:`Explanation`.

    Contrastive models (an adapter with ``explain_similarity``, e.g. open_clip) have no
    answer: the call goes to the adapter's ``explain_similarity(loaded, image, prompt,
    method=..., **options)``, ``prompt`` may be a list (one map per prompt), ``answer``
    must be None, and ``max_new_tokens`` and ``chunk_size`` do not apply.
    """
    from dexar_core.engine import attention_gradients

    explain_similarity = getattr(loaded.adapter, "explain_similarity", None)
    if explain_similarity is not None:
        if answer is not None:
            raise InputError(
                f"{loaded.model_id!r} is a contrastive model: it scores image-text "
                "similarity and has no answer to explain; give the text as the prompt "
                "(or several prompts) and no answer."
            )
        return explain_similarity(loaded, image, prompt, method=method, **options)

    timings: dict[str, float] = {}
    start = time.perf_counter()
    images = [
        load_visual(item) for item in (image if isinstance(image, (list, tuple)) else [image])
    ]
    if not images:
        raise InputError("no image given; explain() needs at least one image.")
    if not isinstance(prompt, str):
        raise InputError(f"prompt must be a string, got {type(prompt).__name__}.")
    if answer is None and (not isinstance(max_new_tokens, int) or max_new_tokens < 1):
        raise InputError(f"max_new_tokens must be an int of at least 1, got {max_new_tokens!r}.")
    method_spec = _catalog(catalog).method(method)
    explainer = method_spec.factory(**options)
    adapter = loaded.adapter
    prepared = adapter.prepare(loaded, images, prompt)
    layout = adapter.locator.locate(prepared)
    timings["prepare"] = time.perf_counter() - start

    start = time.perf_counter()
    if answer is None:
        answer_ids = adapter.generate(loaded, prepared, max_new_tokens)
        timings["generate"] = time.perf_counter() - start
        if not answer_ids:
            raise InputError(
                "the model's answer is empty (it stopped at once); give the text to explain "
                "with answer=... (--answer) or change the prompt."
            )
    else:
        if not answer.strip():
            raise InputError("answer is empty; give the text to explain, or None to generate.")
        answer_ids = adapter.encode_answer(loaded, prepared, answer)
        if not answer_ids:
            raise InputError(f"answer {answer!r} encodes to no token for this tokenizer.")

    start = time.perf_counter()
    forced = adapter.teacher_forced(loaded, prepared, answer_ids)
    layout = adapter.layout_for_answer(loaded, prepared, forced, layout)
    layers = explainer.layers(adapter.decoder_parts(loaded.model).num_layers)
    record = attention_gradients(
        loaded,
        forced,
        layout.with_length(forced.key_length),
        layers,
        chunk_size=chunk_size,
        needs=explainer.needs,
    )
    result = explainer.explain(record)
    timings["explain"] = time.perf_counter() - start

    maps_layout = record.layout
    metadata = dict(adapter.describe())
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
    tokens = adapter.token_strings(loaded, answer_ids)
    return Explanation(
        method=method,
        options=explainer.options,
        model_id=loaded.model_id,
        adapter=adapter.name,
        prompt=prompt,
        answer=loaded.tokenizer.decode(list(answer_ids), skip_special_tokens=True),
        token_ids=answer_ids,
        tokens=tokens,
        grids=maps_layout.grids,
        image_sizes=prepared.image_sizes,
        token_maps=token_maps,
        sequence_maps=sequence_maps,
        token_weights=result.token_weights,
        head_weights=result.head_weights,
        layers=layers,
        sequence_fallback=result.sequence_fallback,
        generated=answer is None,
        timings=timings,
        metadata=metadata,
    )
