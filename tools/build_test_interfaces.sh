#!/usr/bin/env bash
# Builds the TEST-ONLY control_msgs subset (test/fixtures/control_msgs_subset: FollowJointTrajectory
# and the messages it uses) with plain CMake, like tools/build_interfaces.sh, into
# $V/test_interfaces, so tests can run the executor's FollowJointTrajectory output without a ROS
# install (control_msgs has no PyPI wheel).
#
# Unlike build_interfaces.sh this writes NO .pth file: the fake control_msgs must never be
# importable by default, or executor_node's `output: auto` would switch every other test to the
# action path. Only a process that puts the printed PYTHONPATH on sys.path can import it.
#
# Idempotent: a stamp keyed on a hash of the interface files, package.xml, CMakeLists.txt and this
# script skips the build.
# Prints, on its last two lines:
#   PYTHONPATH=<site-packages holding the generated control_msgs package>
#   LIBDIR=<directory of the generated libraries>
# Usage: tools/build_test_interfaces.sh [venv dir (default .venv)]
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SELF="$ROOT/tools/$(basename "${BASH_SOURCE[0]}")"
V=$(cd "${1:-$ROOT/.venv}" && pwd)
FIXTURE="$ROOT/test/fixtures/control_msgs_subset"
PREFIX="$V/test_interfaces"
SRC="$V/test_interfaces_src"
BUILD="$V/test_interfaces_build"
STAMP="$PREFIX/.stamp"
PY_VER=$("$V/bin/python" -c "import sys; print(f'{sys.version_info[0]}.{sys.version_info[1]}')")
SITE="$PREFIX/lib/python$PY_VER/site-packages"

command -v cmake > /dev/null || { echo "cmake not found" >&2; exit 2; }
mkdir -p "$PREFIX"
# Two test sessions may build at once: serialise them (the second one then finds the stamp).
if command -v flock > /dev/null; then
  exec 9> "$PREFIX.lock"
  flock 9
fi

# What the generated code depends on (README edits do not rebuild).
HASH=$(cd "$FIXTURE" && find . -type f \( -name '*.msg' -o -name '*.action' -o -name package.xml \
  -o -name CMakeLists.txt \) | LC_ALL=C sort | xargs sha256sum | cat - "$SELF" | sha256sum \
  | cut -d' ' -f1)
libs_present() {
  compgen -G "$PREFIX/lib/libcontrol_msgs__rosidl_typesupport_c.so" > /dev/null \
    && [ -d "$SITE/control_msgs/action" ]
}
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$HASH" ] && libs_present; then
  echo "test interfaces up to date: $PREFIX" >&2
else
  rm -rf "$SRC" "$BUILD" "$STAMP" "${PREFIX:?}"/*  # nothing stale from an older fixture survives
  mkdir -p "$SRC"
  # A staged copy, as in build_interfaces.sh (and the build tree stays out of the repository).
  cp -r "$FIXTURE"/. "$SRC/"
  export CMAKE_PREFIX_PATH="$V" AMENT_PREFIX_PATH="$V"
  export PATH="$V/bin:$PATH"
  LOG="$BUILD.log"
  echo "building test interfaces (control_msgs subset) into $PREFIX, log: $LOG" >&2
  # RPATH: the Python extensions (site-packages/control_msgs/*.so) find the package's libraries
  # in <prefix>/lib; the libraries find each other next to themselves.
  cmake -S "$SRC" -B "$BUILD" -DCMAKE_INSTALL_PREFIX="$PREFIX" \
    -DPython3_EXECUTABLE="$V/bin/python" -DBUILD_TESTING=OFF -DCMAKE_BUILD_TYPE=Release \
    '-DCMAKE_INSTALL_RPATH=$ORIGIN;$ORIGIN/../../..;$ORIGIN/../../../..' -Wno-dev > "$LOG" 2>&1 \
    || { tail -30 "$LOG" >&2; exit 1; }
  cmake --build "$BUILD" -j "${BUILD_JOBS:-2}" >> "$LOG" 2>&1 || { tail -30 "$LOG" >&2; exit 1; }
  cmake --install "$BUILD" >> "$LOG" 2>&1 || { tail -30 "$LOG" >&2; exit 1; }
  libs_present || { echo "no generated control_msgs under $PREFIX" >&2; exit 1; }
  # Never importable by default: no .pth anywhere on the venv's sys.path, and no egg-info that
  # pip could mistake for an installed control_msgs (it is not on pip's path either).
  rm -rf "$SITE"/control_msgs-*.egg-info
  echo "$HASH" > "$STAMP"
fi
# The typesupport dispatcher dlopens lib<pkg>__rosidl_typesupport_*.so by name from
# LD_LIBRARY_PATH; the wheels' bootstrapper puts sys.prefix/lib there (re-exec at start-up).
# Libraries alone make nothing importable: `import control_msgs` still needs PYTHONPATH below.
for lib in "$PREFIX"/lib/libcontrol_msgs__*.so; do ln -sf "$lib" "$V/lib/$(basename "$lib")"; done
if grep -qs "test_interfaces" "$V"/lib/python*/site-packages/*.pth; then
  echo "a .pth file points at $PREFIX: control_msgs would be importable by default" >&2
  exit 1
fi
echo "PYTHONPATH=$SITE"
echo "LIBDIR=$PREFIX/lib"
