"""Where the repository and the test tree are, for tests at any depth of ``test/``."""

from __future__ import annotations

from pathlib import Path

TEST_DIR = Path(__file__).resolve().parents[1]
ROOT = TEST_DIR.parent
