"""Pictures of explanations: heatmap overlays and token strips.

Arrays and a PIL image in, a PIL image out. matplotlib is imported only when a picture
is drawn, so importing this package stays light.
"""

from dexar_core.viz.overlay import overlay, save_png, token_strip

__all__ = ["overlay", "save_png", "token_strip"]
