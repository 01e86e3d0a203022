"""Train a tiny vision-language model on the shapes benchmark, reproducibly.

Usage::

    python -m dexar_core.zoo.train --adapter llava --out DIR --seed 0 [--steps N] [--minutes M]
        [--device cpu|cuda] [--threads 2]

The model (a real transformers class with a tiny config, built offline by the
adapter's ``tiny`` module) learns to answer the benchmark's colour, shape and position
questions and to caption the image. The loss covers the answer tokens and the closing
end-of-sequence token only. Afterwards it answers the test split by greedy generation
and is scored by exact match per question kind (and on the held-out combinations).
The folder it writes is a standard Hugging Face checkpoint (``config.json``,
``model.safetensors``, tokenizer and processor files) plus a model card ``README.md``
and ``dexar_training.json`` with the same facts in machine-readable form.

Adapters are rows of :data:`RECIPES`: a name, the builder of a fresh model and
processor, and the prompt formatter. Adding an architecture is adding a row.

With ``--minutes`` the number of steps is fixed after the first few steps from their
measured speed, and the model card records it: rerunning with ``--steps`` set to it
reproduces the checkpoint (same seed, device kind, thread count and library versions;
CUDA kernels may round differently from run to run).
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import attrs

from dexar_core.datasets.shapes import KINDS, ShapesDataset, ShapesItem
from dexar_core.errors import InputError

CALIBRATION_STEPS = 10
"""Steps timed (after the first) before a ``--minutes`` budget becomes a step count."""


@attrs.frozen(kw_only=True)
class TrainingRecipe:
    """How to build and prompt one adapter's tiny model.

    Attributes:
        name: the adapter name used on the command line.
        builder: ``"module:function"`` returning ``(model, processor)``; called with
            ``seed=`` (and any ``model_options``).
        prompt_formatter: ``"module:function"`` turning a question into the full prompt.
        description: one line for the model card.
        extra_image_sizes: ``(height, width)`` sizes besides ``image_size``, for models
            with dynamic resolution: training batches cycle through all the sizes and
            the test and held-out items are spread evenly over them.
        position_ids: whether the training batch passes 1D positions that skip the left
            padding; False for models that derive their own from the attention mask
            (Qwen-VL's multimodal M-RoPE positions).
        encoder_decoder: whether the answer is the decoder's (Florence-2): the prompt is
            the encoder's input, right-padded (absolute positions then match a single
            prompt), and the labels are the answer tokens alone.
    """

    name: str
    builder: str
    prompt_formatter: str
    description: str
    extra_image_sizes: tuple[tuple[int, int], ...] = ()
    position_ids: bool = True
    encoder_decoder: bool = False

    def build(self, seed: int, **model_options: Any) -> tuple[Any, Any]:
        """Build a fresh, randomly initialised ``(model, processor)``."""
        return _resolve(self.builder)(seed=seed, **model_options)

    def formatter(self) -> Callable[[str], str]:
        """Return the function turning a question into the model's prompt."""
        return _resolve(self.prompt_formatter)


RECIPES: dict[str, TrainingRecipe] = {
    "llava": TrainingRecipe(
        name="llava",
        builder="dexar_llava.tiny:build_tiny_llava",
        prompt_formatter="dexar_llava.tiny:format_prompt",
        description="LlavaForConditionalGeneration: CLIP vision tower, Llama language model",
    ),
    "qwen2vl": TrainingRecipe(
        name="qwen2vl",
        builder="dexar_qwen_vl.tiny:build_shapes_qwen2_vl",
        prompt_formatter="dexar_qwen_vl.tiny:format_prompt",
        description=(
            "Qwen2VLForConditionalGeneration: ViT with 2x2 patch merger, Qwen2 language model "
            "with M-RoPE, dynamic resolution"
        ),
        extra_image_sizes=((96, 96), (80, 112), (112, 80)),
        position_ids=False,
    ),
    "florence2": TrainingRecipe(
        name="florence2",
        builder="dexar_florence2.tiny:build_shapes_florence2",
        prompt_formatter="dexar_florence2.tiny:format_prompt",
        description=("Florence2ForConditionalGeneration: DaViT vision tower, BART encoder-decoder"),
        position_ids=False,
        encoder_decoder=True,
    ),
    "blip2": TrainingRecipe(
        name="blip2",
        builder="dexar_blip2.tiny:build_shapes_blip2",
        prompt_formatter="dexar_blip2.tiny:format_prompt",
        description=(
            "Blip2ForConditionalGeneration: ViT, Q-Former with 32 query tokens, OPT language model"
        ),
    ),
}
"""Adapters this script can train, by name."""


