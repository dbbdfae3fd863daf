"""k-fold accuracy of the sequence classifiers on a folder-per-class sequence dataset (e.g. wlasl40): the default
recipe (conv-transformer) against the recurrent baselines and the time-pooled baselines, and, with ``--ablation``,
the default recipe with each augmentation turned off (and all of them).

Every (variant, fold) is ``signbridge cv``'s fit-and-test of ``configs/sign_sequences.yaml`` with the variant's
overrides, run as its own process (``--parallel`` at a time); results go to ``RUN_DIR/<variant>/results.jsonl``, so
a rerun continues where an interrupted one stopped. Prints one Markdown table: mean ± std over the folds of test
accuracy, macro F1 and the worst class's recall; ``RUN_DIR/summary.json`` holds every variant's rows.

    python benchmarks/sequence_kfold.py --root DATA/wlasl40 --run_dir runs/seq_kfold [--ablation] \
        [--accelerator gpu --parallel 12]
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common import slug

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "sign_sequences.yaml"

VARIANTS: dict[str, dict] = {
    "conv_transformer (default)": {},
    "gru": {"model.init_args.net.encoder": "gru"},
    "lstm": {"model.init_args.net.encoder": "lstm"},
    # the time-pooled baselines: statistics over time + 8 resampled frames, no augmentation
    "pooled MLP (2 x 256)": {"model.init_args.net.encoder": "pooled", "model.init_args.net.dim": 256,
                             "model.init_args.net.dropout": 0.3, "data.init_args.augment": None},
    "pooled logistic regression": {"model.init_args.net.encoder": "pooled", "model.init_args.net.hidden_layers": 0,
                                   "data.init_args.augment": None},
}
AUGMENTATIONS = ("mirror", "affine", "resample", "time_mask", "part_dropout", "point_dropout")
ABLATION: dict[str, dict] = {
    "no augmentation": {"data.init_args.augment": None},
    **{f"without {name}": {f"data.init_args.augment.{name}": 0.0} for name in AUGMENTATIONS if name != "mirror"},
    "with mirror 0.5": {"data.init_args.augment.mirror": 0.5},
}


def fold_job(name: str, overrides: dict, fold: int, args: argparse.Namespace) -> dict:
    """One fold of one variant in a fresh process (``signbridge cv --fold_list [fold]``)."""
    run_dir = Path(args.run_dir) / slug(name)
    options = [f"--{key}={json.dumps(value) if not isinstance(value, str) else value}"
               for key, value in {**overrides, **base_overrides(args)}.items()]
    command = [sys.executable, "-m", "signbridge", "cv", "--config", str(CONFIG), "--folds", str(args.folds),
               "--fold_list", f"[{fold}]", "--run_dir", str(run_dir), *options]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        print(f"{name} fold {fold} failed:\n{done.stderr[-3000:]}", file=sys.stderr)
    return {"variant": name, "fold": fold, "seconds": seconds, "ok": done.returncode == 0}


def base_overrides(args: argparse.Namespace) -> dict:
    settings = {"data.init_args.root": str(Path(args.root).resolve()), "trainer.max_epochs": args.epochs,
                "trainer.accelerator": args.accelerator, "trainer.enable_progress_bar": False}
    if args.landmarks_file:
        settings["data.init_args.landmarks_file"] = args.landmarks_file
    return settings


def results(run_dir: Path, folds: int) -> list[dict]:
    path = run_dir / "results.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    return [row for row in rows if row.get("folds") == folds]


def table(variants: dict[str, dict], args: argparse.Namespace) -> str:
    lines = ["| variant | folds | test accuracy | macro F1 | worst class recall | per fold (accuracy) |",
             "|---|---|---|---|---|---|"]
    for name in variants:
        rows = sorted(results(Path(args.run_dir) / slug(name), args.folds), key=lambda row: row["fold"])
        if not rows:
            lines.append(f"| {name} | 0 | – | – | – | – |")
            continue
        cells = []
        for key in ("test_acc", "test_f1_macro", "test_recall_min"):
            values = [row[key] for row in rows]
            mean = sum(values) / len(values)
            std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
            cells.append(f"{mean:.3f} ± {std:.3f}")
        folds = " / ".join(f"{row['test_acc']:.3f}" for row in rows)
        lines.append(f"| {name} | {len(rows)} | {' | '.join(cells)} | {folds} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", required=True)
    parser.add_argument("--run_dir", default="runs/sequence_kfold")
    parser.add_argument("--landmarks_file", help="the dataset's sequence cache (built once, then shared)")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--parallel", type=int, default=1, help="fits at a time")
    parser.add_argument("--variants", nargs="*", help="names of VARIANTS / ABLATION to run (default: all chosen)")
    parser.add_argument("--ablation", action="store_true", help="the augmentation ablation instead of the models")
    args = parser.parse_args()
    variants = ABLATION if args.ablation else VARIANTS
    if args.ablation:
        variants = {"conv_transformer (default)": {}, **variants}
    if args.variants:
        variants = {name: value for name, value in {**VARIANTS, **ABLATION}.items() if name in args.variants}
    jobs = [(name, overrides, fold) for fold in range(args.folds) for name, overrides in variants.items()
            if fold not in {row["fold"] for row in results(Path(args.run_dir) / slug(name), args.folds)}]
    print(f"{len(jobs)} fits to run, {args.parallel} at a time", flush=True)
    summary = Path(args.run_dir) / "summary.json"  # every variant's rows in one file, rewritten after each fit
    with ThreadPoolExecutor(args.parallel) as pool:
        for done in pool.map(lambda job: fold_job(*job, args), jobs):
            print(json.dumps(done), flush=True)
            rows = {name: results(Path(args.run_dir) / slug(name), args.folds) for name in variants}
            summary.write_text(json.dumps(rows, indent=1))
    print(f"\n{args.folds}-fold on {args.root}, {args.epochs} epochs, {args.accelerator}\n")
    print(table(variants, args))


if __name__ == "__main__":
    main()
