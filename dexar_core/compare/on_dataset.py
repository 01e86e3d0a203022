"""Cross-model comparison on a grounded dataset: a table of metrics, models x methods.

:func:`compare_on_dataset` runs :func:`dexar_core.evaluation.run.evaluate` once per
(model, method) pair on the same items and collects the summaries into a
:class:`MetricsTable`, printed as one markdown table per metric with the uniform chance
line beside. A method that cannot run on a model (``evaluate`` raises a
:class:`MethodError` or an :class:`UnsupportedModelError`, e.g. ``rollout`` on an
encoder-decoder or on a contrastive model, whose pooled similarity pass gives no whole
attention matrices) is a cell with the reason and the other pairs go on; any other
error (bad input) stops the comparison. Nothing is printed here.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from dexar_core.compare.on_image import check_model_name, file_stem, resolution_options
from dexar_core.errors import InputError, MethodError, UnsupportedModelError
from dexar_core.zoo import DEFAULT_IMAGE_SIZE, training_image_size

if TYPE_CHECKING:
    from dexar_plugins.manager import Catalog

__all__ = ["METRICS", "MetricsTable", "compare_on_dataset"]

METRICS: dict[str, tuple[tuple[str, ...], str | None]] = {
    "soft_iou": (("segmentation", "{line}", "soft_iou"), "uniform"),
    "best_iou": (("segmentation", "{line}", "best_iou"), "uniform"),
    "epg": (("segmentation", "{line}", "epg"), "uniform"),
    "pointing_game": (("grounding", "pointing_game", "{line}"), "uniform"),
    "object_iou": (("grounding", "iou", "{line}"), "uniform"),
    "delta_auroc": (("delta_auroc", "auroc"), None),
    "perturbation_positive": (("perturbation", "{line}", "positive"), "random_smooth"),
    "perturbation_negative": (("perturbation", "{line}", "negative"), "random_smooth"),
    "accuracy": (("accuracy", "all"), None),
}
"""Each reported metric: its path in ``Summary.to_dict()`` (``{line}`` is ``method`` for
the method's number, else a chance line's name) and the chance line shown beside it.
A metric the evaluation did not measure (no masks, no perturbation) shows ``n/a``."""


@attrs.frozen(kw_only=True)
class MetricsTable:
    """Every (model, method) pair's evaluation summary on one dataset.

    Attributes:
        dataset: the dataset's name.
        split: the split evaluated.
        limit: the number of items per pair (None: the whole split).
        seed: the run's seed.
        models: the model names, the rows.
        methods: the method names, the columns.
        summaries: ``{model: {method: Summary.to_dict()}}`` for the pairs that ran.
        reasons: ``{model: {method: reason}}`` for the pairs that could not run.
    """

    dataset: str
    split: str
    limit: int | None
    seed: int
    models: tuple[str, ...]
    methods: tuple[str, ...]
    summaries: Mapping[str, Mapping[str, Mapping[str, Any]]]
    reasons: Mapping[str, Mapping[str, str]]

    def value(self, model: str, method: str, metric: str, line: str = "method") -> float | None:
        """One number: ``line="method"`` for the method's, or a chance line's name.

        None when the pair could not run, the metric was not measured or is undefined.
        """
        found = self._lookup("", model, method, metric, line)
        if isinstance(found, (int, float)) and math.isfinite(found):
            return float(found)
        return None

    def interval(
        self, model: str, method: str, metric: str, line: str = "method"
    ) -> tuple[float, float] | None:
        """The 95% bootstrap interval of :meth:`value`, when the evaluation gave one."""
        found = self._lookup("confidence", model, method, metric, line)
        if (
            isinstance(found, Sequence)
            and len(found) == 2
            and all(isinstance(end, (int, float)) and math.isfinite(end) for end in found)
        ):
            return float(found[0]), float(found[1])
        return None

    def _lookup(self, section: str, model: str, method: str, metric: str, line: str) -> Any:
        found: Any = self.summaries.get(model, {}).get(method)
        path, _ = METRICS[metric]
        for key in (section, *path) if section else path:
            if not isinstance(found, Mapping):
                return None
            found = found.get(key.format(line=line))
        return found

    def to_markdown(self) -> str:
        """One markdown table per metric: models as rows, methods as columns, chance last."""
        limit = "all items" if self.limit is None else f"first {self.limit} items"
        split = f", split {self.split}" if self.split else ""
        parts = [f"{self.dataset}{split}, {limit}, seed {self.seed}"]
        for metric, (_, chance) in METRICS.items():
            chance_header = [] if chance is None else [f"{chance.replace('_', ' ')} chance"]
            headers = ["model", *self.methods, *chance_header]
            lines = [_markdown_row(headers), _markdown_row(["---"] * len(headers))]
            for model in self.models:
                cells = [self._shown(model, method, metric) for method in self.methods]
                if chance is not None:
                    cells.append(self._chance(model, metric, chance))
                lines.append(_markdown_row([model, *cells]))
            parts.append(f"**{metric}**\n\n" + "\n".join(lines))
        notes = [
            f"- {model} / {method}: not supported: {reason}"
            for model, by_method in self.reasons.items()
            for method, reason in by_method.items()
        ]
        if notes:
            parts.append("\n".join(notes))
        return "\n\n".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the run's facts, every summary and every reason."""
        return json.loads(json.dumps(attrs.asdict(self)))

    def _shown(self, model: str, method: str, metric: str, line: str = "method") -> str:
        if method in self.reasons.get(model, {}):
            return "not supported"
        value = self.value(model, method, metric, line)
        if value is None:
            return "n/a"
        interval = self.interval(model, method, metric, line)
        return f"{value:.3f}" + (
            "" if interval is None else f" [{interval[0]:.3f}, {interval[1]:.3f}]"
        )

    def _chance(self, model: str, metric: str, line: str) -> str:
        """The chance line of the model's first method that has it (same items for all)."""
        for method in self.methods:
            if self.value(model, method, metric, line) is not None:
                return self._shown(model, method, metric, line)
        return "n/a"


