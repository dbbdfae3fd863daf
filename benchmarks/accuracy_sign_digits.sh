#!/bin/bash
# Full training run of the hybrid classifier on Sign Language Digits from scratch (no pretrained weights), then the
# test split with the best checkpoint (by val_acc). Usage:
#   bash benchmarks/accuracy_sign_digits.sh PATH/TO/sign_digits/Dataset RUN_DIR [extra signbridge fit arguments]
set -euo pipefail
root=$1; run_dir=$2; shift 2
common=(--config configs/sign_digits_hybrid.yaml --config configs/trainer/gpu.yaml --data.init_args.root "$root"
        --trainer.logger.init_args.save_dir "$run_dir")
python3 -m signbridge fit "${common[@]}" "$@"
best=$(ls -t "$run_dir"/sign_digits_hybrid/version_*/checkpoints/epoch*.ckpt | head -1)
echo "best checkpoint: $best"
python3 -m signbridge test "${common[@]}" "$@" --ckpt_path "$best"
