"""dexar's open_clip ``legrad`` against the LeGrad authors' package, same weights and pixels.

Two steps, two environments (legrad-torch 1.1 pins open_clip_torch <= 2.23, dexar uses
the current one):

    python docs/baselines/check_legrad_torch.py dexar OUT
    /tmp/legrad/bin/python docs/baselines/check_legrad_torch.py authors OUT

where /tmp/legrad is a venv that sees dexar's packages but its own open_clip (as it was
made for the recorded run: ``python3 -m venv /tmp/legrad``, a ``.pth`` file naming the
dexar venv's site-packages, then ``/tmp/legrad/bin/pip install --no-deps
open_clip_torch==2.23.0 legrad-torch==1.1 einops opencv-python-headless``).

The first step builds random tiny open_clip ViTs (dexar's builder), saves their weights,
the processed pixels, the normalised text embeddings of three prompts and dexar's
``legrad`` maps upsampled to the image; the second loads the same weights into
open_clip 2.23, runs ``LeWrapper(model).compute_legrad_clip`` and prints how far apart
the maps are. docs/baselines.md records the result.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

PROMPTS = ["a red circle", "a blue square", "a green triangle at the top"]
CASES = {2: {}, 5: {"layers": 4}, 7: {"image_size": 48, "layers": 5}, 9: {"pool_type": "avg"}}
"""Seed -> tiny_model_config options: 3-5 blocks, 32 or 48 px, class-token or mean pooling."""


def dexar_side(out: Path) -> None:
    """Write each case's weights, inputs and dexar's maps to ``out/case<seed>.pt``."""
    import dexar_core
    from dexar_core.datasets.shapes import ShapesDataset
    from dexar_open_clip.adapter import wrap_model
    from dexar_open_clip.tiny import build_tiny_open_clip, tiny_model_config

    for seed, options in CASES.items():
        model, tokenizer = build_tiny_open_clip(seed=seed, **options)
        words = tokenizer.tokenizer
        config = tiny_model_config(vocab_size=len(words), eos_id=words.eos_token_id, **options)
        loaded = wrap_model(model, tokenizer, model_id=f"tiny-open-clip(seed={seed})")
        side = config["vision_cfg"]["image_size"]
        image = ShapesDataset("test", size=3, image_size=side)[seed % 3].image
        with torch.no_grad():
            text = F.normalize(model.encode_text(tokenizer(PROMPTS)), dim=-1)
        explanation = dexar_core.explain(loaded, image, PROMPTS, method="legrad")
        case = {
            "state": model.state_dict(),
            "config": config,
            "pixels": loaded.processor.transform(image).unsqueeze(0),
            "text": text,
            "maps": explanation.upsample(0)[0],
        }
        torch.save(case, out / f"case{seed}.pt")


def _fields(config_class: type, values: dict) -> dict:
    """The entries of ``values`` that open_clip 2.23's config dataclass knows."""
    known = {field.name for field in dataclasses.fields(config_class)}
    return {key: value for key, value in values.items() if key in known}


def authors_side(out: Path) -> None:
    """Run legrad-torch on every saved case and print its distance to dexar's maps."""
    from legrad import LeWrapper
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

    for seed in CASES:
        case = torch.load(out / f"case{seed}.pt", weights_only=False)
        config = case["config"]
        # open_clip 2.23's text tower knows neither "eos" pooling nor a tokenizer marker;
        # the text embeddings are passed in, so only the vision tower has to match.
        text_cfg = {
            key: value
            for key, value in config["text_cfg"].items()
            if key not in ("pool_type", "hf_tokenizer_name")
        }
        model = CLIP(
            embed_dim=config["embed_dim"],
            vision_cfg=_fields(CLIPVisionCfg, config["vision_cfg"]),
            text_cfg=_fields(CLIPTextCfg, text_cfg),
        )
        missing, unexpected = model.load_state_dict(case["state"], strict=False)
        vision_keys = [key for key in (*missing, *unexpected) if key.startswith("visual.")]
        if vision_keys:
            raise SystemExit(f"seed {seed}: the vision tower did not load: {vision_keys}")
        maps = LeWrapper(model.eval(), layer_index=-2).compute_legrad_clip(
            text_embedding=case["text"], image=case["pixels"]
        )
        theirs = maps.detach().numpy()[0]
        gap = np.abs(theirs - case["maps"])
        correlation = np.corrcoef(theirs.ravel(), case["maps"].ravel())[0, 1]
        print(
            f"seed {seed} {dict(CASES[seed]) or 'default'}: maps {theirs.shape}, "
            f"max |authors - dexar| {gap.max():.1e}, mean {gap.mean():.1e}, "
            f"correlation {correlation:.7f}"
        )


if __name__ == "__main__":
    step, folder = sys.argv[1], Path(sys.argv[2])
    folder.mkdir(parents=True, exist_ok=True)
    {"dexar": dexar_side, "authors": authors_side}[step](folder)
