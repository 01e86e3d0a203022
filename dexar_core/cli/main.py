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
from collections.abc import Callable, Sequence
from typing import Any

import attrs

import dexar_core
from dexar_core.cli.arguments import (
    JSON_FLAG,
    TRACEBACK_HELP,
    Argument,
    StoreOnce,
)
from dexar_core.cli.subcommand_arguments import (
    COMPARE_ARGUMENTS,
    EVALUATE_ARGUMENTS,
    EXPLAIN_ARGUMENTS,
    PLUGINS_ARGUMENTS,
)
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


@attrs.frozen(kw_only=True)
class Subcommand:
    """A subcommand: what runs, its one-line help, and its arguments."""

    run: Callable[[argparse.Namespace], int]
    help: str
    arguments: tuple[Argument, ...] = ()


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
            ("NAME", "KIND", "DISTRIBUTION", "VERSION", "STATUS", "SERVES"),
            [
                (
                    row.name,
                    row.kind,
                    row.distribution,
                    row.version,
                    row.status,
                    ",".join(row.serves),
                )
                for row in rows
            ],
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


SUBCOMMANDS: dict[str, Subcommand] = {
    "explain": Subcommand(
        run=run_explain,
        help="explain which image regions the model used for each token of its answer",
        arguments=EXPLAIN_ARGUMENTS,
    ),
    "compare": Subcommand(
        run=run_compare,
        help="explain one image with several models and methods: one figure, or a metrics "
        "table with --dataset",
        arguments=COMPARE_ARGUMENTS,
    ),
    "evaluate": Subcommand(
        run=run_evaluate,
        help="score methods' maps on a benchmark, with chance lines and confidence intervals",
        arguments=EVALUATE_ARGUMENTS,
    ),
    "plugins": Subcommand(
        run=run_plugins,
        help="list plugins, the adapters, methods and models they register, and failures",
        arguments=PLUGINS_ARGUMENTS,
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
