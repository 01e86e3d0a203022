"""What the subcommands' arguments are made of: the flag record, the flags several share.

Each subcommand's arguments are plain data (:class:`Argument` records, listed in
:mod:`dexar_core.cli.subcommand_arguments`); :func:`dexar_core.cli.main.build_parser`
turns them into ``add_argument`` calls, with :class:`StoreOnce` for every flag that takes
one value.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

import attrs


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
    argument(
        "--adapter-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an option of the model's adapter itself, e.g. through_encoder=rollout for an "
        "encoder-decoder (docs/models.md, 'Adapter options')",
    ),
)
"""The flags of every subcommand that loads a model (see docs/models.md)."""
