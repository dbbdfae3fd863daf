"""What helps a classifier trained on long-tailed data? Sign Language Digits made long-tailed, several repeats.

The training split of class k keeps at most ``round(205 * 0.6**k)`` photos (205, 123, 74, 44, 27, 16, 10, 6, 3, 2);
validation and test stay balanced (stratified 80/10/10 split, ``split_seed`` 42 + repeat). Each variant is trained
with the library's own recipe (``signbridge fit`` in a subprocess, best checkpoint by the config's monitor) with
``fit_thresholds: true``, and its test predictions are scored twice: plain argmax, and with the per-class logit
biases fitted on validation ("+ thresholds"). Rows:

- ``cross_entropy``: the config as it is;
- ``class_weights``: ``class_weights: balanced``;
- ``focal``: ``loss: focal`` (gamma 2);
- ``balanced_sampler``: ``sampling: balanced``;
- ``oversample``: ``sampling: oversample`` (every class repeated up to the largest, augmented);
- ``ensemble``: ``EnsembleClassifier`` (mean of probabilities) of 5 cross-entropy models of different seeds.

Columns: macro F1, accuracy and the worst class's recall on the test split, mean ± std over the repeats (each repeat
has its own split and seeds).

    python benchmarks/imbalance.py --root DATA --landmarks-file digits.npz --run-dir RUN --model landmarks
    python benchmarks/imbalance.py --root DATA --landmarks-file digits.npz --run-dir RUN --model hybrid \\
        --parallel 4 -- --config configs/trainer/gpu.yaml

Arguments after ``--`` go to every ``signbridge fit``. Finished fits are recorded in ``RUN/fits.jsonl`` and skipped by
a rerun; the table is printed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import numpy as np
import torch

from signbridge.data import LandmarkDataModule, SignDataModule
from signbridge.metadata import METADATA_FILE
from signbridge.metrics import fit_logit_biases, per_class_scores
from signbridge.tasks import EnsembleClassifier, HybridSignClassifier, LandmarkClassifier

REPO = Path(__file__).resolve().parents[1]  # the configs' folder (signbridge itself is the installed package)


LONG_TAIL = [round(205 * 0.6**k) for k in range(10)]
VARIANTS = {
    "cross_entropy": [],
    "class_weights": ["--model.init_args.class_weights", "balanced"],
    "focal": ["--model.init_args.loss", "focal"],
    "balanced_sampler": ["--data.init_args.sampling", "balanced"],
    "oversample": ["--data.init_args.sampling", "oversample"],
}
CONFIGS = {"landmarks": ["configs/sign_landmarks.yaml"], "hybrid": ["configs/sign_digits_hybrid.yaml"]}


def fit(args, name: str, repeat: int, seed: int, overrides: list[str]) -> dict:
    """One ``signbridge fit``; returns its record (best checkpoint, seconds)."""
    folder = Path(args.run_dir) / f"repeat{repeat}" / f"{name}_seed{seed}"
    command = [
        sys.executable, "-m", "signbridge", "fit",
        *(a for config in [*CONFIGS[args.model], *args.extra_config] for a in ("--config", str(REPO / config))),
        *args.fit_args,
        "--data.init_args.root", args.root, "--data.init_args.landmarks_file", args.landmarks_file,
        "--data.init_args.split_seed", str(42 + repeat), "--data.init_args.val_fraction", "0.1",
        "--data.init_args.test_fraction", "0.1", "--data.init_args.train_per_class", json.dumps(LONG_TAIL),
        "--model.init_args.fit_thresholds", "true", "--seed_everything", str(seed),
        "--trainer.logger.init_args.save_dir", str(folder), *overrides,
    ]
    if args.model == "landmarks":  # (the GPU trainer config has a progress bar callback of its own)
        command += ["--trainer.enable_progress_bar", "false"]
    folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    # a landmark model is tiny: many CPU threads per process only fight each other when fits run side by side
    env = {**os.environ, "OMP_NUM_THREADS": "1"} if args.model == "landmarks" and args.parallel > 1 else None
    with open(folder / "fit.log", "w") as log:
        subprocess.run(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, check=True, env=env)
    metadata = sorted(folder.glob(f"*/version_*/checkpoints/{METADATA_FILE}"))[-1]
    checkpoint = metadata.parent / json.loads(metadata.read_text())["checkpoint"]
    return {"name": name, "repeat": repeat, "seed": seed, "checkpoint": str(checkpoint),
            "seconds": round(time.perf_counter() - start, 1)}


def split_logits(args, model, repeat: int, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's logits and the labels of one split of the repeat's data."""
    data_class = LandmarkDataModule if args.model == "landmarks" else SignDataModule
    extra = {} if args.model == "landmarks" else {"image_size": args.image_size}
    data = data_class(args.root, landmarks_file=args.landmarks_file, split_seed=42 + repeat, val_fraction=0.1,
                      test_fraction=0.1, num_workers=args.workers, batch_size=64, **extra)
    data.prepare_data()
    data.setup("fit" if split == "val" else "test")
    loader = data.val_dataloader() if split == "val" else data.test_dataloader()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device).eval()
    logits, labels = [], []
    with torch.no_grad(), torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
        for batch in loader:
            batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
            logits.append(model(batch).float().cpu())
            labels.append(batch["label"].cpu())
    return torch.cat(logits), torch.cat(labels)