@attrs.frozen(kw_only=True)
class TrainingReport:
    """What one training run did and how well the result answers.

    Attributes:
        adapter: the adapter name.
        out: the checkpoint folder.
        seed: the training seed (weights and data order).
        steps: optimiser steps taken.
        batch_size: items per step.
        learning_rate: peak learning rate.
        seconds: wall-clock training time, evaluation excluded.
        device: the torch device trained on (``cpu`` or ``cuda``).
        accuracy: exact-match accuracy per question kind on the test split.
        heldout_accuracy: the same on the held-out combination split.
        final_loss: mean loss over the last (up to) 20 steps.
        command: the command line that reproduces the checkpoint.
    """

    adapter: str
    out: Path
    seed: int
    steps: int
    batch_size: int
    learning_rate: float
    seconds: float
    device: str
    accuracy: dict[str, float]
    heldout_accuracy: dict[str, float]
    final_loss: float
    command: str


def train(
    *,
    adapter: str = "llava",
    out: str | Path,
    seed: int = 0,
    steps: int | None = None,
    minutes: float | None = None,
    batch_size: int = 32,
    learning_rate: float = 5e-4,
    warmup_steps: int = 50,
    eval_size: int = 1000,
    threads: int = 2,
    device: str = "cpu",
    image_size: int = 64,
    model_options: dict[str, Any] | None = None,
    progress: Callable[[str], None] | None = None,
) -> TrainingReport:
    """Train an adapter's tiny model on the shapes benchmark and save it with a card.

    Args:
        adapter: a key of :data:`RECIPES`.
        out: the folder to write the checkpoint into (created if missing).
        seed: seeds the weight initialisation and the training data stream.
        steps: optimiser steps; with ``minutes`` too, whichever ends first.
        minutes: training time budget; the step count is fixed after
            :data:`CALIBRATION_STEPS` steps from their measured speed.
        batch_size: items per optimiser step.
        learning_rate: AdamW peak learning rate (linear warm-up, then cosine decay
            to a tenth of it).
        warmup_steps: steps of linear warm-up.
        eval_size: test (and held-out) items answered for the reported accuracy.
        threads: torch CPU threads, pinned for speed and reproducibility.
        device: torch device to train on. A run reproduces on the same kind of device,
            thread count and library versions; CPU and GPU runs differ in rounding.
        image_size: the benchmark's image side in pixels (the model's input size).
        model_options: extra keyword arguments for the adapter's builder.
        progress: called with one line of text now and then; ``None`` for silence.

    Returns:
        The :class:`TrainingReport`, also written to the model card.

    Raises:
        InputError: if the adapter is unknown or neither ``steps`` nor ``minutes`` is a
            positive number.
    """
    import torch

    recipe = _recipe(adapter)
    _check_budget(steps, minutes, batch_size, eval_size)
    say = progress or (lambda line: None)
    torch.set_num_threads(threads)
    torch.manual_seed(seed)

    model, processor = recipe.build(seed, image_size=image_size, **(model_options or {}))
    model.to(device)
    format_prompt = recipe.formatter()
    sizes = _image_sizes(recipe, image_size)
    streams = [ShapesDataset("train", 10**9, image_size=size, seed=0) for size in sizes]
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.01)
    model.train()

    total_steps = steps if minutes is None else None
    budget_s = None if minutes is None else minutes * 60.0
    losses: list[float] = []
    started = time.perf_counter()
    calibration_started = started
    step = 0
    while step < (total_steps or steps or math.inf):
        if step == 1:
            # The first step pays one-off costs; time the steps after it.
            calibration_started = time.perf_counter()
        if budget_s is not None and total_steps is None and step == CALIBRATION_STEPS + 1:
            now = time.perf_counter()
            per_step = (now - calibration_started) / CALIBRATION_STEPS
            total_steps = max(step + 1, step + int((budget_s - (now - started)) / per_step))
            if steps is not None:
                total_steps = min(total_steps, steps)
            say(f"{per_step:.3f} s/step: training {total_steps} steps")
        planned = total_steps or max(warmup_steps * 4, CALIBRATION_STEPS)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate * _schedule(step, warmup_steps, planned)
        data = streams[step % len(streams)]
        items = [
            data[(seed * 1_000_003 + step * batch_size + j) % len(data)] for j in range(batch_size)
        ]
        batch = _training_batch(
            processor,
            format_prompt,
            items,
            position_ids=recipe.position_ids,
            encoder_decoder=recipe.encoder_decoder,
        )
        batch = {key: value.to(device) for key, value in batch.items()}
        loss = model(**batch).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(loss.item())
        step += 1
        if step % 50 == 0 or step == total_steps:
            elapsed = time.perf_counter() - started
            recent = sum(losses[-50:]) / len(losses[-50:])
            say(f"step {step}/{total_steps} loss {recent:.4f} {elapsed:.0f} s")
    seconds = time.perf_counter() - started
    model.eval()

    accuracy = evaluate(model, processor, format_prompt, _split("test", eval_size, sizes))
    say(f"test accuracy {accuracy}")
    heldout = evaluate(model, processor, format_prompt, _split("heldout", eval_size, sizes))
    say(f"held-out accuracy {heldout}")
    model.to("cpu")

    out = Path(out)
    report = TrainingReport(
        adapter=recipe.name,
        out=out,
        seed=seed,
        steps=step,
        batch_size=batch_size,
        learning_rate=learning_rate,
        seconds=seconds,
        device=str(device),
        accuracy=accuracy,
        heldout_accuracy=heldout,
        final_loss=sum(losses[-20:]) / max(1, len(losses[-20:])),
        command=_command(recipe.name, out, seed, step, batch_size, learning_rate, threads, device),
    )
    save_checkpoint(model, processor, report, recipe, eval_size=eval_size, image_size=image_size)
    return report


