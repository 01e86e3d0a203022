"""Evaluation of explanations (docs/method.md §11): segmentation scores and token grounding.

Plain numpy arrays in, floats out. The chance lines live beside the scores they qualify.
"""

from dexar_core.metrics.grounding import (
    auroc,
    object_contrast,
    object_iou,
    pointing_game,
    uniform_pointing_chance,
    wrong_object_peak,
)
from dexar_core.metrics.segmentation import (
    BEST_IOU_THRESHOLDS,
    best_iou,
    chance_scores,
    epg,
    normalised_map,
    random_smooth_map,
    segmentation_scores,
    snr,
    soft_iou,
    uniform_map,
)

__all__ = [
    "BEST_IOU_THRESHOLDS",
    "auroc",
    "best_iou",
    "chance_scores",
    "epg",
    "normalised_map",
    "object_contrast",
    "object_iou",
    "pointing_game",
    "random_smooth_map",
    "segmentation_scores",
    "snr",
    "soft_iou",
    "uniform_map",
    "uniform_pointing_chance",
    "wrong_object_peak",
]
