# ate_ros developer entry points. `make demo` runs the main job, `make test` the checks.
# Everything lives in .venv (Python 3.11, ROS 2 Kilted from PyPI wheels); no ROS install needed.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
export PYTHONDONTWRITEBYTECODE := 1
export MUJOCO_GL ?= egl

STAMP_VENV := $(VENV)/.stamp-venv
STAMP_PKG := $(VENV)/.stamp-package
STAMP_IFACE := $(VENV)/.stamp-interfaces
STAMP_LEROBOT := $(VENV)/.stamp-lerobot

.PHONY: setup test test-fast lint pytest demo demo-tiny bench clean

setup: $(STAMP_PKG) $(STAMP_IFACE) $(STAMP_LEROBOT)

$(STAMP_VENV): tools/setup_venv.sh requirements-dev.txt
	bash tools/setup_venv.sh $(VENV)
	touch $@

$(STAMP_PKG): $(STAMP_VENV) setup.py
	$(PY) -m pip install -q --no-deps --no-build-isolation -e . 2>&1 | grep -v -E "ignored|^ *$$" || true
	touch $@

$(STAMP_IFACE): $(STAMP_PKG) $(wildcard msg/*.msg action/*.action) CMakeLists.txt package.xml tools/build_interfaces.sh
	bash tools/build_interfaces.sh $(VENV)
	touch $@

$(STAMP_LEROBOT): $(STAMP_PKG) tools/setup_lerobot.sh tools/torchvision_cpu_compat.py
	bash tools/setup_lerobot.sh $(VENV)
	touch $@

lint: setup
	$(VENV)/bin/ruff check .

# Two pytest processes: the suite, then the tests marked own_process (see pyproject.toml).
pytest: setup
	$(PY) -m pytest -q -m "not own_process" $(PYTEST_ARGS)
	$(PY) -m pytest -q -m own_process --junitxml=build/test-results-own-process.xml $(PYTEST_ARGS)

test: lint pytest

# Core unit tests only (stepped clocks, no DDS, no builds): seconds, for the edit-test loop.
FAST_TESTS ?= test/core/execution/test_executor.py test/core/deploy/test_policy_gate.py \
	test/core/execution/test_scheduler.py test/core/deploy/test_perception.py \
	test/project/test_core_is_ros_free.py test/core/test_embodiment.py \
	test/core/test_normalization.py test/core/data/test_chunks.py \
	test/project/test_launch_structure.py test/core/training/test_loop.py \
	test/core/align/test_resume.py test/project/test_logging_calls.py \
	test/core/execution/test_tracking.py test/core/execution/test_scheduler_rtc.py \
	test/core/deploy/test_chunk_timing.py
test-fast: $(STAMP_PKG)
	$(PY) -m pytest -q -m "not ros and not slow" $(FAST_TESTS) $(PYTEST_ARGS)

demo: setup
	$(VENV)/bin/ate-ros demo

demo-tiny: setup
	$(VENV)/bin/ate-ros demo --tiny

bench: setup
	for b in benchmarks/bench_*.py; do $(PY) $$b --quick || exit 1; done

clean:
	rm -rf $(VENV) build .pytest_cache
