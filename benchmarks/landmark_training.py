"""The landmark-only recipe on a CPU: ``signbridge fit`` of ``configs/sign_landmarks.yaml`` against a plain PyTorch
loop of the same network on the same tensors, idle and beside a second CPU-bound process (a laptop doing other work).

The Lightning run is the user's command as it runs (checkpoints, TensorBoard logs, validation every epoch, the
confusion-matrix image at its interval), timed from the config to the end of ``fit``; the landmark cache exists
beforehand. The plain loop trains the same network class (a copy) on the same training and validation tensors with
the same batch sizes, the same batch augmentation (``HandAugment.landmarks_batch``), the task's AdamW (fused when the
task's is) with a cosine schedule, and one validation pass per epoch. Each setting runs ``--repeats`` fits and plain
loops, alternating, and reports the medians: of the whole runs, of each fit's ratio to the plain loop run right
after it, and of the time from one epoch's start to the next (training, validation, checkpoints). Both use the
threads a console command would choose (``configure_threads``: ``SIGNBRIDGE_THREADS``, or the cores other work
leaves free). Rows go to ``--output`` (JSON lines) and one table is printed.

``--bare`` also times Lightning's floor on this recipe: the fitted task (a copy) and its datamodule in a plain
``lightning.Trainer`` without a logger, checkpoints or callbacks, and once more with the task's ``self.log`` calls
switched off. What separates the recipe from that floor is what the recipe adds (logs, checkpoints, the CLI).

    python benchmarks/landmark_training.py --root DATA/sign_digits/Dataset --landmarks_file CACHE [--epochs 50]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from common import adamw_like, append_rows

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "sign_landmarks.yaml"


class EpochClock(L.Callback):
    """Records the start time of every training epoch of a fit."""

    def __init__(self):
        self.starts: list[float] = []

    def on_train_epoch_start(self, trainer, pl_module):
        self.starts.append(time.perf_counter())


def median_epoch(starts: list[float]) -> float:
    """The median time from one epoch's start to the next (its training, validation and checkpoints)."""
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    return statistics.median(gaps) if gaps else float("nan")


def lightning_fit(args: argparse.Namespace, folder: Path, clock=None):
    from signbridge.lightning_cli import config_from_files, fit

    config = config_from_files([CONFIG], {
        "data.init_args.root": str(Path(args.root).resolve()), "data.init_args.landmarks_file": args.landmarks_file,
        "trainer.max_epochs": args.epochs, "trainer.enable_progress_bar": False,
        "trainer.enable_model_summary": False, "trainer.logger.init_args.save_dir": str(folder),
        **({"data.init_args.batch_size": args.batch_size} if args.batch_size else {}),
        **({"data.init_args.batches_per_step": args.batches_per_step} if args.batches_per_step else {})})
    start = time.perf_counter()
    cli = fit(config, callbacks=[clock] if clock is not None else None)
    return time.perf_counter() - start, cli


def bare_fit(cli, epochs: int, with_logs: bool, clock: EpochClock) -> float:
    """Seconds of a plain ``lightning.Trainer`` fit of a copy of the fitted task on its datamodule: no logger,
    checkpoints, callbacks or CLI (``with_logs``: the task's ``self.log`` calls run, with nothing to write to)."""
    task = copy.deepcopy(cli.model)
    if not with_logs:
        task.log = task.log_dict = lambda *args, **kwargs: None
    trainer = L.Trainer(accelerator="cpu", devices=1, max_epochs=epochs, logger=False, enable_checkpointing=False,
                        callbacks=[clock], enable_progress_bar=False, enable_model_summary=False,
                        log_every_n_steps=cli.trainer.log_every_n_steps)
    start = time.perf_counter()
    trainer.fit(task, datamodule=cli.datamodule)
    return time.perf_counter() - start