def compare_on_dataset(
    models: Sequence[str],
    methods: Sequence[str],
    dataset: str = "shapes",
    split: str | None = None,
    *,
    limit: int | None = None,
    metrics: Sequence[str] | None = None,
    seed: int = 0,
    max_new_tokens: int = 40,
    prompt: str | None = None,
    class_index: str | None = None,
    layers: Any = None,
    out: str | Path | None = None,
    device: str | None = None,
    dtype: Any = None,
    load_options: Mapping[str, Any] | None = None,
    catalog: Catalog | None = None,
) -> MetricsTable:
    """Evaluate every model with every method on the same items of a dataset.

    Models are loaded one at a time; each model sees the shapes benchmark at the image
    size it was trained at (:func:`~dexar_core.zoo.training_image_size`).

    Args:
        models: model names as for :func:`dexar_core.api.load`.
        methods: registered method names.
        dataset: ``shapes``, ``voc:PATH``, ``imagenet:PATH`` or ``vqa:PATH`` (see
            :func:`dexar_core.datasets.benchmark.open_benchmark`).
        split: its split (None: the dataset's default, ``test`` for shapes).
        limit: evaluate only the first ``limit`` items (the same items for every pair).
        metrics: metric families (``segmentation``, ``grounding``, ``perturbation``);
            None: ``evaluate``'s default (:func:`dexar_core.evaluation.run.check_metrics`:
            segmentation and grounding where the dataset has masks, else perturbation).
        seed: the dataset's, the chance maps' and the bootstrap's seed.
        max_new_tokens: the longest generated answer.
        prompt: the question of datasets without one (VOC, ImageNet).
        class_index: ImageNet: a class-index JSON file.
        layers: every method's ``layers`` option when given.
        out: when given, each pair's run folder is ``out/<model>/<method>/``; running
            again into it resumes every pair (see docs/evaluation.md).
        device: where to load the models.
        dtype: the models' dtype.
        load_options: further :func:`dexar_core.api.load` options (``device_map``,
            ``revision``, ``generation``, ...).
        catalog: the plugin catalog; the process-wide one by default.

    Raises:
        InputError: no model or method, an unknown model, method, dataset, split or
            metric, or a bad ``limit`` (all before any model loads).
    """
    from dexar_core.api import load
    from dexar_core.datasets.benchmark import open_benchmark
    from dexar_core.evaluation.run import check_metrics, evaluate
    from dexar_plugins.manager import default_catalog

    plugins = default_catalog() if catalog is None else catalog
    if not models or not methods:
        raise InputError("compare needs at least one model and one method.")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise InputError(f"limit must be a positive number of items, got {limit!r}.")
    for method in methods:
        plugins.method(method)
    for model in models:
        check_model_name(model, plugins, **resolution_options(load_options))

    def items(image_size: int = DEFAULT_IMAGE_SIZE) -> Any:
        return open_benchmark(
            dataset, split, seed=seed, image_size=image_size, prompt=prompt, class_index=class_index
        )

    opened = items()
    check_metrics(metrics, opened)  # bad datasets, splits and metrics fail before any load
    options = {} if layers is None else {"layers": layers}
    summaries: dict[str, dict[str, Any]] = {}
    reasons: dict[str, dict[str, str]] = {}
    for model in models:
        loaded = load(model, device=device, dtype=dtype, catalog=plugins, **(load_options or {}))
        opened = items(training_image_size(loaded, plugins))
        for method in methods:
            try:
                summary = evaluate(
                    loaded,
                    opened,
                    method=method,
                    metrics=metrics,
                    limit=limit,
                    out=None if out is None else Path(out) / file_stem(model) / method,
                    seed=seed,
                    max_new_tokens=max_new_tokens,
                    catalog=plugins,
                    **options,
                )
            except (MethodError, UnsupportedModelError) as error:
                reasons.setdefault(model, {})[method] = str(error)
            else:
                summaries.setdefault(model, {})[method] = summary.to_dict()
        del loaded  # freed before the next model loads
    return MetricsTable(
        dataset=dataset,
        split=opened.split,
        limit=limit,
        seed=seed,
        models=tuple(models),
        methods=tuple(methods),
        summaries=summaries,
        reasons=reasons,
    )


def _markdown_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"
