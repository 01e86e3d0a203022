"""Markdown tables of docs/results.md from `dexar evaluate` run folders.

Usage: python docs/results/tables.py RUN_DIR[+RUN_DIR ...] ...

Each RUN_DIR is one model's `dexar evaluate --out` folder (its summary.json holds every
method); several folders of the same model and items joined by ``+`` make one table.
Prints, per model, one row per method and the chance lines, each number with its 95%
bootstrap interval, and for perturbation the log-ratio areas beside the AUCs, then the
medians and paired win rates of both from the summary (docs/method.md §11).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

COLUMNS = (
    ("soft IoU", ("segmentation", "method", "soft_iou")),
    ("best IoU", ("segmentation", "method", "best_iou")),
    ("EPG", ("segmentation", "method", "epg")),
    ("pointing", ("grounding", "pointing_game", "method")),
    ("token IoU", ("grounding", "iou", "method")),
    ("delta AUROC", ("delta_auroc", "auroc")),
    ("positive AUC", ("perturbation", "method", "positive")),
    ("negative AUC", ("perturbation", "method", "negative")),
    ("positive log-ratio", ("perturbation_log_ratio", "method", "positive")),
    ("negative log-ratio", ("perturbation_log_ratio", "method", "negative")),
)
CHANCE = {"uniform map": "uniform", "random smooth map": "random_smooth"}
"""The chance lines' rows and their key in a summary, standing where a column has "method"."""


def chance_path(path: tuple[str, ...], line: str) -> tuple[str, ...]:
    """A column's path for a chance line; empty (n/a) where the column has no method entry."""
    if "method" not in path:
        return ()
    return tuple(line if key == "method" else key for key in path)


def dig(tree: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(tree, dict) or key not in tree:
            return None
        tree = tree[key]
    return tree


def cell(summary: dict[str, Any], path: tuple[str, ...]) -> str:
    value = dig(summary, path) if path else None
    if not isinstance(value, (int, float)):
        return "n/a"
    interval = dig(summary.get("confidence", {}), path)
    if isinstance(interval, list) and len(interval) == 2 and None not in interval:
        return f"{value:.3f} [{interval[0]:.2f}, {interval[1]:.2f}]"
    return f"{value:.3f}"


ORDER = (
    "dexar",
    "dexar_weighted",
    "dexar_nohead",
    "dexar_nodelta",
    "attention",
    "rollout",
    "attn_grad",
    "gae",
    "legrad",
    "tam",
)


def methods_of(runs: list[Path]) -> dict[str, dict[str, Any]]:
    found = {}
    folders = [path for run in runs for path in run.iterdir() if path.is_dir()]
    folders.sort(key=lambda path: (*ORDER, path.name).index(path.name))
    for folder in folders:
        summary_file = folder / "summary.json"
        if summary_file.is_file():
            found[folder.name] = json.loads(summary_file.read_text())
            found[folder.name]["weighs_tokens"] = weighs_tokens(folder)
    return found


PERTURBATION_TESTS = ("positive", "negative")


def weighs_tokens(method_folder: Path) -> bool:
    """Whether the run's method gave some answer token a weight other than 1 (a delta).

    Methods without a token weight give every token 1, so their delta AUROC is 0.5 by
    design and is shown as n/a. Read from the records, not from the method's name, so
    a preset or a labelled option set is classified by what it did.
    """
    records = method_folder / "items.jsonl"
    if not records.is_file():
        return False
    with records.open() as lines:
        for line in lines:
            if any(weight != 1.0 for weight in json.loads(line).get("token_weights") or ()):
                return True
    return False


def robust_perturbation(summaries: dict[str, dict[str, Any]]) -> list[str]:
    """Medians and paired win rates against the random smooth map, per method and form.

    nPPL AUCs are heavy-tailed (one item whose perplexity explodes moves the mean), so
    the medians and the share of items where the method beats the chance map on that
    same item (ties half; the summary's ``perturbation_median`` and
    ``perturbation_win_rate``) say more than the mean on a few items.
    """
    forms = [
        (form, name)
        for form, name in (("auc", "AUC"), ("log_ratio", "log-ratio"))
        if any(
            isinstance(dig(s, ("perturbation_median", form, "method", "positive")), (int, float))
            for s in summaries.values()
        )
    ]
    if not forms:
        return []
    sections = (("perturbation_median", "method", "median {order} {name}"),)
    sections += (("perturbation_win_rate", "random_smooth", "{order} {name} beats chance"),)
    columns = [
        (header.format(order=order, name=name), (section, form, line, order))
        for section, line, header in sections
        for form, name in forms
        for order in PERTURBATION_TESTS
    ]
    lines = ["", "| method | " + " | ".join(header for header, _ in columns) + " |"]
    lines.append("|---" * (len(columns) + 1) + "|")
    for method, summary in summaries.items():
        cells = [cell(summary, path) for _, path in columns]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return lines


def table(argument: str) -> str:
    runs = [Path(part) for part in argument.split("+")]
    summaries = methods_of(runs)
    if not summaries:
        return f"{argument}: no summaries\n"
    used = [
        (name, path)
        for name, path in COLUMNS
        if any(isinstance(dig(s, path), (int, float)) for s in summaries.values())
    ]
    first = next(iter(summaries.values()))
    lines = [
        f"**{first['model_id']}**, {first['items']} items",
        "",
        "| method | " + " | ".join(name for name, _ in used) + " |",
        "|---" * (len(used) + 1) + "|",
    ]
    for method, summary in summaries.items():
        cells = [
            "n/a" if name == "delta AUROC" and not summary["weighs_tokens"] else cell(summary, path)
            for name, path in used
        ]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    for run in runs:
        everything = run / "summary.json"
        if not everything.is_file():
            continue
        for method, outcome in json.loads(everything.read_text()).items():
            if isinstance(outcome, str):
                reason = outcome.split(";")[0]
                lines.append(f"| {method} | {reason} |" + " |" * (len(used) - 1))
    for line, key in CHANCE.items():
        cells = [cell(first, chance_path(path, key)) for _, path in used]
        lines.append(f"| *{line}* | " + " | ".join(cells) + " |")
    if any(name == "positive AUC" for name, _ in used):
        lines += robust_perturbation(summaries)
        if first.get("perturbation_measure") == "similarity":
            lines += [
                "",
                "Perturbation by similarity drop: positive lower is better, negative higher.",
            ]
        else:
            lines += [
                "",
                "Perturbation by normalised perplexity: positive higher is better, negative lower.",
            ]
    accuracy = first.get("accuracy", {})
    if any(value is not None for value in accuracy.values()):
        shown = ", ".join(
            f"{kind} {value:.0%}" for kind, value in accuracy.items() if value is not None
        )
        lines += ["", f"Answer exact match on these items: {shown}."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    for argument in sys.argv[1:]:
        print(table(argument))
