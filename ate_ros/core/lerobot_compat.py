"""The one place that checks for LeRobot (the ``lerobot`` extra) and prepares its import.

Nothing in ``ate_ros`` imports LeRobot at module level: the LeRobot adapters, exporter and
loader call :func:`require_lerobot` first, so the core runs without it.

LeRobot 0.4.x eagerly imports its GR00T policy package from ``lerobot.policies``, and GR00T's
config class does not define under transformers 5 (which this venv needs for its text encoder).
When that import fails, :func:`require_lerobot` registers ``lerobot.policies.groot`` as a bare
package (its ``__init__`` skipped), so ``lerobot.policies`` and every other policy import;
GR00T itself stays unavailable and fails with its own error when asked for.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import importlib.util
import logging
import sys
import types
from collections.abc import Iterator
from pathlib import Path

logger = logging.getLogger(__name__)

TESTED_LEROBOT_VERSIONS = ("0.4.4",)
"""LeRobot releases the adapters and tests were run against (docs/lerobot.md)."""

LEROBOT_PREFIX = "lerobot:"
"""``--policy lerobot:<dir>`` / ``policy:=lerobot:<dir>`` selects a LeRobot checkpoint."""

INSTALL_HINT = ("install the LeRobot extra: `make setup` (runs tools/setup_lerobot.sh), or "
                "`pip install -e '.[lerobot]' && pip install --no-deps lerobot==0.4.4`")

_GROOT = "lerobot.policies.groot"
_ready = False


class LeRobotUnavailable(ImportError):
    """LeRobot (or one of its runtime dependencies) is not installed or does not import."""


def is_lerobot_spec(spec: str) -> bool:
    """True when a policy argument names a LeRobot checkpoint (``lerobot:<dir>``)."""
    return str(spec).startswith(LEROBOT_PREFIX)


def lerobot_path(spec: str) -> Path:
    """The folder of a ``lerobot:<dir>`` policy argument."""
    if not is_lerobot_spec(spec):
        raise ValueError(f"{spec!r} is not a LeRobot policy; write lerobot:<dir>")
    path = str(spec)[len(LEROBOT_PREFIX):]
    if not path:
        raise ValueError("lerobot: needs a checkpoint folder, e.g. lerobot:runs/dp/pretrained")
    return Path(path)


def _skip_groot_init() -> None:
    """Register ``lerobot.policies.groot`` without running its eager ``__init__``."""
    spec = importlib.util.find_spec("lerobot")
    folder = Path(spec.origin).parent / "policies" / "groot"
    pkg = types.ModuleType(_GROOT)
    pkg.__path__ = [str(folder)]
    pkg.__package__ = _GROOT
    pkg.__file__ = str(folder / "__init__.py")
    sys.modules[_GROOT] = pkg


def require_lerobot() -> str:
    """Make ``lerobot.policies`` and ``lerobot.datasets`` importable; return LeRobot's version.

    Raises:
        LeRobotUnavailable: naming the missing package and how to install the extra.
    """
    global _ready
    try:
        version = importlib.metadata.version("lerobot")
    except importlib.metadata.PackageNotFoundError as exc:
        raise LeRobotUnavailable(f"LeRobot is not installed; {INSTALL_HINT}") from exc
    if _ready:
        return version
    try:
        try:
            importlib.import_module(_GROOT)
        except (TypeError, ImportError) as exc:
            # Python dropped the failed modules; the GR00T submodules that did import (its
            # config, registered with draccus) stay, so they are not registered twice.
            logger.debug("LeRobot's GR00T policy does not import (%s); skipping it", exc)
            _skip_groot_init()
        importlib.import_module("lerobot.policies")
        importlib.import_module("lerobot.datasets.lerobot_dataset")
        importlib.import_module("lerobot.policies.factory")
    except ImportError as exc:
        raise LeRobotUnavailable(f"LeRobot {version} does not import ({exc}); {INSTALL_HINT}"
                                 ) from exc
    if version not in TESTED_LEROBOT_VERSIONS:
        logger.warning("LeRobot %s is installed; ate_ros was tested with %s", version,
                       ", ".join(TESTED_LEROBOT_VERSIONS))
    _ready = True
    return version


_MAX_MESSAGE = 400
"""Characters of LeRobot's message kept (a draccus error can quote a whole config)."""


def one_line(exc: BaseException) -> str:
    """``exc``'s message, and its cause's, on one line (at most :data:`_MAX_MESSAGE` chars)."""
    parts = [f"{type(exc).__name__}: {exc}"]
    cause = exc.__cause__ or exc.__context__
    if cause is not None and str(cause) and str(cause) not in str(exc):
        parts.append(f"{type(cause).__name__}: {cause}")
    text = " ".join(" (".join(parts).split()) + (")" if len(parts) > 1 else "")
    return text if len(text) <= _MAX_MESSAGE else text[:_MAX_MESSAGE - 3] + "..."


@contextlib.contextmanager
def lerobot_errors(where: str | Path, what: str, error: type[Exception]) -> Iterator[None]:
    """Within the block, any exception but ``error`` itself and :class:`LeRobotUnavailable`
    becomes ``error`` naming ``where`` (the file or folder LeRobot reads), saying ``what`` it
    was reading, with LeRobot's words on one line.

    LeRobot's parsers raise whatever a broken input gives them: draccus' ``DecodingError`` for
    a field of the wrong type (its message names the field), ``KeyError`` / ``IndexError`` for
    a missing one, torch's ``RuntimeError`` for a weight of another shape, ``datasets``' errors
    for a parquet file that does not match ``meta/info.json``.
    """
    try:
        yield
    except (error, LeRobotUnavailable):
        raise
    except Exception as exc:  # noqa: BLE001 - see above: LeRobot raises anything
        raise error(f"{where}: {what}: {one_line(exc)}") from exc


__all__ = ["INSTALL_HINT", "LEROBOT_PREFIX", "TESTED_LEROBOT_VERSIONS", "LeRobotUnavailable",
           "is_lerobot_spec", "lerobot_errors", "lerobot_path", "one_line", "require_lerobot"]
