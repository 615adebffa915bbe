"""Replay adaptation stopping rules on recorded runs: where each rule stops and which checkpoint
it takes, from the records' pooled validation curves (``benchmarks/bench_adaptation.py``'s
:func:`replay_stopping`; the evaluation curve is printed beside it, never read by a rule).

    python benchmarks/replay_stopping_rule.py                    # the retired first selection
    python benchmarks/replay_stopping_rule.py benchmarks/results/adaptation_runs/select

A record ends where its own rule stopped it, so a rule that would train on is shown as
``> step`` (trains past the record's last checkpoint).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_adaptation import RESULTS, BenchConfig, replay_stopping  # noqa: E402

RULES = {"old": replace(BenchConfig(), schedule=(150, 300, 600, 1200, 2400, 4800), min_steps=0,
                        patience=2),
         "new": BenchConfig()}
"""The rule of the first selection runs (patience 2 over every checkpoint, to 4800) and now."""


def _cell(rec: dict, out: dict) -> str:
    if out["stopped_at"] is None:
        return f"> {out['trains_past']}"
    ev = dict((int(s), v) for s, v in rec["success_curve"])
    return f"{out['stopped_at']} / {out['converged_step']} ({ev[out['converged_step']]:.2f})"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("records", nargs="?",
                   default=str(RESULTS / "retired" / "adaptation_runs_select_v1"))
    args = p.parse_args(argv)
    paths = sorted(Path(args.records).rglob("*.json"))
    if not paths:
        print(f"no run records under {args.records}", file=sys.stderr)
        return 2
    print("rule: stopped at / converged step (evaluation success there); '> s': trains past s")
    print(f"{'run':32} {'validation (pooled)':44} {'old':22} {'new':22}")
    for path in paths:
        rec = json.loads(path.read_text())
        val = " ".join(f"{v:.2f}" for v in rec["val_pooled"])
        cells = [_cell(rec, replay_stopping(rec, cfg)) for cfg in RULES.values()]
        print(f"{path.stem:32} {val:44} {cells[0]:22} {cells[1]:22}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
