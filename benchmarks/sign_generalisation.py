"""Does the hybrid beat its branches and a plain landmark MLP? k-fold evaluation on one sign dataset.

For each test fold of a stratified k-fold split (validation = 10 % of the rest), every variant is trained with the
library's own recipe (``signbridge fit`` in a subprocess, best checkpoint by ``val_loss``) and its test predictions are
scored: accuracy, macro F1, the worst class's accuracy and the accuracy on the photos without a detected hand. For
the hybrid, the test accuracy of each of its classifiers (``fused``, ``image``, ``landmarks``, ``mean``) is recorded
too (``classifier_acc``), so the one it chose on validation can be compared with its own branches. The
baseline is the plain PyTorch landmark MLP that the hybrid must beat (126 wrist-relative coordinates + 2 presence
flags, standardised per feature, two hidden layers of 256, AdamW 1e-3, 300 epochs, Gaussian input noise).

    python benchmarks/sign_generalisation.py --root DATA --landmarks-file CACHE.npz --run-dir runs/gen \\
        --folds 5 --fold-list 0 1 2 --variants baseline landmarks image hybrid --parallel 4 \\
        -- --config configs/trainer/gpu.yaml
    # a smaller dataset simulated from a larger one: --train-per-class 20

Variants: ``baseline``, ``landmarks`` (``sign_landmarks.yaml``), ``hybrid`` and ``image`` (the GPU recipe and its
image branch alone), ``hybrid_cpu`` and ``image_cpu`` (the CPU recipe: ``sign_digits_hybrid_cpu.yaml`` +
``trainer/cpu.yaml``), ``hybrid_landmarks``, ``progressive``. A variant is a name, optionally with init-argument
overrides: ``hybrid:net.fusion=concat,net.modality_dropout=0``.
Arguments after ``--`` go to every ``signbridge fit`` of the GPU-recipe variants; ``landmarks`` and the CPU
recipe run their own configs on the CPU as they are (apart from the split), with ``--cpu-threads`` torch threads.
Results are appended to ``RUN_DIR/results.jsonl`` (a rerun
skips finished jobs) and summarised as mean +- std over the folds.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from signbridge import load_model
from signbridge.data import LandmarkDataModule
from signbridge.metadata import METADATA_FILE

REPO = Path(__file__).resolve().parents[1]  # the configs' folder (signbridge itself is the installed package)


HYBRID = ("configs/sign_digits_hybrid.yaml",)
HYBRID_CPU = (*HYBRID, "configs/sign_digits_hybrid_cpu.yaml", "configs/trainer/cpu.yaml")
CONFIGS = {
    "hybrid": (HYBRID, {}),
    "image": (HYBRID, {"net.inputs": "image", "landmark_pretraining": "null"}),
    "landmarks": (("configs/sign_landmarks.yaml",), {}),
    "hybrid_landmarks": (HYBRID, {"net.inputs": "landmarks"}),
    "progressive": ((*HYBRID, "configs/sign_digits_progressive.yaml"), {}),
    "hybrid_cpu": (HYBRID_CPU, {}),
    "image_cpu": (HYBRID_CPU, {"net.inputs": "image", "landmark_pretraining": "null"}),
}
# the variants that run on the CPU as their configs say, whatever the arguments after --
CPU_VARIANTS = ("landmarks", "hybrid_cpu", "image_cpu")


def parse_variant(text: str) -> tuple[str, str, dict]:
    name, _, overrides = text.partition(":")
    base = name.split("@")[0]
    if base not in CONFIGS and base != "baseline":
        raise SystemExit(f"unknown variant '{name}' (baseline, {', '.join(CONFIGS)})")
    args = dict(CONFIGS.get(base, ("", {}))[1])
    args.update(dict(item.split("=", 1) for item in overrides.split(",") if item))
    return text, base, args


def split_args(args, fold: int) -> list[str]:
    out = ["--data.init_args.num_folds", str(args.folds), "--data.init_args.fold", str(fold),
           "--data.init_args.split_seed", str(args.split_seed)]
    if args.train_per_class:
        out += ["--data.init_args.train_per_class", str(args.train_per_class)]
    return out


def run_fit(args, variant: str, base: str, overrides: dict, fold: int) -> Path:
    """Train one variant on one fold; returns the best checkpoint."""
    configs = [argument for config in CONFIGS[base][0] for argument in ("--config", str(REPO / config))]
    save_dir = Path(args.run_dir) / variant.replace(":", "_").replace(",", "_").replace("=", "-") / f"fold{fold}"
    command = [
        sys.executable, "-m", "signbridge", "fit", *configs,
        *(args.fit_args if base not in CPU_VARIANTS else []),
        "--data.init_args.root", args.root, "--data.init_args.landmarks_file", args.landmarks_file,
        *split_args(args, fold), "--seed_everything", str(args.seed + fold),
        "--trainer.logger.class_path", "lightning.pytorch.loggers.CSVLogger",
        "--trainer.logger.init_args.save_dir", str(save_dir), "--trainer.logger.init_args.name", "run",
    ]
    for key, value in overrides.items():
        command += [f"--model.init_args.{key}", value]
    save_dir.mkdir(parents=True, exist_ok=True)
    # many CPU threads per process only fight each other when jobs run side by side
    env = {**os.environ, "OMP_NUM_THREADS": str(args.cpu_threads)} if base in CPU_VARIANTS else None
    with open(save_dir / "fit.log", "w") as log:
        subprocess.run(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, check=True, env=env)
    metadata = sorted(save_dir.glob(f"run/version_*/checkpoints/{METADATA_FILE}"))[-1]
    return metadata.parent / json.loads(metadata.read_text())["checkpoint"]


def test_predictions(args, base: str, checkpoint: Path, fold: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """Labels, predictions and hand presence on the test fold, and the test accuracy of each classifier of a
    hybrid."""
    model = load_model(checkpoint)
    data = model.training_datamodule(num_workers=2, batch_size=64)  # the fit's own split and image size
    data.prepare_data()
    data.setup("test")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device)
    labels, predictions, present, correct = [], [], [], {}
    with torch.no_grad(), torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
        for batch in data.test_dataloader():
            batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
            outputs = model.forward_outputs(batch) if base != "landmarks" else {"logits": model(batch)}
            for name, logits in outputs.items():
                correct.setdefault(name, []).append((logits.argmax(-1) == batch["label"]).cpu())
            predictions.append(outputs["logits"].float().argmax(-1).cpu())
            labels.append(batch["label"].cpu())
            present.append(batch["present"].any(-1).cpu())
    classifier_acc = {name: float(torch.cat(hits).float().mean()) for name, hits in correct.items() if name != "logits"}
    if hasattr(model.model, "output"):
        classifier_acc["chosen"] = f"{model.model.output}/{model.model.no_hand_output}"
    return torch.cat(labels).numpy(), torch.cat(predictions).numpy(), torch.cat(present).numpy(), classifier_acc


def baseline_predictions(args, fold: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The plain landmark MLP, trained on the training part of the fold, predicting its test part."""
    from torch import nn

    data = LandmarkDataModule(args.root, landmarks_file=args.landmarks_file, num_folds=args.folds, fold=fold,
                              split_seed=args.split_seed, train_per_class=args.train_per_class, augment=None)
    data.prepare_data()
    data.setup("fit")
    data.setup("test")

    def arrays(split):
        dataset = data.datasets[split]
        features = torch.cat([dataset.landmarks.flatten(1), dataset.present.float()], dim=1)
        return features, torch.as_tensor(dataset.labels), dataset.present.any(1)

    (x_train, y_train, _), (x_test, y_test, has_hand) = arrays("train"), arrays("test")
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(x_train.shape[1], 256), nn.ReLU(), nn.Dropout(0.3), nn.Linear(256, 256), nn.ReLU(),
                        nn.Dropout(0.3), nn.Linear(256, data.num_classes))
    optimizer = torch.optim.AdamW(net.parameters(), 1e-3)
    for _ in range(300):
        net.train()
        for batch in torch.randperm(len(y_train)).split(64):
            noisy = x_train[batch] + 0.1 * torch.randn_like(x_train[batch])
            loss = nn.functional.cross_entropy(net(noisy), y_train[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    net.eval()
    with torch.no_grad():
        return y_test.numpy(), net(x_test).argmax(-1).numpy(), has_hand.numpy()


def scores(labels: np.ndarray, predictions: np.ndarray, present: np.ndarray) -> dict[str, float]:
    from torchmetrics.functional.classification import multiclass_f1_score, multiclass_recall

    correct = labels == predictions
    target, predicted = torch.as_tensor(labels), torch.as_tensor(predictions)
    num_classes = int(max(labels.max(), predictions.max())) + 1
    tested = torch.as_tensor(np.unique(labels))  # classes of the test split (recall of any other is undefined)
    f1 = multiclass_f1_score(predicted, target, num_classes, average="none")[tested]
    per_class = multiclass_recall(predicted, target, num_classes, average="none")[tested]
    return {"acc": float(correct.mean()), "f1_macro": float(f1.mean()), "worst_class_acc": float(per_class.min()),
            "no_hand_acc": float(correct[~present].mean()) if (~present).any() else float("nan"),
            "with_hand_acc": float(correct[present].mean()) if present.any() else float("nan"),
            "test_images": int(len(labels)), "no_hand_images": int((~present).sum())}


def run_job(args, variant: str, base: str, overrides: dict, fold: int) -> dict:
    start = time.perf_counter()
    if base == "baseline":
        torch.set_num_threads(2)
        result = scores(*baseline_predictions(args, fold, args.seed + fold))
    else:
        checkpoint = run_fit(args, variant, base, overrides, fold)
        *predicted, classifier_acc = test_predictions(args, base, checkpoint, fold)
        result = scores(*predicted)
        result.update(checkpoint=str(checkpoint), classifier_acc=classifier_acc)
    result.update(variant=variant, fold=fold, seconds=round(time.perf_counter() - start, 1))
    with open(Path(args.run_dir) / "results.jsonl", "a") as f:
        f.write(json.dumps(result) + "\n")
    classifiers = result.get("classifier_acc", {})
    branches = "  ".join(f"{name} {value if isinstance(value, str) else f'{value:.4f}'}"
                         for name, value in classifiers.items() if len(classifiers) > 1)
    print(f"{variant:<40} fold {fold}: acc {result['acc']:.4f}  f1 {result['f1_macro']:.4f}  "
          f"worst {result['worst_class_acc']:.3f}  no-hand {result['no_hand_acc']:.3f}  {result['seconds']:.0f} s"
          f"  {branches}", flush=True)
    return result


def summary(results: list[dict], variants: list[str]) -> str:
    keys = ("acc", "f1_macro", "worst_class_acc", "no_hand_acc", "with_hand_acc")
    header = f"| variant | folds | {' | '.join(keys)} |"
    lines = [header, "|" + "---|" * (len(keys) + 2)]
    for variant in variants:
        rows = [r for r in results if r["variant"] == variant]
        if not rows:
            continue
        cells = []
        for key in keys:
            values = np.array([r[key] for r in rows], dtype=float)
            cells.append(f"{np.nanmean(values):.3f} ± {np.nanstd(values):.3f}")
        lines.append(f"| {variant} | {len(rows)} | {' | '.join(cells)} |")
    for row in sorted(results, key=lambda r: (r["variant"], r["fold"])):
        if row["variant"] in variants and len(row.get("classifier_acc", {})) > 1:
            accuracies = ", ".join(f"{name} {value:.4f}" for name, value in row["classifier_acc"].items()
                                   if name != "chosen")
            lines.append(f"{row['variant']} fold {row['fold']}: chose {row['classifier_acc']['chosen']} (with/without "
                         "a hand); "
                         f"test accuracy of its classifiers: {accuracies}")
    return "\n".join(lines)


def main() -> None:
    argv = sys.argv[1:]
    fit_args = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", required=True)
    parser.add_argument("--landmarks-file", required=True, help="the dataset's landmark cache (signbridge landmarks)")
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--fold-list", type=int, nargs="+", default=None, help="default: every fold")
    parser.add_argument("--train-per-class", type=int, default=None, help="simulate a smaller training set")
    parser.add_argument("--split-seed", type=int, default=42)
    parser.add_argument("--seed", type=int, default=0, help="training seed of fold 0 (fold f uses seed + f)")
    parser.add_argument("--cpu-threads", type=int, default=2, help="torch threads of each CPU variant's fit")
    parser.add_argument("--variants", nargs="+", default=["baseline", "landmarks", "image", "hybrid"])
    parser.add_argument("--parallel", type=int, default=1, help="jobs at once (they share the GPU)")
    args = parser.parse_args(argv)
    args.fit_args = fit_args
    Path(args.run_dir).mkdir(parents=True, exist_ok=True)
    results_file = Path(args.run_dir) / "results.jsonl"
    done = {(r["variant"], r["fold"]) for r in map(json.loads, results_file.read_text().splitlines())} \
        if results_file.exists() else set()
    folds = args.fold_list if args.fold_list is not None else list(range(args.folds))
    variants = [parse_variant(v) for v in args.variants]
    # the slow image variants first, so the cheap landmark jobs fill the gaps at the end
    jobs = [(v, base, over, fold) for fold in folds for v, base, over in variants if (v, fold) not in done]
    jobs.sort(key=lambda job: job[1] in ("baseline", "landmarks"))
    with ThreadPoolExecutor(args.parallel) as pool:
        futures = [pool.submit(run_job, args, *job) for job in jobs]
        for future in futures:
            try:
                future.result()
            except subprocess.CalledProcessError as error:
                print(f"a job failed: {error}", flush=True)
    results = [json.loads(line) for line in results_file.read_text().splitlines()] if results_file.exists() else []
    print(summary(results, [v for v, _, _ in variants]))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    main()
