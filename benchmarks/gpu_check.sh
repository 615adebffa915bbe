#!/usr/bin/env bash
# CUDA checks and GPU timings in one short run, for a machine with an NVIDIA GPU and a Python
# that has torch (plus numpy, h5py, safetensors, pyyaml, opencv, tqdm, pytest): the CUDA tests
# (test/project/test_cuda.py: bf16 training, traced sampling, CPU<->GPU agreement, guidance, the
# align/pretrain/steer commands on the GPU), then bench_policy (CPU and GPU rows) and
# bench_guidance on the GPU. Results go to $OUT (default /tmp/ate_gpu_check).
#
#     bash benchmarks/gpu_check.sh            # from the repository root
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/ate_gpu_check}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
status=0
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 | tee "$OUT/gpu.txt"
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
'device', torch.cuda.get_device_name() if torch.cuda.is_available() else None)" \
  | tee -a "$OUT/gpu.txt"
echo "== test/project/test_cuda.py"
timeout 300 $PY -m pytest -q -s -o addopts="-ra --import-mode=importlib -p no:cacheprovider" test/project/test_cuda.py 2>&1 \
  | tee "$OUT/test_cuda.log"
[ "${PIPESTATUS[0]}" = 0 ] || status=1
echo "== bench_policy"
timeout 180 $PY benchmarks/bench_policy.py --iters "${ITERS:-100}" \
  --out "$OUT/bench_policy_gpu.json" || status=1
if $PY -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
  echo "== bench_guidance (cuda)"
  for bs in 32 256; do
    timeout 120 $PY benchmarks/bench_guidance.py --device cuda --batch-size $bs \
      --out "$OUT/bench_guidance_gpu_b$bs.json" || status=1
  done
fi
echo "gpu_check status $status"
exit $status
