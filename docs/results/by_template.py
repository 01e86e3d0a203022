"""Exact match of a shapes checkpoint per question template and object count.

Usage: python docs/results/by_template.py CHECKPOINT_DIR [ITEMS]

Colour, shape and position questions of the first ITEMS (default 600) test items,
grouped by template with the colour (C), shape (S) and position (P) words masked,
and by the number of objects in the scene; then the most frequent confusions.
"""

from __future__ import annotations

import re
import sys
from collections import Counter, defaultdict

import torch
from transformers import AutoProcessor, LlavaForConditionalGeneration

from dexar_core.datasets.shapes import COLORS, SHAPES, ShapesDataset
from dexar_core.zoo.answers import generate_answers
from dexar_llava.tiny import format_prompt

torch.set_num_threads(1)
folder = sys.argv[1]
count = int(sys.argv[2]) if len(sys.argv) > 2 else 600
model = LlavaForConditionalGeneration.from_pretrained(folder).eval()
processor = AutoProcessor.from_pretrained(folder)
items = list(ShapesDataset("test", count, kinds=("color", "shape", "position")))
hits: dict[tuple[str, int], list[bool]] = defaultdict(list)
confusions: Counter[tuple[str, str]] = Counter()
with torch.no_grad():
    for first in range(0, len(items), 100):
        chunk = items[first : first + 100]
        for item, answer in zip(chunk, generate_answers(model, processor, format_prompt, chunk)):
            template = re.sub("|".join(COLORS), "C", item.question)
            template = re.sub("|".join(SHAPES), "S", template)
            template = re.sub(r"at the [a-z ]+\?", "at the P?", template)
            hits[(template, len(item.objects))].append(answer == item.answer)
            if answer != item.answer:
                confusions[(item.answer, answer)] += 1
for (template, objects), results in sorted(hits.items()):
    share = sum(results) / len(results)
    print(f"{template:36s} {objects} objects  n={len(results):3d}  {share:.2f}")
print("most frequent (expected, answered):", confusions.most_common(8))
