"""The arguments of each ``dexar`` subcommand, as plain :class:`~dexar_core.cli.arguments.Argument`
data (``build_parser`` in :mod:`dexar_core.cli.main` adds them)."""

from __future__ import annotations

import argparse

from dexar_core.cli.arguments import (
    DRAWING_FLAGS,
    DTYPE_FLAG,
    HTML_FLAG,
    JSON_FLAG,
    LOADING_ARGUMENTS,
    VERBOSE_FLAG,
    argument,
    image_size,
)

EXPLAIN_ARGUMENTS = (
    argument(
        "--model",
        help="embedded model name, checkpoint folder or cached hub id "
        "(default: the embedded model its plugin marks as the default)",
    ),
    argument(
        "--image",
        action="append",
        help="image file (default with an embedded model: its example); one only (several "
        "items, each its own answer: --batch)",
    ),
    argument(
        "--batch",
        nargs="+",
        metavar="IMAGE",
        help="explain each image as an item of its own, several items through the model "
        "together (not several images in one prompt): the --prompt for all, or one --prompt "
        "per image in order; each item's files go into OUT/NNN-<image name>/",
    ),
    argument(
        "--batch-size",
        type=int,
        default=8,
        metavar="N",
        help="with --batch: items that go through the model together (default: 8; 1: one "
        "at a time); where the adapter cannot batch, they run one at a time",
    ),
    argument(
        "--frame",
        type=int,
        help="which frame of a multi-frame image (animated GIF, TIFF pages), from 0",
    ),
    argument(
        "--prompt",
        action="append",
        help="question or instruction (default: the example's); repeat it for a "
        "contrastive model to get one map per prompt",
    ),
    argument("--answer", help="explain this text instead of generating an answer"),
    argument("--method", default="dexar", help="explanation method (default: dexar)"),
    argument(
        "--example",
        action="store_true",
        help="run the embedded model's bundled example image and prompt",
    ),
    argument("--out", default="dexar-out", help="output folder (default: dexar-out)"),
    argument("--max-new-tokens", type=int, default=32, help="longest generated answer"),
    argument("--layers", help="'all', k (the last k layers) or indices like 0,3,5"),
    argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a method option, e.g. head_agg=mean or text_set=prompt_only",
    ),
    argument("--chunk-size", type=int, help="answer tokens per backward pass"),
    DTYPE_FLAG,
    *LOADING_ARGUMENTS,
    HTML_FLAG,
    *DRAWING_FLAGS,
    argument("--quiet", action="store_true", help="print nothing but errors (files are written)"),
    argument("--json", action="store_true", help="print the summary (weights, files) as JSON"),
    VERBOSE_FLAG,
)
"""The arguments of ``dexar explain``."""


COMPARE_ARGUMENTS = (
    argument(
        "--models",
        required=True,
        help="comma-separated models: embedded names, checkpoint folders, <adapter>:<spec>",
    ),
    argument(
        "--methods",
        default="dexar",
        help="comma-separated registered methods (default: dexar; `dexar plugins`)",
    ),
    argument("--image", help="image file (default: the first model's example image)"),
    argument(
        "--prompt",
        action="append",
        help="the prompt (default: the first model's example); repeat it for "
        "contrastive models only (one map per prompt); with --dataset voc: or "
        "imagenet: the items' question",
    ),
    argument(
        "--dataset",
        help="compare on a dataset instead of one image, a metrics table: shapes, "
        "voc:PATH, imagenet:PATH or vqa:PATH",
    ),
    argument("--split", help="with --dataset: its split (shapes: test by default)"),
    argument("--limit", type=int, help="with --dataset: only the first N items"),
    argument(
        "--metrics",
        help="with --dataset: segmentation,grounding,perturbation (default, as in "
        "dexar evaluate: segmentation,grounding on datasets with masks, else perturbation)",
    ),
    argument("--class-index", help="with --dataset imagenet:PATH: a class-index JSON"),
    argument("--seed", type=int, default=0, help="with --dataset: its seed (default: 0)"),
    argument("--out", default="dexar-compare", help="output folder (default: dexar-compare)"),
    argument("--max-new-tokens", type=int, default=32, help="longest generated answer"),
    argument("--layers", help="every method's layers: 'all', k (last k) or indices 0,3"),
    DTYPE_FLAG,
    *LOADING_ARGUMENTS,
    argument(
        "--html",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="write OUT/comparison.html, the models x methods grid with every "
        "explanation's report (default: yes)",
    ),
    VERBOSE_FLAG,
)
"""The arguments of ``dexar compare``."""


