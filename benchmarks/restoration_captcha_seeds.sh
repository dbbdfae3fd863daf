#!/bin/bash
# Issue 4's table on one GPU: 4 recognizer seeds in parallel (the lowest val_loss is kept), then the restoration
# variants a-d x GAN seeds 0 and 1 in parallel, 50 epochs each; prints one table per GAN seed.
# Usage: bash benchmarks/restoration_captcha_seeds.sh DATA RUN_DIR [extra benchmark arguments]
set -u
data=$1; run=$2; shift 2
here=$(dirname "$0")
bench=(python3 "$here/restoration_captcha.py" --data "$data" --config "$here/../configs/trainer/gpu.yaml"
       --trainer-arg=--data.init_args.num_workers=1 "$@")
mkdir -p "$run"
for seed in 0 1 2 3; do
  "${bench[@]}" --run-dir "$run/rec$seed" --variants= --trainer-arg=--seed_everything=$seed > "$run/rec$seed.log" 2>&1 &
done
wait
best=$(python3 - "$run" <<'PY'
import glob, json, sys
run = sys.argv[1]
results = [json.load(open(f))["recognizer"] for f in sorted(glob.glob(f"{run}/rec*/results.json"))]
for seed, r in enumerate(results):
    print(f"recognizer seed {seed}: {r['epochs']} epochs, best val_loss {r['best_val_loss']:.4f}, "
          f"test word acc {r['test_word_acc']:.4f}, test CER {r['test_cer']:.4f}", file=sys.stderr)
best = min(results, key=lambda r: r["best_val_loss"])
json.dump({"recognizer": best}, open(f"{run}/recognizer.json", "w"))
print(best["checkpoint"])
PY
)
for seed in 0 1; do
  for variant in a b c d; do
    "${bench[@]}" --run-dir "$run/gans$seed" --recognizer "$best" --variants $variant --results "results_$variant.json" \
        --gan-epochs 50 --trainer-arg=--seed_everything=$seed > "$run/gan_${variant}_$seed.log" 2>&1 &
  done
done
wait
for seed in 0 1; do
  echo "GAN seed $seed"
  python3 "$here/restoration_captcha.py" --data "$data" --run-dir "$run" --table "$run/recognizer.json" "$run/gans$seed"/results_*.json
done
