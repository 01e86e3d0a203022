"""A tiny VOC-style segmentation folder written by the tests."""

from __future__ import annotations

import numpy as np
from PIL import Image


def write_voc(root, ids=("a", "b"), size=(6, 4), mask_size=None, mask_mode="P"):
    (root / "JPEGImages").mkdir(parents=True)
    (root / "SegmentationClass").mkdir()
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    (root / "ImageSets" / "Segmentation" / "val.txt").write_text("\n".join(ids) + "\n")
    width, height = mask_size or size
    for image_id in ids:
        Image.new("RGB", size, (10, 20, 30)).save(root / "JPEGImages" / f"{image_id}.jpg")
        classes = np.zeros((height, width), np.uint8)
        classes[1:3, 1:3] = 15  # a person
        classes[0, :] = 255  # void border
        classes[3, 4] = 3
        mask = Image.fromarray(classes, mode="L")
        if mask_mode == "P":
            mask = mask.convert("P")
        elif mask_mode == "RGB":
            mask = mask.convert("RGB")
        mask.save(root / "SegmentationClass" / f"{image_id}.png")
    return root
