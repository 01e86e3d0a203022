"""The ``dexar`` command line.

Each subcommand is one ``run_<name>(args) -> int`` function plus one entry in
:data:`SUBCOMMANDS` naming its help line and its arguments. Heavy imports (torch,
transformers) belong inside the run functions so ``dexar --version`` stays fast.

Exit codes: 0 success; 1 the command ran and found something broken (e.g. a plugin
that failed to load); 2 bad usage or a ``DexarError``, printed as
``dexar: error: <message>``; 3 an unexpected exception, a bug (``--traceback`` shows it).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

import dexar_core
from dexar_core.cli.tables import format_table, print_json
from dexar_core.errors import DexarError
from dexar_plugins import (
    PluginWarning,
    adapter_overlaps,
    default_catalog,
    list_embedded_models,
    plugin_inventory,
    plugin_of_error,
)

BROKEN_STATUSES = ("failed", "conflict")
"""Inventory statuses that make ``dexar plugins`` exit 1 (an overlap is usable)."""


@attrs.frozen
class Argument:
    """One ``add_argument`` call: its flags and keyword options."""

    flags: tuple[str, ...]
    options: Mapping[str, Any]


def image_size(text: str) -> int | tuple[int, int]:
    """``--image-size``: a side (``64``) or ``HEIGHTxWIDTH`` (``80x112``), in pixels."""
    try:
        sides = [int(side) for side in text.lower().split("x")]
    except ValueError:
        sides = []
    if len(sides) not in (1, 2) or min(sides, default=0) < 1:
        raise argparse.ArgumentTypeError(
            f"expected a side like 64 or HEIGHTxWIDTH like 80x112, found {text!r}"
        )
    return sides[0] if len(sides) == 1 else (sides[0], sides[1])


def argument(*flags: str, **options: Any) -> Argument:
    """Describe a command-line argument with ``argparse.add_argument``'s parameters."""
    return Argument(flags, options)


class StoreOnce(argparse.Action):
    """A flag that takes one value: giving it twice is a usage error (exit 2).

    argparse keeps the last of ``--image a --image b`` silently, so one image would be
    explained while the user expects both.
    """

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        given: set[str] = getattr(parser, "dexar_given", set())
        if self.dest in given:
            parser.error(
                f"{option_string} is given twice ({getattr(namespace, self.dest)!r} and "
                f"{values!r}); give it once."
            )
        parser.dexar_given = given | {self.dest}  # type: ignore[attr-defined]
        setattr(namespace, self.dest, values)


@attrs.frozen(kw_only=True)
class Subcommand:
    """A subcommand: what runs, its one-line help, and its arguments."""

    run: Callable[[argparse.Namespace], int]
    help: str
    arguments: tuple[Argument, ...] = ()


TRACEBACK_HELP = "show the traceback of an unexpected error"
JSON_FLAG = argument("--json", action="store_true", help="print machine-readable JSON")
VERBOSE_FLAG = argument(
    "--verbose",
    action="store_true",
    help="show the libraries' own progress bars, logs and warnings (transformers, ...)",
)
HTML_FLAG = argument(
    "--html",
    action=argparse.BooleanOptionalAction,
    default=True,
    help="write the interactive report, one self-contained HTML file (default: yes)",
)
DRAWING_FLAGS = (
    argument(
        "--cmap",
        default="inferno",
        help="matplotlib colour map of the maps (default: inferno, a perceptual one)",
    ),
    argument(
        "--alpha",
        type=float,
        default=0.6,
        help="opacity of the map over the greyed image, 0 to 1 (default: 0.6)",
    ),
)


def run_plugins(args: argparse.Namespace) -> int:
    """List every plugin, what it registered, and every failure; 1 when one is broken."""
    if args.check:
        return run_conformance(args.check, as_json=args.json)
    with warnings.catch_warnings():
        # The listing reports failures and conflicts itself, as rows.
        warnings.simplefilter("ignore", PluginWarning)
        rows = plugin_inventory(default_catalog())
    broken = [row for row in rows if row.status in BROKEN_STATUSES]
    if args.json:
        print_json([attrs.asdict(row) for row in rows])
        return 1 if broken else 0
    print(
        format_table(
            ("NAME", "KIND", "DISTRIBUTION", "VERSION", "STATUS"),
            [(row.name, row.kind, row.distribution, row.version, row.status) for row in rows],
        )
    )
    if broken:
        print("\nProblems:")
        for row in broken:
            print(f"- {row.kind} {row.name!r} ({row.distribution} {row.version}): {row.error}")
    overlaps = adapter_overlaps(default_catalog())
    if overlaps:
        print("\nOverlaps (several adapters serve one model; the first named is chosen):")
        for overlap in overlaps:
            print(f"- {overlap.message}")
    return 1 if broken else 0


