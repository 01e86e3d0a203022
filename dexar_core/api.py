"""The public entry points: ``load`` a model, ``explain`` an answer."""

from __future__ import annotations

import inspect
import json
import time
from collections.abc import Mapping
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
    attn_implementation: str | None = None,
    max_memory: Mapping[Any, Any] | None = None,
    offload_folder: str | Path | None = None,
    revision: str | None = None,
    quantization: Any = None,
    trust_remote_code: bool = False,
    download: bool = False,
    generation: str = "greedy",
    catalog: Catalog | None = None,
) -> LoadedModel:
    """Load a model, its processor and the adapter that serves it.

    Nothing is downloaded unless ``download=True``: a hub id is read from the local
    Hugging Face cache, without any network access (docs/models.md).

    Args:
        model: an embedded model name (``dexar models``), a local checkpoint folder or a
            hub id in the local cache, or ``<adapter>:<spec>`` to hand ``spec``
            to the named adapter (e.g. ``open_clip:ViT-B-32:/path/to/weights.pt``).
        device: where to put the model (``"cpu"``, ``"cuda"``, ...); None: the CPU.
        dtype: ``"float32"``, ``"bfloat16"``, ``"float16"``, ``"auto"`` or a torch dtype;
            None chooses by device (never float16 on a CPU; see docs/models.md).
        device_map: passed to ``from_pretrained`` (e.g. ``"auto"`` to shard a model
            larger than one GPU through accelerate); excludes ``device``.
        attn_implementation: the attention kernel (``"sdpa"``, ``"eager"``, ...).
        max_memory: per-device limits with ``device_map``, e.g. ``{0: "20GiB"}``.
        offload_folder: where ``device_map`` may offload weights.
        revision: the hub branch, tag or commit of a hub id.
        quantization: ``"4bit"``, ``"8bit"`` (bitsandbytes) or a transformers
            quantization config.
        trust_remote_code: run the checkpoint's own code (off unless asked; warns).
        download: fetch a hub id that is not in the cache (refused under
            ``HF_HUB_OFFLINE=1``).
        generation: ``"greedy"`` free runs (one beam, no sampling, no penalty) or
            ``"checkpoint"`` to decode with the checkpoint's generation config.
        catalog: the plugin catalog to use; the process-wide one by default.

    Raises:
        UnsupportedModelError: no installed adapter serves the model.
        CheckpointError: the folder is missing or its files cannot be loaded.
        InputError: an unknown name (with the nearest embedded model), a device that is
            not there, or options that cannot be honoured here.
    """
    from dexar_core.hf import load_options as checks
    from dexar_core.hf.checkpoints import resolve_checkpoint
    from dexar_core.hf.generation import apply_generation, check_generation
    from dexar_core.validation import check_device, check_finite_weights
    from dexar_plugins.registry import resolve_adapter

    check_device(device)

    plugins = _catalog(catalog)
    name = str(model)
    check_generation(generation)
    options = checks.from_pretrained_options(
        device=device,
        device_map=device_map,
        attn_implementation=attn_implementation,
        max_memory=max_memory,
        offload_folder=offload_folder,
        quantization=quantization,
        trust_remote_code=trust_remote_code,
    )
    device_map = options.pop("device_map", None)
    device = None if device_map is not None else device
    prefix, separator, spec = name.partition(":")
    config: Any = None
    if name in plugins.embedded_models or (separator and prefix in plugins.adapters):
        if revision is not None:
            raise InputError(f"revision applies to hub ids; {name!r} is not one.")
        if name in plugins.embedded_models:
            embedded = plugins.embedded_model(name)
            adapter_spec = plugins.adapter(embedded.adapter)
            path = str(embedded.path)
        else:
            adapter_spec = plugins.adapter(prefix)
            path = spec
    else:
        path = resolve_checkpoint(
            name, revision=revision, download=download, embedded_names=plugins.embedded_models
        )
        if path == name and revision is not None:
            options["revision"] = revision  # a download: from_pretrained fetches this one
        config = _read_config(path, plugins, **options)
        adapter_spec = resolve_adapter(config, catalog=plugins)
    where = checks.target_device(device, device_map)
    stored_config = _stored_config(path, config)
    stored = checks.stored_dtype(stored_config) if stored_config is not None else None
    if dtype is None and stored_config is not None:
        dtype = checks.default_dtype(where, stored)
    checks.warn_slow_dtype(where, stored if dtype == "auto" else dtype)
    adapter = adapter_spec.factory()
    _check_adapter_options(adapter, options)
    loaded = adapter.load(
        path, device=device, dtype=_torch_dtype(dtype), device_map=device_map, **options
    )
    check_finite_weights(loaded.model, name)  # NaN weights: no answer, no map, means anything
    if hasattr(loaded.model, "modules"):
        apply_generation(loaded.model, generation)
    return LoadedModel(
        model=loaded.model, processor=loaded.processor, adapter=adapter, model_id=name
    )


