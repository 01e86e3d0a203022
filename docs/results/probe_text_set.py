# ruff: noqa  (a one-off analysis script behind docs/results.md)
"""Which key position wins S_text (max over layers, heads) for each answer token of shapes-llava captions."""

import sys
from collections import Counter

import numpy as np
import torch

torch.set_num_threads(2)
from dexar_core.api import load
from dexar_core.engine import attention_gradients
from dexar_core.evaluation import open_dataset, token_word, word_class
from dexar_core.images import load_visual

loaded = load(sys.argv[1])
adapter = loaded.adapter
data = open_dataset("shapes", "test")
items = [data[i] for i in range(200) if data[i].kind == "caption"][: int(sys.argv[2])]
wins = {"object": Counter(), "function": Counter()}
for item in items:
    prepared = adapter.prepare(loaded, [load_visual(item.image)], item.question)
    layout = adapter.locator.locate(prepared)
    answer_ids = adapter.generate(loaded, prepared, 40)
    forced = adapter.teacher_forced(loaded, prepared, answer_ids)
    layout = adapter.layout_for_answer(loaded, prepared, forced, layout).with_length(
        forced.key_length
    )
    n_layers = adapter.decoder_parts(loaded.model).num_layers
    record = attention_gradients(loaded, forced, layout, list(range(n_layers)))
    g = record.gradients  # [T, L, H, K]
    lay = record.layout
    ids = forced.inputs["input_ids"][0].tolist()
    toks = loaded.tokenizer.convert_ids_to_tokens(ids)
    text = lay.text_set("all_non_visual")[None, :] & record.visible  # [T, K]
    vis = np.broadcast_to(lay.visual_mask, record.visible.shape) & record.visible
    for t, (q, a) in enumerate(zip(forced.query_rows, answer_ids)):
        word = token_word(loaded.tokenizer.convert_ids_to_tokens([a])[0])
        cls = word_class(word, item)
        if cls not in wins:
            continue
        gt = g[t].max(axis=(0, 1))  # max over layers and heads, per key
        s_text_pos = int(np.argmax(np.where(text[t], gt, -np.inf)))
        s_v = float(gt[vis[t]].max())
        s_text = float(gt[s_text_pos])
        if s_text >= s_v:
            where = (
                "query itself"
                if s_text_pos == q
                else (
                    "earlier answer token"
                    if q - t < s_text_pos < q
                    else f"prompt {toks[s_text_pos]!r}"
                )
            )
            wins[cls][where] += 1
        else:
            wins[cls]["visual wins (delta > 0)"] += 1
for cls, counter in wins.items():
    total = sum(counter.values())
    print(f"{cls} tokens ({total}): " + ", ".join(f"{k} {v}" for k, v in counter.most_common()))
