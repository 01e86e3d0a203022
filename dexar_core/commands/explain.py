"""``dexar explain``: explain one answer, print token weights, write pictures and arrays."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from dexar_core.errors import InputError

DEFAULT_MODEL = "shapes-llava"


def parse_option(text: str) -> tuple[str, Any]:
    """``key=value`` with the value read as an int, float, bool, list or string."""
    if "=" not in text:
        raise InputError(f"--option expects key=value, got {text!r}.")
    key, raw = text.split("=", 1)
    value: Any
    if raw.lower() in ("true", "false"):
        value = raw.lower() == "true"
    elif "," in raw:
        value = [parse_option(f"x={item}")[1] for item in raw.split(",") if item]
    else:
        try:
            value = int(raw)
        except ValueError:
            try:
                value = float(raw)
            except ValueError:
                value = raw
    return key.strip().replace("-", "_"), value


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_explain(args: argparse.Namespace) -> int:
    """Load the model, explain the answer, print it, and write the outputs."""
    from dexar_core.api import explain, load
    from dexar_core.images import load_image
    from dexar_core.viz.overlay import overlay, save_png, token_strip
    from dexar_plugins import default_catalog

    model_name = args.model or DEFAULT_MODEL
    image, prompt = args.image, args.prompt
    if args.example or image is None or prompt is None:
        catalog = default_catalog()
        if model_name not in catalog.embedded_models:
            raise InputError(
                "--image and --prompt are required for a model that is not embedded; "
                "`dexar models` lists the embedded ones, which ship an example."
            )
        spec = catalog.embedded_model(model_name)
        image = image or spec.example_image
        prompt = prompt if prompt is not None else spec.example_prompt
    options = dict(parse_option(text) for text in args.option)
    if args.layers is not None:
        options["layers"] = parse_option(f"layers={args.layers}")[1]

    start = time.perf_counter()
    _progress(f"dexar: loading {model_name} ...")
    loaded = load(model_name, device=args.device, dtype=args.dtype)
    _progress(f"dexar: loaded in {time.perf_counter() - start:.1f} s; explaining ...")
    explanation = explain(
        loaded,
        image,
        prompt,
        answer=args.answer,
        method=args.method,
        max_new_tokens=args.max_new_tokens,
        chunk_size=args.chunk_size,
        **options,
    )
    _progress(
        "dexar: "
        + ", ".join(f"{stage} {seconds:.2f} s" for stage, seconds in explanation.timings.items())
    )
    print(f"prompt: {explanation.prompt}")
    print(f"answer: {explanation.answer}")
    print("token weights (delta):")
    for token, weight in zip(explanation.tokens, explanation.token_weights):
        print(f"  {token!r:>16}  {weight:.4g}")
    if explanation.sequence_fallback:
        print("every token weight is 0: the sequence map weighs every token by 1.")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    images = [load_image(item) for item in (image if isinstance(image, list) else [image])]
    for index, grid in enumerate(explanation.grids):
        suffix = "" if len(explanation.grids) == 1 else f"_{index}"
        picture = images[grid.image_index]
        token_maps, sequence_map = explanation.upsample(index)
        save_png(overlay(picture, sequence_map), out / f"sequence{suffix}.png")
        save_png(
            token_strip(
                picture, token_maps, list(explanation.tokens), list(explanation.token_weights)
            ),
            out / f"tokens{suffix}.png",
        )
    sidecar = explanation.save(out / "explanation")
    print(f"wrote {out}/sequence*.png, {out}/tokens*.png, {sidecar.with_suffix('.npz')}, {sidecar}")
    return 0
