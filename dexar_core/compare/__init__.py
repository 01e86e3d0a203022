"""Several models x methods side by side: on one image (:mod:`.on_image`) or a dataset
(:mod:`.on_dataset`)."""

from dexar_core.compare.on_dataset import MetricsTable, compare_on_dataset
from dexar_core.compare.on_image import Cell, Comparison, ModelRow, compare

__all__ = ["Cell", "Comparison", "MetricsTable", "ModelRow", "compare", "compare_on_dataset"]
