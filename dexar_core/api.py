"""The public entry points: ``load`` a model, ``explain`` an answer, ``explain_batch`` several."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dexar_core.adapter_options import keyword_names, make_adapter
from dexar_core.errors import CheckpointError, InputError
from dexar_core.explaining import BatchItem, check_item_texts
from dexar_core.explanation import Explanation
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
    adapter_options: Mapping[str, Any] | None = None,
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
        adapter_options: keyword arguments of the adapter itself, e.g.
            ``{"through_encoder": "rollout"}`` for an encoder-decoder or
            ``{"projection": "gradient"}`` for BLIP-2 (docs/models.md, "Adapter options").
        catalog: the plugin catalog to use; the process-wide one by default.

    Raises:
        UnsupportedModelError: no installed adapter serves the model.
        CheckpointError: the folder is missing or its files cannot be loaded.
        InputError: an unknown name (with the nearest embedded model), a device that is
            not there, options that cannot be honoured here, or an adapter option the
            model's adapter does not take (before the weights load).
    """
    from dexar_core.hf import load_options as checks
    from dexar_core.hf.checkpoints import resolve_checkpoint
    from dexar_core.hf.generation import apply_generation, check_generation
    from dexar_core.hf.published_layouts import mend_published_layout, refuse_unreadable_layout
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
        refuse_unreadable_layout(path, [adapter_spec])
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
    adapter_options = dict(adapter_options or {})
    adapter = make_adapter(adapter_spec.name, adapter_spec.factory, adapter_options)
    _check_loading_options(adapter, options)
    loaded = adapter.load(
        path, device=device, dtype=_torch_dtype(dtype), device_map=device_map, **options
    )
    mend_published_layout(path, adapter_spec, loaded.model, loaded.processor)
    check_finite_weights(loaded.model, name)  # NaN weights: no answer, no map, means anything
    if hasattr(loaded.model, "modules"):
        apply_generation(loaded.model, generation)
    return LoadedModel(
        model=loaded.model,
        processor=loaded.processor,
        adapter=adapter,
        model_id=name,
        adapter_options=adapter_options,
    )


def _stored_config(path: str, config: Any) -> Mapping[str, Any] | None:
    """The checkpoint's ``config.json`` as stored (None for a model without one)."""
    config_file = Path(path) / "config.json"
    if config_file.is_file():
        return dict(json.loads(config_file.read_text()))
    return None if config is None else dict(config.to_dict())


def _check_loading_options(adapter: Any, options: Mapping[str, Any]) -> None:
    """Refuse loading options an adapter's ``load`` does not take, naming them."""
    names = keyword_names(adapter.load)
    if names is None:
        return
    refused = sorted(set(options) - names)
    if refused:
        raise InputError(
            f"the {adapter.name} adapter does not take the loading option(s) {refused}; "
            "load without them, or use an adapter that passes them to its model."
        )


def _read_config(path: str, plugins: Catalog, **options: Any) -> Any:
    from transformers import AutoConfig

    from dexar_core.hf.load_options import config_options
    from dexar_core.hf.published_layouts import refuse_unreadable_layout

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
    refuse_unreadable_layout(
        path, (registration.spec for registration in plugins.adapters.values())
    )
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
        image: a path, PIL image or array, or a list of them (several images in one
            prompt, one map each); a :class:`dexar_core.images.Video` (its frames) where
            the adapter takes videos. Several items at once: :func:`explain_batch`.
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
    from dexar_core import explaining

    check_item_texts(loaded, prompt, answer, max_new_tokens)
    explainer = explaining.checked_method(
        loaded, method=method, chunk_size=chunk_size, catalog=_catalog(catalog), options=options
    )
    item = explaining.prepared_item(loaded, image, prompt, answer)
    start = time.perf_counter()
    units = loaded.adapter.explained_units(
        loaded, item.prepared, answer=answer, max_new_tokens=max_new_tokens
    )
    return explaining.explanation_of(
        loaded,
        explainer,
        method,
        item,
        units,
        chunk_size,
        units_seconds=time.perf_counter() - start,
    )


def explain_batch(
    loaded: LoadedModel,
    items: Sequence[BatchItem | tuple[Any, ...]],
    *,
    method: str = "dexar",
    max_new_tokens: int = 32,
    chunk_size: int | None = None,
    batch_size: int = 8,
    catalog: Catalog | None = None,
    **options: Any,
) -> list[Explanation]:
    """Explain several items, each its own images, prompt and answer, in batches.

    Each item is what :func:`explain` takes (a list of images is several images in that
    item's one prompt). ``batch_size`` items at a time go through the model together
    where the adapter batches (``ModelAdapter.batches``: the decoder-only adapters run
    the items' free runs in one ``generate``, and the prompts of given answers in one
    prefill, padded on the left); elsewhere they run one at a time. Either way each
    item's explanation equals what :func:`explain` gives it alone (float32: within
    1e-5; docs/performance.md, "Batched explanations").

    Args:
        loaded: what :func:`load` returned.
        items: :class:`BatchItem` s, or tuples ``(image, prompt)`` or
            ``(image, prompt, answer)``.
        method: as for :func:`explain`, the same for every item.
        max_new_tokens: the longest free-run answer.
        chunk_size: explain at most this many answer tokens per backward pass.
        batch_size: how many items go through the model together (1: one at a time).
        catalog: the plugin catalog to use; the process-wide one by default.
        **options: the method's options, as for :func:`explain`.

    Returns:
        One :class:`Explanation` per item, in order. In a batch,
        ``timings["generate"]`` is the item's share of the batch's generation.

    Raises:
        InputError: a bad ``batch_size``, or an item that cannot be explained (its
            position is named); nothing is returned then.
    """
    from dexar_core.explaining import batch_explanations

    explanations: list[Explanation] = []
    for position, result in enumerate(
        batch_explanations(
            loaded,
            list(items),
            method=method,
            max_new_tokens=max_new_tokens,
            chunk_size=chunk_size,
            batch_size=batch_size,
            catalog=_catalog(catalog),
            options=options,
        )
    ):
        if isinstance(result, InputError):
            raise type(result)(f"batch item {position}: {result}") from result
        explanations.append(result)
    return explanations
