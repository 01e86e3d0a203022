"""``dexar explain``: explain one answer, print token weights, write pictures and arrays."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dexar_core.errors import InputError

if TYPE_CHECKING:
    from dexar_core.explanation import Explanation

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
    from dexar_core.cli.loading import load_options
    from dexar_core.compare.on_image import is_contrastive
    from dexar_core.images import load_image
    from dexar_core.viz.overlay import overlay, save_png, token_strip
    from dexar_plugins import default_catalog

    model_name = args.model or DEFAULT_MODEL
    image, prompts = args.image, list(args.prompt or [])
    if args.example or image is None or not prompts:
        catalog = default_catalog()
        if model_name not in catalog.embedded_models:
            raise InputError(
                "--image and --prompt are required for a model that is not embedded; "
                "`dexar models` lists the embedded ones, which ship an example."
            )
        spec = catalog.embedded_model(model_name)
        image = image or spec.example_image
        prompts = prompts or [spec.example_prompt]
    options = dict(parse_option(text) for text in args.option)
    if args.layers is not None:
        options["layers"] = parse_option(f"layers={args.layers}")[1]

    start = time.perf_counter()
    _progress(f"dexar: loading {model_name} ...")
    loaded = load(model_name, device=args.device, dtype=args.dtype, **load_options(args))
    contrastive = is_contrastive(loaded)
    if not contrastive and len(prompts) > 1:
        raise InputError(
            f"{model_name!r} is a generative model: it answers one prompt, got {len(prompts)} "
            "--prompt values. Give one --prompt (several, one map each, apply to contrastive "
            "models such as shapes-clip or open_clip:...)."
        )
    _progress(f"dexar: loaded in {time.perf_counter() - start:.1f} s; explaining ...")
    explanation = explain(
        loaded,
        image,
        prompts if contrastive else prompts[0],
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
    if contrastive:
        print(similarity_report(explanation))
        names = ("combined", "prompts")
        weights = explanation.metadata["similarities"]
    else:
        print(answer_report(explanation))
        names = ("sequence", "tokens")
        weights = list(explanation.token_weights)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    images = [load_image(item) for item in (image if isinstance(image, list) else [image])]
    for index, grid in enumerate(explanation.grids):
        suffix = "" if len(explanation.grids) == 1 else f"_{index}"
        picture = images[grid.image_index]
        token_maps, sequence_map = explanation.upsample(index)
        save_png(overlay(picture, sequence_map), out / f"{names[0]}{suffix}.png")
        save_png(
            token_strip(picture, token_maps, list(explanation.tokens), weights),
            out / f"{names[1]}{suffix}.png",
        )
    sidecar = explanation.save(out / "explanation")
    print(
        f"wrote {out}/{names[0]}*.png, {out}/{names[1]}*.png, {sidecar.with_suffix('.npz')}, "
        f"{sidecar}"
    )
    return 0


def answer_report(explanation: Explanation) -> str:
    """A generative model's prompt, answer and each answer token's weight (delta)."""
    lines = [
        f"prompt: {explanation.prompt}",
        f"answer: {explanation.answer}",
        "token weights (delta):",
        *(
            f"  {token!r:>16}  {weight:.4g}"
            for token, weight in zip(explanation.tokens, explanation.token_weights)
        ),
    ]
    if explanation.sequence_fallback:
        lines.append("every token weight is 0: the sequence map weighs every token by 1.")
    return "\n".join(lines)


def similarity_report(explanation: Explanation) -> str:
    """A contrastive model's prompts, each with its image-text similarity.

    When the method weighs the prompts in the combined map (DEX-AR), the weights are
    shown too; the method's own prompt weights are not a similarity.
    """
    from dexar_core.cli.tables import format_table

    similarities = [float(value) for value in explanation.metadata["similarities"]]
    weights = [float(value) for value in explanation.token_weights]
    weighted = not np.allclose(weights, similarities)
    headers = ("prompt", "similarity", *(("combined-map weight",) if weighted else ()))
    rows = [
        (repr(prompt), f"{similarity:.4f}", *((f"{weight:.4g}",) if weighted else ()))
        for prompt, similarity, weight in zip(explanation.tokens, similarities, weights)
    ]
    lines = [
        f"image-text similarity (cosine) of {explanation.model_id}, method {explanation.method}:",
        *("  " + line for line in format_table(headers, rows).splitlines()),
    ]
    if weighted and explanation.sequence_fallback:
        lines.append("every prompt weight is 0: the combined map weighs every prompt by 1.")
    return "\n".join(lines)
