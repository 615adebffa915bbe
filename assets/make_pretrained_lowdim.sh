#!/usr/bin/env bash
# Reproduces assets/pretrained_lowdim/ (the policy `make demo` and benchmarks/bench_adaptation.py
# adapt to the new robot): pre-training data on the two pre-training arms (with the simulation's
# environment state), then `ate-ros pretrain` on the low-dimensional track (joint state + the
# task's target and goal + object offsets from the fingertip), relative actions, receding
# horizon of 8 points; finally its own-arm success (benchmarks/bench_own_arm.py).
# ARMS picks the pre-training arms (default "sim_arm6 sim_arm5"); other arms write
# assets/pretrained_lowdim_<arms>_to_<left-out arm> (NAME overrides), the policy
# bench_adaptation.py's pair_of("lowdim", "arm6+arm7-arm5") reads for ARMS="sim_arm6 sim_arm7".
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH" MUJOCO_GL=${MUJOCO_GL:-egl}
STEPS=${STEPS:-24000}
ARMS=${ARMS:-sim_arm6 sim_arm5}
if [ "$ARMS" = "sim_arm6 sim_arm5" ]; then
  DEFAULT_NAME=pretrained_lowdim DATA=runs/pretrain_data
else
  tag=$(for a in $ARMS; do printf '%s_' "${a#sim_}"; done)
  left=$(for a in sim_arm5 sim_arm6 sim_arm7; do [[ " $ARMS " == *" $a "* ]] || printf '%s' \
    "${a#sim_}"; done)
  DEFAULT_NAME=pretrained_lowdim_${tag}to_${left} DATA=runs/pretrain_data_${tag%_}
fi
NAME=${NAME:-$DEFAULT_NAME}
[ -d "$DATA" ] || ARMS="$ARMS" N=150 bash assets/make_pretrain_data.sh "$DATA"
ate-ros pretrain --data "$(ls -d "$DATA"/* | paste -sd,)" \
  --out "runs/$NAME" --steps "$STEPS" --batch-size 128 --seed 0 --eval-every 6000 \
  --save-every 6000 --no-progress --observation low_dim --action-mode relative \
  --n-action-steps 8
mkdir -p "assets/$NAME"
cp "runs/$NAME"/{model.safetensors,config.json,instruction_embeddings.safetensors} "assets/$NAME/"
[ -f "runs/$NAME/metrics.json" ] && cp "runs/$NAME/metrics.json" "assets/$NAME/"
if [ "$NAME" = pretrained_lowdim ]; then
  python benchmarks/bench_own_arm.py --policy "assets/$NAME" --jobs 2
else
  python benchmarks/bench_own_arm.py --policy "assets/$NAME" --jobs 2 --arms "${ARMS// /,}" \
    --out "benchmarks/results/own_arm_success_${NAME#pretrained_}.json"
fi
