"""``ate-ros verify-dataset``: re-read a converted dataset and check it.

Exit code 0 when no errors were found (warnings allowed), 1 otherwise.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", help="dataset folder (train/, val/, manifest.json)")
    parser.add_argument("--rate-tolerance", type=float, default=0.05,
                        help="allowed relative difference of the median rate from rate_hz")
    parser.add_argument("--embodiment", default=None,
                        help="check against this embodiment instead of DATASET/embodiment.yaml")
    parser.add_argument("--no-hashes", action="store_true", help="skip SHA-256 checks")
    parser.add_argument("--json", default=None, metavar="FILE", help="write the report as JSON")


def run(args: argparse.Namespace) -> int:
    import json

    from ate_ros.core.data.verify import verify_dataset

    report = verify_dataset(args.dataset, rate_tolerance=args.rate_tolerance,
                            embodiment=args.embodiment, check_hashes=not args.no_hashes)
    print(report.summary())
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report.to_dict(), f, indent=2)
    return 0 if report.ok else 1
