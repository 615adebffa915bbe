"""The documentation stays an entry point that is true: generated pages up to date with the code
and the benchmark results, a short README, and no relative link to a missing file."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest
from support.paths import ROOT

README_MAX_LINES = 160
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def _gen_docs() -> ModuleType:
    """tools/gen_docs.py, loaded from its file (tools/ is not a package)."""
    spec = importlib.util.spec_from_file_location("gen_docs", ROOT / "tools" / "gen_docs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_generated_docs_are_current(capsys: pytest.CaptureFixture[str]) -> None:
    """`python tools/gen_docs.py --check` passes: nodes.md and benchmarks.md match the code."""
    rc = _gen_docs().main(["--check"])
    assert rc == 0, ("generated docs are stale; run `python tools/gen_docs.py`:\n"
                     + capsys.readouterr().out)


def test_readme_is_short() -> None:
    """The README is an entry point; details belong in docs/."""
    n = len((ROOT / "README.md").read_text().splitlines())
    assert n <= README_MAX_LINES, f"README.md has {n} lines (at most {README_MAX_LINES})"


@pytest.mark.parametrize("page", _doc_files(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_resolve(page: Path) -> None:
    """Every relative link (and image) in README.md and docs/*.md names an existing file."""
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # code blocks are not links
    missing = []
    for target in LINK.findall(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # URL, mailto:, or an anchor in the same page
        path = target.split("#", 1)[0]
        if path and not (page.parent / path).exists():
            missing.append(target)
    assert not missing, f"{page.relative_to(ROOT)} links to missing files: {missing}"
