"""The exploration behind the sequence recipe: k-fold test accuracy of ``SequenceNet`` variants trained by a plain
PyTorch loop (AdamW, one-cycle schedule, label smoothing, ``SequenceAugment`` on the batch), many runs at a time.

Faster than ``sequence_kfold.py`` (no Lightning, no checkpoints: the last epoch is tested), so it was used to choose
the recipe; the recipe itself is then measured through the library with ``sequence_kfold.py``. Variants are a JSON
list of ``{"name", "encoder", "epochs", "augment" (bool), "kw"}``: ``kw`` holds ``SequenceNetConfig`` fields,
``aug_<field>`` ``SequenceAugment`` fields, and ``lr``, ``wd``, ``ls``, ``bs``, ``late`` ([p, start share]).

    signbridge sequences extract DATA/wlasl40 --output wlasl40.npz
    python benchmarks/sequence_plain_kfold.py --cache wlasl40.npz --variants variants.json --parallel 10 \
        --device cuda --output results.json
"""

from __future__ import annotations

import argparse
import collections
import json
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np


def run(job: tuple) -> dict:
    import torch
    import torch.nn.functional as F

    from signbridge.data.splits import kfold_split
    from signbridge.data.transforms import SequenceAugment
    from signbridge.hands.sequence import SequenceCache
    from signbridge.models.sequence import SequenceNet, SequenceNetConfig

    cache_path, device, name, encoder, fold, folds, epochs, augment, kw = job
    torch.set_num_threads(1)
    cache = SequenceCache.load(cache_path)
    classes = sorted({str(path).split("/")[0] for path in cache.paths})
    labels = np.array([classes.index(str(path).split("/")[0]) for path in cache.paths])
    points = torch.tensor(np.stack([cache.sequence(i)[0] for i in range(len(cache))]), device=device)
    present = torch.tensor(np.stack([cache.sequence(i)[1] for i in range(len(cache))]), device=device)
    targets = torch.tensor(labels, device=device)
    mask = torch.ones(points.shape[:2], dtype=torch.bool, device=device)
    config = SequenceNetConfig(encoder=encoder, **{k: v for k, v in kw.items() if hasattr(SequenceNetConfig, k)})
    augmenter = SequenceAugment(**{k[4:]: v for k, v in kw.items() if k.startswith("aug_")})
    lr, batch_size = kw.get("lr", 1e-3), kw.get("bs", 64)
    train, _, test = kfold_split(labels, folds, fold, 0.1, 42)
    torch.manual_seed(fold)
    net = SequenceNet(len(classes), cache.parts, config).to(device)
    optimizer = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=kw.get("wd", 0.05))
    steps = epochs * (len(train) // batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=steps, pct_start=0.1)
    start = time.time()
    train_index = torch.as_tensor(train, device=device)
    for epoch in range(epochs):
        if kw.get("late") and epoch == int(kw["late"][1] * epochs):
            net.head_dropout.p = kw["late"][0]
        order = train_index[torch.randperm(len(train), device=device)]
        for i in range(len(train) // batch_size):
            rows = order[i * batch_size:(i + 1) * batch_size]
            batch = {"points": points[rows], "present": present[rows], "mask": mask[rows]}
            if augment:
                batch = augmenter(batch, cache.parts)
            logits = net(batch["points"], batch["present"], batch["mask"])
            loss = F.cross_entropy(logits, targets[rows], label_smoothing=kw.get("ls", 0.1))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    net.eval()
    with torch.no_grad():
        rows = torch.as_tensor(test, device=device)
        accuracy = (net(points[rows], present[rows], mask[rows]).argmax(1) == targets[rows]).float().mean().item()
    return {"name": name, "fold": fold, "test": accuracy, "seconds": time.time() - start,
            "params": sum(p.numel() for p in net.parameters())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", required=True, help="the dataset's sequence cache")
    parser.add_argument("--variants", required=True, help="a JSON file of variants")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--parallel", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--output", default="sequence_plain_kfold.json")
    args = parser.parse_args()
    import multiprocessing

    variants = json.load(open(args.variants))
    jobs = [(args.cache, args.device, v["name"], v.get("encoder", "conv_transformer"), fold, args.folds,
             v.get("epochs", 100), v.get("augment", True), v.get("kw", {}))
            for v in variants for fold in range(args.folds)]
    results = []
    with ProcessPoolExecutor(args.parallel, mp_context=multiprocessing.get_context("spawn")) as pool:
        for result in pool.map(run, jobs):
            results.append(result)
            print(json.dumps(result), flush=True)
            with open(args.output, "w") as f:
                json.dump(results, f)
    by_variant = collections.defaultdict(list)
    for result in results:
        by_variant[result["name"]].append(result["test"])
    print("\n| variant | test accuracy | per fold |\n|---|---|---|")
    for name, values in by_variant.items():
        print(f"| {name} | {np.mean(values):.3f} ± {np.std(values):.3f} | "
              f"{' / '.join(f'{v:.3f}' for v in values)} |")


if __name__ == "__main__":
    main()
