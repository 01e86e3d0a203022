"""The loading flags every model-loading subcommand shares, turned into ``load()`` options."""

from __future__ import annotations

import argparse
from typing import Any

from dexar_core.cli.key_values import parse_options
from dexar_core.hf.load_options import parse_max_memory


def load_options(args: argparse.Namespace) -> dict[str, Any]:
    """``dexar_core.load`` keyword arguments from the parsed loading flags.

    ``--device`` and ``--dtype`` are left to the caller (``dexar evaluate`` chooses the
    device per process).
    """
    options: dict[str, Any] = {
        "device_map": args.device_map,
        "attn_implementation": args.attn_implementation,
        "offload_folder": args.offload_folder,
        "revision": args.revision,
        "quantization": args.quantization,
        "trust_remote_code": args.trust_remote_code,
        "download": args.download,
        "generation": args.generation,
    }
    if args.max_memory is not None:
        options["max_memory"] = parse_max_memory(args.max_memory)
    if args.adapter_option:
        options["adapter_options"] = parse_options(args.adapter_option, "--adapter-option")
    return options
