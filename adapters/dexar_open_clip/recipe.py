"""How ``shapes-clip`` is trained: the contrastive recipe of a tiny open_clip ViT CLIP.

``python -m dexar_core.zoo.train --adapter open_clip --out DIR --seed 0`` runs it through
the core's one training loop (defaults: 2400 steps of batch 64, learning rate 2e-3, one
thread, so the same seed gives the same bytes on any machine). What is contrastive is
here: each training image (``ShapesDataset("train")``, benchmark seed 0) is paired with
one text drawn at random: its full caption (``"a red circle at the left and a blue
square at the top"``), one object's phrase with its position (``"a red circle at the
left"``) or without it (``"a red circle"``). The loss is the symmetric contrastive loss
of CLIP, with every text that is *true* of an image counted as a positive of that image
(a batch often holds two images with a red circle; calling one of them a negative would
teach the model to ignore the object). The seed seeds the initialisation and the text
choices.

Afterwards the checkpoint is evaluated on the ``test`` split (see :func:`evaluate`) and
written as an open_clip ``local-dir`` folder (``open_clip_config.json``,
``open_clip_model.safetensors``, tokenizer files) with a model card ``README.md`` and
``dexar_training.json``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from dexar_core.datasets.shapes import COLORS, SHAPES, ShapeObject, ShapesDataset, ShapesItem
from dexar_core.zoo import TRAINING_FACTS
from dexar_core.zoo.recipes import TrainingDefaults, TrainingRecipe, TrainingRun

MODEL: dict[str, Any] = {
    "image_size": 64,
    "patch_size": 8,
    "width": 64,
    "layers": 4,
    "head_width": 16,
    "embed_dim": 64,
    "text_width": 64,
    "text_layers": 2,
    "text_heads": 4,
    "context_length": 28,
}
"""``tiny_model_config`` arguments of shapes-clip (an 8x8 patch grid on 64 px images)."""

TEXT_KINDS = {"caption": 0.4, "phrase": 0.3, "name": 0.3}
"""Probability of each training text: full caption, object with position, object name."""

BENCHMARK_SEED = 0
"""Seed of the shapes benchmark the model trains and is evaluated on."""


def object_name(obj: ShapeObject) -> str:
    """``"a red circle"`` / ``"an orange square"``."""
    article = "an" if obj.color[0] in "aeiou" else "a"
    return f"{article} {obj.color} {obj.shape}"


def draw_text(item: ShapesItem, rng: np.random.Generator) -> tuple[str, tuple[Any, ...]]:
    """One training text for the item and what must hold in an image for it to be true."""
    kind = rng.choice(list(TEXT_KINDS), p=list(TEXT_KINDS.values()))
    if kind == "caption":
        scene = frozenset((o.color, o.shape, o.position) for o in item.objects)
        return item.caption, ("scene", scene)
    obj = item.objects[int(rng.integers(len(item.objects)))]
    if kind == "phrase":
        return obj.phrase, ("object", obj.color, obj.shape, obj.position)
    return object_name(obj), ("object", obj.color, obj.shape, None)


def holds(requirement: tuple[Any, ...], item: ShapesItem) -> bool:
    """Whether a text's requirement is true of an item's image."""
    if requirement[0] == "scene":
        return requirement[1] == frozenset((o.color, o.shape, o.position) for o in item.objects)
    _, color, shape, position = requirement
    return any(
        o.color == color and o.shape == shape and position in (None, o.position)
        for o in item.objects
    )


def contrastive_loss(logits: Any, positives: Any) -> Any:
    """Symmetric cross-entropy with every true pair a positive (uniform over positives)."""
    import torch

    weights = positives.float()
    image_to_text = -(torch.log_softmax(logits, dim=1) * weights / weights.sum(1, keepdim=True))
    text_to_image = -(torch.log_softmax(logits, dim=0) * weights / weights.sum(0, keepdim=True))
    return (image_to_text.sum(1).mean() + text_to_image.sum(0).mean()) / 2


DEFAULTS = TrainingDefaults(steps=2400, batch_size=64, learning_rate=2e-3, threads=1, eval_size=500)
"""The shipped run: 2400 steps of batch 64, one thread (bit-reproducible on CPU)."""

GROUNDING_IMAGES = 300
"""Test images whose objects are pointed at for the card (fewer when ``eval_size`` is)."""


@attrs.frozen
class ContrastiveRecipe(TrainingRecipe):
    """The recipe of ``shapes-clip``: contrastive batches, CLIP's optimiser and schedule."""

    name: str = "open_clip"
    description: str = "open_clip CLIP: ViT image tower, causal text transformer"
    defaults: TrainingDefaults = DEFAULTS
    max_grad_norm: float | None = None

    def build(self, seed: int, **model_options: Any) -> tuple[Any, Any]:
        """A fresh CLIP of :data:`MODEL`'s shape (``image_size``, ``pool_type`` may differ)."""
        from dexar_open_clip.adapter import OpenClipProcessor
        from dexar_open_clip.tiny import WordTokenizer, build_model

        model_cfg = self.model_config(**model_options)
        model = build_model(model_cfg, seed=seed)
        tokenizer = WordTokenizer(_words(), model_cfg["text_cfg"]["context_length"])
        return model, OpenClipProcessor.for_model(model, tokenizer)

    def model_config(self, **model_options: Any) -> dict[str, Any]:
        """The ``tiny_model_config`` of :data:`MODEL` with ``model_options`` applied."""
        from dexar_open_clip.tiny import tiny_model_config

        words = _words()
        options = {**MODEL, "pool_type": "tok", **model_options}
        return tiny_model_config(vocab_size=len(words), eos_id=words.eos_token_id, **options)

    def optimizer(self, model: Any, learning_rate: float) -> Any:
        """AdamW, weight decay 0.05 on the weight matrices, none on embeddings and biases."""
        import torch

        decayed = [p for n, p in model.named_parameters() if _decays(n, p)]
        other = [p for n, p in model.named_parameters() if not _decays(n, p)]
        return torch.optim.AdamW(
            [{"params": decayed, "weight_decay": 0.05}, {"params": other, "weight_decay": 0.0}],
            lr=learning_rate,
        )

    def learning_rate_factor(self, step: int, total_steps: int, warmup_steps: int | None) -> float:
        """Linear warm-up over a twentieth of the run (unless given), cosine decay to 0."""
        warmup = max(1, total_steps // 20) if warmup_steps is None else warmup_steps
        progress = min(step, total_steps) / total_steps
        return min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * progress))

    def objective(
        self, model: Any, processor: Any, *, run: TrainingRun, image_size: int
    ) -> ContrastiveObjective:
        """Image-text batches read on from ``run.first_item``, texts drawn from ``run.seed``."""
        return ContrastiveObjective(model=model, processor=processor, run=run)

    def finish(self, model: Any, processor: Any, run: TrainingRun) -> ContrastiveReport:
        """Save the open_clip folder, evaluate it as loaded, write facts and card."""
        from dexar_open_clip.adapter import OpenClipAdapter
        from dexar_open_clip.tiny import save_checkpoint

        model.to("cpu")
        options = dict(run.model_options)
        model_cfg = self.model_config(**options)
        save_checkpoint(run.out, model, processor.tokenizer, model_cfg)
        loaded = OpenClipAdapter().load(str(run.out))
        metrics = evaluate(
            loaded,
            retrieval_items=run.eval_size,
            grounding_items=min(GROUNDING_IMAGES, run.eval_size),
        )
        facts = {
            "seed": run.seed,
            "steps": run.steps,
            "batch_size": run.batch_size,
            "learning_rate": run.learning_rate,
            "pool_type": model_cfg["vision_cfg"]["pool_type"],
            "training_images": run.steps * run.batch_size,
            "final_loss_mean_last_50": float(np.mean(run.losses[-50:])),
            "train_seconds": round(run.seconds, 1),
            "train_cpu_seconds": round(run.cpu_seconds, 1),
            "threads": run.threads,
        }
        parameters = sum(p.numel() for p in model.parameters())
        shape = {**MODEL, **{k: v for k, v in options.items() if k in MODEL}}
        record = {"model": shape, "training": facts, "metrics": metrics, "parameters": parameters}
        (run.out / TRAINING_FACTS).write_text(json.dumps(record, indent=2) + "\n")
        card = model_card(model_cfg, facts, metrics, parameters, command=run.command)
        (run.out / "README.md").write_text(card)
        return ContrastiveReport(out=run.out, steps=run.steps, metrics=metrics)


