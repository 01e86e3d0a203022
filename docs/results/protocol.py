"""The faithfulness protocol of docs/results.md: choose on validation, report on held-out sets.

Usage::

    python docs/results/protocol.py select OUT [--limit 100]
    python docs/results/protocol.py report OUT --preset LABEL [--limit 150]
    python docs/results/protocol.py perturb OUT --preset LABEL [--limit 25]

Every run is one ``dexar evaluate`` command per model and split (printed before it
runs), teacher-forced on the reference answer (``--answers reference``) so every method
maps the same, correct words, with segmentation and grounding on the first ``--limit``
items, seed 0, 1000 bootstrap resamples.

``select`` runs the candidate option sets of :data:`CANDIDATES` and every baseline on
the two validation splits (``shapes`` val and ``scenes`` val), on ``shapes-llava`` and
``shapes-qwen2vl``, into ``OUT/select/MODEL/DATASET``. It prints, per candidate, the
item-3 targets of issue 21 it meets on each model and split (:func:`targets_met`), and
picks the candidate meeting the most of them over the four (model, split) pairs, the
mean per-token pointing breaking ties and then the mean share of items whose every
delta is 0 (there the sequence map falls back to equal token weights); the choice is written to
``OUT/select/choice.json``. Nothing of the test splits is read.

``report`` runs the chosen candidate (``--preset``, a label of :data:`CANDIDATES`), the
paper's default, the chosen candidate's two ablations (no head weights, no token
weights) and every baseline on the held-out splits (``shapes`` test and ``scenes``
test) into ``OUT/report/MODEL/DATASET``, with the paired differences of the chosen
candidate against every other method (``OUT/report/MODEL/DATASET/paired.json``).
``perturb`` runs the perturbation test (40 teacher-forced forwards per item and method,
hence the smaller ``--limit``) on ``shapes`` test for the chosen candidate, the paper's
default and the baselines of :data:`PERTURBATION_BASELINES`, into
``OUT/perturb/MODEL``: the mean log-ratio areas and the paired win rates against a random
smooth map of the same item.
``python docs/results/protocol.py tables OUT`` prints every stage's tables again from
the run folders without running anything.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

MODELS = ("shapes-llava", "shapes-qwen2vl")
VALIDATION = (("shapes", "val"), ("scenes", "val"))
HELD_OUT = (("shapes", "test"), ("scenes", "test"))
BASELINES = ("attention", "attn_grad", "gae", "rollout", "legrad", "tam")
PERTURBATION_BASELINES = ("attention", "attn_grad", "gae", "rollout")
"""The baselines of the perturbation stage: in docs/results.md's older perturbation tables
every model's best baseline is one of these four; legrad and tam were never above all of
them."""

CANDIDATES: dict[str, dict[str, str]] = {
    "dexar": {},
    "aw": {"token_score": "attention_weighted"},
    "share": {"token_score": "visual_share"},
    "mean": {"head_agg": "mean"},
    "mean_share": {"head_agg": "mean", "token_score": "visual_share"},
}
for _short, _relevance in (("weighted", "weighted_gradient"), ("score", "score_gradient")):
    CANDIDATES[_short] = {"relevance": _relevance}
    CANDIDATES[f"{_short}_share"] = {"relevance": _relevance, "token_score": "visual_share"}
    CANDIDATES[f"{_short}_mean"] = {"relevance": _relevance, "head_agg": "mean"}
    CANDIDATES[f"{_short}_mean_share"] = {
        "relevance": _relevance,
        "head_agg": "mean",
        "token_score": "visual_share",
    }
for _short in ("weighted", "score"):  # a second round, after the first round's best IoU fell
    for _label in (_short, f"{_short}_share"):
        CANDIDATES[f"{_label}_norm"] = {**CANDIDATES[_label], "normalize_tokens": "true"}
    CANDIDATES[f"{_short}_prompt"] = {**CANDIDATES[_short], "text_set": "prompt_only"}
"""The ``dexar`` option sets compared on validation, by label; ``dexar`` is the paper's."""

