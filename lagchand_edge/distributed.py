"""torchrun-native runs: every rank works on its contiguous block, rank 0 reports for all.

Under torchrun (RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT set) a command joins a gloo group
with `process_group()`; `Ranks.gather` runs the rank's work, counts progress in the launch's
store (so rank 0's bar shows every rank's samples) and hands rank 0 each rank's result in rank
order. A rank whose work fails posts its one-line error instead of a result, so no rank waits
for it: rank 0 says which rank failed and why, and every rank exits non-zero. A rank that dies
outright is torchrun's to notice (it stops the others). Without torchrun: one process, no group.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TypeVar

import torch
import torch.distributed as dist

from lagchand_edge.errors import RankFailure, UserError, describe_internal_error

T = TypeVar("T")
POLL_SECONDS = 0.2


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def local_device() -> torch.device:
    """This process's GPU (torchrun's LOCAL_RANK) when CUDA is there, else the CPU."""
    if not torch.cuda.is_available():
        return torch.device("cpu")
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    torch.cuda.set_device(device)
    return device


def reference_device() -> torch.device:
    """Where an FP32 reference runs: `local_device()` with TF32 off on a GPU (cuDNN convolutions
    default to TF32, whose 10-bit mantissa is no FP32 reference for a 0.01 mm gate)."""
    device = local_device()
    if device.type == "cuda":
        torch.backends.cuda.matmul.fp32_precision = "ieee"
        torch.backends.cudnn.conv.fp32_precision = "ieee"
    return device


def shard_indices(total: int, shard: tuple[int, int], align: int = 1) -> range:
    """Shard `index` of `count` as a contiguous block; inner boundaries fall on multiples of `align`
    (the batch size), so every shard's batches are batches of the one-process run."""
    index, count = shard

    def boundary(i: int) -> int:
        return total if i == count else total * i // count // align * align

    return range(boundary(index), boundary(index + 1))


@dataclass
class Ranks:
    """This process's place in the launch; `gather` runs one piece of work on every rank."""

    rank: int = 0
    world: int = 1
    store: dist.Store | None = None
    _gathers: int = field(default=0, repr=False)

    @property
    def leader(self) -> bool:
        return self.rank == 0

    @property
    def shard(self) -> tuple[int, int]:
        return self.rank, self.world

    def block(self, total: int, align: int) -> range:
        """This rank's contiguous block of `total` samples, batch-aligned; a launch that would
        leave some rank nothing to do is refused."""
        blocks = [shard_indices(total, (r, self.world), align) for r in range(self.world)]
        if any(len(block) == 0 for block in blocks):
            raise UserError(f"{total} samples in batches of {align} leave some of the {self.world} ranks nothing to do; "
                            "use fewer ranks or a smaller --batch-size")
        return blocks[self.rank]

    def gather(self, work: Callable[[Callable[[int], None]], T], progress: Callable[[int], None] | None = None) -> list[T] | None:
        """`work(tick)` on every rank; rank 0 gets every result in rank order, the others None.

        `tick(n)` counts n samples done; rank 0's `progress` sees every rank's counts.
        Raises `RankFailure` on every rank when any rank's work failed.
        """
        if self.world == 1:
            return [work(progress or (lambda n: None))]
        self._gathers += 1
        done_key, finished_key = f"{self._gathers}/done", f"{self._gathers}/finished"
        shown = [0]

        def show(total_done: int) -> None:
            if progress and total_done > shown[0]:
                progress(total_done - shown[0])
                shown[0] = total_done

        def tick(n: int) -> None:
            total_done = self.store.add(done_key, n)
            if self.leader:
                show(total_done)

        result, status = None, (None, 0)  # status: (error message, exit code) or (None, 0)
        try:
            result = work(tick)
        except UserError as exc:
            status = (str(exc), 2)
        except Exception as exc:  # a bug on this rank: its traceback goes to a file, the run still ends cleanly
            status = (describe_internal_error(exc), 1)
        self.store.add(finished_key, 1)
        while self.leader and self.store.add(finished_key, 0) < self.world:  # keep the bar moving while the others finish
            show(self.store.add(done_key, 0))
            time.sleep(POLL_SECONDS)
        if self.leader:
            show(self.store.add(done_key, 0))
        statuses: list = [None] * self.world
        dist.all_gather_object(statuses, status)  # every rank learns of a failure (small)...
        failed = [(rank, message, code) for rank, (message, code) in enumerate(statuses) if message is not None]
        if failed:
            rank, message, code = failed[0]
            raise RankFailure(f"rank {rank} of {self.world}: {message}", code, speak=self.leader)
        results: list | None = [None] * self.world if self.leader else None
        dist.gather_object(result, results, dst=0)  # ...only rank 0 receives the results (they can be large)
        return results


@contextmanager
def process_group(timeout_minutes: float = 30) -> Iterator[Ranks]:
    """The launch's ranks: a gloo group under torchrun (results are gathered as Python objects
    on the CPU, whatever device the work used), a single rank otherwise."""
    if not launched_by_torchrun():
        yield Ranks()
        return
    timeout = timedelta(minutes=timeout_minutes)
    store, rank, world = next(dist.rendezvous("env://", timeout=timeout))
    dist.init_process_group("gloo", store=store, rank=rank, world_size=world, timeout=timeout)
    try:
        yield Ranks(rank, world, dist.PrefixStore("lagchand-edge", store))
    finally:
        dist.destroy_process_group()
