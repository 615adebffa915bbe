"""``ate-ros verify-dataset``: re-read a converted dataset and check it.

Exit code 0 when no errors were found (warnings allowed), 1 otherwise.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

from ate_ros.commands.arguments import add_dataclass_options


@dataclass(kw_only=True)
class VerifyOptions:
    """The options of ``ate-ros verify-dataset``."""

    dataset: str = field(metadata={
        "positional": True, "help": "dataset folder (train/, val/, manifest.json)"})
    rate_tolerance: float = field(default=0.05, metadata={
        "help": "allowed relative difference of the median rate from rate_hz"})
    embodiment: str | None = field(default=None, metadata={
        "help": "check against this embodiment instead of DATASET/embodiment.yaml"})
    no_hashes: bool = field(default=False, metadata={"help": "skip SHA-256 checks"})
    json: str | None = field(default=None, metadata={
        "metavar": "FILE", "help": "write the report as JSON"})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_dataclass_options(parser, VerifyOptions)


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