TARGETS = ("pointing", "wrong_peak", "inverted", "delta_auroc", "best_iou")
"""Item 3's targets that need no perturbation run (perturbation costs 40 forwards per
item, so it is measured on the held-out sets only, for the chosen candidate)."""


def evaluate_command(
    out: Path,
    model: str,
    dataset: str,
    split: str,
    labels: dict[str, str],
    options: list[str],
    limit: int,
    paired_with: str,
) -> list[str]:
    """The ``dexar evaluate`` command of one model and split."""
    methods = ",".join(
        label if label == method else f"{label}={method}" for label, method in labels.items()
    )
    command = [
        sys.executable,
        "-m",
        "dexar_core",
        "evaluate",
        "--model",
        model,
        "--dataset",
        dataset,
        "--split",
        split,
        "--limit",
        str(limit),
        "--answers",
        "reference",
        "--methods",
        methods,
        "--paired-with",
        paired_with,
        "--out",
        str(out),
        "--seed",
        "0",
    ]
    for option in options:
        command += ["--option", option]
    return command


def candidate_runs(labels: list[str]) -> tuple[dict[str, str], list[str]]:
    """``--methods`` labels and ``--option`` values for the given candidates."""
    methods = {label: "dexar" for label in labels}
    options = [
        f"{label}.{key}={value}" for label in labels for key, value in CANDIDATES[label].items()
    ]
    return methods, options


def run(command: list[str]) -> None:
    """Print and run one command; its failure stops the protocol."""
    print(
        "$",
        shlex.join(command[2:] if command[0] == sys.executable else command),
        file=sys.stderr,
        flush=True,
    )
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)


def read(folder: Path) -> dict[str, Any]:
    """A run folder's summaries by label."""
    return json.loads((folder / "summary.json").read_text())


PATHS = {
    "pointing": ("grounding", "pointing_game", "method"),
    "wrong_peak": ("grounding", "wrong_object_peak", "method"),
    "inverted": ("grounding", "inverted", "method"),
    "delta_auroc": ("delta_auroc", "auroc"),
    "all_zero": ("delta_auroc", "all_zero_share"),
    "best_iou": ("segmentation", "method", "best_iou"),
    "log_ratio_positive": ("perturbation_log_ratio", "method", "positive"),
    "log_ratio_negative": ("perturbation_log_ratio", "method", "negative"),
    "wins_positive": ("perturbation_win_rate", "log_ratio", "random_smooth", "positive"),
    "wins_negative": ("perturbation_win_rate", "log_ratio", "random_smooth", "negative"),
    "auc_wins_positive": ("perturbation_win_rate", "auc", "random_smooth", "positive"),
}
"""Where each protocol number sits in a summary (and in a paired difference)."""


