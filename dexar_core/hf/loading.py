"""Pieces every Hugging Face adapter base shares: loading, the template mask, pixel boxes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import numpy as np
import torch

from dexar_core.errors import CheckpointError, InputError, UnsupportedModelError
from dexar_core.hf import published_layouts
from dexar_core.records import LoadedModel


def load_pretrained(
    adapter: Any, path: str, *, device: str | None, dtype: Any, device_map: Any, **options: Any
) -> LoadedModel:
    """``adapter.model_class.from_pretrained(path)`` and its ``AutoProcessor``, in eval mode.

    ``options`` are further ``from_pretrained`` arguments, already checked by
    :func:`dexar_core.hf.load_options.from_pretrained_options` (``attn_implementation``,
    ``max_memory``, ``revision``, ``quantization_config``, ...).
    The processor is read through :func:`dexar_core.hf.published_layouts.processor_folder`,
    so the image processor classes named in ``adapter.dropped_image_processors`` are read
    as their successors; the adapter spec's other layout mends are made by
    :func:`dexar_core.api.load`.

    Raises:
        CheckpointError: the folder or hub id cannot be loaded (missing files, corrupt
            weights); the message says what the folder must hold.
        InputError: an option needs a package that is not installed.
    """
    import transformers
    from safetensors import SafetensorError

    from dexar_core.hf.load_options import config_options

    model_cls = getattr(transformers, adapter.model_class)
    kwargs: dict[str, Any] = dict(options)
    if dtype is not None:
        kwargs["dtype"] = dtype
    if device_map is not None:
        kwargs["device_map"] = device_map
    try:
        model = model_cls.from_pretrained(path, **kwargs)
        with published_layouts.processor_folder(
            path, adapter.dropped_image_processors
        ) as processor_path:
            processor = transformers.AutoProcessor.from_pretrained(
                processor_path, **config_options(options)
            )
    except ImportError as error:
        raise InputError(
            f"{adapter.name} adapter: loading {path!r} with {sorted(kwargs)} needs a package "
            f"that is not installed: {error}. Install it, or load without that option."
        ) from error
    except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as error:
        raise CheckpointError(
            f"{adapter.name} adapter could not load {path!r} with "
            f"{adapter.model_class}.from_pretrained: {error}. Check that the folder holds "
            "config.json, intact weights and the processor files, or that the hub id is "
            "in your local cache."
        ) from error
    if device is not None and device_map is None:
        model = model.to(device)
    model.eval()
    return LoadedModel(model=model, processor=processor, adapter=adapter, model_id=path)


def saved_model_type(path: str) -> str | None:
    """``config.model_type`` of the checkpoint at ``path``; None where it cannot be read
    (then :func:`load_pretrained` reports what is missing)."""
    from transformers import AutoConfig

    try:
        return str(AutoConfig.from_pretrained(path).model_type)
    except (OSError, ValueError):
        return None


@attrs.frozen(kw_only=True)
class ServedModelType:
    """The one saved ``model_type`` an adapter serves, and what to use for another.

    Attributes:
        family: what it serves, in words (``"LLaVA-NeXT image models"``).
        model_type: the ``model_type`` it serves; a config without one is let through.
        instead: what to use for another model type.
    """

    family: str
    model_type: str
    instead: str

    def refuse_other(self, adapter: str, path: str) -> None:
        """Refuse the checkpoint at ``path`` where its saved ``model_type`` is another.

        Raises:
            UnsupportedModelError: naming both model types and what to use.
        """
        saved = saved_model_type(path)
        if saved not in (None, self.model_type):
            raise UnsupportedModelError(
                f"the {adapter} adapter serves {self.family} (model_type "
                f"{self.model_type!r}); {path!r} is {saved!r}. {self.instead}"
            )


def model_class_by_type(adapter: str, path: str, classes: Mapping[str, str], **options: Any) -> str:
    """The transformers class of the checkpoint at ``path``, by its ``config.model_type``.

    Raises:
        CheckpointError: the config cannot be read.
        UnsupportedModelError: its model type is not one of ``classes``.
    """
    from transformers import AutoConfig

    from dexar_core.hf.load_options import config_options

    try:
        model_type = AutoConfig.from_pretrained(path, **config_options(options)).model_type
    except (OSError, ValueError) as error:
        raise CheckpointError(
            f"the {adapter} adapter could not read the config of {path!r}: {error}. Give a "
            "folder holding config.json, or a hub id in your local cache."
        ) from error
    if model_type not in classes:
        raise UnsupportedModelError(
            f"the {adapter} adapter serves model types {sorted(classes)}; {path!r} is "
            f"{model_type!r}. Use the adapter for that architecture (`dexar plugins`)."
        )
    return classes[model_type]


def common_prefix_length(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading entries ``a`` and ``b`` share."""
    count = 0
    for x, y in zip(a, b):
        if x != y:
            break
        count += 1
    return count


def template_positions(ids: Sequence[int], bare_ids: Sequence[int]) -> np.ndarray:
    """True where ``ids`` shares its leading or trailing tokens with the bare template.

    ``bare_ids`` is the same template rendered with an empty prompt; what the two share
    at either end is the template, the rest is the user's prompt.
    """
    prefix = common_prefix_length(ids, bare_ids)
    suffix = min(common_prefix_length(ids[::-1], bare_ids[::-1]), len(ids) - prefix)
    template = np.zeros(len(ids), dtype=bool)
    template[:prefix] = True
    template[len(ids) - suffix :] = True
    return template


def template_mask(
    ids: Sequence[int], bare_ids: Sequence[int], prompt: str, tokenizer: Any
) -> np.ndarray:
    """Template positions (none for an empty prompt) plus every special token."""
    template = template_positions(ids, bare_ids) if prompt else np.zeros(len(ids), dtype=bool)
    special = set(getattr(tokenizer, "all_special_ids", []))
    return template | np.isin(ids, list(special))


def to_model(inputs: dict[str, Any], model: Any, float_keys: Sequence[str]) -> dict[str, Any]:
    """Tensors moved to the model's device; the pixel tensors cast to its dtype."""
    moved = {k: v.to(model.device) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}
    for key in float_keys:
        if key in moved and moved[key].is_floating_point():
            moved[key] = moved[key].to(model.dtype)
    return moved


def resized_image_box(image_processor: Any, size: tuple[int, int]) -> tuple[float, ...]:
    """The part of the original image the processed pixels cover, in original pixels.

    Follows the CLIP / BLIP-style processors: a resize (fixed height and width, or the
    shortest edge), then an optional centre crop.
    """
    width, height = size
    resize = getattr(image_processor, "size", None) or {}
    scale_x = scale_y = 1.0
    if getattr(image_processor, "do_resize", False):
        if "shortest_edge" in resize:
            scale_x = scale_y = resize["shortest_edge"] / min(width, height)
        elif "height" in resize and "width" in resize:
            scale_x, scale_y = resize["width"] / width, resize["height"] / height
    resized_w, resized_h = width * scale_x, height * scale_y
    left, top, right, bottom = 0.0, 0.0, resized_w, resized_h
    crop = getattr(image_processor, "crop_size", None) or {}
    if getattr(image_processor, "do_center_crop", False) and "height" in crop:
        left = max((resized_w - crop["width"]) / 2, 0.0)
        top = max((resized_h - crop["height"]) / 2, 0.0)
        right = min(left + crop["width"], resized_w)
        bottom = min(top + crop["height"], resized_h)
    return (left / scale_x, top / scale_y, right / scale_x, bottom / scale_y)
