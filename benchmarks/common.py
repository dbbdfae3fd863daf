"""What the benchmark scripts share: run-folder names, the mean ± std cells of their tables, and a step clock."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence

import lightning as L
import torch


def slug(name: str) -> str:
    """A variant's name as a folder name."""
    return "".join(c if c.isalnum() else "_" for c in name).strip("_")


def mean_std(values: Sequence[float]) -> str:
    """``mean ± std`` (sample standard deviation; the mean alone for one value)."""
    spread = f" ± {statistics.stdev(values):.3f}" if len(values) > 1 else ""
    return f"{statistics.mean(values):.3f}{spread}"


def each(values: Sequence[float]) -> str:
    """Every run's value: ``0.12 / 0.23 / ...``."""
    return " / ".join(f"{v:.2f}" for v in values)


def synchronize() -> None:
    """Wait for the GPU's queued work (nothing to wait for on a CPU)."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()


class StepClock:
    """Wall-clock stamps at the start of each timed step and one after the last (after ``synchronize``): the
    throughput of the window, and the median step. A launch-bound step (the GPU waits for the host) on a shared host
    has stalls of tens of ms that move a window's mean by 20 % between runs; the median step does not see them."""

    def __init__(self, synchronize: Callable[[], None]):
        self.synchronize, self.stamps = synchronize, []  # type: ignore[var-annotated]

    def start(self) -> None:
        """The first stamp, after the queued work has finished."""
        self.synchronize()
        self.stamps = [time.perf_counter()]

    def step(self) -> None:
        """A stamp at the start of a later step."""
        self.stamps.append(time.perf_counter())

    def stop(self) -> None:
        """The last stamp, once the last step has finished."""
        self.synchronize()
        self.stamps.append(time.perf_counter())

    def per_second(self, items_per_step: int) -> float:
        """Items per second over the whole window."""
        return (len(self.stamps) - 1) * items_per_step / (self.stamps[-1] - self.stamps[0])

    def median_ms(self) -> float:
        """The median step in ms."""
        return 1e3 * statistics.median(b - a for a, b in zip(self.stamps, self.stamps[1:]))


class StepTimer(L.Callback):
    """A ``StepClock`` (``.clock``) over a fit's training batches ``warmup`` to ``last``."""

    def __init__(self, warmup: int, last: int, synchronize: Callable[[], None]):
        self.warmup, self.last, self.clock = warmup, last, StepClock(synchronize)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == self.warmup:
            self.clock.start()
        elif batch_idx > self.warmup:
            self.clock.step()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if batch_idx == self.last:
            self.clock.stop()
