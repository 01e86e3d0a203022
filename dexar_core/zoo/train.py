"""Train a tiny vision-language model on the shapes benchmark, reproducibly.

Usage::

    python -m dexar_core.zoo.train --adapter llava --out DIR --seed 0 [--steps N] [--minutes M]
        [--lr 5e-4] [--loss-per token|item] [--device cpu|cuda] [--threads 2]
        [--init CHECKPOINT]

The model (a real transformers class with a tiny config, built offline by the
adapter's ``tiny`` module) learns to answer the benchmark's colour, shape and position
questions and to caption the image. The loss covers the answer tokens and the closing
end-of-sequence token only, averaged over all of them (``--loss-per token``, transformers'
own loss) or over each item's first (``--loss-per item``, so a one-word answer weighs
as much as a caption). Afterwards it answers the test split by greedy generation
and is scored by exact match per question kind (and on the held-out combinations).
The folder it writes is a standard Hugging Face checkpoint (``config.json``,
``model.safetensors``, tokenizer and processor files) plus a model card ``README.md``
and ``dexar_training.json`` with the same facts in machine-readable form.

Adapters are rows of :data:`dexar_core.zoo.recipes.RECIPES`: a name, the builder of
a fresh model and processor, and the prompt formatter. Adding an architecture is adding
a row.

With ``--init`` training continues from the weights of an earlier checkpoint of the
same adapter (a fresh optimiser and schedule), reading the training stream from where
that checkpoint's runs stopped. The card lists the whole chain of commands, so the
result is reproduced by running them in order.

With ``--minutes`` the number of steps is fixed after the first few steps from their
measured speed, and the model card records it: rerunning with ``--steps`` set to it
reproduces the checkpoint (same seed, device kind, thread count and library versions;
CUDA kernels may round differently from run to run).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from dexar_core.datasets.shapes import ShapesDataset, ShapesItem
from dexar_core.errors import InputError
from dexar_core.zoo import TRAINING_FACTS
from dexar_core.zoo.answers import evaluate
from dexar_core.zoo.batches import LOSS_WEIGHTINGS, item_mean_loss, training_batch
from dexar_core.zoo.card import TrainingReport, command_line, save_checkpoint
from dexar_core.zoo.recipes import RECIPES, TrainingRecipe, recipe

CALIBRATION_STEPS = 10
"""Steps timed (after the first) before a ``--minutes`` budget becomes a step count."""


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
    loss_per: str = "token",
    init: str | Path | None = None,
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
        loss_per: ``"token"`` averages the loss over all answer tokens of the batch
            (transformers' own loss); ``"item"`` averages each item's tokens first, so
            a one-word answer weighs as much as a caption (see
            :func:`~dexar_core.zoo.batches.item_mean_loss`).
        init: a checkpoint folder written by this module for the same adapter and image
            size; training starts from its weights and from the first training item its
            runs did not read.
        progress: called with one line of text now and then; ``None`` for silence.

    Returns:
        The :class:`TrainingReport`, also written to the model card.

    Raises:
        InputError: if the adapter is unknown or neither ``steps`` nor ``minutes`` is a
            positive number, or ``loss_per`` is not one of
            :data:`~dexar_core.zoo.batches.LOSS_WEIGHTINGS`, or ``init`` is not a
            checkpoint of this module for the same adapter and image size.
    """
    import torch

    chosen = recipe(adapter)
    _check_budget(steps, minutes, batch_size, eval_size)
    if loss_per not in LOSS_WEIGHTINGS:
        raise InputError(
            f"dexar_core.zoo.train: expected loss_per to be one of {list(LOSS_WEIGHTINGS)}, "
            f"found {loss_per!r}."
        )
    say = progress or (lambda line: None)
    torch.set_num_threads(threads)
    torch.manual_seed(seed)

    model, processor = chosen.build(seed, image_size=image_size, **(model_options or {}))
    parent = None if init is None else load_parent(init, model, chosen.name, image_size)
    first_item = (
        0 if parent is None else parent["first_item"] + parent["steps"] * parent["batch_size"]
    )
    model.to(device)
    format_prompt = chosen.formatter()
    sizes = _image_sizes(chosen, image_size)
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
            data[(seed * 1_000_003 + first_item + step * batch_size + j) % len(data)]
            for j in range(batch_size)
        ]
        batch = training_batch(
            processor,
            format_prompt,
            items,
            position_ids=chosen.position_ids,
            encoder_decoder=chosen.encoder_decoder,
        )
        batch = {key: value.to(device) for key, value in batch.items()}
        output = model(**batch)
        loss = output.loss
        if loss_per == "item":
            loss = item_mean_loss(
                output.logits, batch["labels"], shifted=not chosen.encoder_decoder
            )
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
        adapter=chosen.name,
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
        command=command_line(
            chosen.name, out, seed, step, batch_size, learning_rate, threads, device, loss_per, init
        ),
        loss_per=loss_per,
        first_item=first_item,
        init_from=parent,
    )
    save_checkpoint(model, processor, report, chosen, eval_size=eval_size, image_size=image_size)
    return report


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
    parser.add_argument(
        "--init", type=Path, help="continue from the weights of this checkpoint (same adapter)"
    )
    parser.add_argument(
        "--loss-per",
        default="token",
        choices=list(LOSS_WEIGHTINGS),
        help="average the loss over answer tokens (default) or over items",
    )
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
            loss_per=args.loss_per,
            init=args.init,
            progress=lambda line: print(line, file=sys.stderr, flush=True),
        )
    except InputError as error:
        parser.error(str(error))
    print(json.dumps({"steps": report.steps, "accuracy": report.accuracy}, indent=2))
    return 0


