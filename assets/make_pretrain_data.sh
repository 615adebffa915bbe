#!/usr/bin/env bash
# Pre-training demonstrations for the committed simulation policy (assets/pretrained_sim/):
# scripted-expert episodes on the pre-training arms, written straight to episode datasets
# (`sim-record --direct`; the same rollouts `sim-record` writes as bags, without the bag round trip).
# ARMS: the pre-training arms (default "sim_arm6 sim_arm5"; "sim_arm6 sim_arm7" for the
# arm6+arm7 -> arm5 pair of benchmarks/bench_adaptation.py).
set -euo pipefail
OUT=${1:-runs/pretrain_data}
N=${N:-150}
ARMS=${ARMS:-sim_arm6 sim_arm5}
i=0
for arm in $ARMS; do
  for task in reach push pick_color; do
    ate-ros sim-record --embodiment "$arm" --task "$task" --episodes "$N" --direct \
      --seed $((5000 + 100 * i)) --out "$OUT/$arm-$task"
    i=$((i + 1))
  done
done
