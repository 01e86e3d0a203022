"""Quiet by default, progress when it is long: what the commands show on stderr.

Third-party progress bars and warnings (transformers' "Loading weights" bar on every
run, deprecation notes of its dependencies) are turned off unless ``--verbose``; a
stage that lasts more than :data:`SHOW_AFTER` seconds gets a tqdm indicator with the
time spent, so a long generation and backward pass is not silence.
"""

from __future__ import annotations

import sys
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["SHOW_AFTER", "quiet_third_party", "stage"]

#: Seconds a stage runs before its indicator appears (short stages show nothing).
SHOW_AFTER = 1.5
_REFRESH_SECONDS = 0.5


def quiet_third_party(verbose: bool) -> None:
    """Silence third-party bars, logs and warnings (every package but dexar's) unless verbose."""
    if verbose:
        return
    warnings.filterwarnings("ignore", module=r"(?!dexar)")
    try:
        from transformers.utils import logging as transformers_logging
    except ImportError:  # an adapter that is not built on transformers does not load it
        return
    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    try:
        from huggingface_hub.utils import disable_progress_bars
    except ImportError:
        return
    disable_progress_bars()


@contextmanager
def stage(description: str, *, quiet: bool = False) -> Iterator[None]:
    """Show ``description`` and the seconds spent while the block runs, if it is long.

    Args:
        description: what runs, e.g. ``"dexar: generating and explaining"``.
        quiet: show nothing at all.
    """
    if quiet:
        yield
        return
    from tqdm import tqdm

    # No total: the engine's one pass has no steps to count, so the time is the progress.
    bar = tqdm(
        desc=description,
        bar_format="{desc} {elapsed}",
        delay=SHOW_AFTER,
        file=sys.stderr,
        leave=False,
        disable=not sys.stderr.isatty(),  # no indicator in logs and pipes
    )
    finished = threading.Event()

    def tick() -> None:
        # tqdm redraws only on updates and this stage has none: an empty update redraws
        # the time spent (once the delay has passed).
        while not finished.wait(_REFRESH_SECONDS):
            bar.update(0)

    ticker = threading.Thread(target=tick, daemon=True)
    ticker.start()
    try:
        yield
    finally:
        finished.set()
        ticker.join()
        bar.close()