@attrs.frozen(kw_only=True)
class ContrastiveReport:
    """What a ``shapes-clip`` training run wrote: the folder, its steps and test metrics."""

    out: Path
    steps: int
    metrics: dict[str, Any]

    def summary(self) -> dict[str, Any]:
        """The steps and every test metric, printed by the training command."""
        return {"steps": self.steps, **self.metrics}


@attrs.define(kw_only=True)
class ContrastiveObjective:
    """The contrastive loss of each step; the text draws come from one seeded stream."""

    model: Any
    processor: Any
    run: TrainingRun
    _data: ShapesDataset = attrs.field(init=False)
    _rng: np.random.Generator = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._data = ShapesDataset("train", size=10**9, seed=BENCHMARK_SEED)
        self._rng = np.random.default_rng(self.run.seed)

    def loss(self, step: int) -> Any:
        """Symmetric contrastive loss of step ``step``'s images and their drawn texts."""
        import torch

        run, model = self.run, self.model
        start = run.first_item + step * run.batch_size
        items = [self._data[start + b] for b in range(run.batch_size)]
        drawn = [draw_text(item, self._rng) for item in items]
        pixels = torch.stack([self.processor.transform(item.image) for item in items])
        tokens = self.processor.tokenizer([text for text, _ in drawn])
        positives = torch.tensor([[holds(req, item) for _, req in drawn] for item in items])
        image = model.encode_image(pixels.to(run.device), normalize=True)
        text = model.encode_text(tokens.to(run.device), normalize=True)
        logits = model.logit_scale.exp().clamp(max=100) * image @ text.T
        return contrastive_loss(logits, positives.to(run.device))