def _stored_config(path: str, config: Any) -> Mapping[str, Any] | None:
    """The checkpoint's ``config.json`` as stored (None for a model without one)."""
    config_file = Path(path) / "config.json"
    if config_file.is_file():
        return dict(json.loads(config_file.read_text()))
    return None if config is None else dict(config.to_dict())


def _check_adapter_options(adapter: Any, options: Mapping[str, Any]) -> None:
    """Refuse loading options an adapter's ``load`` does not take, naming them."""
    parameters = inspect.signature(adapter.load).parameters.values()
    if any(parameter.kind is parameter.VAR_KEYWORD for parameter in parameters):
        return
    names = {parameter.name for parameter in parameters}
    refused = sorted(set(options) - names)
    if refused:
        raise InputError(
            f"the {adapter.name} adapter does not take the loading option(s) {refused}; "
            "load without them, or use an adapter that passes them to its model."
        )


def _read_config(path: str, plugins: Catalog, **options: Any) -> Any:
    from transformers import AutoConfig

    from dexar_core.hf.load_options import config_options
    from dexar_core.hf.published_layouts import refuse_unreadable_format

    folder = Path(path)
    # a folder in an adapter's own format (e.g. ``<adapter>_config.json``): name the prefix
    owners = [name for name in plugins.adapters if (folder / f"{name}_config.json").is_file()]
    if owners and not (folder / "config.json").is_file():
        raise CheckpointError(
            f"{path!r} is a checkpoint folder in the {owners[0]} adapter's format (it holds "
            f"{owners[0]}_config.json); give it as {owners[0]}:{path} so that adapter loads it."
        )
    if folder.exists() and not (folder / "config.json").is_file():
        raise CheckpointError(
            f"{path!r} has no config.json; a checkpoint folder holds config.json, the "
            "weights and the processor files (save it with save_pretrained)."
        )
    refuse_unreadable_format(path)
    try:
        return AutoConfig.from_pretrained(path, **config_options(options))
    except (OSError, ValueError) as error:
        hint = (
            " If you trust the checkpoint's code, pass trust_remote_code=True "
            "(--trust-remote-code)."
            if "trust_remote_code" in str(error)
            else ""
        )
        raise CheckpointError(
            f"could not read a model config from {path!r}: {error}.{hint} Give an embedded "
            "model name (see `dexar models`), a checkpoint folder, or a hub id in the local "
            "cache (docs/models.md)."
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
    from dexar_core.hf.generation import decoding_facts
    from dexar_core.hf.load_options import runtime_facts

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
    layers = explainer.layers(adapter.gradients.num_layers(loaded), units=adapter.units)
    record = adapter.gradients.attention_gradients(
        loaded, prepared, layout, units, layers, chunk_size=chunk_size, needs=explainer.needs
    )
    result = explainer.explain(record)
    validation.check_finite_result(loaded, record, result)
    timings["explain"] = time.perf_counter() - start

    maps_layout = record.layout
    metadata = {**adapter.describe(), **runtime_facts(loaded.model), **record.metadata}
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
        minmax_after_upsampling=result.minmax_after_upsampling,
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
