#!/usr/bin/env bash
# Reproduces assets/pretrained_lowdim/ (the policy `make demo` and benchmarks/bench_adaptation.py
# adapt to the new robot): pre-training data on the two pre-training arms (with the simulation's
# environment state), then `ate-ros pretrain` on the low-dimensional track (joint state + the
# task's target and goal + object offsets from the fingertip), relative actions, receding
# horizon of 8 points; finally its own-arm success (benchmarks/bench_own_arm.py).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH" MUJOCO_GL=${MUJOCO_GL:-egl}
STEPS=${STEPS:-24000}
[ -d runs/pretrain_data ] || N=150 bash assets/make_pretrain_data.sh runs/pretrain_data
ate-ros pretrain --data "$(ls -d runs/pretrain_data/* | paste -sd,)" \
  --out runs/pretrained_lowdim --steps "$STEPS" --batch-size 128 --seed 0 --eval-every 6000 \
  --save-every 6000 --no-progress --observation low_dim --action-mode relative \
  --n-action-steps 8
mkdir -p assets/pretrained_lowdim
cp runs/pretrained_lowdim/{model.safetensors,config.json,instruction_embeddings.safetensors} \
  assets/pretrained_lowdim/
[ -f runs/pretrained_lowdim/metrics.json ] && cp runs/pretrained_lowdim/metrics.json \
  assets/pretrained_lowdim/
python benchmarks/bench_own_arm.py --policy assets/pretrained_lowdim --jobs 2
