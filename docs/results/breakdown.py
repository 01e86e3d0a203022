# ruff: noqa  (a one-off analysis script behind docs/results.md)
"""Breakdowns of a `dexar evaluate` run from its items.jsonl (usage: python breakdown.py DIR)."""

import json
import sys
from collections import defaultdict

import numpy as np

from dexar_core.datasets.shapes import COLORS
from dexar_core.metrics import auroc

rows = [json.loads(line) for line in open(f"{sys.argv[1]}/items.jsonl")]


def pooled(items):
    s, l = [], []
    for r in items:
        for w, c in zip(r["token_weights"], r["word_classes"]):
            if c in ("object", "function"):
                s.append(w)
                l.append(c == "object")
    return (auroc(s, l) if any(l) and not all(l) else float("nan")), sum(l), len(l) - sum(l)


print("delta AUROC object vs function, pooled: all %.3f (%d/%d)" % pooled(rows))
print("  correct answers only: %.3f (%d/%d)" % pooled([r for r in rows if r["correct"]]))
by_word = defaultdict(list)
for r in rows:
    for t, w, c in zip(r["tokens"], r["token_weights"], r["word_classes"]):
        key = c if c != "object" and c != "function" else t
        if c == "object":
            key = "colour word" if t in COLORS else "shape word"
        elif c == "function":
            key = f"'{t}'"
        elif c == "other":
            key = "position word"
        by_word[key].append(w)
print("delta by word (n, mean, median, share == 0):")
for key, v in sorted(by_word.items(), key=lambda kv: -np.mean(kv[1])):
    v = np.array(v)
    print(
        f"  {key:14s} n={len(v):4d} mean={v.mean():.3f} median={np.median(v):.3f} zero={np.mean(v == 0):.2f}"
    )
ratios = defaultdict(list)
for r in rows:
    for g in r["token_grounding"]:
        key = (
            "colour" if g["word"] in COLORS else "shape",
            "caption" if r["kind"] == "caption" else "short answer",
        )
        ratios[key].append((g["pointing_game"], g["uniform_pointing_chance"], g["iou"]))
print("pointing game by word type and answer kind (n, hit rate, uniform chance, iou):")
for key, v in sorted(ratios.items()):
    v = np.array(v, dtype=float)
    print(
        f"  {key[0]:6s} {key[1]:12s} n={len(v):4d} hit={v[:, 0].mean():.3f} chance={v[:, 1].mean():.3f} iou={v[:, 2].mean():.3f}"
    )
print("sequence-map epg by kind (method / uniform):")
for kind in ("color", "shape", "position", "caption"):
    k = [r for r in rows if r["kind"] == kind]
    print(
        f"  {kind:9s} n={len(k):3d} epg={np.nanmean([r['segmentation']['epg'] for r in k]):.3f} uniform={np.mean([r['chance']['uniform']['epg'] for r in k]):.3f}"
    )
print(
    "sequence fallback (every delta 0):", sum(r["sequence_fallback"] for r in rows), "of", len(rows)
)