def evaluate(
    model: Any,
    processor: Any,
    format_prompt: Callable[[str], str],
    dataset: Iterable[ShapesItem],
    *,
    batch_size: int = 64,
    max_new_tokens: int = 40,
) -> dict[str, float]:
    """Answer every item by greedy generation and score exact match per kind.

    Args:
        model: a generative vision-language model in eval mode.
        processor: its processor (``images=``, ``text=`` call, left padding).
        format_prompt: turns a question into the model's prompt.
        dataset: the items to answer.
        batch_size: items generated together.
        max_new_tokens: generation limit (a three-object caption needs about 25).

    Returns:
        Accuracy in [0, 1] per question kind present, in :data:`KINDS` order, plus
        ``"all"`` over every item.
    """
    import torch

    items = sorted(dataset, key=lambda item: KINDS.index(item.kind))
    correct: dict[str, list[bool]] = {}
    with torch.no_grad():
        for first in range(0, len(items), batch_size):
            chunk = items[first : first + batch_size]
            answers = generate_answers(model, processor, format_prompt, chunk, max_new_tokens)
            for item, answer in zip(chunk, answers, strict=True):
                correct.setdefault(item.kind, []).append(answer == item.answer)
    scores = {kind: sum(hits) / len(hits) for kind, hits in correct.items()}
    scores = {kind: scores[kind] for kind in KINDS if kind in scores}
    scores["all"] = sum(sum(hits) for hits in correct.values()) / len(items)
    return scores


def generate_answers(
    model: Any,
    processor: Any,
    format_prompt: Callable[[str], str],
    items: Sequence[ShapesItem],
    max_new_tokens: int = 40,
) -> list[str]:
    """Greedy answers of ``model`` to the items' questions, decoded and stripped."""
    # An encoder-decoder's output is the decoder's tokens only, its prompt right-padded.
    encoder_decoder = bool(model.config.get_text_config().is_encoder_decoder)
    inputs = processor(
        images=[item.image for item in items],
        text=[format_prompt(item.question) for item in items],
        padding=True,
        padding_side="right" if encoder_decoder else "left",
        return_tensors="pt",
    ).to(model.device)
    generated = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    new_tokens = generated if encoder_decoder else generated[:, inputs["input_ids"].shape[1] :]
    return [text.strip() for text in processor.batch_decode(new_tokens, skip_special_tokens=True)]


