"""Sign embeddings of zero-shot splits, for studying how new names are scored without retraining.

For each seeded seen/unseen split (``--unseen`` classes held out, as ``benchmarks/zero_shot.py`` draws them) and each
model (``aligned``: ``configs/sign_sequences_text.yaml``; ``plain``: ``configs/sign_sequences.yaml``), one fit on the
seen classes, then the best checkpoint's sign embeddings (``SequenceNet.features``, eval mode, no augmentation) of
the training split and of the test split (the seen classes' test sequences and every sequence of the unseen ones)
are written to ``RUN_DIR/<model>_seed<N>.npz`` (``train_h``, ``train_y``, ``test_h``, ``test_y``, ``classes``: the
test labels' names, seen first, ``seen``: their number). ``--analyse`` then scores the unseen signs with several
ways of turning names into classifiers (``analyse``) on every split found.

    python benchmarks/zero_shot_features.py --root DATA/wlasl40 --vectors DATA/wlasl_gloss_vectors.txt \
        --run_dir runs/zero_shot_features --seeds 6 [--accelerator gpu --parallel 12]
    python benchmarks/zero_shot_features.py --vectors DATA/wlasl_gloss_vectors.txt --run_dir ... --analyse
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from common import each, mean_std

REPO = Path(__file__).resolve().parents[1]
CONFIGS = {"aligned": REPO / "configs" / "sign_sequences_text.yaml", "plain": REPO / "configs" / "sign_sequences.yaml"}


def dump(model_name: str, seed: int, args: argparse.Namespace) -> None:
    """Fit one model on one split and write its embeddings."""
    import torch

    from signbridge.lightning_cli import config_from_files, fit, run_folder_overrides
    from signbridge.models.sequence import landmark_descriptor

    folder = Path(args.run_dir) / f"{model_name}_seed{seed}"
    overrides = {"data.init_args.root": str(Path(args.root).resolve()), "data.init_args.unseen_classes": args.unseen,
                 "data.init_args.unseen_seed": seed, "data.init_args.num_folds": 5, "data.init_args.fold": 0,
                 "trainer.max_epochs": args.epochs, "trainer.accelerator": args.accelerator,
                 "trainer.enable_progress_bar": False}
    if model_name == "aligned":
        overrides["model.init_args.text.vectors"] = str(Path(args.vectors).resolve())
    if args.landmarks_file:
        overrides["data.init_args.landmarks_file"] = args.landmarks_file
    config = config_from_files([CONFIGS[model_name]], overrides)
    cli = fit(config, run_folder_overrides(config, folder))
    best = cli.trainer.checkpoint_callback.best_model_path
    model, datamodule = cli.model, cli.datamodule
    if best:  # none with --epochs 0: the untrained network's embeddings
        model.load_state_dict(torch.load(best, map_location="cpu", weights_only=True)["state_dict"])
    model.eval()
    net = model.sequence_net

    def embed(loader) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        features, raw, labels = [], [], []
        with torch.no_grad():
            for batch in loader:
                batch = model.transfer_batch_to_device(batch, model.device, 0)
                features.append(net.features(batch["points"], batch["present"], batch["mask"]).float().cpu())
                raw.append(landmark_descriptor(batch["points"], batch["present"], batch["mask"],
                                               datamodule.parts).float().cpu())
                labels.append(batch["label"].cpu())
        return torch.cat(features).numpy(), torch.cat(raw).numpy(), torch.cat(labels).numpy()

    datamodule.setup("test")
    train_h, train_raw, train_y = embed(datamodule.train_dataloader())
    test_h, test_raw, test_y = embed(datamodule.test_dataloader())
    half = {name: value.astype(np.float16) for name, value in  # float16: a few MB a split
            {"train_h": train_h, "test_h": test_h, "train_raw": train_raw, "test_raw": test_raw}.items()}
    np.savez_compressed(Path(args.run_dir) / f"{model_name}_seed{seed}.npz", train_y=train_y, test_y=test_y,
                        classes=np.array(datamodule.test_classes), seen=len(datamodule.classes), **half)


# -- analysis: scorers of new names from the training signs' embeddings and the names' vectors --------------------
def unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-8)


def prototypes(h: np.ndarray, y: np.ndarray, n: int) -> np.ndarray:
    return np.stack([h[y == k].mean(0) for k in range(n)])


def ridge_map(words: np.ndarray, targets: np.ndarray, ridge: float) -> np.ndarray:
    """The dual ridge solution W (D, F) with words @ W ~ targets."""
    gram = words @ words.T + ridge * np.eye(len(words))
    return words.T @ np.linalg.solve(gram, targets)


def scorers(train_h, train_y, seen_words, new_words):
    """Each scorer gives a function from test embeddings (N, F) to scores over the new names (N, U)."""
    n = len(seen_words)
    mean = train_h.mean(0)
    signs = unit(train_h - mean)
    protos = prototypes(signs, train_y, n)
    unit_protos = unit(protos)
    seen_w, new_w = unit(seen_words), unit(new_words)
    result = {}
    # a ridge map from names to prototypes: the library's scorer (fit_prototype_regression), on unit-length names
    for r in (0.1, 0.3, 1.0, 3.0):
        mapped = unit(new_w @ ridge_map(seen_w, protos, r))
        result[f"ridge {r}"] = lambda h, m=mapped: unit(h - mean) @ m.T
    sim = new_w @ seen_w.T  # (U, S): the names' similarity
    for t in (0.05, 0.1, 0.2):  # each new prototype as the similarity-weighted mean of the seen prototypes
        weights = np.exp((sim - sim.max(1, keepdims=True)) / t)
        weights /= weights.sum(1, keepdims=True)
        mixed = unit(weights @ unit_protos)
        result[f"mixture tau {t}"] = lambda h, m=mixed: unit(h - mean) @ m.T
    for top in (3, 10):  # ConSE: the sign's seen-class probabilities mix the seen names' vectors
        def conse(h, top=top):
            logits = unit(h - mean) @ unit_protos.T / 0.1
            probs = np.exp(logits - logits.max(1, keepdims=True))
            probs /= probs.sum(1, keepdims=True)
            cut = np.sort(probs, 1)[:, -top][:, None]
            probs = np.where(probs >= cut, probs, 0)
            return unit(probs @ seen_w) @ new_w.T
        result[f"ConSE top {top}"] = conse
    # ESZSL (Romera-Paredes & Torr 2015): bilinear map V minimising ||X'VS - Y||, closed form
    x = unit(train_h - mean)
    labels = -np.ones((len(x), n))
    labels[np.arange(len(x)), train_y] = 1
    for gamma, lam in ((1.0, 1.0), (10.0, 1.0), (1.0, 0.1)):
        s = seen_w.T  # (D, S)
        left = np.linalg.solve(x.T @ x + gamma * np.eye(x.shape[1]), x.T @ labels @ s.T)
        v = left @ np.linalg.inv(s @ s.T + lam * np.eye(s.shape[0]))
        result[f"ESZSL g{gamma} l{lam}"] = lambda h, v=v: unit(h - mean) @ v @ new_w.T
    return result


def calibrated(scorer, train_h):
    """Hubness reduction from the training signs alone: each new name's scores standardised by their mean and
    spread over the training signs, so a name whose prototype lies near every sign stops winning them all."""
    reference = scorer(train_h)
    mean, spread = reference.mean(0), reference.std(0) + 1e-8
    return lambda h: (scorer(h) - mean) / spread


def analyse(args: argparse.Namespace) -> None:
    from signbridge.models.text import WordVectors

    vectors = WordVectors(Path(args.vectors))
    scores: dict[str, list[float]] = {}
    for path in sorted(Path(args.run_dir).glob("*_seed*.npz"), key=lambda p: (p.stem.split("_seed")[0],
                                                                            int(p.stem.split("_seed")[1]))):
        data = np.load(path)
        model = path.stem.split("_seed")[0]
        names, seen = [str(c) for c in data["classes"]], int(data["seen"])
        words = np.stack([vectors.vector(name) for name in names]).astype(np.float64)
        unseen = data["test_y"] >= seen
        test_y = data["test_y"][unseen] - seen
        kinds = {model: "h", "landmark descriptor": "raw"} if model == args.raw_from else {model: "h"}
        for kind, key in kinds.items():
            train_h = data[f"train_{key}"].astype(np.float64)
            test_h = data[f"test_{key}"][unseen].astype(np.float64)
            for name, scorer in scorers(train_h, data["train_y"], words[:seen], words[seen:]).items():
                for suffix, scoring in (("", scorer), (", calibrated", calibrated(scorer, train_h))):
                    top1 = float((scoring(test_h).argmax(1) == test_y).mean())
                    scores.setdefault(f"{kind}: {name}{suffix}", []).append(top1)
    print(f"unseen top-1 per split (chance {1 / args.unseen:.2f})\n")
    print("| features: scorer | splits | mean | per split |\n|---|---|---|---|")
    for name, values in scores.items():
        print(f"| {name} | {len(values)} | {mean_std(values)} | {each(values)} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root")
    parser.add_argument("--vectors", required=True)
    parser.add_argument("--run_dir", default="runs/zero_shot_features")
    parser.add_argument("--landmarks_file")
    parser.add_argument("--unseen", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--parallel", type=int, default=1)
    parser.add_argument("--models", nargs="*", default=list(CONFIGS))
    parser.add_argument("--analyse", action="store_true", help="score the dumped embeddings")
    parser.add_argument("--raw_from", default="plain",
                        help="--analyse: also the landmark descriptors of this model's dump")
    parser.add_argument("--one", nargs=2, metavar=("MODEL", "SEED"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.analyse:
        return analyse(args)
    Path(args.run_dir).mkdir(parents=True, exist_ok=True)
    if args.one:
        return dump(args.one[0], int(args.one[1]), args)
    jobs = [(m, s) for s in range(args.seeds) for m in args.models
            if not (Path(args.run_dir) / f"{m}_seed{s}.npz").exists()]

    def launch(job):
        command = [sys.executable, __file__, *sys.argv[1:], "--one", job[0], str(job[1])]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode:
            print(f"{job} failed:\n{done.stderr[-2000:]}", file=sys.stderr)
        return {"job": job, "ok": not done.returncode}

    with ThreadPoolExecutor(args.parallel) as pool:
        for row in pool.map(launch, jobs):
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