def load_parent(folder: str | Path, model: Any, adapter: str, image_size: int) -> dict[str, Any]:
    """Load ``folder``'s weights into ``model`` and return its training facts.

    The facts returned are those :func:`train` needs to continue the run and to record
    it: the command, steps, batch size, first training item, accuracy and the folder's
    own ``init_from`` (the earlier links of the chain).

    Raises:
        InputError: if ``folder`` has no ``dexar_training.json``, was trained for another
            adapter or image size, or its weights do not fit the recipe's architecture.
    """
    folder = Path(folder)
    facts_path = folder / TRAINING_FACTS
    if not facts_path.is_file():
        raise InputError(
            f"dexar_core.zoo.train: --init {folder} has no dexar_training.json; give a "
            "checkpoint folder written by python -m dexar_core.zoo.train."
        )
    try:
        facts = json.loads(facts_path.read_text())
    except ValueError as error:
        raise InputError(
            f"dexar_core.zoo.train: --init {folder}/dexar_training.json is not valid JSON "
            f"({error}); give a checkpoint folder written by python -m dexar_core.zoo.train."
        ) from error
    missing = [key for key in ("command", "steps", "batch_size") if key not in facts]
    if missing:
        raise InputError(
            f"dexar_core.zoo.train: --init {folder}/dexar_training.json lacks {missing}; "
            "give a checkpoint folder written by python -m dexar_core.zoo.train."
        )
    for name, wanted in (("adapter", adapter), ("image_size", image_size)):
        if facts.get(name) != wanted:
            raise InputError(
                f"dexar_core.zoo.train: --init {folder} was trained with {name} "
                f"{facts.get(name)!r}, this run uses {wanted!r}; continue it with the same "
                f"{name}."
            )
    try:
        trained = type(model).from_pretrained(folder)
        model.load_state_dict(trained.state_dict())
    except (OSError, RuntimeError, ValueError) as error:
        raise InputError(
            f"dexar_core.zoo.train: could not load the weights of --init {folder} into "
            f"the {adapter} recipe's model ({error}); give a checkpoint of this recipe."
        ) from error
    keep = ("command", "steps", "batch_size", "accuracy", "init_from")
    return {**{key: facts.get(key) for key in keep}, "first_item": facts.get("first_item", 0)}


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


if __name__ == "__main__":
    sys.exit(main())
