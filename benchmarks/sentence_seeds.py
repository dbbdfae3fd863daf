"""Continuous signing on a sentence dataset (e.g. RWTH-BOSTON-104) over several seeds: the recipe
(``configs/sign_sentences.yaml``: CTC + segment classification), CTC only, and the GRU-CTC baseline. Each run is one
fit, then the test of its best checkpoint (by ``val_wer``) with greedy decoding and with beam search, in its own
process; results go to ``RUN_DIR/<variant>/seed<N>/results.jsonl`` (a rerun skips the finished runs), and one table of
mean ± std is printed.

    python benchmarks/sentence_seeds.py --root DATA/rwth_boston104 --run_dir runs/sentence_seeds \
        [--seeds 3 --accelerator gpu --parallel 9]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common import each, mean_std, slug

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "sign_sentences.yaml"
VARIANTS = {
    "CTC + segment classification (the recipe)": {},
    "CTC only": {"model.init_args.sign_weight": 0.0},
    "GRU-CTC baseline (lr 0.003)": {"model.init_args.sign_weight": 0.0, "model.init_args.net.encoder": "gru",
                                    "model.init_args.net.dim": 128, "model.init_args.lr": 0.003},
}
SCORES = ("test_wer", "beam_test_wer", "test_segment_wer")


def one_run(variant: str, seed: int, args: argparse.Namespace) -> None:
    """Fit and test one variant with one seed (in this process)."""
    from signbridge.experiments import fit_and_test
    from signbridge.lightning_cli import config_from_files, run, run_folder_overrides, with_overrides

    folder = Path(args.run_dir) / slug(variant) / f"seed{seed}"
    config = config_from_files([CONFIG], {"data.init_args.root": str(Path(args.root).resolve()),
                                          "seed_everything": seed, "trainer.max_epochs": args.epochs,
                                          "trainer.accelerator": args.accelerator,
                                          "trainer.enable_progress_bar": False, **VARIANTS[variant]})
    row = fit_and_test(config, folder / "run")
    beam = with_overrides(config, {**run_folder_overrides(config, folder / "beam"), "ckpt_path": row["checkpoint"],
                                   "model.init_args.beam_width": args.beam})
    row["beam_test_wer"] = float(run("test", beam).trainer.callback_metrics["test_wer"])
    (folder / "results.jsonl").write_text(json.dumps({"variant": variant, "seed": seed, **row}) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", required=True)
    parser.add_argument("--run_dir", default="runs/sentence_seeds")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first_seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=150)
    parser.add_argument("--beam", type=int, default=8)
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--parallel", type=int, default=1)
    parser.add_argument("--variants", nargs="*", help="names of the variants to run (default: all)")
    parser.add_argument("--one", nargs=2, metavar=("VARIANT", "SEED"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        return one_run(args.one[0], int(args.one[1]), args)
    chosen = [name for name in VARIANTS if not args.variants or name in args.variants]
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    done = lambda name, seed: (Path(args.run_dir) / slug(name) / f"seed{seed}" / "results.jsonl").exists()  # noqa: E731
    jobs = [(name, seed) for seed in seeds for name in chosen if not done(name, seed)]
    print(f"{len(jobs)} runs to do, {args.parallel} at a time", flush=True)

    def launch(job):
        start = time.perf_counter()
        command = [sys.executable, __file__, *sys.argv[1:], "--one", *map(str, job)]
        finished = subprocess.run(command, capture_output=True, text=True)
        if finished.returncode:
            print(f"{job} failed:\n{finished.stderr[-3000:]}", file=sys.stderr)
        return {"job": job, "ok": not finished.returncode, "seconds": round(time.perf_counter() - start)}

    with ThreadPoolExecutor(args.parallel) as pool:
        for row in pool.map(launch, jobs):
            print(json.dumps(row), flush=True)
    lines = ["| model | seeds | " + " | ".join(SCORES) + " |", "|---|---|" + "---|" * len(SCORES)]
    summary = {}
    for name in chosen:
        rows = [json.loads(path.read_text()) for seed in seeds
                if (path := Path(args.run_dir) / slug(name) / f"seed{seed}" / "results.jsonl").exists()]
        summary[name] = rows
        cells = []
        for score in SCORES:
            values = [row[score] for row in rows if score in row]
            cells.append(f"{mean_std(values)} ({each(values)})" if values else "")
        lines.append(f"| {name} | {len(rows)} | " + " | ".join(cells) + " |")
    (Path(args.run_dir) / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"\n{args.root}, {args.epochs} epochs, {args.accelerator}\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