EVALUATE_ARGUMENTS = (
    argument(
        "--dataset",
        default="shapes",
        help="shapes, scenes, voc:PATH, imagenet:PATH or vqa:PATH (default: shapes)",
    ),
    argument(
        "--split",
        help="shapes: train, val, test (default) or heldout; scenes: val or test (default); "
        "voc: a split list (default: val)",
    ),
    argument(
        "--model",
        help="embedded model name, checkpoint folder or cached hub id "
        "(default: the embedded model its plugin marks as the default)",
    ),
    argument(
        "--methods",
        "--method",
        default="dexar",
        help="explanation methods, comma-separated, e.g. dexar,attention,rollout (default: "
        "dexar); LABEL=METHOD runs a method again under its own label, e.g. "
        "dexar,scores=dexar with --option scores.relevance=score_gradient",
    ),
    argument(
        "--metrics",
        help="segmentation,grounding,perturbation (default: segmentation,grounding "
        "where the dataset has masks, else perturbation)",
    ),
    argument(
        "--paired-with",
        metavar="LABEL",
        help="the method (or LABEL) whose paired differences against every other one "
        "are tabled and written to OUT/paired.json (default: dexar, else the first)",
    ),
    argument(
        "--answers",
        choices=("generated", "reference"),
        default="generated",
        help="explain the model's own answer (generated, default; its accuracy is "
        "reported) or the item's reference answer, teacher-forced (reference)",
    ),
    argument("--limit", type=int, help="evaluate only the first N items"),
    argument(
        "--out",
        default="dexar-eval",
        help="run folder; rerunning into it resumes the run (default: dexar-eval)",
    ),
    argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the dataset's items and of the random chance maps (default: 0)",
    ),
    argument(
        "--image-size",
        type=image_size,
        help="image side, or HEIGHTxWIDTH like 80x112 (default: the model's)",
    ),
    argument("--max-new-tokens", type=int, default=40, help="longest generated answer"),
    argument(
        "--batch-size",
        type=int,
        default=1,
        metavar="N",
        help="items explained together, through the model at once where the adapter batches "
        "(default: 1); the records are the same for every N",
    ),
    argument(
        "--pictures",
        type=int,
        default=0,
        metavar="N",
        help="save overlays of the first N items under OUT/METHOD/pictures",
    ),
    argument(
        "--option",
        action="append",
        default=[],
        metavar="[METHOD.]KEY=VALUE",
        help="a method option for every method, e.g. layers=4, or for one, e.g. "
        "dexar.head_agg=mean",
    ),
    argument(
        "--replacement",
        choices=("mean", "blur"),
        default="mean",
        help="how perturbation removes patches (default: the normalisation mean)",
    ),
    argument("--prompt", help="the question of voc and imagenet items"),
    argument("--class-index", help="imagenet: a class-index JSON file"),
    argument(
        "--resamples",
        type=int,
        default=1000,
        help="bootstrap resamples of the 95%% intervals (default: 1000)",
    ),
    DTYPE_FLAG,
    *LOADING_ARGUMENTS,
    JSON_FLAG,
    VERBOSE_FLAG,
)
"""The arguments of ``dexar evaluate``."""


PLUGINS_ARGUMENTS = (
    JSON_FLAG,
    argument(
        "--check",
        metavar="ADAPTER",
        help="run the conformance suite on this installed adapter's tiny model",
    ),
)
"""The arguments of ``dexar plugins``."""
