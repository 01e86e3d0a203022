"""The recipe of a generative model: answer the shapes benchmark's questions, token by token.

An adapter of a generative VLM puts an :class:`AnswerRecipe` on its embedded model's
spec: where its builder and prompt format live, and the few facts of its architecture
the batches need. The model learns the answer tokens and the closing end-of-sequence
token (``loss_per``: averaged over all of them, or over each item's first), and is
scored by exact match of greedy answers on the test and held-out splits.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from dexar_core.zoo.batches import item_mean_loss, training_batch
from dexar_core.zoo.recipes import TrainingDefaults, TrainingRecipe, TrainingRun, resolve

if TYPE_CHECKING:
    from dexar_core.datasets.shapes import ShapesDataset, ShapesItem


@attrs.frozen(kw_only=True)
class AnswerRecipe(TrainingRecipe):
    """How to build, prompt and batch one generative adapter's tiny model.

    Attributes:
        name: the recipe name used on the command line (``--adapter``).
        builder: ``"module:function"`` returning ``(model, processor)``; called with
            ``seed=`` and ``image_size=`` (and any ``model_options``).
        prompt_formatter: ``"module:function"`` turning a question into the full prompt.
        description: one line for the model card.
        extra_image_sizes: ``(height, width)`` sizes besides ``image_size``, for models
            with dynamic resolution: training batches cycle through all the sizes and
            the test and held-out items are spread evenly over them.
        position_ids: whether the training batch passes 1D positions that skip the left
            padding; False for models that derive their own from the attention mask
            (multimodal rotary positions).
        encoder_decoder: whether the answer is the decoder's: the prompt is the
            encoder's input, right-padded (absolute positions then match a single
            prompt), and the labels are the answer tokens alone.
        model_options: builder keyword arguments of the embedded model's architecture
            (layer counts, widths); ``train(model_options=...)`` overrides them.
        defaults: the run's values when the command line leaves them out.
    """

    name: str
    builder: str
    prompt_formatter: str
    description: str
    extra_image_sizes: tuple[tuple[int, int], ...] = ()
    position_ids: bool = True
    encoder_decoder: bool = False
    model_options: dict[str, Any] = attrs.field(factory=dict)
    defaults: TrainingDefaults = attrs.field(factory=TrainingDefaults)

    def build(self, seed: int, **model_options: Any) -> tuple[Any, Any]:
        """Build a fresh, randomly initialised ``(model, processor)``.

        ``model_options`` override the recipe's own :attr:`model_options`.
        """
        return resolve(self.builder)(seed=seed, **{**self.model_options, **model_options})

    def formatter(self) -> Callable[[str], str]:
        """Return the function turning a question into the model's prompt."""
        return resolve(self.prompt_formatter)

    def image_sizes(self, image_size: int) -> Sequence[int | tuple[int, int]]:
        """``image_size`` first, then :attr:`extra_image_sizes`."""
        return (image_size, *self.extra_image_sizes)

    def objective(
        self, model: Any, processor: Any, *, run: TrainingRun, image_size: int
    ) -> AnswerObjective:
        """Batches of benchmark questions, read on from ``run.first_item``."""
        return AnswerObjective(
            recipe=self, model=model, processor=processor, run=run, image_size=image_size
        )

    def finish(self, model: Any, processor: Any, run: TrainingRun) -> Any:
        """Answer the test and held-out splits, then write checkpoint, facts and card."""
        from dexar_core.zoo.answers import evaluate
        from dexar_core.zoo.card import TrainingReport, save_checkpoint

        format_prompt = self.formatter()
        sizes = self.image_sizes(run.image_size)
        accuracy = evaluate(model, processor, format_prompt, split("test", run.eval_size, sizes))
        heldout = evaluate(model, processor, format_prompt, split("heldout", run.eval_size, sizes))
        model.to("cpu")
        report = TrainingReport.of_run(
            run, adapter=self.name, accuracy=accuracy, heldout_accuracy=heldout
        )
        save_checkpoint(
            model, processor, report, self, eval_size=run.eval_size, image_size=run.image_size
        )
        return report


@attrs.define(kw_only=True)
class AnswerObjective:
    """The answer-token loss of each step; the training streams are opened once per run."""

    recipe: AnswerRecipe
    model: Any
    processor: Any
    run: TrainingRun
    image_size: int
    _format_prompt: Callable[[str], str] = attrs.field(init=False)
    _streams: list[ShapesDataset] = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        from dexar_core.datasets.shapes import ShapesDataset

        self._format_prompt = self.recipe.formatter()
        self._streams = [
            ShapesDataset("train", 10**9, image_size=size, seed=0)
            for size in self.recipe.image_sizes(self.image_size)
        ]

    def loss(self, step: int) -> Any:
        """The loss of step ``step``: its batch cycles through the image sizes."""
        run = self.run
        data = self._streams[step % len(self._streams)]
        start = run.seed * 1_000_003 + run.first_item + step * run.batch_size
        items = [data[(start + j) % len(data)] for j in range(run.batch_size)]
        batch = training_batch(
            self.processor,
            self._format_prompt,
            items,
            position_ids=self.recipe.position_ids,
            encoder_decoder=self.recipe.encoder_decoder,
        )
        batch = {key: value.to(run.device) for key, value in batch.items()}
        output = self.model(**batch)
        if run.loss_per == "item":
            return item_mean_loss(
                output.logits, batch["labels"], shifted=not self.recipe.encoder_decoder
            )
        return output.loss


def split(
    name: str, size: int, sizes: Sequence[int | tuple[int, int]]
) -> ShapesDataset | list[ShapesItem]:
    """The split's first ``size`` items; with several image sizes, item i has size i mod n."""
    from dexar_core.datasets.shapes import ShapesDataset

    if len(sizes) == 1:
        return ShapesDataset(name, size, image_size=sizes[0])
    datasets = [ShapesDataset(name, size, image_size=image_size) for image_size in sizes]
    return [datasets[index % len(sizes)][index] for index in range(size)]
