"""Landmark extraction throughput (images/s): one core against all cores of this machine.

    python benchmarks/landmark_throughput.py ROOT [--output results.jsonl]

All cores: ``extract_landmarks`` with one MediaPipe landmarker per core (process pool). One core: the same call
in-process, pinned to CPU 0 with ``sched_setaffinity`` (MediaPipe's own threads included). Each run writes a fresh
cache, so nothing is reused; model loading and worker start-up are included in the time.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from common import append_rows

from signbridge.hands.cache import extract_landmarks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root")
    parser.add_argument("--output")
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, workers in ((f"all {cores} cores", cores), ("1 core", 0)):
            if workers == 0:
                os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
            summary = extract_landmarks(args.root, Path(tmp) / f"{workers}.npz", workers=workers, progress=False)
            with_hand = sum(c["images"] - c["none"] - c["skipped"] for c in summary.per_class.values())
            rows.append({"setting": label, "images": summary.images, "seconds": summary.seconds,
                         "img_s": summary.images / summary.seconds, "with_hand": with_hand})
    print(f"\n{'setting':<16}{'images':>8}{'seconds':>9}{'img/s':>9}{'with hand':>11}")
    for r in rows:
        print(f"{r['setting']:<16}{r['images']:>8}{r['seconds']:>9.1f}{r['img_s']:>9.1f}{r['with_hand']:>11}")
    print(f"speed-up: {rows[0]['img_s'] / rows[1]['img_s']:.1f}x on {cores} cores")
    append_rows(args.output, rows)


if __name__ == "__main__":
    main()
