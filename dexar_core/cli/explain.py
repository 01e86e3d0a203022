"""``dexar explain``: explain one answer (or a batch of items), print token weights, write
pictures and arrays."""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dexar_core.cli.key_values import parse_option, parse_options
from dexar_core.errors import InputError
from dexar_core.interfaces import PROMPTS
from dexar_core.viz.wording import fallback_note, units_of, weight_meaning, weight_name

if TYPE_CHECKING:
    from dexar_core.explanation import Explanation


def default_model() -> str:
    """The name of the embedded model whose plugin marks it as the default.

    Raises:
        InputError: no installed embedded model is marked as the default.
        PluginConflictError: several are.
    """
    from dexar_plugins import default_catalog

    return default_catalog().default_embedded_model().name


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _silent(message: str) -> None:
    """``--quiet``: the progress lines are dropped."""


def run_explain(args: argparse.Namespace) -> int:
    """Load the model, explain the answer, print it, and write the outputs."""
    from dexar_core.api import explain, load
    from dexar_core.cli.loading import load_options
    from dexar_core.cli.progress import quiet_third_party, stage
    from dexar_core.compare.on_image import example_inputs, is_contrastive
    from dexar_core.explaining import check_batch_size
    from dexar_core.images import load_image
    from dexar_core.validation import (
        check_answer_text,
        check_device,
        check_max_new_tokens,
        check_method_options,
        check_output_folder,
        check_prompt_text,
    )

    model_name = args.model or default_model()
    images, prompts = list(args.image or []), list(args.prompt or [])
    if len(images) > 1:
        raise InputError(
            f"dexar explain takes one --image, got {len(images)} ({', '.join(images)}); "
            "to explain each image as an item of its own give them to --batch; several "
            "images in one prompt: explain(loaded, [a, b], prompt) from Python."
        )
    if args.batch is not None:
        if images or args.example or args.frame is not None:
            raise InputError(
                "--batch gives the items' images; leave out --image, --example and --frame."
            )
        check_batch_size(args.batch_size, flag="--batch-size")
    image = images[0] if images else None
    if args.batch is not None:
        for path in args.batch:
            load_image(path)  # an unreadable image fails before the model loads
        if not prompts:
            prompts = [example_inputs(model_name)[1]]
    elif args.example or image is None or not prompts:
        example_image, example_prompt = example_inputs(model_name)
        image = image or example_image
        prompts = prompts or [example_prompt]
    options = parse_options(args.option)
    if args.layers is not None:
        if "layers" in options:
            raise InputError(
                f"--layers {args.layers} and --option layers={options['layers']} conflict; "
                "give the layers once."
            )
        options["layers"] = parse_option(f"layers={args.layers}")[1]
    for prompt in prompts:
        check_prompt_text(prompt, flag="--prompt")
    check_answer_text(args.answer, flag="--answer")
    if args.answer is None:  # a given answer is not generated: no length limit applies
        check_max_new_tokens(args.max_new_tokens)
    if args.chunk_size is not None and args.chunk_size < 1:
        raise InputError(f"--chunk-size must be at least 1, got {args.chunk_size}.")
    check_method_options(args.method, options)
    check_output_folder(args.out)
    check_device(args.device)
    if args.frame is not None and image is not None:
        image = load_image(image, frame=args.frame)
    elif image is not None:
        load_image(image)  # an unreadable image fails before the model loads

    quiet_third_party(args.verbose)
    say = _progress if not args.quiet else _silent
    start = time.perf_counter()
    say(f"dexar: loading {model_name} ...")
    with stage(f"dexar: loading {model_name}", quiet=args.quiet):
        loaded = load(model_name, device=args.device, dtype=args.dtype, **load_options(args))
    contrastive = is_contrastive(loaded)
    if args.batch is not None:
        return _explain_batch(loaded, args, prompts, options, say)
    if not contrastive and len(prompts) > 1:
        raise InputError(
            f"{model_name!r} is a generative model: it answers one prompt, got {len(prompts)} "
            "--prompt values. Give one --prompt (several, one map each, apply to contrastive "
            "models, which score an image against captions)."
        )
    doing = (
        "explaining the prompts"
        if contrastive
        else (
            "explaining the given answer"
            if args.answer
            else "generating the answer and explaining it"
        )
    )
    say(f"dexar: loaded in {time.perf_counter() - start:.1f} s; {doing} ...")
    with stage(f"dexar: {doing}", quiet=args.quiet):
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
    say(
        "dexar: "
        + ", ".join(f"{step} {seconds:.2f} s" for step, seconds in explanation.timings.items())
    )
    images = [load_image(item) for item in (image if isinstance(image, list) else [image])]
    with stage("dexar: drawing the figures", quiet=args.quiet):
        written = write_outputs(explanation, images, Path(args.out), args)
    if args.json:
        print(json.dumps(summary_record(explanation, written), indent=2))
    elif not args.quiet:
        print(report_of(explanation))
        print("wrote " + ", ".join(str(path) for path in written))
    return 0