def run_conformance(adapter: str, *, as_json: bool) -> int:
    """Run the conformance suite on an installed adapter; 1 when a check fails."""
    from dexar_plugins.testing.conformance import CHECKS, installed_subject, run_checks

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PluginWarning)
        results = run_checks(installed_subject(adapter))
    failed = [result for result in results if not result.ok]
    if as_json:
        print_json([attrs.asdict(result) for result in results])
        return 1 if failed else 0
    print(
        format_table(
            ("CHECK", "STATUS", "VERIFIES"),
            [(result.check, result.status, CHECKS[result.check].summary) for result in results],
        )
    )
    details = [result for result in results if result.status != "passed"]
    if details:
        print("\nDetails:")
        for result in details:
            print(f"- {result.check} ({result.status}): {result.message}")
    verdict = "fails" if failed else "passes"
    print(f"\nadapter {adapter!r} {verdict} the conformance suite ({len(failed)} failed).")
    return 1 if failed else 0


def run_models(args: argparse.Namespace) -> int:
    """List the embedded models the installed plugins ship."""
    registrations = list_embedded_models()
    if args.json:
        print_json(
            [
                {
                    "name": reg.spec.name,
                    "adapter": reg.spec.adapter,
                    "path": str(reg.spec.path),
                    "description": reg.spec.description,
                    "distribution": reg.distribution,
                    "version": reg.version,
                }
                for reg in registrations
            ]
        )
        return 0
    if not registrations:
        print("No embedded models are installed; `dexar plugins` shows what is.")
        return 0
    print(
        format_table(
            ("NAME", "ADAPTER", "PATH", "DESCRIPTION"),
            [
                (reg.spec.name, reg.spec.adapter, str(reg.spec.path), reg.spec.description)
                for reg in registrations
            ],
        )
    )
    return 0


def run_explain(args: argparse.Namespace) -> int:
    """Explain one answer (see :mod:`dexar_core.cli.explain`)."""
    from dexar_core.cli.explain import run_explain as run

    return run(args)


def run_compare(args: argparse.Namespace) -> int:
    """Compare models and methods (see :mod:`dexar_core.cli.compare`)."""
    from dexar_core.cli.compare import run_compare as run

    return run(args)


def run_evaluate(args: argparse.Namespace) -> int:
    """Run the grounded benchmark (see :mod:`dexar_core.cli.evaluate`)."""
    from dexar_core.cli.evaluate import run_evaluate as run

    return run(args)


DTYPE_FLAG = argument(
    "--dtype",
    choices=("float32", "bfloat16", "float16", "auto"),
    help="weights' dtype (default: by device; never float16 on a CPU, see docs/models.md)",
)

LOADING_ARGUMENTS = (
    argument("--device", help="cpu, cuda, cuda:1, mps ... (default: cpu)"),
    argument(
        "--device-map",
        help="let accelerate place the model: auto, balanced, sequential or a device "
        "(instead of --device)",
    ),
    argument("--attn-implementation", help="attention kernel: sdpa, eager, flash_attention_2 ..."),
    argument(
        "--max-memory",
        metavar="DEVICE=AMOUNT,...",
        help="with --device-map: per-device limits, e.g. 0=20GiB,cpu=60GiB",
    ),
    argument("--offload-folder", help="with --device-map: where weights may be offloaded"),
    argument("--revision", help="hub branch, tag or commit of a hub id"),
    argument(
        "--quantization", choices=("4bit", "8bit"), help="load quantized (bitsandbytes, CUDA)"
    ),
    argument(
        "--trust-remote-code",
        action="store_true",
        help="run the checkpoint's own Python code (off by default)",
    ),
    argument(
        "--download",
        action="store_true",
        help="download a hub id that is not in the local cache (default: never download)",
    ),
    argument(
        "--generation",
        choices=("greedy", "checkpoint"),
        default="greedy",
        help="free-run decoding: greedy (default) or the checkpoint's generation config",
    ),
)
"""The flags of every subcommand that loads a model (see docs/models.md)."""


