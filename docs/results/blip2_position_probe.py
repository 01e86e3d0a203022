"""Where does a BLIP-2 checkpoint lose where an object is? A linear probe at two places.

Usage: python docs/results/blip2_position_probe.py CHECKPOINT_DIR [CHECKPOINT_DIR ...]

On 3000 one-object images of the shapes train split, the object's 3x3 layout cell is
predicted by a logistic regression (2400 images to fit, 600 held out) from

- ``patches, pooled``: the vision tower's patch outputs averaged over the patches, a
  set summary like the one the Q-Former's cross-attention can form (it reads the patches
  as a set: where a patch is reaches it only through what its position embedding added);
- ``Q-Former output``: the 32 query outputs the language model reads, concatenated.

Also printed: the standard deviation of the tower's learned position embeddings, and
how the greedy answers to the first 100 position questions of the test split spread
(a model that ignores the image gives one answer to most of them). Chance is 1/9.
"""

from __future__ import annotations

import sys
from collections import Counter

import torch
from transformers import Blip2ForConditionalGeneration, Blip2Processor

from dexar_blip2.tiny import format_prompt
from dexar_core.datasets.shapes import ShapesDataset
from dexar_core.zoo.answers import generate_answers

torch.set_num_threads(1)


def features(model: Blip2ForConditionalGeneration, processor: Blip2Processor, images: list):
    pooled, queries = [], []
    with torch.no_grad():
        for start in range(0, len(images), 100):
            pixels = processor.image_processor(images[start : start + 100], return_tensors="pt")
            patches = model.vision_model(pixel_values=pixels["pixel_values"]).last_hidden_state
            tokens = model.query_tokens.expand(len(patches), -1, -1)
            output = model.qformer(query_embeds=tokens, encoder_hidden_states=patches)
            pooled.append(patches[:, 1:].mean(1))
            queries.append(output.last_hidden_state.flatten(1))
    return {"patches, pooled": torch.cat(pooled), "Q-Former output": torch.cat(queries)}


def probe(inputs: torch.Tensor, cells: torch.Tensor, fit: int) -> float:
    torch.manual_seed(0)
    inputs = (inputs - inputs[:fit].mean(0)) / (inputs[:fit].std(0) + 1e-6)
    weights = torch.zeros(inputs.shape[1], 9, requires_grad=True)
    bias = torch.zeros(9, requires_grad=True)
    optimiser = torch.optim.Adam([weights, bias], lr=1e-2)
    for _ in range(300):
        logits = inputs[:fit] @ weights + bias
        loss = (
            torch.nn.functional.cross_entropy(logits, cells[:fit]) + 1e-4 * weights.square().sum()
        )
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        return float(((inputs[fit:] @ weights + bias).argmax(1) == cells[fit:]).float().mean())


def main(folders: list[str]) -> None:
    train = ShapesDataset("train", 20000)
    one_object = [item for item in train if len(item.objects) == 1][:3000]
    names = sorted({item.objects[0].position for item in one_object})
    cells = torch.tensor([names.index(item.objects[0].position) for item in one_object])
    questions = list(ShapesDataset("test", 1000, kinds=("position",)))[:100]
    for folder in folders:
        model = Blip2ForConditionalGeneration.from_pretrained(folder).eval()
        processor = Blip2Processor.from_pretrained(folder)
        table = model.vision_model.embeddings.position_embedding[0, 1:]
        print(f"{folder}: position embeddings std {table.std().item():.3f}")
        for place, inputs in features(model, processor, [i.image for i in one_object]).items():
            print(f"  {place:16s} probe accuracy {probe(inputs, cells, 2400):.3f} (chance 0.111)")
        answers = generate_answers(model, processor, format_prompt, questions)
        right = sum(a == q.answer for a, q in zip(answers, questions, strict=True))
        spread = Counter(answers).most_common(3)
        print(f"  position questions: {right}/100 right; most given answers {spread}")


if __name__ == "__main__":
    main(sys.argv[1:])
