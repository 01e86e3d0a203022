"""Dataset runs: explain every item, score the maps, summarise with intervals.

:func:`evaluate` (:mod:`.run`) is the entry point; the per-item records (:mod:`.records`),
the summary (:mod:`.summary`), the perturbation scores (:mod:`.perturbation`), the printed
report (:mod:`.report`), the resumable run log (:mod:`.run_log`) and the processes of a
data-parallel run (:mod:`.distributed`) each have their module.
"""

from dexar_core.evaluation.run import *  # noqa: F403  the public names of a run
from dexar_core.evaluation.run import __all__  # noqa: F401