def _decays(name: str, parameter: Any) -> bool:
    """Weight decay applies to weight matrices, not to embeddings, norms or biases."""
    return parameter.ndim >= 2 and "embedding" not in name


def _words() -> Any:
    from dexar_open_clip.tiny import build_word_tokenizer

    return build_word_tokenizer()


def evaluate(
    loaded: Any, *, retrieval_items: int = 500, grounding_items: int = 300, layers: Any = "all"
) -> dict:
    """Retrieval, object naming and map grounding on the test split.

    - ``retrieval``: image -> caption and caption -> image top-1 among the first
      ``retrieval_items`` test items (a hit when the retrieved caption is the item's
      caption text); chance is about ``1 / retrieval_items``.
    - ``naming``: on one-object test items, the argmax over the 18 prompts
      ``"a <color> <shape>"`` is the object's name (chance 1/18).
    - ``grounding``: for every object whose colour and shape are unique in its image
      (first ``grounding_items`` test items), the prompt ``"a <color> <shape>"``; the
      peak of its map (upsampled to the image) lies inside the object's mask (pointing
      game), per method and per number of objects in the image. ``chance`` is the mean
      fraction of the image the object covers (a uniformly random point). ``layers`` is
      the maps' ``layers`` option.
    """
    import torch

    from dexar_core.api import explain

    model, processor = loaded.model, loaded.processor
    test = ShapesDataset("test", seed=BENCHMARK_SEED)
    items = [test[i] for i in range(retrieval_items)]
    with torch.no_grad():
        pixels = torch.stack([processor.transform(item.image) for item in items])
        images = model.encode_image(pixels, normalize=True)
        captions = model.encode_text(processor.tokenizer([i.caption for i in items]), True)
        scores = images @ captions.T
        names = [f"{'an' if c[0] in 'aeiou' else 'a'} {c} {s}" for c in COLORS for s in SHAPES]
        name_embeddings = model.encode_text(processor.tokenizer(names), normalize=True)
    texts = np.array([item.caption for item in items])
    image_to_text = float(np.mean(texts[scores.argmax(1).numpy()] == texts))
    text_to_image = float(np.mean(texts[scores.argmax(0).numpy()] == texts))
    single = [i for i, item in enumerate(items) if len(item.objects) == 1]
    named = (images[single] @ name_embeddings.T).argmax(1).numpy()
    naming = float(
        np.mean([names[n] == object_name(items[i].objects[0]) for n, i in zip(named, single)])
    )
    hits: dict[str, dict[str, list[float]]] = {m: {} for m in ("dexar", "legrad")}
    chance: dict[str, list[float]] = {}
    for index in range(grounding_items):
        item = test[index]
        objects = [
            o
            for o in item.objects
            if sum((p.color, p.shape) == (o.color, o.shape) for p in item.objects) == 1
        ]
        if not objects:
            continue
        key = "1 object" if len(item.objects) == 1 else "2-3 objects"
        prompts = [object_name(o) for o in objects]
        chance.setdefault(key, []).extend(float(o.mask.mean()) for o in objects)
        for method in hits:
            explanation = explain(loaded, item.image, prompts, method=method, layers=layers)
            maps, _ = explanation.upsample()
            for obj, heat in zip(objects, maps):
                row, col = np.unravel_index(int(np.argmax(heat)), heat.shape)
                hits[method].setdefault(key, []).append(float(obj.mask[row, col]))
    return {
        "retrieval": {
            "items": retrieval_items,
            "image_to_caption_top1": image_to_text,
            "caption_to_image_top1": text_to_image,
        },
        "naming": {"items": len(single), "accuracy": naming, "chance": 1 / len(names)},
        "grounding": {
            "images": grounding_items,
            "layers": layers,
            "pointing_game": {
                method: {key: float(np.mean(v)) for key, v in by_key.items()}
                for method, by_key in hits.items()
            },
            "objects": {key: len(v) for key, v in chance.items()},
            "chance": {key: float(np.mean(v)) for key, v in chance.items()},
        },
    }


