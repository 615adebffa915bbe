#!/usr/bin/env bash
# Reproduces assets/pretrained_sim/ (the policy `make demo` and benchmarks/bench_adaptation.py
# adapt to the new robot): pre-training data on the two pre-training arms, the image encoder
# pre-trained on labelled scenes of those arms, then `ate-ros pretrain` from that encoder with
# the auxiliary episode-goal loss. ~45 min on 2 CPU cores (data ~2 min, vision ~8 min,
# policy ~30 min).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH" MUJOCO_GL=${MUJOCO_GL:-egl}
[ -d runs/pretrain_data ] || N=150 bash assets/make_pretrain_data.sh runs/pretrain_data
[ -f runs/vision_encoder/vision_encoder.safetensors ] || \
  ate-ros pretrain-vision --embodiments sim_arm6,sim_arm5 --out runs/vision_encoder \
    --frames 12000 --steps 1500 --seed 0
ate-ros pretrain --data "$(ls -d runs/pretrain_data/* | paste -sd,)" \
  --out runs/pretrained_sim --steps 12000 --batch-size 32 --seed 0 --eval-every 2000 \
  --save-every 2000 --no-progress --vision-init runs/vision_encoder --goal-loss 1.0 \
  --instruction-keypoints
mkdir -p assets/pretrained_sim
cp runs/pretrained_sim/{model.safetensors,config.json,instruction_embeddings.safetensors,metrics.json} \
  assets/pretrained_sim/
cp runs/vision_encoder/vision_encoder.{safetensors,json} assets/pretrained_sim/