def scores(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    num_classes = logits.shape[1]
    confusion = torch.bincount(labels * num_classes + logits.argmax(1), minlength=num_classes**2)
    rows = per_class_scores(confusion.reshape(num_classes, num_classes))
    return {"f1_macro": float(np.mean([r["f1"] for r in rows])),
            "acc": float((logits.argmax(1) == labels).float().mean()),
            "worst_recall": float(min(r["recall"] for r in rows))}


def evaluate(args, fits: list[dict], repeat: int) -> list[dict]:
    """Rows of one repeat: every variant plain and with its thresholds, and the ensemble."""
    task_class = LandmarkClassifier if args.model == "landmarks" else HybridSignClassifier
    rows = []
    for name in args.variants:
        record = next(f for f in fits if f["repeat"] == repeat and f["name"] == name and f["seed"] == repeat)
        model = task_class.load_from_checkpoint(record["checkpoint"], map_location="cpu", weights_only=True)
        logits, labels = split_logits(args, model, repeat, "test")
        rows.append({"variant": name, "repeat": repeat, **scores(logits, labels)})
        rows.append({"variant": f"{name} + thresholds", "repeat": repeat,
                     **scores(logits + model.logit_bias.cpu(), labels)})
    if args.ensemble < 2:
        return rows
    members = sorted((f for f in fits if f["repeat"] == repeat and f["name"] == "cross_entropy"),
                     key=lambda f: f["seed"])[:args.ensemble]
    ensemble = EnsembleClassifier([f["checkpoint"] for f in members])
    logits, labels = split_logits(args, ensemble, repeat, "test")
    rows.append({"variant": f"ensemble of {len(members)} (cross_entropy)", "repeat": repeat,
                 **scores(logits, labels)})
    val_logits, val_labels = split_logits(args, ensemble, repeat, "val")
    bias = fit_logit_biases(val_logits, val_labels)
    rows.append({"variant": f"ensemble of {len(members)} + thresholds", "repeat": repeat,
                 **scores(logits + bias, labels)})
    return rows


def table(rows: list[dict]) -> str:
    keys = ("f1_macro", "acc", "worst_recall")
    lines = ["| variant | repeats | macro F1 | accuracy | worst class recall |", "|---|---|---|---|---|"]
    for variant in dict.fromkeys(r["variant"] for r in rows):
        chosen = [r for r in rows if r["variant"] == variant]
        cells = [f"{np.mean([r[k] for r in chosen]):.3f} ± {np.std([r[k] for r in chosen]):.3f}" for k in keys]
        lines.append(f"| {variant} | {len(chosen)} | {' | '.join(cells)} |")
    return "\n".join(lines)


def main() -> None:
    argv = sys.argv[1:]
    fit_args = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", required=True)
    parser.add_argument("--landmarks-file", required=True, help="the dataset's landmark cache (signbridge landmarks)")
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--model", choices=list(CONFIGS), default="landmarks")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ensemble", type=int, default=5, help="members of the ensemble")
    parser.add_argument("--parallel", type=int, default=1, help="fits at once")
    parser.add_argument("--workers", type=int, default=2, help="data loader workers of the evaluation")
    parser.add_argument("--image-size", type=int, default=224, help="must match the fit arguments")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--extra-config", nargs="*", default=[],
                        help="configs added after the model's (e.g. configs/imbalanced.yaml)")
    parser.add_argument("--fits-only", action="store_true", help="train, do not evaluate (e.g. on a time limit)")
    args = parser.parse_args(argv)
    args.fit_args = fit_args
    run_dir = Path(args.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    fits_file = run_dir / "fits.jsonl"
    fits = [json.loads(line) for line in fits_file.read_text().splitlines()] if fits_file.exists() else []
    done = {(f["name"], f["repeat"], f["seed"]) for f in fits}
    jobs = [(name, r, r, VARIANTS[name]) for r in range(args.repeats) for name in args.variants]
    if args.ensemble > 1:
        jobs += [("cross_entropy", r, r + 100 * k, []) for r in range(args.repeats) for k in range(1, args.ensemble)]
    jobs = [job for job in jobs if job[:3] not in done]
    print(f"{len(jobs)} fits to run ({len(done)} done); training limits per class {LONG_TAIL}", flush=True)
    with ThreadPoolExecutor(args.parallel) as pool:
        futures = {pool.submit(fit, args, *job): job for job in jobs}
        for future in as_completed(futures):
            try:
                record = future.result()
            except subprocess.CalledProcessError as error:
                print(f"fit {futures[future][:3]} failed: {error}", flush=True)
                continue
            fits.append(record)
            with open(fits_file, "a") as f:
                f.write(json.dumps(record) + "\n")
            print(f"{record['name']:<18} repeat {record['repeat']} seed {record['seed']:>3}: {record['seconds']:.0f} s",
                  flush=True)
    if args.fits_only:
        return
    rows = [row for r in range(args.repeats) for row in evaluate(args, fits, r)]
    (run_dir / "results.json").write_text(json.dumps(rows, indent=1))
    print(table(rows))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    main()
