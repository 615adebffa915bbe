"""benchmarks/reporting/: each benchmark family's rendering of its result files, as
tools/gen_docs.py imports it (the whole page is checked against the committed results by
test/project/test_docs.py)."""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

from support.paths import ROOT

from ate_ros.core.sim.evaluate import wilson_interval


def _reporting(module: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_docs", ROOT / "tools" / "gen_docs.py")
    gen_docs = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = gen_docs
    spec.loader.exec_module(gen_docs)
    return gen_docs._reporting(module)


def test_grid_section_uses_the_core_wilson_interval() -> None:
    grid = _reporting("adaptation_grid")
    data = {"table": {"k1_direct": {"k": 1, "method": "direct", "success": 0.5,
                                    "ci95": [0.2, 0.8], "n": 10, "per_task": {"reach": 0.5}}},
            "zero_shot": {"reach": {"episodes": 10, "successes": 3}}}
    assert grid.is_grid_result(data) and not grid.is_grid_result({"table": {"x": {}}})
    header, _, zero, direct, _ = grid.section(data)
    lo, hi = wilson_interval(3, 10)
    assert header == "| K | method | success [95% CI] | n | reach |"
    assert zero == (f"| 0 | pre-trained (zero-shot) | 30.0% [{100 * lo:.1f}, {100 * hi:.1f}] "
                    "| 10 | 30.0% |")
    assert direct == "| 1 | direct | 50.0% [20.0, 80.0] | 10 | 50.0% |"


def test_each_result_goes_to_its_family() -> None:
    rtc, own_arm = _reporting("rtc"), _reporting("own_arm")
    rtc_rows = {"rows": [{"mode": "rtc", "delay": 2, "success_rate": 1.0}]}
    own_rows = {"rows": [{"policy": "p", "arm": "a", "task": "t", "success_rate": 0.75,
                          "episodes": 8}]}
    assert rtc.is_rtc_result(rtc_rows) and not rtc.is_rtc_result(own_rows)
    assert own_arm.is_own_arm_result(own_rows) and own_arm.is_own_arm_result(rtc_rows)
    assert own_arm.section(own_rows)[2] == "| p | a | t | 75.0%  |"
    line = own_arm.readme_line({"rows": [{**own_rows["rows"][0], "policy": "pretrained_lowdim"}]})
    assert "succeeds in 75.0% to 100%" in line and "short of the 80%" in line


def test_page_names_the_script_of_each_result() -> None:
    page = _reporting("page")
    assert page._script_for("own_arm_success_lowdim") == ("bench_own_arm", "lowdim")
    assert page._script_for("bench_ros_latency_processes") == ("bench_ros_latency", "processes")
    assert page._command({}, "bench_ros_latency", "processes_soak") == (
        "python benchmarks/bench_ros_latency.py --processes --soak", "")