def _explain_batch(
    loaded: Any, args: argparse.Namespace, prompts: list[str], options: dict[str, Any], say: Any
) -> int:
    """``--batch``: each image an item of its own, ``--batch-size`` of them at a time;
    each item's files into ``OUT/NNN-<image name>/``."""
    from dexar_core.api import explain_batch
    from dexar_core.cli.progress import stage
    from dexar_core.compare.on_image import is_contrastive
    from dexar_core.images import load_image

    paths = list(args.batch)
    contrastive = is_contrastive(loaded)
    if not contrastive and len(prompts) not in (1, len(paths)):
        raise InputError(
            f"--batch has {len(paths)} images but {len(prompts)} --prompt values; give "
            "one --prompt for every image, or one per image in order."
        )
    item_prompts: list[Any] = (
        [prompts] * len(paths)
        if contrastive
        else (prompts * len(paths) if len(prompts) == 1 else prompts)
    )
    items = [(path, prompt, args.answer) for path, prompt in zip(paths, item_prompts)]
    together = "together" if loaded.adapter.batches else "one at a time (no batching)"
    say(f"dexar: explaining {len(items)} items, {args.batch_size} at a time, {together} ...")
    with stage(f"dexar: explaining {len(items)} items", quiet=args.quiet):
        explanations = explain_batch(
            loaded,
            items,
            method=args.method,
            max_new_tokens=args.max_new_tokens,
            chunk_size=args.chunk_size,
            batch_size=args.batch_size,
            **options,
        )
    records = []
    with stage("dexar: drawing the figures", quiet=args.quiet):
        for index, (path, explanation) in enumerate(zip(paths, explanations)):
            folder = Path(args.out) / f"{index:03d}-{Path(path).stem}"
            written = write_outputs(explanation, [load_image(path)], folder, args)
            records.append({"image": path, **summary_record(explanation, written)})
    if args.json:
        print(json.dumps({"items": records}, indent=2))
    elif not args.quiet:
        for path, explanation, record in zip(paths, explanations, records):
            print(f"image: {path}\n{report_of(explanation)}")
            print("wrote " + ", ".join(record["files"]))
    return 0


def write_outputs(
    explanation: Explanation, images: list[Any], out: Path, args: argparse.Namespace
) -> list[Path]:
    """Write one explanation's figures, report and arrays into ``out``; the files written."""
    from dexar_core.viz.comparison import save_figure
    from dexar_core.viz.figures import sequence_figure, tokens_figure
    from dexar_core.viz.report import explanation_html, write_html

    contrastive = explanation.units == PROMPTS
    names = ("combined", "prompts") if contrastive else ("sequence", "tokens")
    out.mkdir(parents=True, exist_ok=True)
    drawing = {"alpha": args.alpha, "cmap": args.cmap}
    written: list[Path] = []
    for index, grid in enumerate(explanation.grids):
        suffix = "" if len(explanation.grids) == 1 else f"_{index}"
        picture = images[grid.image_index]
        for name, draw in zip(names, (sequence_figure, tokens_figure)):
            figure = draw(explanation, picture, grid=index, **drawing)
            written.append(save_figure(figure, out / f"{name}{suffix}.png"))
    if args.html:
        report = explanation_html(explanation, images[0], **drawing)
        written.append(write_html(report, out / "report.html"))
    sidecar = explanation.save(out / "explanation")
    written += [sidecar.with_suffix(".npz"), sidecar]
    return written


def report_of(explanation: Explanation) -> str:
    """The printed summary: the prompts' similarities, or the answer's token weights."""
    if explanation.units == PROMPTS:
        return prompt_report(explanation)
    return answer_report(explanation)


def summary_record(explanation: Explanation, written: list[Path]) -> dict[str, Any]:
    """What ``--json`` prints: the summary's facts and the files written."""
    units = units_of(explanation)
    return {
        "model": explanation.model_id,
        "method": explanation.method,
        "prompt": explanation.prompt,
        "answer": explanation.answer,
        "units": units.many,
        "tokens": list(explanation.tokens),
        "token_weights": [float(weight) for weight in explanation.token_weights],
        "weight": weight_name(explanation),
        "weight_meaning": weight_meaning(explanation),
        "sequence_fallback": explanation.sequence_fallback,
        **(
            {"similarities": [float(v) for v in explanation.metadata["similarities"]]}
            if "similarities" in explanation.metadata
            else {}
        ),
        "timings": dict(explanation.timings),
        "files": [str(path) for path in written],
    }


def answer_report(explanation: Explanation) -> str:
    """A generative model's prompt, answer and each answer token's weight (delta)."""
    lines = [
        f"prompt: {explanation.prompt}",
        f"answer: {explanation.answer}",
        f"{weight_name(explanation)}:",
        *(
            f"  {token!r:>16}  {weight:.4g}"
            for token, weight in zip(explanation.tokens, explanation.token_weights)
        ),
        textwrap.fill(weight_meaning(explanation), 88),
    ]
    note = fallback_note(explanation)
    if note:
        lines.append(note)
    return "\n".join(lines)


def prompt_report(explanation: Explanation) -> str:
    """A contrastive model's prompts (its units), each with its image-text similarity.

    When the method weighs the prompts in the combined map (DEX-AR's delta per prompt),
    the weights are shown too, beside the similarity and never in its place.
    """
    from dexar_core.cli.tables import format_table

    similarities = [float(value) for value in explanation.metadata["similarities"]]
    weights = [float(value) for value in explanation.token_weights]
    weighted = not np.all(explanation.token_weights == 1)  # all 1: the method weighs none
    headers = ("prompt", "similarity", *(("combined-map weight",) if weighted else ()))
    rows = [
        (repr(prompt), f"{similarity:.4f}", *((f"{weight:.4g}",) if weighted else ()))
        for prompt, similarity, weight in zip(explanation.tokens, similarities, weights)
    ]
    lines = [
        f"image-text similarity (cosine) of {explanation.model_id}, method {explanation.method}:",
        *("  " + line for line in format_table(headers, rows).splitlines()),
    ]
    if weighted:
        lines.append(textwrap.fill(weight_meaning(explanation), 88))
    note = fallback_note(explanation)
    if weighted and note:
        lines.append(note)
    return "\n".join(lines)