SUBCOMMANDS: dict[str, Subcommand] = {
    "explain": Subcommand(
        run=run_explain,
        help="explain which image regions the model used for each token of its answer",
        arguments=(
            argument(
                "--model",
                help="embedded model name, checkpoint folder or cached hub id "
                "(default: the embedded model its plugin marks as the default)",
            ),
            argument(
                "--image",
                action="append",
                help="image file (default with an embedded model: its example); one only",
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
            argument(
                "--quiet", action="store_true", help="print nothing but errors (files are written)"
            ),
            argument(
                "--json", action="store_true", help="print the summary (weights, files) as JSON"
            ),
            VERBOSE_FLAG,
        ),
    ),
    "compare": Subcommand(
        run=run_compare,
        help="explain one image with several models and methods: one figure, or a metrics "
        "table with --dataset",
        arguments=(
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
            argument(
                "--out", default="dexar-compare", help="output folder (default: dexar-compare)"
            ),
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
        ),
    ),
    "evaluate": Subcommand(
        run=run_evaluate,
        help="score methods' maps on a benchmark, with chance lines and confidence intervals",
        arguments=(
            argument(
                "--dataset",
                default="shapes",
                help="shapes, voc:PATH, imagenet:PATH or vqa:PATH (default: shapes)",
            ),
            argument(
                "--split",
                help="shapes: train, val, test (default) or heldout; voc: a split list "
                "(default: val)",
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
                help="explanation methods, comma-separated, e.g. dexar,attention,rollout "
                "(default: dexar)",
            ),
            argument(
                "--metrics",
                help="segmentation,grounding,perturbation (default: segmentation,grounding "
                "where the dataset has masks, else perturbation)",
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
        ),
    ),
    "plugins": Subcommand(
        run=run_plugins,
        help="list plugins, the adapters, methods and models they register, and failures",
        arguments=(
            JSON_FLAG,
            argument(
                "--check",
                metavar="ADAPTER",
                help="run the conformance suite on this installed adapter's tiny model",
            ),
        ),
    ),
    "models": Subcommand(
        run=run_models, help="list the embedded models usable with --model", arguments=(JSON_FLAG,)
    ),
}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one sub-parser per entry of :data:`SUBCOMMANDS`."""
    parser = argparse.ArgumentParser(
        prog="dexar", description="DEX-AR explanations for vision-language models."
    )
    parser.add_argument("--version", action="version", version=f"dexar {dexar_core.__version__}")
    parser.add_argument("--traceback", action="store_true", help=TRACEBACK_HELP)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, subcommand in SUBCOMMANDS.items():
        subparser = commands.add_parser(name, help=subcommand.help, description=subcommand.help)
        for arg in subcommand.arguments:
            options = (
                arg.options if "action" in arg.options else {**arg.options, "action": StoreOnce}
            )
            subparser.add_argument(*arg.flags, **options)
        # Also after the subcommand, where users put it; SUPPRESS keeps a leading one.
        subparser.add_argument(
            "--traceback", action="store_true", default=argparse.SUPPRESS, help=TRACEBACK_HELP
        )
        subparser.set_defaults(run=subcommand.run)
    return parser


def _print_warning(message: Warning | str, category: type[Warning], *_: Any, **__: Any) -> None:
    print(f"dexar: warning: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``dexar`` command line and return its exit code.

    Args:
        argv: the arguments after the program name; ``sys.argv[1:]`` when None.
    """
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_request:
        code = exit_request.code
        return code if isinstance(code, int) else (0 if code is None else 2)
    with warnings.catch_warnings():
        warnings.showwarning = _print_warning
        try:
            return int(args.run(args))
        except DexarError as exc:
            print(f"dexar: error: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt as interrupt:
            hint = f"; {interrupt}" if str(interrupt) else ""
            print(f"dexar: interrupted{hint}", file=sys.stderr)
            return 130
        except Exception as exc:
            if args.traceback:
                raise
            plugin = plugin_of_error(exc)
            culprit = (
                f"This is a bug in {plugin}; rerun with --traceback and report it to its authors."
                if plugin is not None
                else "This is a bug in dexar; rerun with --traceback and report it."
            )
            print(f"dexar: internal error: {type(exc).__name__}: {exc}\n{culprit}", file=sys.stderr)
            return 3
