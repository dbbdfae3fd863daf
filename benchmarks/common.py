"""What the benchmark scripts share: run-folder names, and the mean ± std cells of their tables."""

from __future__ import annotations

import statistics
from collections.abc import Sequence


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