def plain_loop(cli, epochs: int, starts: list[float] | None = None) -> float:
    """The same network, tensors, augmentation and optimiser, without Lightning (each epoch's start appended to
    ``starts``)."""
    data, task = cli.datamodule, cli.model
    net = copy.deepcopy(task.model).train()
    train, val = data.datasets["train"], data.datasets["val"]
    tensors = {split: (d.landmarks, d.present, d.aspect, torch.tensor(d.labels)) for split, d in
               (("train", train), ("val", val))}
    size, eval_size = data.hparams.batch_size, data.val_dataloader().batch_size  # the recipe's validation batches
    start = time.perf_counter()
    optimizer = adamw_like(task, net.parameters(), task.hparams.lr, task.hparams.weight_decay)
    steps = epochs * (len(train) // size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(1, steps))
    for _ in range(epochs):
        if starts is not None:
            starts.append(time.perf_counter())
        net.train()
        landmarks, present, aspect, labels = tensors["train"]
        order = torch.randperm(len(labels))
        for first in range(0, len(order) - size + 1, size):  # the last incomplete batch dropped, as Lightning's
            index = order[first:first + size]
            points, hands = data.augmenter.landmarks_batch(landmarks[index], present[index])
            loss = F.cross_entropy(net(points, hands, aspect[index]), labels[index], label_smoothing=0.1)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
        net.eval()
        landmarks, present, aspect, labels = tensors["val"]
        with torch.no_grad():
            correct = sum(int((net(landmarks[i:i + eval_size], present[i:i + eval_size], aspect[i:i + eval_size])
                               .argmax(1) == labels[i:i + eval_size]).sum()) for i in range(0, len(labels), eval_size))
        assert 0 <= correct <= len(labels)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", required=True)
    parser.add_argument("--landmarks_file", required=True, help="the dataset's landmark cache (built beforehand)")
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--batch_size", type=int, help="instead of the recipe's (both runs)")
    parser.add_argument("--batches_per_step", type=int, help="instead of the recipe's (the Lightning run)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="fits and plain loops per setting, alternating; the table shows medians")
    parser.add_argument("--bare", action="store_true",
                        help="also a plain lightning.Trainer fit of the task, with and without its self.log calls")
    parser.add_argument("--output")
    parser.add_argument("--settings", nargs="*", default=["idle", "busy"])
    args = parser.parse_args()
    from signbridge.cli import configure_threads

    default_threads, user_threads = torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")
    rows = []
    for setting in args.settings:
        busy = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if setting == "busy" else None
        try:
            time.sleep(0.5)
            torch.set_num_threads(default_threads)
            if user_threads is None:  # the previous setting's choice is in OMP_NUM_THREADS: choose afresh
                os.environ.pop("OMP_NUM_THREADS", None)
            configure_threads()  # as a console command chooses them (SIGNBRIDGE_THREADS to choose)
            fits, plains, fit_epochs, plain_epochs = [], [], [], []
            bare: dict[str, list[float]] = {"bare": [], "bare_epoch": [], "unlogged": [], "unlogged_epoch": []}
            for _ in range(args.repeats):  # alternating, so a slower minute of the machine hits both
                clock, starts = EpochClock(), []
                with tempfile.TemporaryDirectory() as folder:
                    seconds, cli = lightning_fit(args, Path(folder), clock)
                    plain = plain_loop(cli, args.epochs, starts)
                    for name, with_logs in (("bare", True), ("unlogged", False)) if args.bare else ():
                        bare_clock = EpochClock()
                        bare[name].append(bare_fit(cli, args.epochs, with_logs, bare_clock))
                        bare[f"{name}_epoch"].append(median_epoch(bare_clock.starts))
                fits.append(seconds)
                plains.append(plain)
                fit_epochs.append(median_epoch(clock.starts))
                plain_epochs.append(median_epoch(starts))
        finally:
            if busy is not None:
                busy.kill()
                busy.wait()
        fit_s, plain_s = statistics.median(fits), statistics.median(plains)
        fit_epoch, plain_epoch = statistics.median(fit_epochs), statistics.median(plain_epochs)
        rows.append({"setting": setting, "cores": len(os.sched_getaffinity(0)), "threads": torch.get_num_threads(),
                     "epochs": args.epochs, "batch_size": cli.datamodule.hparams.batch_size,
                     "batches_per_step": cli.datamodule.hparams.get("batches_per_step", 1),
                     "train_samples": len(cli.datamodule.datasets["train"]), "repeats": args.repeats,
                     "lightning_s": round(fit_s, 2), "plain_s": round(plain_s, 2), "ratio": round(fit_s / plain_s, 3),
                     # each fit against the plain loop run right after it (the same minute of the machine)
                     "pair_ratio": round(statistics.median(f / p for f, p in zip(fits, plains)), 3),
                     "lightning_s_all": [round(x, 2) for x in fits], "plain_s_all": [round(x, 2) for x in plains],
                     "lightning_ms_per_epoch": round(1000 * fit_epoch, 1),
                     "plain_ms_per_epoch": round(1000 * plain_epoch, 1),
                     "epoch_ratio": round(fit_epoch / plain_epoch, 3),
                     "val_acc": round(float(cli.trainer.callback_metrics.get("val_acc", float("nan"))), 4)})
        for name in ("bare", "unlogged") if args.bare else ():
            rows[-1].update({f"{name}_s": round(statistics.median(bare[name]), 2),
                             f"{name}_ratio": round(statistics.median(bare[name]) / plain_s, 3),
                             f"{name}_epoch_ratio": round(statistics.median(bare[f"{name}_epoch"]) / plain_epoch, 3)})
        print(json.dumps(rows[-1]), flush=True)
        append_rows(args.output, rows[-1:])
    print("\n| setting | cores | torch threads | Lightning fit (s) | plain loop (s) | Lightning / plain | "
          "median of pairs | ms per epoch, Lightning / plain | per epoch ratio |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['setting']} | {row['cores']} | {row['threads']} | {row['lightning_s']} | {row['plain_s']} | "
              f"{row['ratio']} | {row['pair_ratio']} | {row['lightning_ms_per_epoch']} / "
              f"{row['plain_ms_per_epoch']} | {row['epoch_ratio']} |")
    if args.bare:
        print("\n| setting | plain lightning.Trainer / plain (per epoch) | the same without self.log (per epoch) |")
        print("|---|---|---|")
        for row in rows:
            print(f"| {row['setting']} | {row['bare_ratio']} ({row['bare_epoch_ratio']}) | {row['unlogged_ratio']} "
                  f"({row['unlogged_epoch_ratio']}) |")


if __name__ == "__main__":
    main()