def _at(node: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        node = node.get(key) if isinstance(node, dict) else None
    return node


def value(summary: dict[str, Any], name: str) -> float:
    """One protocol number of a summary (NaN where it is undefined)."""
    node = _at(summary, PATHS[name])
    return math.nan if node is None else float(node)


def interval(summary: dict[str, Any], name: str) -> tuple[float, float]:
    """The 95% interval of :func:`value`'s number, from the summary's ``confidence``."""
    node = _at(summary.get("confidence", {}), PATHS[name])
    if not isinstance(node, list) or None in node:
        return math.nan, math.nan
    return float(node[0]), float(node[1])


def cell(summary: dict[str, Any], name: str, signed: bool = False) -> str:
    """``number [low, high]``, or n/a."""
    number = value(summary, name)
    if math.isnan(number):
        return "n/a"
    low, high = interval(summary, name)
    sign = "+" if signed else ""
    return f"{number:{sign}.3f} [{low:{sign}.2f}, {high:{sign}.2f}]"


def targets_met(summaries: dict[str, Any], label: str) -> dict[str, bool]:
    """Which of :data:`TARGETS` the candidate ``label`` meets in one run folder's summaries.

    Pointing at least gae's, wrong-object peak at most 0.08, inverted maps at most 3%,
    delta AUROC at least 0.75, sequence best IoU at least the paper default's.
    """
    mine = summaries[label]
    return {
        "pointing": value(mine, "pointing") >= value(summaries["gae"], "pointing"),
        "wrong_peak": value(mine, "wrong_peak") <= 0.08,
        "inverted": value(mine, "inverted") <= 0.03,
        "delta_auroc": value(mine, "delta_auroc") >= 0.75,
        "best_iou": value(mine, "best_iou") >= value(summaries["dexar"], "best_iou"),
    }


COLUMNS = ("pointing", "wrong_peak", "inverted", "delta_auroc", "all_zero", "best_iou")
PERTURBATION_COLUMNS = (
    "log_ratio_positive",
    "log_ratio_negative",
    "wins_positive",
    "wins_negative",
    "auc_wins_positive",
)


def table(
    summaries: dict[str, Any],
    labels: list[str],
    *,
    targets: bool,
    columns: tuple[str, ...] = COLUMNS,
) -> str:
    """A markdown table: one row per label, each number with its 95% interval."""
    head = ["method", *columns] + (["targets met"] if targets else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label in labels:
        if not isinstance(summaries.get(label), dict):
            lines.append(f"| {label} | " + " | ".join(["not supported"] * (len(head) - 1)) + " |")
            continue
        cells = [label, *(cell(summaries[label], name) for name in columns)]
        if targets and label in CANDIDATES:
            met = targets_met(summaries, label)
            cells.append(
                f"{sum(met.values())}/5 " + "".join("+" if ok else "-" for ok in met.values())
            )
        elif targets:
            cells.append("")
        lines.append("| " + " | ".join(cells) + " |")
    if columns == PERTURBATION_COLUMNS:  # the win rates are against chance; 0.5 is a tie
        return "\n".join(lines)
    chance = summaries["dexar"]
    cells = ["chance (random smooth)"]
    for name in columns:
        number = _chance(chance, name)
        cells.append("n/a" if math.isnan(number) else f"{number:.3f}")
    lines.append("| " + " | ".join(cells + ([""] if targets else [])) + " |")
    return "\n".join(lines)


def _chance(summary: dict[str, Any], name: str) -> float:
    """The random smooth map's number: the column's path with ``random_smooth`` where it
    has ``method``; 0.5 for the AUROC, none for the all-zero share."""
    if name == "delta_auroc":
        return 0.5
    if "method" not in PATHS[name]:
        return math.nan
    node = _at(summary, tuple("random_smooth" if key == "method" else key for key in PATHS[name]))
    return math.nan if node is None else float(node)


def select(out: Path, limit: int, execute: bool = True) -> str:
    """Run (unless ``execute`` is False) and print the validation stage; return the choice."""
    labels = list(CANDIDATES)
    methods, options = candidate_runs(labels)
    methods.update({name: name for name in BASELINES})
    score: dict[str, list[float]] = {label: [0, 0.0, 0.0] for label in labels}
    for model in MODELS:
        for dataset, split in VALIDATION:
            folder = out / "select" / model / dataset
            if execute:
                run(
                    evaluate_command(
                        folder, model, dataset, split, methods, options, limit, "dexar"
                    )
                )
            summaries = read(folder)
            print(f"\n### {model}, {dataset} {split}, first {limit} items\n")
            print(table(summaries, [*labels, *BASELINES], targets=True))
            for label in labels:
                score[label][0] += sum(targets_met(summaries, label).values())
                score[label][1] += value(summaries[label], "pointing") / 4
                score[label][2] -= value(summaries[label], "all_zero") / 4
    choice = max(labels, key=lambda label: tuple(score[label]))
    print("\ntargets met over the four validation runs (of 20), mean pointing, mean share of")
    print("items whose every delta is 0 (lower first: ties are broken in this order):")
    for label in sorted(labels, key=lambda label: tuple(score[label]), reverse=True):
        met, pointing, zero = score[label]
        print(f"  {label:20s} {met:2.0f}  {pointing:.3f}  {abs(zero):.3f}  {CANDIDATES[label]}")
    print(f"\nchosen: {choice} {CANDIDATES[choice]}")
    (out / "select" / "choice.json").write_text(
        json.dumps({"label": choice, "options": CANDIDATES[choice], "score": score}, indent=2)
        + "\n"
    )
    return choice


def report(out: Path, preset: str, limit: int, execute: bool = True) -> None:
    """Run (unless ``execute`` is False) and print the held-out stage for ``preset``."""
    if preset not in CANDIDATES:
        raise SystemExit(f"--preset must be one of {', '.join(CANDIDATES)}, got {preset!r}")
    methods, options = candidate_runs(list(dict.fromkeys(["dexar", preset])))
    for switch, short in (("head_weighting", "nohead"), ("token_weighting", "nodelta")):
        label = f"{preset}_{short}"
        methods[label] = "dexar"
        options += [f"{label}.{key}={value}" for key, value in CANDIDATES[preset].items()]
        options.append(f"{label}.{switch}=false")
    methods.update({name: name for name in BASELINES})
    for model in MODELS:
        for dataset, split in HELD_OUT:
            folder = out / "report" / model / dataset
            if execute:
                run(
                    evaluate_command(folder, model, dataset, split, methods, options, limit, preset)
                )
            summaries = read(folder)
            print(f"\n### {model}, {dataset} {split}, first {limit} items\n")
            print(table(summaries, list(methods), targets=False))
            paired = json.loads((folder / "paired.json").read_text())
            print(f"\npaired differences, {preset} minus each method (95% intervals):\n")
            print(paired_table(paired))


def perturb(out: Path, preset: str, limit: int, execute: bool = True) -> None:
    """Run (unless ``execute`` is False) and print perturbation on ``shapes`` test."""
    methods, options = candidate_runs(list(dict.fromkeys(["dexar", preset])))
    methods.update({name: name for name in PERTURBATION_BASELINES})
    for model in MODELS:
        folder = out / "perturb" / model
        if execute:
            command = evaluate_command(
                folder, model, "shapes", "test", methods, options, limit, preset
            )
            run([*command, "--metrics", "perturbation"])
        print(f"\n### {model}, shapes test, first {limit} items, perturbation\n")
        print(table(read(folder), list(methods), targets=False, columns=PERTURBATION_COLUMNS))
        paired = json.loads((folder / "paired.json").read_text())
        print(f"\npaired differences, {preset} minus each method (95% intervals):\n")
        print(paired_table(paired, PERTURBATION_COLUMNS[:2]))


def paired_table(paired: dict[str, Any], columns: tuple[str, ...] = COLUMNS) -> str:
    """``paired.json`` as a markdown table: every difference with its 95% interval."""
    lines = ["| against | " + " | ".join(columns) + " |", "|" + "---|" * (len(columns) + 1)]
    for other, entry in paired["against"].items():
        difference = {**entry["difference"], "confidence": entry["confidence"]}
        cells = [cell(difference, name, signed=True) for name in columns]
        lines.append(f"| {other} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("stage", choices=("select", "report", "perturb", "tables"))
    parser.add_argument("out", type=Path)
    parser.add_argument("--limit", type=int)
    parser.add_argument("--preset")
    args = parser.parse_args()
    if args.stage == "select":
        select(args.out, args.limit or 100)
    elif args.stage == "report":
        report(args.out, args.preset, args.limit or 150)
    elif args.stage == "perturb":
        perturb(args.out, args.preset, args.limit or 25)
    else:
        choice = json.loads((args.out / "select" / "choice.json").read_text())
        select(args.out, 100, execute=False)
        report(args.out, choice["label"], 150, execute=False)
        perturb(args.out, choice["label"], 25, execute=False)


if __name__ == "__main__":
    main()
