#!/bin/bash
# Hyperband search of the ATK CNN on Sign Language Digits as an image folder (seed space, 10 trials, 25 epochs, 300 px,
# batch 15; 80/10/10 split so the tuned model has a test score), then the same 10 trials without pruning (TPE's
# first 10 trials are its random start-up trials, so both studies sample the same parameters), then the test split
# with the best checkpoint. Usage: bash benchmarks/tune_sign_digits.sh DATA RUN_DIR [extra fit arguments]
# PHASE=hyperband|full runs one of the two studies (and the test after hyperband); MAX_EPOCHS overrides 25.
set -euo pipefail
data=$1; run=$2; shift 2
common=(--config configs/atk_cnn.yaml --search_space configs/atk_cnn_search.yaml --trials 10 --seed 0
        --max_epochs "${MAX_EPOCHS:-25}"
        --data.init_args.root "$data" --data.init_args.test_fraction 0.1 "$@")
phase=${PHASE:-all}
if [[ $phase != hyperband ]]; then
  start=$(date +%s); python3 -m signbridge tune "${common[@]}" --run_dir "$run/full" --pruner none > "$run/full.log" 2>&1
  echo "full budget: $(( $(date +%s) - start )) s"; tail -16 "$run/full.log"
fi
[[ $phase == full ]] && exit 0
start=$(date +%s); python3 -m signbridge tune "${common[@]}" --run_dir "$run/hyperband" > "$run/hyperband.log" 2>&1
echo "hyperband: $(( $(date +%s) - start )) s"; tail -16 "$run/hyperband.log"
best=$(python3 -c "import json,glob; p=glob.glob('$run/hyperband/**/model.json', recursive=True)[0]; import os; print(os.path.join(os.path.dirname(p), json.load(open(p))['checkpoint']))")
python3 -m signbridge test --config configs/atk_cnn.yaml --data.init_args.root "$data" --data.init_args.test_fraction 0.1 \
    --ckpt_path "$best" "$@" $(python3 -c "import json,glob; p=glob.glob('$run/hyperband/**/model.json', recursive=True)[0]; h=json.load(open(p))['hyperparameters']; print(' '.join(f'--model.init_args.{k} {h[k]}' for k in ('filters1','filters2','units','dropout','lr')))") 2>&1 | grep -E "test_(acc|f1_macro|loss)"
