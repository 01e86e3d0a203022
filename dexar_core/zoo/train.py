"""Train an embedded model's checkpoint on the shapes benchmark, reproducibly.

Usage::

    python -m dexar_core.zoo.train [--model NAME | --adapter RECIPE] --out DIR --seed 0
        [--steps N] [--minutes M] [--lr 5e-4] [--loss-per token|item] [--device cpu|cuda]
        [--threads 2] [--init CHECKPOINT]

Every embedded model's plugin says how its checkpoint is trained: the
:class:`~dexar_core.zoo.recipes.TrainingRecipe` on its
:class:`~dexar_core.values.EmbeddedModelSpec`. ``--model`` names the embedded model,
``--adapter`` the recipe (e.g. ``llava``); without either, the catalog's default
embedded model is trained. This module is the one training loop: it seeds, builds the
recipe's untrained model (a real class with a tiny config, built offline by the
adapter), runs the optimiser with the recipe's objective and schedule, and hands the
trained model back to the recipe, which scores it and writes the checkpoint, a model
card ``README.md`` and ``dexar_training.json`` with the same facts in machine-readable
form.

Generative recipes (:class:`~dexar_core.zoo.generative.AnswerRecipe`) learn to answer
the benchmark's colour, shape and position questions and to caption the image. The loss
covers the answer tokens and the closing end-of-sequence token only, averaged over all
of them (``--loss-per token``, transformers' own loss) or over each item's first
(``--loss-per item``, so a one-word answer weighs as much as a caption). Afterwards the
model answers the test split by greedy generation and is scored by exact match per
question kind (and on the held-out combinations). The folder is a standard Hugging Face
checkpoint (``config.json``, ``model.safetensors``, tokenizer and processor files).

With ``--init`` training continues from the weights of an earlier checkpoint of the
same recipe (a fresh optimiser and schedule), reading the training stream from where
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
from typing import TYPE_CHECKING, Any

import attrs

from dexar_core.errors import InputError
from dexar_core.zoo import TRAINING_FACTS
from dexar_core.zoo.batches import LOSS_WEIGHTINGS
from dexar_core.zoo.card import command_line
from dexar_core.zoo.recipes import TrainingOutcome, TrainingRecipe, TrainingRun

if TYPE_CHECKING:
    from dexar_plugins.manager import Catalog

CALIBRATION_STEPS = 10
"""Steps timed (after the first) before a ``--minutes`` budget becomes a step count."""


def training_recipe(
    *, model: str | None = None, adapter: str | None = None, catalog: Catalog | None = None
) -> TrainingRecipe:
    """The recipe of an embedded model, by the model's name or the recipe's own.

    Args:
        model: an embedded model's name (e.g. ``"shapes-llava"``).
        adapter: a recipe name (e.g. ``"llava"``), as written in ``dexar_training.json``.
        catalog: the plugin catalog to read; the process-wide one when None.

    Returns:
        The named model's or recipe's :class:`TrainingRecipe`; with neither name, that
        of the catalog's default embedded model.

    Raises:
        InputError: both names are given, no embedded model or recipe has the name, or
            the model ships no recipe.
    """
    from dexar_plugins import default_catalog

    catalog = default_catalog() if catalog is None else catalog
    if model is not None and adapter is not None:
        raise InputError(
            f"dexar_core.zoo.train: give --model or --adapter, not both; found {model!r} "
            f"and {adapter!r}."
        )
    if adapter is not None:
        recipes = training_recipes(catalog)
        if adapter not in recipes:
            raise InputError(
                f"dexar_core.zoo.train: expected adapter to be one of {sorted(recipes)}, "
                f"found {adapter!r}."
            )
        return recipes[adapter]
    spec = catalog.default_embedded_model() if model is None else catalog.embedded_model(model)
    if spec.recipe is None:
        raise InputError(
            f"dexar_core.zoo.train: the embedded model {spec.name!r} ships no training "
            "recipe; its plugin must give EmbeddedModelSpec(recipe=...) to train it here."
        )
    return spec.recipe


def training_recipes(catalog: Catalog | None = None) -> dict[str, TrainingRecipe]:
    """Every embedded model's recipe, by recipe name."""
    from dexar_plugins import default_catalog

    catalog = default_catalog() if catalog is None else catalog
    return {
        registration.spec.recipe.name: registration.spec.recipe
        for registration in catalog.embedded_models.values()
        if registration.spec.recipe is not None
    }