def save_checkpoint(
    model: Any,
    processor: Any,
    report: TrainingReport,
    recipe: TrainingRecipe,
    *,
    eval_size: int,
    image_size: int,
) -> None:
    """Write the Hugging Face checkpoint, ``dexar_training.json`` and the model card."""
    report.out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(report.out)
    processor.save_pretrained(report.out)
    facts = attrs.asdict(report)
    facts["out"] = str(report.out)
    facts.update(eval_size=eval_size, image_size=image_size, data_seed=0)
    if recipe.extra_image_sizes:
        facts["extra_image_sizes"] = [list(size) for size in recipe.extra_image_sizes]
    (report.out / "dexar_training.json").write_text(json.dumps(facts, indent=2) + "\n")
    (report.out / "README.md").write_text(
        _model_card(model, report, recipe, eval_size=eval_size, image_size=image_size)
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the process exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m dexar_core.zoo.train",
        description="Train a tiny VLM on the shapes benchmark and save it as a checkpoint.",
    )
    parser.add_argument("--adapter", default="llava", choices=sorted(RECIPES))
    parser.add_argument("--out", required=True, type=Path, help="checkpoint folder to write")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, help="optimiser steps")
    parser.add_argument("--minutes", type=float, help="training time budget")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--eval-size", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    args = parser.parse_args(argv)
    try:
        report = train(
            adapter=args.adapter,
            out=args.out,
            seed=args.seed,
            steps=args.steps,
            minutes=args.minutes,
            batch_size=args.batch_size,
            learning_rate=args.lr,
            eval_size=args.eval_size,
            threads=args.threads,
            device=args.device,
            progress=lambda line: print(line, file=sys.stderr, flush=True),
        )
    except InputError as error:
        parser.error(str(error))
    print(json.dumps({"steps": report.steps, "accuracy": report.accuracy}, indent=2))
    return 0


def _recipe(adapter: str) -> TrainingRecipe:
    if adapter not in RECIPES:
        raise InputError(
            f"dexar_core.zoo.train: expected adapter to be one of {sorted(RECIPES)}, "
            f"found {adapter!r}."
        )
    return RECIPES[adapter]


def _check_budget(
    steps: int | None, minutes: float | None, batch_size: int, eval_size: int
) -> None:
    if steps is None and minutes is None:
        raise InputError("dexar_core.zoo.train: give --steps, --minutes or both; found neither.")
    for name, value in (("steps", steps), ("minutes", minutes)):
        if value is not None and value <= 0:
            raise InputError(
                f"dexar_core.zoo.train: expected {name} to be positive, found {value!r}."
            )
    for name, value in (("batch_size", batch_size), ("eval_size", eval_size)):
        if value < 1:
            raise InputError(
                f"dexar_core.zoo.train: expected {name} to be a positive integer, found {value!r}."
            )


def _resolve(reference: str) -> Any:
    """Import ``"module:attribute"`` lazily, so the table costs nothing to import."""
    module_name, attribute = reference.split(":")
    return getattr(importlib.import_module(module_name), attribute)


def _schedule(step: int, warmup_steps: int, total_steps: int) -> float:
    """Learning-rate factor: linear warm-up, then cosine decay to 0.1."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress))


def _image_sizes(
    recipe: TrainingRecipe, image_size: int | tuple[int, int]
) -> tuple[int | tuple[int, int], ...]:
    """The benchmark image sizes a recipe trains and evaluates on, ``image_size`` first."""
    return (image_size, *recipe.extra_image_sizes)


def _split(
    name: str, size: int, sizes: Sequence[int | tuple[int, int]]
) -> ShapesDataset | list[ShapesItem]:
    """The split's first ``size`` items; with several image sizes, item i has size i mod n."""
    if len(sizes) == 1:
        return ShapesDataset(name, size, image_size=sizes[0])
    datasets = [ShapesDataset(name, size, image_size=image_size) for image_size in sizes]
    return [datasets[index % len(sizes)][index] for index in range(size)]


def _sizes_text(sizes: Sequence[int | tuple[int, int]]) -> str:
    """``"64x64"``, or ``"64x64, 48x80 and 80x48 (height x width)"``."""
    names = [f"{s}x{s}" if isinstance(s, int) else f"{s[0]}x{s[1]}" for s in sizes]
    if len(names) == 1:
        return names[0]
    return f"{', '.join(names[:-1])} and {names[-1]} (height x width)"


