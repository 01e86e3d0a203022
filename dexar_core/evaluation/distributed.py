"""Which process of a data-parallel run this is, through ``accelerate``.

``dexar evaluate`` shards items by rank when it is started by ``accelerate launch`` (or
``torchrun``: both set ``WORLD_SIZE``). accelerate's ``PartialState`` sets up
torch.distributed (NCCL on GPUs, gloo on CPUs) and gives the rank, the world size, the
device and a barrier; a plain single process needs none of it and does not import it.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import attrs

from dexar_core.errors import InputError

__all__ = ["Processes", "current_processes"]


def _no_barrier() -> None:
    """A single process has nobody to wait for."""


@attrs.frozen(kw_only=True)
class Processes:
    """This process's place in the run.

    Attributes:
        rank: this process's index, 0 to ``world - 1``; rank 0 writes the merged results.
        world: how many processes share the items.
        device: the device accelerate assigned to this process (e.g. ``cuda:1``); None
            for a single process, which uses the device the caller asks for.
        barrier: blocks until every process has called it.
    """

    rank: int = 0
    world: int = 1
    device: str | None = None
    barrier: Callable[[], None] = _no_barrier

    @property
    def is_main(self) -> bool:
        """Whether this process writes the merged results (rank 0)."""
        return self.rank == 0

    def owns(self, position: int) -> bool:
        """Whether item ``position`` is this process's to evaluate (round-robin shards)."""
        return position % self.world == self.rank


def current_processes() -> Processes:
    """The data-parallel processes this one belongs to; a lone process when not launched.

    Raises:
        InputError: a multi-process launch without accelerate installed.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return Processes()
    try:
        import torch
        from accelerate import PartialState
    except ImportError as error:
        raise InputError(
            "evaluate: started as one of several processes (WORLD_SIZE is "
            f"{os.environ['WORLD_SIZE']}) but accelerate is not installed; install "
            "'dexar[distributed]' or run a single process."
        ) from error
    # Without a GPU accelerate must be told so, or it will not set up gloo.
    state = PartialState(cpu=not torch.cuda.is_available())
    return Processes(
        rank=state.process_index,
        world=state.num_processes,
        device=str(state.device),
        barrier=state.wait_for_everyone,
    )
