"""Record what the reliability suites try: run the malformed-input, embodiment-fuzz and
start-up Ctrl-C tests with their outcome record switched on, and write
``benchmarks/results/reliability/record.json`` (``meta`` + per suite, per target and bad-input
class: cases and outcomes), from which ``tools/gen_docs.py`` renders ``docs/reliability.md``.
The start-up Ctrl-C cases are timed on real processes; their moments are found from the nodes'
output, so the counts repeat, and an outcome may differ only where a race is recorded as its own.

    python benchmarks/record_reliability.py

The suites draw their cases with ``derandomize=True``, so a re-run on the same code gives the
same counts; the tests fail on any outcome other than the allowed errors, so the record is only
written when every suite passed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from result_meta import ROOT, result_meta

SUITES = ("test/project/test_malformed_inputs.py", "test/project/test_reliability_fuzz.py",
          "test/nodes/test_startup_sigint.py")
OUT = ROOT / "benchmarks" / "results" / "reliability" / "record.json"
RECORD_ENV = "ATE_ROS_RELIABILITY_RECORD"  # test/support/mutations.py reads it


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    meta = result_meta()
    with tempfile.TemporaryDirectory() as tmp:
        record = Path(tmp) / "record.json"
        env = {**os.environ, RECORD_ENV: str(record)}
        done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                               *SUITES], cwd=ROOT, env=env, check=False)
        if done.returncode != 0:
            print(f"record_reliability: the suites failed (exit {done.returncode}); nothing "
                  "written", file=sys.stderr)
            return done.returncode
        suites = json.loads(record.read_text())
    result = {"benchmark": "reliability", "meta": meta, "suites_run": list(SUITES),
              "suites": suites}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = args.out.with_suffix(".json.tmp")
    tmp_out.write_text(json.dumps(result, indent=1) + "\n")
    tmp_out.replace(args.out)
    total = sum(row["cases"] for rows in suites.values() for row in rows)
    for name, rows in suites.items():
        print(f"{name}: {sum(r['cases'] for r in rows)} cases, {len(rows)} (target, class) rows")
    print(f"total {total} cases -> {args.out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
