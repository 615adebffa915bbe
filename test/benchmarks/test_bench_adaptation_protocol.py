"""The converged adaptation protocol (benchmarks/bench_adaptation.py): its stopping rule, the
selection/report split and the pooled summary, on synthetic run records (no training)."""

from __future__ import annotations

import importlib.util
import json
import sys
from dataclasses import asdict

import pytest
from support.paths import ROOT


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_adaptation",
                                                  ROOT / "benchmarks" / "bench_adaptation.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_adaptation"] = mod  # dataclasses look their module up while defining
    spec.loader.exec_module(mod)
    return mod


def test_plateau_stop_waits_for_patience_checkpoints_without_a_gain(bench):
    stop = bench.plateau_stop
    assert not stop([0.2], 1, 0.02)                      # nothing to compare with yet
    assert not stop([0.2, 0.5], 1, 0.02)                 # still rising
    assert stop([0.2, 0.5, 0.51], 1, 0.02)               # +0.01 is within min_gain
    assert not stop([0.2, 0.5, 0.51], 2, 0.02)           # patience 2: one flat checkpoint
    assert stop([0.2, 0.5, 0.51, 0.4], 2, 0.02)          # two checkpoints not above 0.52
    assert not stop([0.2, 0.5, 0.51, 0.6], 2, 0.02)      # 0.6 beats 0.5 + 0.02
    assert not stop([0.0, 0.0, 0.0, 0.0], 0, 0.02)       # patience 0: never stops
    # The converged checkpoint is the best validation one, the earliest of equals.
    assert bench.converged_index([0.2, 0.6, 0.6, 0.5]) == 1
    with pytest.raises(ValueError):
        bench.converged_index([])


STEPS = [150, 300, 600, 1200, 2400, 4800, 9600]


def _stop_step(bench, cfg, val):
    """The step where run_one's rule (bench.should_stop after each checkpoint) stops ``val``."""
    for i, step in enumerate(STEPS[:len(val)]):
        if bench.should_stop(STEPS[:i + 1], val[:i + 1], cfg):
            return step
    return None


def test_stopping_rule_never_stops_before_min_steps(bench):
    cfg = bench.BenchConfig()
    assert cfg.min_steps == 2400 and max(cfg.schedule) == 9600
    # The retired K=25 run's early dip (val 0.43 -> 0.10 -> 0.40), then flat: no stop before
    # min_steps, and 150..1200 are no bar for the checkpoints after it.
    flat_early = [0.43, 0.10, 0.40, 0.40, 0.40, 0.40]
    assert _stop_step(bench, cfg, flat_early) == 4800
    assert _stop_step(bench, bench.BenchConfig(min_steps=0, patience=2), flat_early) == 600
    # A curve far below its first checkpoint after min_steps still is not stopped at 2400.
    assert not bench.should_stop(STEPS[:5], [0.9, 0.0, 0.0, 0.0, 0.1], cfg)
    assert bench.converged_index([0.9, 0.0, 0.0, 0.0, 0.1], STEPS[:5], cfg.min_steps) == 4
    with pytest.raises(ValueError, match="min_steps"):
        bench.BenchConfig(schedule=(150, 300), min_steps=600)


def test_stopping_rule_stops_on_a_plateau_and_not_while_rising(bench):
    cfg = bench.BenchConfig()
    assert _stop_step(bench, cfg, [0.1, 0.3, 0.5, 0.7, 0.85, 0.86]) == 4800  # +0.01: a plateau
    assert _stop_step(bench, cfg, [0.1, 0.3, 0.5, 0.7, 0.85, 0.80]) == 4800  # a fall
    assert _stop_step(bench, cfg, [0.1, 0.3, 0.5, 0.7, 0.80, 0.90]) is None  # rising: trains on
    # patience 2: two checkpoints after min_steps without a gain.
    cfg2 = bench.BenchConfig(min_steps=1200, patience=2)
    assert _stop_step(bench, cfg2, [0.1, 0.3, 0.5, 0.8, 0.8, 0.81]) == 4800


def _recorded_run(val, eval_by_step):
    steps = STEPS[:len(val)]
    curve = [[s, eval_by_step[i]] for i, s in enumerate(steps)]
    return {"val_pooled": val, "success_curve": curve,
            "tasks": {"reach": {"outcomes": [1, 0] * 5, "success_curve": curve}}}


def test_stopping_and_converged_checkpoint_never_read_evaluation_outcomes(bench):
    cfg = bench.BenchConfig()
    val = [0.1, 0.3, 0.5, 0.7, 0.9, 0.85]
    base = bench.replay_stopping(_recorded_run(val, [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]), cfg)
    assert base == {"stopped_at": 4800, "converged_step": 2400}
    for ev in ([1.0] * 6, [0.0] * 6, [0.9, 0.1, 0.9, 0.1, 0.0, 1.0]):
        rec = _recorded_run(val, ev)
        rec["tasks"]["reach"]["outcomes"] = [int(x > 0.5) for x in ev] * 2
        assert bench.replay_stopping(rec, cfg) == base
    # The validation curve does decide: a later validation peak moves the converged checkpoint.
    assert bench.replay_stopping(_recorded_run([0.1, 0.3, 0.5, 0.7, 0.85, 0.86], [0] * 6),
                                 cfg) == {"stopped_at": 4800, "converged_step": 4800}
    # A record that ends while the rule would go on says so.
    assert bench.replay_stopping(_recorded_run([0.43, 0.10, 0.40], [0] * 3), cfg) == \
        {"stopped_at": None, "converged_step": None, "trains_past": 600}


