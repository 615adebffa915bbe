#!/usr/bin/env bash
# Installs the `lerobot` extra of ate_ros into the venv (run by `make setup`, idempotent).
#
# LeRobot 0.4.x declares torch<2.11 while this venv pins torch 2.13, so LeRobot itself goes in
# with --no-deps and its runtime dependencies come from setup.py's `lerobot` extra (read back
# from the installed ate_ros metadata, so setup.py stays the one list), with torch held at the
# venv's version. PyPI's torchvision 0.28 (the release built for torch 2.13) is a CUDA build;
# tools/torchvision_cpu_compat.py is installed first, as a .pth hook, so it imports on the CPU
# torch (see that file).
set -euo pipefail
V=${1:-.venv}
PY="$V/bin/python"
LEROBOT_VERSION=${LEROBOT_VERSION:-0.4.4}
HERE=$(cd "$(dirname "$0")" && pwd)
SITE=$("$PY" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
TORCH=$("$PY" -c "import importlib.metadata as m; print(m.version('torch'))")

install -m 644 "$HERE/torchvision_cpu_compat.py" "$SITE/_ate_torchvision_compat.py"
echo "import _ate_torchvision_compat" > "$SITE/_ate_torchvision_compat.pth"

mapfile -t REQS < <("$PY" - <<'PY'
import importlib.metadata as m
from packaging.requirements import Requirement
for r in m.requires("ate_ros") or []:
    req = Requirement(r)
    if req.marker is not None and req.marker.evaluate({"extra": "lerobot"}) \
            and not req.marker.evaluate({"extra": ""}):
        req.marker = None
        print(req)
PY
)
if [ ${#REQS[@]} -eq 0 ]; then
  echo "setup_lerobot: ate_ros has no 'lerobot' extra installed (run pip install -e . first)" >&2
  exit 1
fi
"$PY" -m pip install -q "torch==${TORCH%%+*}" "${REQS[@]}" 2>&1 | \
  grep -v -E "is ignored|dependency conflicts|lerobot .* requires|resolver does not" || true
if [ "$("$PY" -c "import importlib.metadata as m; print(m.version('lerobot'))" 2>/dev/null)" \
     != "$LEROBOT_VERSION" ]; then
  "$PY" -m pip install -q --no-deps "lerobot==$LEROBOT_VERSION" 2>&1 | grep -v "is ignored" || true
fi
"$PY" -c "from ate_ros.core.lerobot_compat import require_lerobot; print('lerobot', require_lerobot())"
