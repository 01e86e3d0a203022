"""The open_clip adapter: contrastive image-text models with a ViT image tower.

A contrastive model does not answer; it scores how well an image matches each text
prompt. dexar explains that score through ``dexar_core.explain`` like any model: the
units are the prompts (one map each), and the pass is the layer-wise gradients of the
image-text similarity with respect to the vision tower's attention
(:mod:`dexar_open_clip.similarity`). This module loads models, prepares images and
prompts, names the prompts as the explained units, scores them, and lays the patch
tokens out on their grid.

Model specifications accepted by :meth:`OpenClipAdapter.load` (after ``open_clip:`` in
``dexar explain --model``):

- ``DIR``: a folder in open_clip's own format (``open_clip_config.json`` with
  ``model_cfg`` and ``preprocess_cfg``, the weights, tokenizer files if the text config
  names an ``hf_tokenizer_name``); the embedded ``shapes-clip`` is such a folder;
- ``ARCH:WEIGHTS``: a built-in open_clip architecture (``open_clip.list_models()``)
  with a local weights file, e.g. ``ViT-B-32:/models/vit_b_32.pt``, or with a pretrained
  tag open_clip already has in its cache (``ViT-B-32:laion2b_s34b_b79k``);
- ``hf-hub:ORG/REPO``: open_clip's hub form, served from the local cache.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from dexar_core.errors import CheckpointError, InputError, UnsupportedModelError
from dexar_core.interfaces import PROMPTS, ModelAdapter, VisualTokenLocator
from dexar_core.records import ExplainedUnits, ImageFacts, LoadedModel, PreparedPrompt, PromptFacts
from dexar_core.values import VisualLayout

SUPPORTED_TOWERS = (
    "open_clip VisionTransformer (the ViT-* configs: ViT-B-32, ViT-B-16, ViT-L-14, ...)"
)
"""What the error for an unsupported image tower names as supported."""

PRECISIONS = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}
"""torch dtype name -> open_clip ``precision`` argument."""

SPEC_HELP = (
    "give open_clip:DIR (a folder with open_clip_config.json and the weights), "
    "open_clip:ARCH:WEIGHTS (a built-in architecture such as ViT-B-32 and a local weights "
    "file or a pretrained tag already in open_clip's cache) or open_clip:hf-hub:ORG/REPO "
    "(from the local cache)"
)


@attrs.frozen(kw_only=True)
class OpenClipProcessor:
    """What turns an image and prompts into open_clip inputs.

    Attributes:
        tokenizer: open_clip tokenizer: ``tokenizer(list_of_texts) -> LongTensor[P, C]``.
        transform: the model's evaluation image transform (PIL image -> ``[3, H, W]``).
        preprocess_cfg: open_clip's preprocessing facts (``size``, ``resize_mode``,
            ``mean``, ``std``, ...), used to place the patch grid on the original image.
    """

    tokenizer: Any
    transform: Any
    preprocess_cfg: Mapping[str, Any]

    @property
    def image_mean(self) -> tuple[float, ...]:
        """The normalisation mean: what removed patches are filled with (perturbation)."""
        return tuple(float(value) for value in self.preprocess_cfg.get("mean", (0.0, 0.0, 0.0)))

    @classmethod
    def for_model(cls, model: Any, tokenizer: Any) -> OpenClipProcessor:
        """The processor of ``model`` with its own preprocessing config."""
        import dataclasses

        from open_clip import get_model_preprocess_cfg
        from open_clip.transform import PreprocessCfg, image_transform_v2

        raw = dict(get_model_preprocess_cfg(model))
        known = {field: raw[field] for field in PreprocessCfg.__dataclass_fields__ if field in raw}
        config = PreprocessCfg(**known)
        return cls(
            tokenizer=tokenizer,
            transform=image_transform_v2(config, is_train=False),
            preprocess_cfg=dataclasses.asdict(config),
        )


def pixel_dtype(model: Any) -> tuple[Any, Any]:
    """``(device, dtype)`` the pixels must have: those of the vision tower's first conv.

    open_clip's ``precision="bf16"`` (and ``"fp16"``) keeps some parameters in float32
    (the logit scale, norms); the model's first parameter may be one of them, while the
    patch embedding that reads the pixels is in the reduced dtype.
    """
    weight = vision_tower(model).conv1.weight
    return weight.device, weight.dtype


def vision_tower(model: Any) -> Any:
    """The model's open_clip ``VisionTransformer``, or an error naming the supported towers.

    Raises:
        UnsupportedModelError: the model has no ``visual`` tower, or it is a ResNet,
            a timm (ConvNeXt, ...) or Hugging Face tower.
    """
    from open_clip.transformer import VisionTransformer

    visual = getattr(model, "visual", None)
    if not isinstance(visual, VisionTransformer):
        found = type(visual).__name__ if visual is not None else "no .visual attribute"
        raise UnsupportedModelError(
            f"the open_clip adapter explains image towers of type {SUPPORTED_TOWERS}; this "
            f"model's image tower is {found}. Convolutional towers (ModifiedResNet, timm "
            "ConvNeXt) have no attention to explain; use a ViT checkpoint."
        )
    if not getattr(visual.transformer, "batch_first", True):
        raise UnsupportedModelError(
            "the open_clip adapter needs a batch-first vision transformer (open_clip >= 2.24 "
            "builds them); upgrade open_clip."
        )
    if not hasattr(visual, "_pool"):
        raise UnsupportedModelError(
            "this open_clip release's VisionTransformer has no _pool step, which the "
            "per-layer targets reuse; install open_clip_torch >= 3.0."
        )
    return visual


def processed_box(preprocess_cfg: Mapping[str, Any], size: tuple[int, int]) -> tuple[float, ...]:
    """The part of the original image the processed pixels cover, in original pixels.

    ``shortest`` (resize the shortest edge, centre crop) gives a box inside the image,
    ``longest`` (resize the longest edge, centre pad) a box reaching outside it,
    ``squash`` the whole image.
    """
    width, height = size
    target = preprocess_cfg.get("size", 224)
    target_h, target_w = (target, target) if isinstance(target, int) else tuple(target)
    mode = preprocess_cfg.get("resize_mode", "shortest")
    if mode == "squash":
        return (0.0, 0.0, float(width), float(height))
    scales = (target_h / height, target_w / width)
    scale = max(scales) if mode == "shortest" else min(scales)
    shown_w, shown_h = target_w / scale, target_h / scale
    left, top = (width - shown_w) / 2, (height - shown_h) / 2
    return (left, top, left + shown_w, top + shown_h)


class PatchGridLocator(VisualTokenLocator):
    """V = the patch tokens of the vision transformer; T_set = its class/register tokens.

    The sequence is ``prefix tokens`` (open_clip: the class token) followed by the
    ``h x w`` patch tokens in row-major order.
    """

    def locate(self, prepared: PreparedPrompt) -> VisualLayout:
        """See :meth:`VisualTokenLocator.locate`."""
        grid = prepared.facts.images[0].grid
        visual = np.zeros(prepared.facts.template_mask.size, dtype=bool)
        visual[grid.positions] = True
        return VisualLayout(
            visual_mask=visual,
            text_mask=~visual,
            template_mask=prepared.facts.template_mask,
            grids=(grid,),
        )


class OpenClipAdapter(ModelAdapter):
    """Adapter for open_clip ``CLIP`` / ``CustomTextCLIP`` models with a ViT image tower.

    The explained units are the prompts; the pass is
    :class:`dexar_open_clip.similarity.PooledSimilarityTargets`.
    """

    name = "open_clip"
    units = PROMPTS
    perturbation_measure = "similarity"

    def __init__(self) -> None:
        from dexar_open_clip.capture import VisionAttentionCapture
        from dexar_open_clip.similarity import PooledSimilarityTargets

        self.capture = VisionAttentionCapture()
        self.locator = PatchGridLocator()
        self.gradients = PooledSimilarityTargets()

    def load(
        self, path: str, *, device: str | None = None, dtype: Any = None, device_map: Any = None
    ) -> LoadedModel:
        """Load an open_clip model, its tokenizer and transform (see the module docstring)."""
        import open_clip

        if device_map is not None:
            raise InputError(
                "the open_clip adapter loads a model onto one device; device_map is not "
                "supported, give device= instead."
            )
        name, pretrained = parse_model_spec(path)
        options: dict[str, Any] = {"precision": _precision(dtype)}
        if device is not None:
            options["device"] = device
        try:
            model = open_clip.create_model(name, pretrained=pretrained, **options)
            tokenizer = open_clip.get_tokenizer(name)
        except (OSError, RuntimeError, ValueError) as error:
            raise CheckpointError(
                f"open_clip could not load {path!r}: {error}. Check the files, or {SPEC_HELP}."
            ) from error
        model.eval()
        vision_tower(model)
        processor = OpenClipProcessor.for_model(model, tokenizer)
        return LoadedModel(model=model, processor=processor, adapter=self, model_id=path)

    def prepare(
        self, loaded: LoadedModel, images: Sequence[Any], prompt: str | Sequence[str]
    ) -> PreparedPrompt:
        """Pixels of the one image and the tokenized prompts (one row per prompt)."""
        prompts = normalize_prompts(prompt)
        if len(images) != 1:
            raise InputError(
                f"the open_clip adapter explains one image per call, got {len(images)}; call "
                "it once per image."
            )
        image = images[0]
        processor: OpenClipProcessor = loaded.processor
        visual = vision_tower(loaded.model)
        check_prompt_lengths(processor.tokenizer, prompts)
        device, dtype = pixel_dtype(loaded.model)
        pixels = processor.transform(image).unsqueeze(0).to(device, dtype)
        tokens = processor.tokenizer(list(prompts)).to(device)
        grid = tuple(int(side) for side in visual.grid_size)
        length = int(visual.positional_embedding.shape[0])
        return PreparedPrompt(
            inputs={"pixels": pixels, "tokens": tokens},
            prompt=" | ".join(prompts),
            prompt_text=" | ".join(prompts),
            image_sizes=(image.size,),
            facts=PromptFacts(
                images=(
                    ImageFacts(
                        name="image 0",
                        positions=np.arange(length),
                        rows=grid[0],
                        cols=grid[1],
                        leading_tokens=length - grid[0] * grid[1],
                        pixel_box=processed_box(processor.preprocess_cfg, image.size),
                    ),
                ),
                template_mask=np.zeros(length, dtype=bool),
                image_token_ids=(),
            ),
            prompts=prompts,
        )

    def explained_units(
        self,
        loaded: LoadedModel,
        prepared: PreparedPrompt,
        *,
        answer: str | None,
        max_new_tokens: int,
    ) -> ExplainedUnits:
        """The prompts, one unit each (``max_new_tokens`` does not apply: nothing is generated).

        Raises:
            InputError: an answer is given; a contrastive model has none.
        """
        if answer is not None:
            raise InputError(
                f"{loaded.model_id!r} is a contrastive model: it scores image-text "
                "similarity and has no answer to explain; give the text as the prompt "
                "(or several prompts) and no answer."
            )
        prompts = prepared.prompts
        return ExplainedUnits(kind=PROMPTS, ids=range(len(prompts)), labels=prompts)

    def unit_scores(
        self,
        loaded: LoadedModel,
        image_sets: Sequence[Sequence[Any]],
        prompt: str,
        units: ExplainedUnits,
    ) -> list[float]:
        """The mean similarity of the unit prompts with the one image of each set.

        See :meth:`ModelAdapter.unit_scores`; ``prompt`` is not read: the units are the
        prompts.
        """
        images = [images[0] for images in image_sets]
        per_prompt = [self.similarities(loaded, images, text) for text in units.labels]
        return [float(value) for value in np.mean(per_prompt, axis=0)]

    def similarities(
        self, loaded: LoadedModel, images: Sequence[Any], prompt: str, *, batch_size: int = 16
    ) -> np.ndarray:
        """``[len(images)]`` the model's image-text cosine similarity of each image with ``prompt``.

        Computed as :func:`dexar_open_clip.similarity.similarity_gradients` reports them
        (float32 unit embeddings), without gradients; ``batch_size`` images per forward.
        """
        import torch
        import torch.nn.functional as F

        text = normalize_prompts(prompt)
        processor: OpenClipProcessor = loaded.processor
        device, dtype = pixel_dtype(loaded.model)
        scores = []
        with torch.no_grad():
            encoded = loaded.model.encode_text(processor.tokenizer(list(text)).to(device))
            unit_text = F.normalize(encoded.float(), dim=-1)
            for start in range(0, len(images), batch_size):
                pixels = torch.stack(
                    [processor.transform(image) for image in images[start : start + batch_size]]
                ).to(device, dtype)
                unit_image = F.normalize(loaded.model.encode_image(pixels).float(), dim=-1)
                scores.append((unit_image @ unit_text.T)[:, 0].cpu().numpy())
        return np.concatenate(scores) if scores else np.zeros(0, dtype=np.float32)

    def describe(self) -> Mapping[str, Any]:
        """See :meth:`ModelAdapter.describe`."""
        return {"adapter": self.name, "kind": "contrastive"}


def normalize_prompts(prompts: str | Sequence[str]) -> tuple[str, ...]:
    """One or more prompts as a tuple of non-empty strings.

    Raises:
        InputError: for an empty list, a non-string or a blank prompt.
    """
    items = (prompts,) if isinstance(prompts, str) else tuple(prompts)
    if not items:
        raise InputError(
            "no prompt given: explaining an image-text similarity needs at least one text "
            "prompt, e.g. ['a red circle']."
        )
    for item in items:
        if not isinstance(item, str) or not item.strip():
            raise InputError(
                f"every prompt must be a non-empty string, got {item!r}; drop it or give text."
            )
    return tuple(item.strip() for item in items)


def prompt_length(tokenizer: Any, prompt: str) -> int | None:
    """``prompt``'s token count before open_clip's tokenizer cuts it to its context.

    An HF tokenizer (``hf_tokenizer_name``) counts its own special tokens; open_clip's
    BPE adds a start and an end token. None for a tokenizer that shows neither.
    """
    inner = getattr(tokenizer, "tokenizer", None)
    if callable(inner):
        return len(inner(prompt)["input_ids"])
    encode = getattr(tokenizer, "encode", None)
    return len(encode(prompt)) + 2 if callable(encode) else None


def check_prompt_lengths(tokenizer: Any, prompts: Sequence[str]) -> None:
    """Refuse a prompt longer than the text tower's context: open_clip would cut it silently.

    Raises:
        InputError: naming the prompt's length and the context length.
    """
    limit = getattr(tokenizer, "context_length", None)
    if not isinstance(limit, int):
        return
    for prompt in prompts:
        length = prompt_length(tokenizer, prompt)
        if length is not None and length > limit:
            raise InputError(
                f"the prompt {textwrap.shorten(prompt, 40, placeholder=' ...')!r} is {length} "
                f"tokens but the text tower reads at most {limit} (its context length); "
                "open_clip would cut it and explain only the start. Shorten the prompt."
            )


def parse_model_spec(spec: str) -> tuple[str, str | None]:
    """open_clip's ``(model_name, pretrained)`` for a model specification.

    Raises:
        CheckpointError: the specification names no folder, architecture or hub id.
    """
    import open_clip

    if spec.startswith("hf-hub:"):
        return spec, None
    if Path(spec).is_dir():
        if not (Path(spec) / "open_clip_config.json").is_file():
            raise CheckpointError(
                f"{spec!r} has no open_clip_config.json; an open_clip checkpoint folder holds "
                "open_clip_config.json (model_cfg, preprocess_cfg) and the weights. Or "
                f"{SPEC_HELP}."
            )
        return "local-dir:" + str(Path(spec).resolve()), None
    architecture, separator, weights = spec.partition(":")
    if architecture in open_clip.list_models():
        if not separator or not weights:
            raise CheckpointError(
                f"{spec!r} names the architecture {architecture} but no weights; a randomly "
                f"initialised model explains nothing. Give {architecture}:/path/to/weights.pt "
                "or a pretrained tag from open_clip.list_pretrained_tags_by_model("
                f"{architecture!r})."
            )
        return architecture, weights
    raise CheckpointError(f"{spec!r} is not an open_clip model specification; {SPEC_HELP}.")


def _precision(dtype: Any) -> str:
    if dtype is None or dtype == "auto":
        return "fp32"
    name = str(dtype).removeprefix("torch.")
    if name not in PRECISIONS:
        raise InputError(f"dtype must be one of {sorted(PRECISIONS)}, got {dtype!r}.")
    return PRECISIONS[name]


def wrap_model(
    model: Any, tokenizer: Any, *, model_id: str = "in-memory open_clip model"
) -> LoadedModel:
    """A model already in memory (and its open_clip tokenizer), ready to explain.

    The model is switched to eval mode (dropout off), as :meth:`OpenClipAdapter.load` does.

    Raises:
        UnsupportedModelError: the model's image tower is not an open_clip ViT.
    """
    vision_tower(model)
    model.eval()
    adapter = OpenClipAdapter()
    processor = OpenClipProcessor.for_model(model, tokenizer)
    return LoadedModel(model=model, processor=processor, adapter=adapter, model_id=model_id)