def train(
    *,
    adapter: str | None = None,
    model: str | None = None,
    out: str | Path,
    seed: int = 0,
    steps: int | None = None,
    minutes: float | None = None,
    batch_size: int | None = None,
    learning_rate: float | None = None,
    warmup_steps: int | None = None,
    eval_size: int | None = None,
    threads: int | None = None,
    device: str = "cpu",
    image_size: int | None = None,
    model_options: dict[str, Any] | None = None,
    loss_per: str = "token",
    init: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> Any:
    """Train an embedded model's checkpoint through its recipe and save it with a card.

    Every value left ``None`` is the recipe's (:attr:`TrainingRecipe.defaults`).

    Args:
        adapter: a recipe name (see :func:`training_recipe`).
        model: an embedded model's name; with neither, the catalog's default model.
        out: the folder to write the checkpoint into (created if missing).
        seed: seeds the weight initialisation and the training data stream.
        steps: optimiser steps; with ``minutes`` too, whichever ends first.
        minutes: training time budget; the step count is fixed after
            :data:`CALIBRATION_STEPS` steps from their measured speed.
        batch_size: items per optimiser step.
        learning_rate: AdamW peak learning rate, scaled by the recipe's schedule.
        warmup_steps: steps of linear warm-up; None for the recipe's.
        eval_size: test (and held-out) items scored for the card.
        threads: torch CPU threads, pinned for speed and reproducibility.
        device: torch device to train on. A run reproduces on the same kind of device,
            thread count and library versions; CPU and GPU runs differ in rounding.
        image_size: the benchmark's image side in pixels (the model's input size).
        model_options: extra keyword arguments for the recipe's builder.
        loss_per: ``"token"`` averages the loss over all answer tokens of the batch
            (transformers' own loss); ``"item"`` averages each item's tokens first, so
            a one-word answer weighs as much as a caption (see
            :func:`~dexar_core.zoo.batches.item_mean_loss`).
        init: a checkpoint folder written by this module for the same recipe and image
            size; training starts from its weights and from the first training item its
            runs did not read.
        progress: called with one line of text now and then; ``None`` for silence.

    Returns:
        What the recipe's :meth:`~TrainingRecipe.finish` returns (for generative
        recipes the :class:`~dexar_core.zoo.card.TrainingReport`, also on the card).

    Raises:
        InputError: if the recipe is unknown or neither ``steps`` nor ``minutes`` is a
            positive number, or ``loss_per`` is not one of
            :data:`~dexar_core.zoo.batches.LOSS_WEIGHTINGS`, or ``init`` is not a
            checkpoint of this module for the same recipe and image size.
    """
    import torch

    chosen = training_recipe(model=model, adapter=adapter)
    defaults = chosen.defaults
    steps = defaults.steps if steps is None and minutes is None else steps
    batch_size = defaults.batch_size if batch_size is None else batch_size
    learning_rate = defaults.learning_rate if learning_rate is None else learning_rate
    eval_size = defaults.eval_size if eval_size is None else eval_size
    threads = defaults.threads if threads is None else threads
    image_size = defaults.image_size if image_size is None else image_size
    _check_budget(steps, minutes, batch_size, eval_size)
    if loss_per not in LOSS_WEIGHTINGS:
        raise InputError(
            f"dexar_core.zoo.train: expected loss_per to be one of {list(LOSS_WEIGHTINGS)}, "
            f"found {loss_per!r}."
        )
    say = progress or (lambda line: None)
    torch.set_num_threads(threads)
    torch.manual_seed(seed)

    options = {"image_size": image_size, **(model_options or {})}
    network, processor = chosen.build(seed, **options)
    parent = None if init is None else load_parent(init, network, chosen.name, image_size)
    first_item = (
        0 if parent is None else parent["first_item"] + parent["steps"] * parent["batch_size"]
    )
    network.to(device)
    run = TrainingRun(
        out=Path(out),
        seed=seed,
        steps=0,
        batch_size=batch_size,
        learning_rate=learning_rate,
        seconds=0.0,
        cpu_seconds=0.0,
        device=str(device),
        threads=threads,
        losses=(),
        eval_size=eval_size,
        image_size=image_size,
        model_options=options,
        loss_per=loss_per,
        first_item=first_item,
        init=None if init is None else Path(init),
        init_from=parent,
    )
    objective = chosen.objective(network, processor, run=run, image_size=image_size)
    optimizer = chosen.optimizer(network, learning_rate)
    network.train()

    total_steps = steps if minutes is None else None
    budget_s = None if minutes is None else minutes * 60.0
    losses: list[float] = []
    started, cpu_started = time.perf_counter(), time.process_time()
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
        planned = total_steps or max((warmup_steps or 50) * 4, CALIBRATION_STEPS)
        factor = chosen.learning_rate_factor(step, planned, warmup_steps)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate * factor
        loss = objective.loss(step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if chosen.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(network.parameters(), chosen.max_grad_norm)
        optimizer.step()
        losses.append(loss.item())
        step += 1
        if step % 50 == 0 or step == total_steps:
            elapsed = time.perf_counter() - started
            recent = sum(losses[-50:]) / len(losses[-50:])
            say(f"step {step}/{total_steps} loss {recent:.4f} {elapsed:.0f} s")
    network.eval()
    run = attrs.evolve(
        run,
        steps=step,
        seconds=time.perf_counter() - started,
        cpu_seconds=time.process_time() - cpu_started,
        losses=tuple(losses),
        command=command_line(
            chosen.name,
            Path(out),
            seed,
            step,
            batch_size,
            learning_rate,
            threads,
            device,
            loss_per,
            init,
            defaults=defaults,
        ),
    )
    outcome: TrainingOutcome = chosen.finish(network, processor, run)
    say(f"trained: {json.dumps(outcome.summary())}")
    return outcome


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the process exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m dexar_core.zoo.train",
        description="Train an embedded model's checkpoint on the shapes benchmark.",
    )
    chosen = parser.add_mutually_exclusive_group()
    chosen.add_argument("--model", help="embedded model to train (default: the catalog's)")
    chosen.add_argument(
        "--adapter",
        help="training recipe to run, by the name its checkpoints' dexar_training.json gives",
    )
    parser.add_argument("--out", required=True, type=Path, help="checkpoint folder to write")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, help="optimiser steps")
    parser.add_argument("--minutes", type=float, help="training time budget")
    parser.add_argument("--batch-size", type=int, help="items per step (the recipe's: 32)")
    parser.add_argument("--lr", type=float, help="peak learning rate (the recipe's: 5e-4)")
    parser.add_argument("--eval-size", type=int, help="test items scored (the recipe's: 1000)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (the recipe's: 2)")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    parser.add_argument(
        "--init", type=Path, help="continue from the weights of this checkpoint (same recipe)"
    )
    parser.add_argument(
        "--loss-per",
        default="token",
        choices=list(LOSS_WEIGHTINGS),
        help="average the loss over answer tokens (default) or over items",
    )
    args = parser.parse_args(argv)
    try:
        outcome = train(
            adapter=args.adapter,
            model=args.model,
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
    print(json.dumps(outcome.summary(), indent=2))
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
    except (AttributeError, OSError, RuntimeError, ValueError) as error:
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


if __name__ == "__main__":
    sys.exit(main())
