"""The zero-shot protocol of text-aligned sign models (``docs/signs_and_words.md``) on a folder-per-class sequence
dataset with a word-vector file (e.g. wlasl40 with the WLASL gloss vectors).

For each seeded seen/unseen split (``--unseen`` classes held out, ``--seeds`` draws): the text-aligned recipe
(``configs/sign_sequences_text.yaml``), the same with random vectors (the control: it must be near chance on the
unseen signs), and the plain classifier (``configs/sign_sequences.yaml``) trained on the same seen classes (its test
accuracy is over the seen classes' test sequences: the seen accuracy to compare with). Each run is ``signbridge cv``
of one fold (fit, then test of the best checkpoint) in its own process; results go to
``RUN_DIR/<variant>/seed<N>/results.jsonl`` (a rerun continues), and one table is printed.

    python benchmarks/zero_shot.py --root DATA/wlasl40 --vectors DATA/wlasl_gloss_vectors.txt \
        --run_dir runs/zero_shot [--seeds 3 --unseen 10 --accelerator gpu --parallel 9]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from common import each, mean_std, slug

REPO = Path(__file__).resolve().parents[1]
ALIGNED = REPO / "configs" / "sign_sequences_text.yaml"
PLAIN = REPO / "configs" / "sign_sequences.yaml"
SCORES = ("test_unseen_acc", "test_unseen_top5", "test_seen_acc", "test_gzsl_seen_acc", "test_gzsl_unseen_acc",
          "test_gzsl_h", "test_acc")


def random_vectors(source: Path, target: Path, seed: int = 0) -> Path:
    """The words of ``source`` with Gaussian random vectors of the same size (the control)."""
    lines = [line.split(" ", 1) for line in source.read_text(encoding="utf-8").splitlines() if line.strip()]
    dim = len(lines[-1][1].split())
    rng = np.random.default_rng(seed)
    rows = [" ".join([word, *(f"{v:.4f}" for v in rng.standard_normal(dim))]) for word, _ in lines
            if len(_.split()) == dim]
    target.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return target


def variants(args: argparse.Namespace) -> dict[str, tuple[Path, dict]]:
    """The recipe, its control and the plain classifier; with ``--design``, the design's alternatives too."""
    words = {"model.init_args.text.vectors": str(Path(args.vectors).resolve())}
    control = {"model.init_args.text.vectors": str(random_vectors(Path(args.vectors), Path(args.run_dir) /
                                                                  "random_vectors.txt").resolve())}
    chosen = {
        "text-aligned (gloss vectors)": (ALIGNED, words),
        "text-aligned (random vectors: control)": (ALIGNED, control),
        "plain classifier (seen classes)": (PLAIN, {}),
        "text-aligned, embedding prototypes only": (ALIGNED, {**words, "model.init_args.landmark_prototypes": False}),
    }
    if args.design:
        chosen.update({
            "new names by the trained alignment": (ALIGNED, {**words, "model.init_args.new_names": "alignment"}),
            "vectors centred": (ALIGNED, {**words, "model.init_args.text.center": True}),
            "mapping text_to_sign": (ALIGNED, {**words, "model.init_args.mapping": "text_to_sign"}),
            "prototype ridge 0.3": (ALIGNED, {**words, "model.init_args.prototype_ridge": 0.3}),
            "prototype ridge 3": (ALIGNED, {**words, "model.init_args.prototype_ridge": 3.0}),
            "50 epochs": (ALIGNED, {**words, "trainer.max_epochs": 50}),
            "ce_weight 1": (ALIGNED, {**words, "model.init_args.ce_weight": 1.0}),
            "alignment only (ce_weight 0)": (ALIGNED, {**words, "model.init_args.ce_weight": 0.0}),
        })
    return chosen


def job(name: str, config: Path, overrides: dict, seed: int, args: argparse.Namespace) -> dict:
    run_dir = Path(args.run_dir) / slug(name) / f"seed{seed}"
    settings = {"data.init_args.root": str(Path(args.root).resolve()), "data.init_args.unseen_classes": args.unseen,
                "data.init_args.unseen_seed": seed, "trainer.max_epochs": args.epochs,
                "trainer.accelerator": args.accelerator, "trainer.enable_progress_bar": False, **overrides}
    if args.landmarks_file:
        settings["data.init_args.landmarks_file"] = args.landmarks_file
    options = [f"--{key}={value if isinstance(value, str) else json.dumps(value)}" for key, value in settings.items()]
    command = [sys.executable, "-m", "signbridge", "cv", "--config", str(config), "--folds", str(args.folds),
               "--fold_list", "[0]", "--run_dir", str(run_dir), *options]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        print(f"{name} seed {seed} failed:\n{done.stderr[-3000:]}", file=sys.stderr)
    return {"variant": name, "seed": seed, "seconds": round(time.perf_counter() - start), "ok": not done.returncode}


def rows_of(run_dir: Path) -> list[dict]:
    path = run_dir / "results.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def table(names: list[str], args: argparse.Namespace) -> tuple[str, dict]:
    lines = ["| variant | seeds | " + " | ".join(s.removeprefix("test_") for s in SCORES) + " |",
             "|---|---|" + "---|" * len(SCORES)]
    summary = {}
    for name in names:
        found = [row for seed in range(args.first_seed, args.first_seed + args.seeds)
                 for row in rows_of(Path(args.run_dir) / slug(name) / f"seed{seed}")[:1]]
        summary[name] = found
        cells = []
        for score in SCORES:
            values = [row[score] for row in found if score in row]
            if not values:
                cells.append("")
                continue
            cells.append(f"{mean_std(values)} ({each(values)})")
        lines.append(f"| {name} | {len(found)} | " + " | ".join(cells) + " |")
    return "\n".join(lines), summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", required=True)
    parser.add_argument("--vectors", required=True, help="the word-vector file of the class names")
    parser.add_argument("--run_dir", default="runs/zero_shot")
    parser.add_argument("--landmarks_file", help="the dataset's sequence cache (built once, then shared)")
    parser.add_argument("--unseen", type=int, default=10, help="classes held out of training")
    parser.add_argument("--seeds", type=int, default=3, help="seen/unseen draws")
    parser.add_argument("--first_seed", type=int, default=0)
    parser.add_argument("--folds", type=int, default=5, help="the seen classes' split: fold 0 of this many")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--parallel", type=int, default=1, help="runs at a time")
    parser.add_argument("--variants", nargs="*", help="names of the variants to run (default: all)")
    parser.add_argument("--design", action="store_true", help="also the design's alternatives")
    args = parser.parse_args()
    Path(args.run_dir).mkdir(parents=True, exist_ok=True)
    chosen = {name: value for name, value in variants(args).items() if not args.variants or name in args.variants}
    jobs = [(name, config, overrides, seed) for seed in range(args.first_seed, args.first_seed + args.seeds)
            for name, (config, overrides) in chosen.items()
            if not rows_of(Path(args.run_dir) / slug(name) / f"seed{seed}")]
    print(f"{len(jobs)} runs to do, {args.parallel} at a time", flush=True)
    with ThreadPoolExecutor(args.parallel) as pool:
        for done in pool.map(lambda item: job(*item, args), jobs):
            print(json.dumps(done), flush=True)
    text, summary = table(list(chosen), args)
    (Path(args.run_dir) / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"\n{args.unseen} unseen classes of {args.root}, {args.epochs} epochs, {args.accelerator}; "
          f"chance on the unseen: {1 / args.unseen:.2f}\n")
    print(text)


if __name__ == "__main__":
    main()