def _training_batch(
    processor: Any,
    format_prompt: Callable[[str], str],
    items: Sequence[ShapesItem],
    *,
    position_ids: bool = True,
    encoder_decoder: bool = False,
) -> dict[str, Any]:
    """Tokenise prompt + answer + end token; label only the answer and end tokens."""
    tokenizer = processor.tokenizer
    if encoder_decoder:
        return _encoder_decoder_batch(processor, format_prompt, items)
    texts = [f"{format_prompt(item.question)} {item.answer}{tokenizer.eos_token}" for item in items]
    batch = processor(
        images=[item.image for item in items], text=texts, padding=True, return_tensors="pt"
    )
    input_ids = batch["input_ids"]
    labels = input_ids.new_full(input_ids.shape, -100)
    for row, item in enumerate(items):
        answer_ids = [*tokenizer(item.answer, add_special_tokens=False)["input_ids"]]
        answer_ids.append(tokenizer.eos_token_id)
        tail = input_ids[row, -len(answer_ids) :].tolist()
        if tail != answer_ids:
            raise InputError(
                f"dexar_core.zoo.train: the tokenised answer {item.answer!r} is not the tail "
                f"of its training text; the tokenizer must be word-level and padding left."
            )
        labels[row, -len(answer_ids) :] = input_ids[row, -len(answer_ids) :]
    if position_ids:
        # Positions count real tokens only, as generate() does with left padding.
        batch["position_ids"] = (batch["attention_mask"].cumsum(-1) - 1).clamp(min=0)
    batch["labels"] = labels
    return dict(batch)


def _encoder_decoder_batch(
    processor: Any, format_prompt: Callable[[str], str], items: Sequence[ShapesItem]
) -> dict[str, Any]:
    """The prompt as the encoder's input; the answer and end token as the labels."""
    tokenizer = processor.tokenizer
    batch = processor(
        images=[item.image for item in items],
        text=[format_prompt(item.question) for item in items],
        padding=True,
        padding_side="right",
        return_tensors="pt",
    )
    answers = [tokenizer(item.answer, add_special_tokens=False)["input_ids"] for item in items]
    longest = max(len(ids) for ids in answers) + 1
    labels = batch["input_ids"].new_full((len(items), longest), -100)
    for row, ids in enumerate(answers):
        labels[row, : len(ids) + 1] = labels.new_tensor([*ids, tokenizer.eos_token_id])
    batch["labels"] = labels
    return dict(batch)


def _command(
    adapter: str,
    out: Path,
    seed: int,
    steps: int,
    batch_size: int,
    learning_rate: float,
    threads: int,
    device: str,
) -> str:
    parts = [
        "python -m dexar_core.zoo.train",
        f"--adapter {adapter}",
        f"--out {out}",
        f"--seed {seed}",
        f"--steps {steps}",
    ]
    if batch_size != 32:
        parts.append(f"--batch-size {batch_size}")
    if learning_rate != 5e-4:
        parts.append(f"--lr {learning_rate}")
    if threads != 2:
        parts.append(f"--threads {threads}")
    if device != "cpu":
        parts.append(f"--device {device}")
    return " ".join(parts)


def _model_card(
    model: Any, report: TrainingReport, recipe: TrainingRecipe, *, eval_size: int, image_size: int
) -> str:
    parameters = sum(p.numel() for p in model.parameters())
    sizes = _sizes_text(_image_sizes(recipe, image_size))
    rows = "\n".join(
        f"| {kind} | {report.accuracy.get(kind, float('nan')):.1%} "
        f"| {report.heldout_accuracy.get(kind, float('nan')):.1%} |"
        for kind in (*KINDS, "all")
    )
    return f"""---
library_name: transformers
license: apache-2.0
tags: [dexar, tiny, synthetic, offline]
---

# {report.out.name}: a tiny {recipe.name} trained on the dexar shapes benchmark

{recipe.description}, {parameters:,} parameters, trained from scratch by dexar so that
explanations work offline with a real architecture. It only knows the benchmark's
language: colours, shapes, positions on a 3x3 layout, and captions of such scenes.
Not a general model.

## Data

The synthetic shapes benchmark (`dexar_core.datasets.shapes`, data seed 0):
{sizes} images with 1-3 coloured shapes on plain or textured grey
backgrounds; questions of four kinds (colour, shape, position, caption) with exact
answers. Training read {report.steps * report.batch_size:,} items from the `train`
split; the colour-shape-position combinations of the `heldout` split never occur in it.

## Training

- seed {report.seed}, {report.steps} steps of batch {report.batch_size}, AdamW,
  peak learning rate {report.learning_rate:g} (linear warm-up, cosine decay to a tenth)
- loss on the answer tokens and the end token only
- {report.seconds / 60:.1f} minutes on `{report.device}`, final loss {report.final_loss:.4f}

Reproduce with:

```
{report.command}
```

## Accuracy

Exact match of the greedy answer, {eval_size} items per split:

| kind | test | held-out combinations |
|---|---|---|
{rows}

## Prompt

Ask through the processor's chat template, or format the prompt directly:
see `{recipe.prompt_formatter}`.
"""


if __name__ == "__main__":
    sys.exit(main())