MODEL_CARD = """# shapes-clip

A tiny [open_clip](https://github.com/mlfoundations/open_clip) CLIP (`open_clip.model.CLIP`,
ViT image tower, causal text transformer) trained by dexar on the synthetic shapes
benchmark (`dexar_core/datasets/shapes.py`), so that `dexar explain --model shapes-clip`
shows a meaningful image-text similarity explanation offline. It knows nothing outside
that benchmark's closed vocabulary.

- Architecture: ViT {image_size} px, patch {patch_size} ({grid}x{grid} grid), width {width},
  {layers} blocks of {heads} heads, image pooling `{pool_type}` (`tok`: class token, `avg`:
  patch mean); text: width {text_width}, {text_layers} blocks,
  word-level vocabulary of {vocab} tokens, {context_length} tokens per prompt, pooled at
  `</s>`; joint embedding {embed_dim}. {parameters} parameters.
- Data: `ShapesDataset("train", seed=0)`, {training_images} images (64 x 64, one to three
  objects), each with one text: its caption (p=0.4), one object's phrase with position
  (0.3) or its name `"a <color> <shape>"` (0.3).
- Training: symmetric contrastive loss with every true image-text pair of the batch a
  positive; AdamW, lr {learning_rate}, batch {batch_size}, {steps} steps, warm-up and
  cosine decay; seed {seed}; {threads} thread(s), {train_cpu_seconds} s of CPU time
  ({train_seconds} s wall-clock on a shared machine).
- Reproduce: `{command}` (one thread: the same bytes).

## Evaluation (test split, seed 0)

| measure | value | chance |
|---|---|---|
| image -> caption top-1 ({retrieval_items} items) | {i2t:.3f} | {retrieval_chance:.3f} |
| caption -> image top-1 ({retrieval_items} items) | {t2i:.3f} | {retrieval_chance:.3f} |
| naming one-object images (18 names, {naming_items} items) | {naming:.3f} | {naming_chance:.3f} |
{grounding_rows}

Grounding: for each object whose colour and shape are unique in its image (first
{grounding_images} test images), the prompt `"a <color> <shape>"`; a hit when the peak of
its map, upsampled to the image, lies inside the object's mask. Chance is the mean area
the object covers. All maps: every layer, default options.
"""


def model_card(
    model_cfg: dict, facts: dict, metrics: dict, parameters: int, *, command: str
) -> str:
    """The README.md of the checkpoint."""
    vision, text = model_cfg["vision_cfg"], model_cfg["text_cfg"]
    grounding = metrics["grounding"]
    rows = []
    for method, by_key in grounding["pointing_game"].items():
        for key, value in sorted(by_key.items()):
            rows.append(
                f"| map peak inside the named object, {method}, {key} "
                f"({grounding['objects'][key]} objects) | {value:.3f} | "
                f"{grounding['chance'][key]:.3f} |"
            )
    return MODEL_CARD.format(
        grid=vision["image_size"] // vision["patch_size"],
        heads=vision["width"] // vision["head_width"],
        vocab=text["vocab_size"],
        embed_dim=model_cfg["embed_dim"],
        parameters=f"{parameters:,}",
        retrieval_items=metrics["retrieval"]["items"],
        i2t=metrics["retrieval"]["image_to_caption_top1"],
        t2i=metrics["retrieval"]["caption_to_image_top1"],
        retrieval_chance=1 / metrics["retrieval"]["items"],
        naming_items=metrics["naming"]["items"],
        naming=metrics["naming"]["accuracy"],
        naming_chance=metrics["naming"]["chance"],
        grounding_rows="\n".join(rows),
        grounding_images=grounding["images"],
        **{k: v for k, v in vision.items() if k in ("image_size", "patch_size", "width", "layers")},
        text_width=text["width"],
        text_layers=text["layers"],
        context_length=text["context_length"],
        command=command,
        **facts,
    )
