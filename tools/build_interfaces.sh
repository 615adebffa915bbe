#!/usr/bin/env bash
# Generates msg/ + action/ with plain CMake (rosidl from the venv's ROS wheels) and installs the
# package into $V/ros_install, then points the venv at it so `import ate_ros.msg` works.
set -euo pipefail
V=$(cd "${1:-.venv}" && pwd)
# CMake refuses include dirs inside the source tree (the venv's numpy lives in .venv/): configure
# from a staged copy of the package inside the venv instead.
SRC="$V/ros_src"
mkdir -p "$SRC"
for p in package.xml CMakeLists.txt msg action launch config scripts ate_ros; do
  [ -e "$p" ] && cp -r "$p" "$SRC/"
done
find "$SRC" -name __pycache__ -type d -prune -exec rm -rf {} +
BUILD="$V/ros_build"
PREFIX="$V/ros_install"
export CMAKE_PREFIX_PATH="$V" AMENT_PREFIX_PATH="$V"
export PATH="$V/bin:$PATH"
# RPATH: the generated Python extensions find the package's own libraries in <prefix>/lib.
cmake -S "$SRC" -B "$BUILD" -DCMAKE_INSTALL_PREFIX="$PREFIX" -DPython3_EXECUTABLE="$V/bin/python" \
  -DBUILD_TESTING=OFF -DCMAKE_BUILD_TYPE=Release \
  '-DCMAKE_INSTALL_RPATH=$ORIGIN/../../..;$ORIGIN/../../../..' -Wno-dev > "$BUILD.log" 2>&1 \
  || { tail -30 "$BUILD.log"; exit 1; }
cmake --build "$BUILD" -j 2 >> "$BUILD.log" 2>&1 || { tail -30 "$BUILD.log"; exit 1; }
cmake --install "$BUILD" >> "$BUILD.log" 2>&1 || { tail -30 "$BUILD.log"; exit 1; }
SITE=$("$V/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
GEN=$(find "$PREFIX" -type d -path "*site-packages/ate_ros" | head -1)
[ -n "$GEN" ] || { echo "no generated ate_ros package under $PREFIX"; exit 1; }
# Keep only generated code there: pip would see the egg-info as an installed ate_ros (and
# uninstall it on `pip install -e .`), and stale copies of our sources must never shadow edits.
rm -rf "$(dirname "$GEN")"/ate_ros-*.egg-info
for p in "$SRC"/ate_ros/*; do
  name=$(basename "$p")
  [ "$name" = "__init__.py" ] || rm -rf "${GEN:?}/$name"
done
# Only the generated parts are needed from the install: the sources come from the editable install.
# A .pth line puts the install's site-packages at the end of sys.path; ate_ros.__init__ extends
# its __path__ there (pkgutil.extend_path), so ate_ros.msg / ate_ros.action resolve.
echo "$(dirname "$GEN")" > "$SITE/ate_ros_interfaces.pth"
# The wheels' bootstrapper puts sys.prefix/lib on LD_LIBRARY_PATH (re-exec at start-up); the
# typesupport dispatcher dlopens our libraries by name, so they must be found there.
for lib in "$PREFIX"/lib/libate_ros__*.so; do ln -sf "$lib" "$V/lib/$(basename "$lib")"; done
echo "interfaces installed: $GEN"
