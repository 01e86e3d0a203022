"""dexar's ``tam`` against the TAM authors' released ``tam.py``, on the same logits.

    python docs/baselines/check_tam_release.py dexar OUT
    /tmp/legrad/bin/python docs/baselines/check_tam_release.py authors OUT TAM_CHECKOUT

TAM_CHECKOUT is a checkout of github.com/xmed-lab/TAM (the recorded run: commit 7c7df1d);
its ``tam.py`` is imported from there, never copied here, and needs scipy, opencv and
pymupdf in that venv (see check_legrad_torch.py for how it was made).

The first step explains teacher-forced shapes-llava test items with dexar's ``tam`` and
saves the maps, the token ids and the final-layer logits laid out as the authors' code
reads them (round 0: every prompt position; round r: the position that predicts answer
token r). The second runs the authors' ``TAM`` round by round on those logits, prints the
distance to dexar's maps, and then re-derives both from the same logits in numpy with
each of the two context rules, to show which choice every difference comes from.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
"""The repository."""

ITEMS = 8
"""Test items explained: the first captions, colour and position questions."""

IMAGE_TOKEN, ASSISTANT, COLON = 4, 13, 8
"""The embedded tiny LLaVA's ids of ``<image>``, ``assistant`` and ``:``."""

MARKERS = {
    "img_id": [IMAGE_TOKEN],
    "prompt_id": [[IMAGE_TOKEN], [ASSISTANT, COLON]],
    "answer_id": [[ASSISTANT, COLON], -1],
}
"""The authors' ``special_ids`` for ``user: <image>... {question} assistant: {answer}``."""


def dexar_side(out: Path) -> None:
    """Write ``out/cases.pt``: per item the token ids, logits by round and dexar's maps."""
    import dexar_core
    from dexar_core.datasets.shapes import ShapesDataset

    loaded = dexar_core.load("shapes-llava")
    cases = []
    for item in ShapesDataset("test", size=40):
        if len(cases) == ITEMS:
            break
        if item.kind == "shape":
            continue
        explanation = dexar_core.explain(
            loaded, item.image, item.question, answer=item.answer, method="tam"
        )
        inputs = loaded.adapter.prepare(loaded, [item.image], item.question).inputs
        answer = torch.tensor([list(explanation.token_ids)])
        ids = torch.cat([inputs["input_ids"], answer], dim=1)
        with torch.no_grad():
            logits = loaded.model(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                pixel_values=inputs["pixel_values"],
            ).logits
        length = inputs["input_ids"].shape[1]
        rounds = [logits[:, :length]]
        rounds += [logits[:, length + r - 1 : length + r] for r in range(1, answer.shape[1])]
        cases.append(
            {
                "ids": ids[0].tolist(),
                "rounds": rounds,
                "maps": explanation.token_maps[0],
                "kind": item.kind,
            }
        )
    torch.save({"cases": cases}, out / "cases.pt")


def _unit(values: np.ndarray) -> np.ndarray:
    low, high = values.min(), values.max()
    return (values - low) / (high - low) if high > low else np.zeros_like(values)


def rederived(ids: list[int], rounds: list[torch.Tensor], r: int, *, released: bool) -> np.ndarray:
    """Answer token ``r``'s TAM map from the logits, with the released or dexar's context.

    dexar: each context token's map is that of the token at its position and its weight is
    read there; the normalisation set is the context's weights. Released code: the first
    prompt token's map is that of its greedy prediction, the first answer token's slot
    holds the map of the last template token, an answer token's weight is read at the
    position that predicted it, and the normalisation set is every text position but the
    last.
    """
    from dexar_core.methods.tam import estimated_causal_inference, rank_gaussian_filter

    length = rounds[0].shape[1]
    z = torch.cat(rounds, 1)[0].clip(min=0).double().numpy()
    tokens = np.array(ids)
    image = np.flatnonzero(tokens[:length] == IMAGE_TOKEN)
    prompt = np.arange(image[-1] + 1, length - 2)
    target = tokens[length + r]
    context = [*tokens[prompt], *tokens[length : length + r]]
    if released:
        maps = [z[image, int(np.argmax(z[prompt[0]]))], *(z[image, t] for t in tokens[prompt[1:]])]
        maps += [
            z[image, tokens[length - 1]],
            *(z[image, t] for t in tokens[length + 1 : length + r]),
        ]
        weights = [*z[prompt, target], *z[length - 1 : length - 1 + r, target]]
    else:
        maps = [z[image, t] for t in context]
        weights = [*z[prompt, target], *z[length : length + r, target]]
    keep = [index for index, token in enumerate(context) if token != target]
    kept = np.array([weights[i] for i in keep])
    activation = estimated_causal_inference(
        z[image, target], np.stack([maps[i] for i in keep]), kept
    )
    if released:
        text = np.concatenate([z[prompt, target], z[length - 1 : length + r, target]])[:-1]
    else:
        text = kept
    joint = np.concatenate([activation, text])
    normalised = (activation - joint.min()) / (joint.max() - joint.min())
    side = int(np.sqrt(image.size))
    return rank_gaussian_filter(normalised.reshape(side, side), 3)


def authors_side(out: Path, checkout: Path) -> None:
    """Run the released ``TAM`` on every case; print distances and the re-derivations'."""
    from transformers import AutoProcessor

    spec = importlib.util.spec_from_file_location("tam_release", checkout / "tam.py")
    release = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(release)
    # This venv has the authors' dependencies, not dexar installed: read the repository.
    sys.path.insert(0, str(ROOT))
    processor = AutoProcessor.from_pretrained(
        ROOT / "adapters/dexar_llava/checkpoints/shapes-llava"
    )
    picture = np.zeros((64, 64, 3), np.uint8)  # only drawn from, never scored
    gaps: dict[str, list[float]] = {"dexar vs released": [], "correlation": []}
    gaps.update({"released re-derived vs released (levels)": [], "dexar re-derived vs dexar": []})
    for case in torch.load(out / "cases.pt", weights_only=False)["cases"]:
        ids, rounds, ours = case["ids"], case["rounds"], case["maps"]
        side = ours.shape[-1]
        records: list[np.ndarray] = []
        for r in range(len(ours)):
            theirs = np.asarray(
                release.TAM(
                    ids, (side, side), rounds, MARKERS, picture, processor, "", r, records, True
                ),
                np.float64,
            )
            if r == 0:
                continue  # the released round 0 explains the last template token (see docs)
            gaps["dexar vs released"].append(float(np.abs(_unit(theirs) - ours[r]).max()))
            if theirs.std() > 0 and ours[r].std() > 0:
                correlation = np.corrcoef(theirs.ravel(), ours[r].ravel())[0, 1]
                gaps["correlation"].append(float(correlation))
            again = np.floor(rederived(ids, rounds, r, released=True) * 255)
            gaps["released re-derived vs released (levels)"].append(
                float(np.abs(again - theirs).max())
            )
            mine = _unit(rederived(ids, rounds, r, released=False))
            gaps["dexar re-derived vs dexar"].append(float(np.abs(mine - ours[r]).max()))
    print(f"{len(gaps['dexar vs released'])} answer tokens (rounds 1 and later)")
    for name, values in gaps.items():
        low, middle, high = np.percentile(values, [0, 50, 100])
        print(f"{name}: median {middle:.3g}, min {low:.3g}, max {high:.3g}")


if __name__ == "__main__":
    folder = Path(sys.argv[2])
    folder.mkdir(parents=True, exist_ok=True)
    if sys.argv[1] == "dexar":
        dexar_side(folder)
    else:
        authors_side(folder, Path(sys.argv[3]))
