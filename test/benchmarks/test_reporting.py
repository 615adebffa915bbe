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


def test_reliability_page_counts_every_case_per_target_and_class():
    record = {"meta": {"date": "2026-12-07T00:00:00Z", "commit": "abc", "command": "python x"},
              "suites": {"malformed_inputs": [
                  {"target": "load_policy", "class": "NaN", "cases": 3,
                   "outcomes": {"project error": 3}},
                  {"target": "load_policy", "class": "extra", "cases": 2,
                   "outcomes": {"accepted": 1, "project error": 1}},
                  {"target": "steer --data", "class": "missing", "cases": 4,
                   "outcomes": {"one-line error": 4}}]}}
    page = _reporting("reliability").render(record, "<!-- h -->\n")
    assert "**9 mutated inputs** across 2 loaders and commands" in page
    assert "| load_policy | 5 | accepted 1, project error 4 |" in page
    assert "| steer --data | missing | 4 | one-line error 4 |" in page
    assert "interrupts" not in page


def test_reliability_page_counts_interrupts_apart_from_mutated_inputs():
    record = {"meta": {}, "suites": {
        "malformed_inputs": [{"target": "load_policy", "class": "NaN", "cases": 3,
                              "outcomes": {"project error": 3}}],
        "startup_interrupts": [
            {"target": "policy_node", "class": "configuring", "cases": 1,
             "outcomes": {"exit 0, no error line": 1}},
            {"target": "sim_robot_node", "class": "imports", "cases": 1,
             "outcomes": {"exit 0, no error line": 1}}]}}
    page = _reporting("reliability").render(record, "<!-- h -->\n")
    assert "**3 mutated inputs** across 1 loaders and commands; **2 interrupts**" in page
    assert "| node | moment | cases | outcomes |" in page
    assert "| policy_node | configuring | 1 | exit 0, no error line 1 |" in page


def test_the_committed_reliability_record_holds_the_suites_thousand_cases():
    """The record the page is generated from covers the three suites and at least 1,000 mutated
    inputs (#29), each row with as many outcomes as cases; each node's start-up interrupts."""
    import json

    record = json.loads((ROOT / "benchmarks/results/reliability/record.json").read_text())
    assert set(record["suites"]) == {"malformed_inputs", "embodiment_fuzz",
                                     "startup_interrupts"}
    rows = [r for name, rows in record["suites"].items() for r in rows
            if name != "startup_interrupts"]
    assert sum(r["cases"] for r in rows) >= 1000
    assert all(sum(r["outcomes"].values()) == r["cases"] for r in rows)
    assert record["meta"]["commit"] and record["meta"]["date"]
    interrupts = record["suites"]["startup_interrupts"]
    assert {r["target"] for r in interrupts} == {"perception_node", "policy_node",
                                                "executor_node", "sim_robot_node"}
    assert {r["class"] for r in interrupts} >= {"imports", "constructor", "configuring",
                                                "inactive", "activating", "active"}


def test_machine_line_reads_result_meta_and_older_records() -> None:
    tables = _reporting("tables")
    meta = {"machine": {"cpu": "Xeon", "cores": 2, "gpu": "none", "python": "3.11.7",
                        "platform": "Linux-x", "load_average": [0.5, 1.25, 2.0], "numa": 1}}
    assert tables.machine_text(meta) == (
        "Xeon, 2 cores, GPU: none, Python 3.11.7, load average 0.5/1.25/2, numa 1")
    assert tables.machine_text({"machine": "Xeon, 2 cores"}) == "Xeon, 2 cores"
    assert tables.machine_text({"policy": "x"}) == "not recorded"
