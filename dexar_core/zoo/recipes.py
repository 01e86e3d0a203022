"""Training recipes: what a plugin tells :mod:`dexar_core.zoo.train` about its model.

A recipe travels on the plugin's :class:`~dexar_core.values.EmbeddedModelSpec`. The one
training loop (:func:`dexar_core.zoo.train.train`) seeds, builds the recipe's untrained
model, runs the optimiser for the chosen steps or minutes with the recipe's objective,
schedule and optimiser, and hands the result back to the recipe to be scored and saved.
What differs between architectures (how a batch becomes a loss, how the checkpoint is
evaluated, written and described) is the recipe's; everything else is the loop's.

Generative models use :class:`dexar_core.zoo.generative.AnswerRecipe` (a frozen record:
builder, prompt format, image sizes); a model that learns another way (a contrastive
image-text loss, say) subclasses :class:`TrainingRecipe` itself, as a third-party plugin
would.
"""

from __future__ import annotations

import abc
import importlib
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import attrs


@attrs.frozen(kw_only=True)
class TrainingDefaults:
    """The values a training run takes when the command line does not give them.

    Attributes:
        steps: optimiser steps of the shipped checkpoint, or None when a run must say.
        batch_size: items per optimiser step.
        learning_rate: AdamW's peak learning rate.
        threads: torch CPU threads.
        eval_size: test items scored for the model card.
        image_size: the benchmark's image side in pixels.
    """

    steps: int | None = None
    batch_size: int = 32
    learning_rate: float = 5e-4
    threads: int = 2
    eval_size: int = 1000
    image_size: int = 64


@attrs.frozen(kw_only=True)
class TrainingRun:
    """What the loop did, handed to :meth:`TrainingRecipe.finish` to score and save.

    Attributes:
        out: the checkpoint folder to write.
        seed: the training seed (weights and data order).
        steps: optimiser steps taken.
        batch_size: items per step.
        learning_rate: peak learning rate.
        seconds: wall-clock training time.
        cpu_seconds: CPU time of the training process over the same steps.
        device: the torch device trained on.
        threads: torch CPU threads.
        losses: the loss of every step, in order.
        eval_size: test items to score.
        image_size: the benchmark image side.
        model_options: the builder's keyword arguments (the recipe's, overridden).
        loss_per: the loss weighting (``"token"`` or ``"item"``) for recipes that have one.
        first_item: where in the training stream the run started reading.
        init: the checkpoint the run continued from, or None.
        init_from: the training facts of that checkpoint, or None.
        command: the command line that reproduces this run.
    """

    out: Path
    seed: int
    steps: int
    batch_size: int
    learning_rate: float
    seconds: float
    cpu_seconds: float
    device: str
    threads: int
    losses: tuple[float, ...]
    eval_size: int
    image_size: int
    model_options: Mapping[str, Any]
    loss_per: str = "token"
    first_item: int = 0
    init: Path | None = None
    init_from: dict[str, Any] | None = None
    command: str = ""


class TrainingObjective(Protocol):
    """The loss of each training step, built once per run by :meth:`TrainingRecipe.objective`."""

    def loss(self, step: int) -> Any:
        """The scalar loss tensor of step ``step``'s batch, on the run's device."""


class TrainingOutcome(Protocol):
    """What :meth:`TrainingRecipe.finish` returns: at least the steps and a summary."""

    steps: int

    def summary(self) -> dict[str, Any]:
        """The few numbers ``python -m dexar_core.zoo.train`` prints as JSON."""


class TrainingRecipe(abc.ABC):
    """How to train one embedded model's checkpoint from a seed.

    Subclasses set :attr:`name`, :attr:`description` and :attr:`defaults` and implement
    :meth:`build`, :meth:`objective` and :meth:`finish`; the optimiser, its schedule and
    gradient clipping have defaults a recipe may override.
    """

    name: str
    """The name given to ``--adapter`` and written into the training facts."""
    description: str
    """One line for the model card."""
    defaults: TrainingDefaults
    """The run's values when the command line leaves them out."""
    max_grad_norm: float | None = 1.0
    """Gradients are clipped to this norm before each step; None for no clipping."""

    @abc.abstractmethod
    def build(self, seed: int, **model_options: Any) -> tuple[Any, Any]:
        """A fresh, randomly initialised ``(model, processor)`` in training mode or not.

        ``model_options`` hold ``image_size`` and override the recipe's own options.
        """

    @abc.abstractmethod
    def objective(
        self, model: Any, processor: Any, *, run: TrainingRun, image_size: int
    ) -> TrainingObjective:
        """The per-step loss of a run; ``run`` has every fact but the steps and timing."""

    @abc.abstractmethod
    def finish(self, model: Any, processor: Any, run: TrainingRun) -> TrainingOutcome:
        """Score the trained model and write its checkpoint, facts and model card."""

    def optimizer(self, model: Any, learning_rate: float) -> Any:
        """AdamW over every parameter, weight decay 0.01."""
        import torch

        return torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.01)

    def learning_rate_factor(self, step: int, total_steps: int, warmup_steps: int | None) -> float:
        """Linear warm-up (50 steps unless given), then cosine decay to a tenth."""
        warmup = 50 if warmup_steps is None else warmup_steps
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress))

    def image_sizes(self, image_size: int) -> Sequence[int | tuple[int, int]]:
        """The benchmark image sizes the recipe trains and evaluates on, ``image_size`` first."""
        return (image_size,)


def resolve(reference: str) -> Any:
    """Import ``"module:attribute"`` lazily, so a recipe costs nothing to register."""
    module_name, attribute = reference.split(":")
    return getattr(importlib.import_module(module_name), attribute)
