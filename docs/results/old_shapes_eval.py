# ruff: noqa  (a one-off analysis script behind docs/results.md)
"""The same benchmark through the library on the shapes generator the checkpoint was trained on (before 5dcbc5f)."""

import sys

sys.path.insert(0, "/tmp/evalruns")
import old_shapes

from dexar_core.api import load
from dexar_core.commands.evaluate_report import format_report
from dexar_core.evaluation import evaluate

loaded = load("/tmp/evalruns/shapes-llava-0609")
summary = evaluate(
    loaded,
    old_shapes.ShapesDataset("test", image_size=64),
    method="dexar",
    limit=200,
    out="/tmp/eval-llava-oldshapes",
    seed=0,
)
print(format_report({"dexar": summary}))