def test_a_changed_stopping_rule_changes_every_runs_identity(bench):
    from dataclasses import replace

    cfg = bench.BenchConfig()
    a = bench.run_identity(cfg, "select", "lowdim", "p", 5, "direct", 100, "sha")
    for change in ({"min_steps": 1200}, {"val_episodes": 10}, {"patience": 2},
                   {"schedule": (150, 300, 600, 1200, 2400, 4800)}):
        assert bench.run_identity(replace(cfg, **change), "select", "lowdim", "p", 5, "direct",
                                  100, "sha") != a


def test_selection_and_report_never_share_a_seed_or_an_episode_stream(bench):
    sel, rep = bench.SPLITS["select"], bench.SPLITS["report"]
    assert not set(sel.train_seeds) & set(rep.train_seeds)
    tasks = range(len(bench.BenchConfig().tasks))
    data = {s: {bench.data_seed(s, t) for t in tasks} for s in (*sel.train_seeds,
                                                                *rep.train_seeds)}
    sel_data = set().union(*(data[s] for s in sel.train_seeds))
    rep_data = set().union(*(data[s] for s in rep.train_seeds))
    assert not sel_data & rep_data
    # evaluate_policy seeds: validation and evaluation, within and across the splits.
    streams = [{sp.val_base + s for s in sp.train_seeds} for sp in (sel, rep)]
    streams += [{sp.eval_base + s for s in sp.train_seeds} for sp in (sel, rep)]
    for i, a in enumerate(streams):
        for b in streams[i + 1:]:
            assert not a & b
    # The command refuses a report run on a selection seed.
    with pytest.raises(SystemExit):
        bench.main(["--seeds", str(sel.train_seeds[0]), "--merge"])


def test_defaults_follow_the_selection_file(bench):
    path = bench.RESULTS / "bench_adaptation_selection.json"
    if not path.is_file():
        pytest.skip("no selection result yet")
    chosen = json.loads(path.read_text()).get("chosen") or {}
    if not chosen.get("method"):
        pytest.skip("selection incomplete")
    cfg = bench.BenchConfig()
    assert (cfg.lam, cfg.direction, cfg.clamp) == (chosen["lam"], chosen["direction"],
                                                   chosen["clamp"])
    assert list(cfg.schedule) == chosen["schedule"]


def test_selection_chooses_nothing_until_every_selection_run_finished(bench):
    summary = [{"k": k, "methods": {"direct": {}, "ate@2/classifier": {"minus_direct": 0.01},
                                    "ate@8/classifier": {"minus_direct": d}}}
               for k, d in ((5, 0.10), (25, 0.04))]
    done = bench.selection(summary, finished=16, expected=16)
    assert done["method"] == "ate@8/classifier" and done["lam"] == 8.0
    partial = bench.selection(summary, finished=5, expected=16)
    assert partial["method"] is None and "5 of 16" in partial["note"]
    assert partial["provisional"]["method"] == "ate@8/classifier"
    # Every run finished, but no candidate is better than direct on average: nothing chosen.
    worse = [{"k": k, "methods": {"direct": {}, "ate@2/classifier": {"minus_direct": -0.05},
                                  "ate@8/classifier": {"minus_direct": d}}}
             for k, d in ((5, 0.04), (25, -0.06))]
    none = bench.selection(worse, finished=16, expected=16)
    assert none["method"] is None and none["best_candidate"]["method"] == "ate@8/classifier"
    assert "no candidate beats direct" in none["note"] and "-1.0 points" in none["note"]


def test_monotone_in_k_allows_overlap_and_flags_a_clear_fall(bench):
    mono = bench.monotone_in_k
    assert mono([(5, 0.4, (0.3, 0.5)), (10, 0.5, (0.4, 0.6)), (25, 0.6, (0.5, 0.7))])
    assert mono([(5, 0.45, (0.35, 0.55)), (10, 0.42, (0.32, 0.52))])  # within the intervals
    assert not mono([(5, 0.42, (0.36, 0.48)), (10, 0.34, (0.28, 0.40)),
                     (25, 0.27, (0.22, 0.33))])                       # issue 28's 600 steps
    assert not mono([(25, 0.3, (0.25, 0.35)), (2, 0.6, (0.5, 0.7))])  # order of input is free


def _record(bench, k, method, seed, outcomes, curve, converged_step):
    tasks = {"reach": {"outcomes": outcomes, "success_curve": curve, "val_curve": [],
                       "converged_success": sum(outcomes) / len(outcomes)}}
    return {"track": "lowdim", "pair": "p", "k": k, "method": method, "seed": seed,
            "tasks": tasks, "success_curve": curve, "converged_step": converged_step,
            "stopped_at": curve[-1][0],
            "converged_success": sum(outcomes) / len(outcomes), "cpu_s": 10.0}


