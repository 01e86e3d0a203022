"""Pictures of explanations: figures, the self-contained HTML report, notebook display.

:mod:`~dexar_core.viz.picture` draws the pixels (upscaled input, map over its greyed
copy, unseen regions hatched), :mod:`~dexar_core.viz.figures` the matplotlib figures,
:mod:`~dexar_core.viz.report` and :mod:`~dexar_core.viz.pages` the HTML pages, and
:mod:`~dexar_core.viz.wording` what they all call things. :mod:`~dexar_core.viz.overlay`
keeps the plain PIL overlays and token strips. matplotlib is imported only when a
picture is drawn, so importing this package stays light.
"""

from dexar_core.viz.overlay import overlay, save_png, token_strip

__all__ = ["overlay", "save_png", "token_strip"]
