"""Train ``shapes-clip``: a tiny open_clip ViT CLIP on the shapes captions, on CPU.

Usage::

    python -m dexar_open_clip.train --out DIR --seed 0 [--steps N] [--batch-size B]

Each training image (``ShapesDataset("train")``, benchmark seed 0) is paired with one
text drawn at random: its full caption (``"a red circle at the left and a blue square
at the top"``), one object's phrase with its position (``"a red circle at the left"``)
or without it (``"a red circle"``). The loss is the symmetric contrastive loss of CLIP,
with every text that is *true* of an image counted as a positive of that image (a batch
often holds two images with a red circle; calling one of them a negative would teach
the model to ignore the object). ``--seed`` seeds the initialisation and the text
choices; one thread by default, so the same seed gives the same bytes on any machine.

Afterwards the checkpoint is evaluated on the ``test`` split (see :func:`evaluate`) and
written as an open_clip ``local-dir`` folder (``open_clip_config.json``,
``open_clip_model.safetensors``, tokenizer files) with a model card ``README.md`` and
``dexar_training.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dexar_core.datasets.shapes import COLORS, SHAPES, ShapeObject, ShapesDataset, ShapesItem
from dexar_core.zoo import TRAINING_FACTS

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


def train(
    out: Path,
    *,
    seed: int,
    steps: int,
    batch_size: int,
    learning_rate: float,
    pool_type: str = "tok",
) -> tuple[Any, Any, dict[str, Any], dict[str, Any]]:
    """Train from scratch; returns the model, tokenizer, model config and training facts."""
    import torch

    from dexar_open_clip.tiny import (
        WordTokenizer,
        build_model,
        build_word_tokenizer,
        tiny_model_config,
    )

    words = build_word_tokenizer()
    model_cfg = tiny_model_config(
        vocab_size=len(words), eos_id=words.eos_token_id, pool_type=pool_type, **MODEL
    )
    model = build_model(model_cfg, seed=seed).train()
    tokenizer = WordTokenizer(words, MODEL["context_length"])
    from dexar_open_clip.adapter import OpenClipProcessor

    transform = OpenClipProcessor.for_model(model, tokenizer).transform
    dataset = ShapesDataset("train", size=steps * batch_size, seed=BENCHMARK_SEED)
    rng = np.random.default_rng(seed)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    other = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.05}, {"params": other, "weight_decay": 0.0}],
        lr=learning_rate,
    )
    warmup = max(1, steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: (
            min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(step, steps) / steps))
        ),
    )
    start, cpu_start = time.perf_counter(), time.process_time()
    losses = []
    for step in range(steps):
        items = [dataset[step * batch_size + b] for b in range(batch_size)]
        drawn = [draw_text(item, rng) for item in items]
        pixels = torch.stack([transform(item.image) for item in items])
        tokens = tokenizer([text for text, _ in drawn])
        positives = torch.tensor([[holds(req, item) for _, req in drawn] for item in items])
        image = model.encode_image(pixels, normalize=True)
        text = model.encode_text(tokens, normalize=True)
        logits = model.logit_scale.exp().clamp(max=100) * image @ text.T
        loss = contrastive_loss(logits, positives)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(float(loss.detach()))
        if step % 50 == 0 or step == steps - 1:
            elapsed = time.perf_counter() - start
            print(f"step {step:5d}  loss {np.mean(losses[-50:]):.4f}  {elapsed:6.0f} s", flush=True)
    model.eval()
    facts = {
        "seed": seed,
        "steps": steps,
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "pool_type": pool_type,
        "training_images": steps * batch_size,
        "final_loss_mean_last_50": float(np.mean(losses[-50:])),
        "train_seconds": round(time.perf_counter() - start, 1),
        "train_cpu_seconds": round(time.process_time() - cpu_start, 1),
        "threads": torch.get_num_threads(),
    }
    return model, tokenizer, model_cfg, facts


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
- Reproduce: `python -m dexar_open_clip.train --out DIR --seed {seed} --steps {steps}
  --batch-size {batch_size} --pool {pool_type}` (one thread: the same bytes).

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


def model_card(model_cfg: dict, facts: dict, metrics: dict, parameters: int) -> str:
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
        **facts,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: train, save, evaluate, write the model card."""
    parser = argparse.ArgumentParser(prog="python -m dexar_open_clip.train", description=__doc__)
    parser.add_argument("--out", type=Path, required=True, help="checkpoint folder to write")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=2400)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument(
        "--pool", choices=("tok", "avg"), default="tok", help="image pooling: class token or mean"
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1: bit-reproducible)"
    )
    parser.add_argument("--retrieval-items", type=int, default=500)
    parser.add_argument("--grounding-items", type=int, default=300)
    args = parser.parse_args(argv)

    import torch

    from dexar_open_clip.adapter import OpenClipAdapter
    from dexar_open_clip.tiny import save_checkpoint

    torch.set_num_threads(args.threads)
    model, tokenizer, model_cfg, facts = train(
        args.out,
        seed=args.seed,
        steps=args.steps,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        pool_type=args.pool,
    )
    save_checkpoint(args.out, model, tokenizer, model_cfg)
    loaded = OpenClipAdapter().load(str(args.out))
    metrics = evaluate(
        loaded, retrieval_items=args.retrieval_items, grounding_items=args.grounding_items
    )
    parameters = sum(p.numel() for p in model.parameters())
    record = {"model": MODEL, "training": facts, "metrics": metrics, "parameters": parameters}
    (args.out / TRAINING_FACTS).write_text(json.dumps(record, indent=2) + "\n")
    (args.out / "README.md").write_text(model_card(model_cfg, facts, metrics, parameters))
    print(json.dumps(metrics, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
