"""What the benchmark scripts share: run-folder names, the mean ± std cells of their tables, JSON-lines output, a
step clock, and the optimiser of a plain loop compared with a fitted task."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Iterable, Sequence

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


def adamw_like(task: L.LightningModule, parameters, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """An AdamW over ``parameters``, fused when the fitted ``task``'s is (a plain loop compared with the task must
    step the same implementation)."""
    fused = bool(task.optimizers().optimizer.defaults.get("fused"))
    return torch.optim.AdamW(parameters, lr=lr, weight_decay=weight_decay, fused=fused)


def append_rows(path: str | None, rows: Iterable[dict]) -> None:
    """Append ``rows`` to ``path`` as JSON lines (nothing without a path)."""
    if path:
        with open(path, "a") as f:
            f.writelines(json.dumps(row) + "\n" for row in rows)


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

    def mark(self, index: int, warmup: int) -> None:
        """Called at the start of step ``index``: nothing during the warm-up, then ``start``, then ``step``."""
        if index == warmup:
            self.start()
        elif index > warmup:
            self.step()

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
        self.clock.mark(batch_idx, self.warmup)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if batch_idx == self.last:
            self.clock.stop()


def step_comparison(plain: Sequence[StepClock], lightning: Sequence[StepClock], items_per_step: int) -> dict:
    """Interleaved repeats of a plain loop and a Lightning fit: items per second and median steps of each run, the
    window ratios and the ratio of the median steps (plain over Lightning: above 1, Lightning is faster)."""
    row: dict = {"plain_per_s": [c.per_second(items_per_step) for c in plain],
                 "lightning_per_s": [c.per_second(items_per_step) for c in lightning],
                 "plain_step_ms": [c.median_ms() for c in plain],
                 "lightning_step_ms": [c.median_ms() for c in lightning]}
    row["ratios"] = [lt / p for lt, p in zip(row["lightning_per_s"], row["plain_per_s"])]
    row["median_step_ratio"] = statistics.median(row["plain_step_ms"]) / statistics.median(row["lightning_step_ms"])
    return row


def print_step_comparisons(rows: Sequence[dict], label: str | None = None) -> None:
    """One line per ``step_comparison`` row (with its ``batch``, and ``label``'s value first when given)."""
    first = f"{label:>14}" if label else ""
    print(f"\n{first}{'batch':>6}{'plain ms/step':>15}{'Lightning ms/step':>19}{'ratio':>7}   window ratio (each run)")
    for r in rows:
        first = f"{r[label]:>14}" if label else ""
        print(f"{first}{r['batch']:>6}{statistics.median(r['plain_step_ms']):>15.2f}"
              f"{statistics.median(r['lightning_step_ms']):>19.2f}{r['median_step_ratio']:>7.3f}   "
              + " / ".join(f"{x:.3f}" for x in r["ratios"]))
