#!/usr/bin/env bash
# Reproduces assets/pretrained_sim/ (the policy `make demo` and benchmarks/bench_adaptation.py
# adapt to the new robot): pre-training data on the two pre-training arms, then `ate-ros pretrain`.
# ~35 min on 2 CPU cores (data ~2 min, training ~30 min).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH" MUJOCO_GL=${MUJOCO_GL:-egl}
[ -d runs/pretrain_data ] || N=150 bash assets/make_pretrain_data.sh runs/pretrain_data
ate-ros pretrain --data "$(ls -d runs/pretrain_data/* | paste -sd,)" \
  --out runs/pretrained_sim --steps 15000 --batch-size 32 --seed 0 --eval-every 2500 \
  --save-every 2500 --no-progress
mkdir -p assets/pretrained_sim
cp runs/pretrained_sim/{model.safetensors,config.json,instruction_embeddings.safetensors,metrics.json} \
  assets/pretrained_sim/