def test_summary_converged_success_difference_speedup_and_flag(bench):
    cfg = bench.BenchConfig(tasks=("reach",), schedule=(150, 300, 600), min_steps=0)
    # direct: 0.5 converged, reaching 0.45 (90%) only at step 600; ATE 0.75, at 150.
    recs = [_record(bench, 5, "direct", s, [1, 0, 1, 0], [[150, 0.0], [300, 0.25], [600, 0.5]],
                    600) for s in (0, 1)]
    recs += [_record(bench, 5, "ate", s, [1, 1, 1, 0], [[150, 0.75], [300, 0.75]], 150)
             for s in (0, 1)]
    # K=10 direct clearly worse than K=5 direct: the monotonicity flag goes false.
    recs += [_record(bench, 10, "direct", s, [0] * 40, [[150, 0.0]], 150) for s in (0, 1)]
    out = bench.summarize(recs, cfg, reps=200)
    k5 = next(e for e in out["summary"] if e["k"] == 5)
    assert k5["direct"] == pytest.approx(0.5) and k5["ate"] == pytest.approx(0.75)
    assert k5["ate_minus_direct"] == pytest.approx(0.25)
    assert k5["ci95"][0] <= 0.25 <= k5["ci95"][1]
    assert k5["speedup"] == pytest.approx(600 / 150)
    # ATE stopped at 300: its curve carries 0.75 to 600.
    assert k5["methods"]["ate"]["curve"] == [[150, 0.75], [300, 0.75], [600, 0.75]]
    assert k5["auc_ratio"] == pytest.approx(0.75 / ((0.125 + 0.375) / 2))
    assert out["direct_monotone_in_k"] == {"lowdim/p": False}
    assert len(out["rows"]) == len(recs)
    assert {"success_curve", "converged_success", "track", "pair", "task", "k", "method",
            "seed"} <= set(out["rows"][0])
    k10 = next(e for e in out["summary"] if e["k"] == 10)
    assert k10["ate"] is None and k10["ci95"] is None


def test_run_identity_changes_with_guidance_not_with_run_selection(bench):
    cfg = bench.BenchConfig()
    a = bench.run_identity(cfg, "report", "lowdim", "p", 5, "ate", 0, "sha")
    assert bench.run_identity(cfg, "report", "lowdim", "p", 5, "direct", 0, "sha")["guidance"] \
        is None
    from dataclasses import replace

    assert bench.run_identity(replace(cfg, ks=(5,)), "report", "lowdim", "p", 5, "ate", 0,
                              "sha") == a
    assert bench.run_identity(replace(cfg, lam=cfg.lam * 2), "report", "lowdim", "p", 5, "ate", 0,
                              "sha") != a
    # The direct baseline does not depend on the guidance settings the selection chooses.
    other = replace(cfg, lam=cfg.lam * 2)
    assert bench.run_identity(other, "report", "lowdim", "p", 5, "direct", 0,
                              "sha") == bench.run_identity(cfg, "report", "lowdim", "p", 5,
                                                           "direct", 0, "sha")
    assert json.loads(json.dumps(asdict(cfg)))  # the config travels as JSON to the workers


def test_run_identity_changes_with_a_task_horizon(bench, monkeypatch):
    """A record made with another episode horizon (push was 8 s) is not reused."""
    from ate_ros.core.sim.tasks import PushTask

    cfg = bench.BenchConfig()
    a = bench.run_identity(cfg, "report", "lowdim", "p", 5, "direct", 0, "sha")
    assert a["horizons_s"] == {"reach": 4.0, "push": PushTask.time_limit, "pick_color": 5.0}
    monkeypatch.setattr(PushTask, "time_limit", 8.0)
    assert bench.run_identity(cfg, "report", "lowdim", "p", 5, "direct", 0, "sha") != a


def test_docs_section_warns_above_the_table_when_direct_falls_with_k(bench):
    spec = importlib.util.spec_from_file_location(
        "reporting_adaptation", ROOT / "benchmarks" / "reporting" / "adaptation.py")
    rep = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rep)
    cfg = bench.BenchConfig(tasks=("reach",), schedule=(150, 300), min_steps=0)
    recs = [_record(bench, 5, "direct", s, [1] * 20, [[150, 1.0]], 150) for s in (0, 1)]
    recs += [_record(bench, 25, "direct", s, [0] * 20, [[150, 0.0]], 150) for s in (0, 1)]
    data = {"protocol": "converged", **bench.summarize(recs, cfg, reps=100)}
    lines = rep.section(data)
    assert lines[0].startswith("**Warning: lowdim/p") and lines.index(lines[0]) < \
        next(i for i, x in enumerate(lines) if x.startswith("| track"))
    data["direct_monotone_in_k"] = {"lowdim/p": True}
    assert not any("Warning" in x for x in rep.section(data))
