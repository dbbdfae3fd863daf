"""Does the text recognizer's recipe train from every seed? Fits and tests a recognizer config for several seeds and
variants at once (one process per run; on one GPU they share it), and prints each run's test word accuracy, the mean
and how many runs reach ``--target``.

    python benchmarks/recognizer_seeds.py --data ../shared/data/captcha/images --run-dir runs/rec_seeds \
        --config configs/trainer/gpu.yaml --seeds 0 1 2 3 4 \
        --variant "recipe=" --variant "no shortcut=--model.init_args.shortcut_weight=0"

A variant is ``NAME=ARGS``: extra ``signbridge fit`` arguments, space-separated, each ``--key=value``. Each run is
``restoration_captcha.py --variants=`` (fit, then test the best checkpoint by ``val_loss``), whose results.json lands in
``RUN_DIR/<variant>/seed<N>``; the table is also written to ``RUN_DIR/summary.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common import each, mean_std, slug

HERE = Path(__file__).resolve().parent


def run(args: argparse.Namespace, name: str, extra: str, seed: int) -> Path:
    folder = Path(args.run_dir) / slug(name) / f"seed{seed}"
    command = [sys.executable, str(HERE / "restoration_captcha.py"), "--data", args.data, "--run-dir", str(folder),
               "--variants=", "--recognizer-config", args.recognizer_config, "--logger", args.logger,
               f"--trainer-arg=--seed_everything={seed}", *(f"--config={c}" for c in args.config),
               *(f"--trainer-arg={a}" for a in [*args.trainer_arg, *extra.split()])]
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "log.txt", "w") as log:
        subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, check=False)
    return folder / "results.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--recognizer-config", default=str(HERE.parent / "configs" / "recognizer_captcha.yaml"))
    parser.add_argument("--config", action="append", default=[], help="extra config, e.g. configs/trainer/gpu.yaml")
    parser.add_argument("--trainer-arg", action="append", default=[], help="extra fit argument for every run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--variant", action="append", default=[], help="NAME=ARGS (default: the recipe alone)")
    parser.add_argument("--parallel", type=int, default=4, help="runs at once")
    parser.add_argument("--target", type=float, default=0.98, help="word accuracy a run must reach")
    parser.add_argument("--logger", choices=["tensorboard", "csv"], default="csv")
    args = parser.parse_args()
    variants = dict(v.split("=", 1) for v in args.variant) if args.variant else {"recipe": ""}
    jobs = [(name, extra, seed) for name, extra in variants.items() for seed in args.seeds]
    with ThreadPoolExecutor(args.parallel) as pool:
        files = list(pool.map(lambda job: run(args, *job), jobs))
    summary: dict[str, dict] = {}
    for (name, _, seed), file in zip(jobs, files):
        result = json.loads(file.read_text())["recognizer"] if file.exists() else None
        summary.setdefault(name, {})[seed] = result
    Path(args.run_dir, "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"\n{'variant':<28}{'runs':>5}{'reach':>7}  {'word acc (mean ± std)':<22}{'case-folded':<16}each seed")
    for name, runs in summary.items():
        done = [r for r in runs.values() if r is not None]
        accuracy = [r["test_word_acc"] for r in done]
        folded = [r.get("test_word_acc_nocase", float("nan")) for r in done]
        reach = sum(a >= args.target for a in accuracy)
        failed = len(runs) - len(done)
        print(f"{name:<28}{len(runs):>5}{reach:>7}  {mean_std(accuracy) if accuracy else '-':<22}"
              f"{mean_std(folded) if folded else '-':<16}{each(accuracy)}{f' ({failed} failed)' if failed else ''}")


if __name__ == "__main__":
    main()
