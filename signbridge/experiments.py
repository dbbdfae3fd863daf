"""Repeated runs of one config, for results that do not hang on one split or one seed: k-fold cross-validation
(``signbridge cv``) and seed ensembles (``signbridge ensemble``).

Each run is a ``signbridge fit`` in its own folder of the run folder followed by a test of its best checkpoint;
the test metrics are appended to ``RUN_DIR/results.jsonl``. Rerunning the same command skips the finished runs and
continues an interrupted one from its ``last.ckpt``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from .errors import InputError
from .files import check_writable

RESULTS_FILE = "results.jsonl"
SCORES = ("test_acc", "test_f1_macro", "test_recall_min")


def _read_results(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / RESULTS_FILE
    if not path.exists():
        return []
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut by a kill: that run is simply done again
            print(f"{path}:{number}: unreadable line ignored")
    return rows


def _append_result(run_dir: Path, row: dict[str, Any]) -> None:
    with open(run_dir / RESULTS_FILE, "a") as f:
        f.write(json.dumps(row) + "\n")


def fit_and_test(config: Mapping[str, Any], folder: Path) -> dict[str, Any]:
    """``signbridge fit`` of ``config`` with its outputs in ``folder`` (continued from the newest ``last.ckpt``
    there), then ``test`` of its best checkpoint; returns the test metrics and the checkpoint."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    from .lightning_cli import latest_checkpoint, run, run_folder_overrides, with_overrides

    last = latest_checkpoint(folder)
    overrides = {**run_folder_overrides(config, folder), **({"ckpt_path": str(last)} if last else {})}
    cli = run("fit", with_overrides(config, overrides))
    checkpoint = cli.trainer.checkpoint_callback
    best = checkpoint.best_model_path if isinstance(checkpoint, ModelCheckpoint) else ""
    if not best:
        raise InputError("cv and ensemble need a ModelCheckpoint with a monitor in the trainer config (every config "
                         "in configs/ has one): the best checkpoint is the one tested")
    tested = cli.trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path=best)[0]
    return {"checkpoint": best, **{key: float(value) for key, value in tested.items()}}


def cross_validate(config: dict[str, Any], run_dir: Path, folds: int = 5,
                   fold_list: list[int] | None = None) -> list[dict[str, Any]]:
    """Train and test a config on every fold of a stratified k-fold split (each fold is the test split once;
    validation is ``data.init_args.val_fraction`` of the rest) and report mean ± std. Rerun to continue after an
    interruption.

    Args:
        config: the fit config (``lightning_cli.load_config``); on the command line, ``--config FILE`` and any
            ``signbridge fit`` option (``--data.init_args.root DATA``).
        run_dir: folder for the runs (``fold{N}``) and ``results.jsonl``.
        folds: number of folds.
        fold_list: only these folds (default: all).

    Returns:
        the results of every fold done so far.
    """
    from .lightning_cli import with_overrides

    if folds < 2:
        raise InputError(f"--folds must be at least 2, got {folds}")
    wanted = list(range(folds)) if fold_list is None else list(fold_list)
    if any(not 0 <= fold < folds for fold in wanted):
        raise InputError(f"--fold_list must be folds of 0..{folds - 1}, got {wanted}")
    run_dir = _prepare(run_dir)
    done = {row["fold"] for row in _read_results(run_dir) if row.get("folds") == folds}
    for fold in wanted:
        if fold in done:
            continue
        split = with_overrides(config, {"data.init_args.num_folds": folds, "data.init_args.fold": fold})
        row = fit_and_test(split, run_dir / f"fold{fold}")
        _append_result(run_dir, {"run": f"fold{fold}", "fold": fold, "folds": folds, **row})
    return [row for row in _read_results(run_dir) if row.get("folds") == folds and row["fold"] in wanted]


def train_seeds(config: dict[str, Any], run_dir: Path, seeds: int = 5, first_seed: int = 0,
                weights: Literal["mean", "fitted"] = "mean", fit_thresholds: bool = False) -> list[dict[str, Any]]:
    """Train a config with N seeds on the same split (``seed_everything`` changed), test each, then test the
    ensemble of their best checkpoints (``EnsembleClassifier``: mean of probabilities, or weights fitted on
    validation). Rerun to continue after an interruption.

    Args:
        config: the fit config (``lightning_cli.load_config``); on the command line, ``--config FILE`` and any
            ``signbridge fit`` option (``--data.init_args.root DATA``).
        run_dir: folder for the runs (``seed{N}``, ``ensemble``) and ``results.jsonl``.
        seeds: number of members.
        first_seed: seeds FIRST .. FIRST+N-1 are trained.
        weights: ``mean`` (equal) or ``fitted`` on the validation split.
        fit_thresholds: per-class thresholds of the ensemble, fitted on validation.

    Returns:
        the members' rows and the ensemble's.
    """
    from .lightning_cli import run, run_folder_overrides, with_overrides

    run_dir = _prepare(run_dir)
    wanted = list(range(first_seed, first_seed + seeds))
    done = {row["seed"] for row in _read_results(run_dir) if row.get("run", "").startswith("seed")}
    for seed in wanted:
        if seed not in done:
            row = fit_and_test(with_overrides(config, {"seed_everything": seed}), run_dir / f"seed{seed}")
            _append_result(run_dir, {"run": f"seed{seed}", "seed": seed, **row})
    members = [row for row in _read_results(run_dir) if row.get("seed") in set(wanted)
               and row.get("run", "").startswith("seed")]
    checkpoints = [row["checkpoint"] for row in sorted(members, key=lambda row: row["seed"])]
    ensemble = {"class_path": "signbridge.tasks.EnsembleClassifier",
                "init_args": {"checkpoints": checkpoints, "weights": weights, "fit_thresholds": fit_thresholds}}
    overrides = {"model": ensemble, "trainer.devices": 1, **run_folder_overrides(config, run_dir / "ensemble")}
    cli = run("test", with_overrides(config, overrides))
    tested = cli.trainer.callback_metrics
    row = {"run": f"ensemble of {len(checkpoints)}", "members": checkpoints, "weights": weights,
           "member_weights": cli.model.member_weight.tolist(),
           **{key: float(tested[key]) for key in SCORES if key in tested}}
    _append_result(run_dir, row)
    return [*members, row]


def _prepare(run_dir: str | Path) -> Path:
    run_dir = Path(run_dir)
    check_writable(run_dir, "folder")
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def summary_table(rows: list[dict[str, Any]], groups: dict[str, list[dict[str, Any]]] | None = None) -> str:
    """A Markdown table of the runs, and of the mean ± std (population) of each group of runs."""
    keys = [key for key in SCORES if any(key in row for row in rows)]
    lines = [f"| run | {' | '.join(keys)} |", "|---|" + "---|" * len(keys)]
    for row in rows:
        lines.append(f"| {row['run']} | " + " | ".join(f"{row[key]:.4f}" if key in row else "–" for key in keys)
                     + " |")
    for name, members in (groups or {}).items():
        cells = []
        for key in keys:
            values = [row[key] for row in members if key in row]
            mean = sum(values) / len(values) if values else math.nan
            std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values)) if values else math.nan
            cells.append(f"{mean:.4f} ± {std:.4f}")
        lines.append(f"| **{name}** | {' | '.join(cells)} |")
    return "\n".join(lines)
